#include "ops/cross_entropy.h"

#include <cblas.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "core/error.h"
#include "ops/linear.h"

namespace dt {
namespace {

void check(int64_t tokens, int64_t dim, const Tensor& head, const int32_t* labels, int64_t ignore_index) {
  if (head.rank() != 2 || head.dim(1) != dim)
    fail("cross entropy: head has shape {}, expected [vocab, {}]", shape_string(head.shape()), dim);
  const int64_t vocab = head.dim(0);
  for (int64_t t = 0; t < tokens; ++t)
    if (labels[t] != ignore_index && (labels[t] < 0 || labels[t] >= vocab))
      fail("cross entropy: label {} at row {} is outside the vocabulary [0, {})", labels[t], t, vocab);
}

}  // namespace

CrossEntropyResult sliced_cross_entropy(const float* hidden, int64_t tokens, int64_t dim, const Tensor& head,
                                        const int32_t* labels, float gradient_scale, float* d_hidden,
                                        int64_t slice, int64_t ignore_index) {
  check(tokens, dim, head, labels, ignore_index);
  if (slice <= 0) fail("cross entropy: slice size {} must be positive", slice);
  const int64_t vocab = head.dim(0);
  slice = std::min(slice, vocab);
  std::vector<float> rows(static_cast<size_t>(slice * dim)), logits(static_cast<size_t>(tokens * slice));
  // One pass over the slices, as flash attention does: per row a running maximum m and sum of
  // exp(logit - m), the label's logit, and (for the gradient) d_hidden accumulating
  // sum_v exp(logit_v - m) head_v, rescaled whenever m grows. At the end
  // d_hidden = scale (d_hidden / sum - head_label): the softmax-weighted head rows minus the label's.
  std::vector<double> maximum(static_cast<size_t>(tokens), -std::numeric_limits<double>::infinity());
  std::vector<double> total(static_cast<size_t>(tokens), 0.0), target(static_cast<size_t>(tokens), 0.0);
  for (int64_t first = 0; first < vocab; first += slice) {
    const int64_t count = std::min(slice, vocab - first);
    weight_rows_to_f32(head, first, count, rows.data());
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, int(tokens), int(count), int(dim), 1.0f, hidden, int(dim),
                rows.data(), int(dim), 0.0f, logits.data(), int(count));
#pragma omp parallel for schedule(static) if (tokens * count > 65536)
    for (int64_t t = 0; t < tokens; ++t) {
      float* row = logits.data() + t * count;
      if (labels[t] >= first && labels[t] < first + count) target[size_t(t)] = row[labels[t] - first];
      double slice_maximum = maximum[size_t(t)];
      for (int64_t v = 0; v < count; ++v) slice_maximum = std::max(slice_maximum, double(row[v]));
      const double rescale = std::exp(maximum[size_t(t)] - slice_maximum);
      double sum = total[size_t(t)] * rescale;
      for (int64_t v = 0; v < count; ++v) {
        const double weight = std::exp(double(row[v]) - slice_maximum);
        sum += weight;
        row[v] = float(weight);
      }
      maximum[size_t(t)] = slice_maximum;
      total[size_t(t)] = sum;
      if (d_hidden && first > 0)
        for (int64_t i = 0; i < dim; ++i) d_hidden[t * dim + i] *= float(rescale);
    }
    if (d_hidden)
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, int(tokens), int(dim), int(count), 1.0f, logits.data(),
                  int(count), rows.data(), int(dim), first > 0 ? 1.0f : 0.0f, d_hidden, int(dim));
  }
  CrossEntropyResult result;
  std::vector<float> label_row(static_cast<size_t>(dim));
  for (int64_t t = 0; t < tokens; ++t) {
    if (labels[t] == ignore_index) {
      if (d_hidden) std::fill_n(d_hidden + t * dim, dim, 0.0f);
      continue;
    }
    result.loss_sum += maximum[size_t(t)] + std::log(total[size_t(t)]) - target[size_t(t)];
    ++result.counted;
    if (!d_hidden) continue;
    weight_rows_to_f32(head, labels[t], 1, label_row.data());
    const float softmax_scale = float(double(gradient_scale) / total[size_t(t)]);
    for (int64_t i = 0; i < dim; ++i)
      d_hidden[t * dim + i] = softmax_scale * d_hidden[t * dim + i] - gradient_scale * label_row[size_t(i)];
  }
  return result;
}

CrossEntropyResult cross_entropy_reference(const float* hidden, int64_t tokens, int64_t dim, const Tensor& head,
                                           const int32_t* labels, float gradient_scale, float* d_hidden,
                                           int64_t ignore_index) {
  check(tokens, dim, head, labels, ignore_index);
  const int64_t vocab = head.dim(0);
  const std::vector<float> w = head.to_f32_vector();
  CrossEntropyResult result;
  std::vector<double> logits(static_cast<size_t>(vocab));
  for (int64_t t = 0; t < tokens; ++t) {
    if (d_hidden) std::fill_n(d_hidden + t * dim, dim, 0.0f);
    if (labels[t] == ignore_index) continue;
    double maximum = -std::numeric_limits<double>::infinity();
    for (int64_t v = 0; v < vocab; ++v) {
      double sum = 0;
      for (int64_t i = 0; i < dim; ++i) sum += double(hidden[t * dim + i]) * double(w[size_t(v * dim + i)]);
      logits[size_t(v)] = sum;
      maximum = std::max(maximum, sum);
    }
    double total = 0;
    for (double logit : logits) total += std::exp(logit - maximum);
    const double log_sum_exp = maximum + std::log(total);
    result.loss_sum += log_sum_exp - logits[size_t(labels[t])];
    ++result.counted;
    if (!d_hidden) continue;
    for (int64_t i = 0; i < dim; ++i) {
      double sum = 0;
      for (int64_t v = 0; v < vocab; ++v) {
        const double d_logit = std::exp(logits[size_t(v)] - log_sum_exp) - (v == labels[t] ? 1.0 : 0.0);
        sum += d_logit * double(w[size_t(v * dim + i)]);
      }
      d_hidden[t * dim + i] = float(double(gradient_scale) * sum);
    }
  }
  return result;
}

}  // namespace dt
