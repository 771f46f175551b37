#include "ops/delta_rule.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "core/error.h"
#include "ops/activation.h"

namespace dt {
namespace {

void check(const DeltaRuleProblem& p) {
  if (p.key_heads <= 0 || p.value_heads <= 0 || p.value_heads % p.key_heads != 0)
    fail("delta rule: {} value heads cannot share {} key heads", p.value_heads, p.key_heads);
}

int64_t key_head_of(const DeltaRuleProblem& p, int64_t value_head) {
  return value_head / (p.value_heads / p.key_heads);
}

float dot(const float* a, const float* b, int64_t count) {
  float sum = 0;
#pragma omp simd reduction(+ : sum)
  for (int64_t i = 0; i < count; ++i) sum += a[i] * b[i];
  return sum;
}

// y += alpha * x
void axpy(float alpha, const float* x, float* y, int64_t count) {
#pragma omp simd
  for (int64_t i = 0; i < count; ++i) y[i] += alpha * x[i];
}

}  // namespace

void gated_delta_gates(const float* b, const float* a, int64_t tokens, int64_t heads,
                       const float* A_log, const float* dt_bias, float* beta, float* g) {
  for (int64_t t = 0; t < tokens; ++t) {
    for (int64_t h = 0; h < heads; ++h) {
      const int64_t i = t * heads + h;
      beta[i] = sigmoid(b[i]);
      const float rate = softplus(a[i] + dt_bias[h]);
      // Assign rather than multiply: exp(A_log) may be inf and inf * 0 is NaN.
      g[i] = rate == 0.0f ? 0.0f : std::max(-std::exp(A_log[h]) * rate, kMinLogDecay);
    }
  }
}

void delta_rule_recurrent(const DeltaRuleProblem& p, float* state, float* out) {
  check(p);
  const int64_t dk = p.key_dim, dv = p.value_dim, nv = p.value_heads;
#pragma omp parallel for schedule(static) if (p.tokens * nv * dk * dv > 65536)
  for (int64_t h = 0; h < nv; ++h) {
    thread_local std::vector<float> correction;
    correction.resize(size_t(dv));
    float* u = correction.data();
    float* S = state + h * dk * dv;
    const int64_t kh = key_head_of(p, h);
    for (int64_t t = 0; t < p.tokens; ++t) {
      const float* q = p.q + t * p.q_stride + kh * dk;
      const float* k = p.k + t * p.k_stride + kh * dk;
      const float* v = p.v + t * p.v_stride + h * dv;
      const float alpha = std::exp(std::max(p.g[t * nv + h], kMinLogDecay));
      const float beta = p.beta[t * nv + h];
      // Decay the state and predict v from it: u = S^T k.
      std::fill_n(u, dv, 0.0f);
      for (int64_t i = 0; i < dk; ++i) {
        float* row = S + i * dv;
#pragma omp simd
        for (int64_t j = 0; j < dv; ++j) row[j] *= alpha;
        axpy(k[i], row, u, dv);
      }
      for (int64_t j = 0; j < dv; ++j) u[j] = beta * (v[j] - u[j]);
      // Rank-one update, then read out o = scale S^T q.
      float* o = out + t * nv * dv + h * dv;
      std::fill_n(o, dv, 0.0f);
      for (int64_t i = 0; i < dk; ++i) {
        float* row = S + i * dv;
        axpy(k[i], u, row, dv);
        axpy(q[i] * p.scale, row, o, dv);
      }
    }
  }
}

void delta_rule_chunked(const DeltaRuleProblem& p, float* state, float* out, int64_t chunk) {
  check(p);
  if (chunk <= 0) fail("delta rule: chunk size {} must be positive", chunk);
  const int64_t dk = p.key_dim, dv = p.value_dim, nv = p.value_heads;
  const int64_t C = std::min(chunk, p.tokens);
#pragma omp parallel for schedule(static)
  for (int64_t h = 0; h < nv; ++h) {
    // Per-chunk scratch: cumulative log decay G (double, so differences of large sums stay exact
    // enough), W [C, dk] and U [C, dv] (turned into V' in place).
    std::vector<double> G(static_cast<size_t>(C));
    std::vector<float> W(size_t(C * dk)), U(size_t(C * dv));
    float* H = state + h * dk * dv;
    const int64_t kh = key_head_of(p, h);
    for (int64_t first = 0; first < p.tokens; first += C) {
      const int64_t n = std::min(C, p.tokens - first);
      auto q_row = [&](int64_t i) { return p.q + (first + i) * p.q_stride + kh * dk; };
      auto k_row = [&](int64_t i) { return p.k + (first + i) * p.k_stride + kh * dk; };
      auto v_row = [&](int64_t i) { return p.v + (first + i) * p.v_stride + h * dv; };
      auto beta = [&](int64_t i) { return p.beta[(first + i) * nv + h]; };
      double running = 0;
      for (int64_t i = 0; i < n; ++i) G[size_t(i)] = running += std::max(p.g[(first + i) * nv + h], kMinLogDecay);
      // exp(G_i - G_j) for i >= j: never positive in the exponent.
      auto decay = [&](int64_t i, int64_t j) { return float(std::exp(G[size_t(i)] - G[size_t(j)])); };

      // A_ij = beta_i (k_i . k_j) exp(G_i - G_j) for i > j; then W = (I + A)^-1 diag(beta gamma) K
      // and U = (I + A)^-1 diag(beta) V by forward substitution.
      for (int64_t i = 0; i < n; ++i) {
        float* w = W.data() + i * dk;
        float* u = U.data() + i * dv;
        const float beta_i = beta(i);
        const float gamma_i = float(std::exp(G[size_t(i)]));
        const float* k_i = k_row(i);
        const float* v_i = v_row(i);
        for (int64_t c = 0; c < dk; ++c) w[c] = beta_i * gamma_i * k_i[c];
        for (int64_t c = 0; c < dv; ++c) u[c] = beta_i * v_i[c];
        for (int64_t j = 0; j < i; ++j) {
          const float a = beta_i * dot(k_i, k_row(j), dk) * decay(i, j);
          axpy(-a, W.data() + j * dk, w, dk);
          axpy(-a, U.data() + j * dv, u, dv);
        }
      }
      // V' = U - W H (the correction against the state entering the chunk), once U is complete.
      for (int64_t i = 0; i < n; ++i)
        for (int64_t c = 0; c < dk; ++c) axpy(-W[size_t(i * dk + c)], H + c * dv, U.data() + i * dv, dv);
      // O_i = scale (gamma_i q_i^T H + sum_{j <= i} (q_i . k_j) exp(G_i - G_j) V'_j).
      for (int64_t i = 0; i < n; ++i) {
        float* o = out + (first + i) * nv * dv + h * dv;
        const float* q_i = q_row(i);
        const float gamma_i = float(std::exp(G[size_t(i)]));
        std::fill_n(o, dv, 0.0f);
        for (int64_t c = 0; c < dk; ++c) axpy(gamma_i * q_i[c], H + c * dv, o, dv);
        for (int64_t j = 0; j <= i; ++j) axpy(dot(q_i, k_row(j), dk) * decay(i, j), U.data() + j * dv, o, dv);
        for (int64_t c = 0; c < dv; ++c) o[c] *= p.scale;
      }
      // H <- gamma_n H + sum_i exp(G_n - G_i) k_i V'_i^T.
      const float gamma_last = float(std::exp(G[size_t(n - 1)]));
      for (int64_t c = 0; c < dk * dv; ++c) H[c] *= gamma_last;
      for (int64_t i = 0; i < n; ++i) {
        const float e_i = decay(n - 1, i);
        const float* k_i = k_row(i);
        for (int64_t c = 0; c < dk; ++c) axpy(e_i * k_i[c], U.data() + i * dv, H + c * dv, dv);
      }
    }
  }
}

}  // namespace dt
