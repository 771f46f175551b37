#include "ops/attention.h"

#include <cblas.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "core/error.h"

namespace dt {
namespace {

void check(const AttentionProblem& p) {
  if (p.q_heads <= 0 || p.kv_heads <= 0 || p.q_heads % p.kv_heads != 0)
    fail("attention: {} query heads cannot share {} kv heads", p.q_heads, p.kv_heads);
  if (p.past + p.tokens > p.kv_capacity)
    fail("attention: {} positions exceed the kv capacity {}", p.past + p.tokens, p.kv_capacity);
}

int64_t kv_head_of(const AttentionProblem& p, int64_t q_head) {
  return q_head / (p.q_heads / p.kv_heads);
}

// Softmax in place over scores[0, count).
void softmax(float* scores, int64_t count) {
  float maximum = -std::numeric_limits<float>::infinity();
  for (int64_t i = 0; i < count; ++i) maximum = std::max(maximum, scores[i]);
  double total = 0;
  for (int64_t i = 0; i < count; ++i) {
    scores[i] = std::exp(scores[i] - maximum);
    total += scores[i];
  }
  const float inverse = float(1.0 / total);
  for (int64_t i = 0; i < count; ++i) scores[i] *= inverse;
}

// Few queries (decode): one (head, query) pair per iteration, dot products by hand.
void attention_by_rows(const AttentionProblem& p, float* out) {
  const int64_t hd = p.head_dim, q_row = p.q_heads * hd;
#pragma omp parallel
  {
    // Per-thread scratch that persists across calls: decode allocates nothing per token.
    thread_local std::vector<float> scores;
    scores.resize(size_t(p.past + p.tokens));
#pragma omp for schedule(static) collapse(2)
    for (int64_t h = 0; h < p.q_heads; ++h) {
      for (int64_t t = 0; t < p.tokens; ++t) {
        const int64_t visible = p.past + t + 1;
        const float* query = p.q + t * q_row + h * hd;
        const float* keys = p.keys + kv_head_of(p, h) * p.kv_capacity * hd;
        const float* values = p.values + kv_head_of(p, h) * p.kv_capacity * hd;
        for (int64_t s = 0; s < visible; ++s) {
          float dot = 0;
#pragma omp simd reduction(+ : dot)
          for (int64_t i = 0; i < hd; ++i) dot += query[i] * keys[s * hd + i];
          scores[size_t(s)] = dot * p.scale;
        }
        softmax(scores.data(), visible);
        float* result = out + t * q_row + h * hd;
        std::fill_n(result, hd, 0.0f);
        for (int64_t s = 0; s < visible; ++s)
          for (int64_t i = 0; i < hd; ++i) result[i] += scores[size_t(s)] * values[s * hd + i];
      }
    }
  }
}

// Many queries (prefill): per head and block of queries, S = Q K^T and O = P V through sgemm.
void attention_by_blocks(const AttentionProblem& p, float* out) {
  constexpr int64_t kQueryBlock = 256;
  const int64_t hd = p.head_dim, q_row = p.q_heads * hd;
  thread_local std::vector<float> scratch;
  scratch.resize(size_t(std::min(kQueryBlock, p.tokens) * (p.past + p.tokens)));
  float* const scores = scratch.data();  // the calling thread's buffer, shared with the team below
  for (int64_t h = 0; h < p.q_heads; ++h) {
    const float* keys = p.keys + kv_head_of(p, h) * p.kv_capacity * hd;
    const float* values = p.values + kv_head_of(p, h) * p.kv_capacity * hd;
    for (int64_t first = 0; first < p.tokens; first += kQueryBlock) {
      const int64_t count = std::min(kQueryBlock, p.tokens - first);
      const int64_t width = p.past + first + count;  // keys visible to the block's last query
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, int(count), int(width), int(hd), p.scale,
                  p.q + first * q_row + h * hd, int(q_row), keys, int(hd), 0.0f, scores,
                  int(width));
#pragma omp parallel for schedule(static)
      for (int64_t r = 0; r < count; ++r) {
        float* row = scores + r * width;
        const int64_t visible = p.past + first + r + 1;
        softmax(row, visible);
        std::fill(row + visible, row + width, 0.0f);
      }
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, int(count), int(hd), int(width), 1.0f,
                  scores, int(width), values, int(hd), 0.0f, out + first * q_row + h * hd,
                  int(q_row));
    }
  }
}

}  // namespace

void causal_attention(const AttentionProblem& problem, float* out) {
  check(problem);
  if (problem.tokens <= 4)
    attention_by_rows(problem, out);
  else
    attention_by_blocks(problem, out);
}

namespace {

// softmax(scale q . k_s) over the first `visible` keys, in double: the reference forward and
// backward both start from it.
std::vector<double> attention_probabilities_reference(const AttentionProblem& p, const float* query,
                                                      const float* keys, int64_t visible) {
  std::vector<double> weights(static_cast<size_t>(visible));
  double maximum = -std::numeric_limits<double>::infinity();
  for (int64_t s = 0; s < visible; ++s) {
    double dot = 0;
    for (int64_t i = 0; i < p.head_dim; ++i) dot += double(query[i]) * double(keys[s * p.head_dim + i]);
    weights[size_t(s)] = dot * double(p.scale);
    maximum = std::max(maximum, weights[size_t(s)]);
  }
  double total = 0;
  for (double& w : weights) total += (w = std::exp(w - maximum));
  for (double& w : weights) w /= total;
  return weights;
}

}  // namespace

void causal_attention_reference(const AttentionProblem& p, float* out) {
  check(p);
  const int64_t hd = p.head_dim, q_row = p.q_heads * hd;
  for (int64_t h = 0; h < p.q_heads; ++h) {
    const float* keys = p.keys + kv_head_of(p, h) * p.kv_capacity * hd;
    const float* values = p.values + kv_head_of(p, h) * p.kv_capacity * hd;
    for (int64_t t = 0; t < p.tokens; ++t) {
      const int64_t visible = p.past + t + 1;
      const std::vector<double> weights = attention_probabilities_reference(p, p.q + t * q_row + h * hd, keys, visible);
      for (int64_t i = 0; i < hd; ++i) {
        double sum = 0;
        for (int64_t s = 0; s < visible; ++s) sum += weights[size_t(s)] * double(values[s * hd + i]);
        out[t * q_row + h * hd + i] = float(sum);
      }
    }
  }
}


// ---- Backward ----

namespace {

void zero_kv_gradients(const AttentionProblem& p, float* dkeys, float* dvalues) {
  for (int64_t j = 0; j < p.kv_heads; ++j) {
    std::fill_n(dkeys + j * p.kv_capacity * p.head_dim, (p.past + p.tokens) * p.head_dim, 0.0f);
    std::fill_n(dvalues + j * p.kv_capacity * p.head_dim, (p.past + p.tokens) * p.head_dim, 0.0f);
  }
}

}  // namespace

void causal_attention_backward(const AttentionProblem& p, const float* d_out, float* dq, float* dkeys,
                               float* dvalues) {
  check(p);
  zero_kv_gradients(p, dkeys, dvalues);
  if (p.tokens == 0) return;
  constexpr int64_t kQueryBlock = 256;
  const int64_t hd = p.head_dim, q_row = p.q_heads * hd;
  // P (probabilities) and dS (score gradients) of one block of queries.
  std::vector<float> probabilities(static_cast<size_t>(std::min(kQueryBlock, p.tokens) * (p.past + p.tokens)));
  std::vector<float> score_gradients(probabilities.size());
  float* const P = probabilities.data();
  float* const dS = score_gradients.data();
  for (int64_t h = 0; h < p.q_heads; ++h) {
    const int64_t kv = kv_head_of(p, h);
    const float* keys = p.keys + kv * p.kv_capacity * hd;
    const float* values = p.values + kv * p.kv_capacity * hd;
    float* key_gradients = dkeys + kv * p.kv_capacity * hd;
    float* value_gradients = dvalues + kv * p.kv_capacity * hd;
    for (int64_t first = 0; first < p.tokens; first += kQueryBlock) {
      const int64_t count = std::min(kQueryBlock, p.tokens - first);
      const int64_t width = p.past + first + count;
      const float* Q = p.q + first * q_row + h * hd;
      const float* dO = d_out + first * q_row + h * hd;
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, int(count), int(width), int(hd), p.scale, Q,
                  int(q_row), keys, int(hd), 0.0f, P, int(width));
      // dP = dO V^T
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, int(count), int(width), int(hd), 1.0f, dO,
                  int(q_row), values, int(hd), 0.0f, dS, int(width));
#pragma omp parallel for schedule(static)
      for (int64_t r = 0; r < count; ++r) {
        float* row = P + r * width;
        float* gradient = dS + r * width;
        const int64_t visible = p.past + first + r + 1;
        softmax(row, visible);
        std::fill(row + visible, row + width, 0.0f);
        // dS = scale P o (dP - (dP . P)), the softmax backward with the score scale folded in.
        double expectation = 0;
        for (int64_t s = 0; s < visible; ++s) expectation += double(row[s]) * double(gradient[s]);
        for (int64_t s = 0; s < visible; ++s) gradient[s] = p.scale * row[s] * (gradient[s] - float(expectation));
        std::fill(gradient + visible, gradient + width, 0.0f);
      }
      // dQ = dS K;  dK += dS^T Q;  dV += P^T dO
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, int(count), int(hd), int(width), 1.0f, dS,
                  int(width), keys, int(hd), 0.0f, dq + first * q_row + h * hd, int(q_row));
      cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, int(width), int(hd), int(count), 1.0f, dS,
                  int(width), Q, int(q_row), 1.0f, key_gradients, int(hd));
      cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, int(width), int(hd), int(count), 1.0f, P,
                  int(width), dO, int(q_row), 1.0f, value_gradients, int(hd));
    }
  }
}

void causal_attention_backward_reference(const AttentionProblem& p, const float* d_out, float* dq,
                                         float* dkeys, float* dvalues) {
  check(p);
  zero_kv_gradients(p, dkeys, dvalues);
  const int64_t hd = p.head_dim, q_row = p.q_heads * hd;
  for (int64_t h = 0; h < p.q_heads; ++h) {
    const int64_t kv = kv_head_of(p, h);
    const float* keys = p.keys + kv * p.kv_capacity * hd;
    const float* values = p.values + kv * p.kv_capacity * hd;
    for (int64_t t = 0; t < p.tokens; ++t) {
      const int64_t visible = p.past + t + 1;
      const float* query = p.q + t * q_row + h * hd;
      const float* gradient = d_out + t * q_row + h * hd;
      const std::vector<double> weights = attention_probabilities_reference(p, query, keys, visible);
      std::vector<double> d_weights(static_cast<size_t>(visible));
      double expectation = 0;
      for (int64_t s = 0; s < visible; ++s) {
        double dot = 0;
        for (int64_t i = 0; i < hd; ++i) dot += double(gradient[i]) * double(values[s * hd + i]);
        d_weights[size_t(s)] = dot;
        expectation += dot * weights[size_t(s)];
      }
      std::vector<double> query_gradient(static_cast<size_t>(hd), 0.0);
      for (int64_t s = 0; s < visible; ++s) {
        const double score_gradient = double(p.scale) * weights[size_t(s)] * (d_weights[size_t(s)] - expectation);
        for (int64_t i = 0; i < hd; ++i) {
          query_gradient[size_t(i)] += score_gradient * double(keys[s * hd + i]);
          dkeys[(kv * p.kv_capacity + s) * hd + i] += float(score_gradient * double(query[i]));
          dvalues[(kv * p.kv_capacity + s) * hd + i] += float(weights[size_t(s)] * double(gradient[i]));
        }
      }
      for (int64_t i = 0; i < hd; ++i) dq[t * q_row + h * hd + i] = float(query_gradient[size_t(i)]);
    }
  }
}

}  // namespace dt
