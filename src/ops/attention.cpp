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

void causal_attention_reference(const AttentionProblem& p, float* out) {
  check(p);
  const int64_t hd = p.head_dim, q_row = p.q_heads * hd;
  for (int64_t h = 0; h < p.q_heads; ++h) {
    const float* keys = p.keys + kv_head_of(p, h) * p.kv_capacity * hd;
    const float* values = p.values + kv_head_of(p, h) * p.kv_capacity * hd;
    for (int64_t t = 0; t < p.tokens; ++t) {
      const int64_t visible = p.past + t + 1;
      const float* query = p.q + t * q_row + h * hd;
      std::vector<double> weights(static_cast<size_t>(visible));
      double maximum = -std::numeric_limits<double>::infinity();
      for (int64_t s = 0; s < visible; ++s) {
        double dot = 0;
        for (int64_t i = 0; i < hd; ++i) dot += double(query[i]) * double(keys[s * hd + i]);
        weights[size_t(s)] = dot * double(p.scale);
        maximum = std::max(maximum, weights[size_t(s)]);
      }
      double total = 0;
      for (double& w : weights) total += (w = std::exp(w - maximum));
      for (int64_t i = 0; i < hd; ++i) {
        double sum = 0;
        for (int64_t s = 0; s < visible; ++s) sum += weights[size_t(s)] * double(values[s * hd + i]);
        out[t * q_row + h * hd + i] = float(sum / total);
      }
    }
  }
}

}  // namespace dt
