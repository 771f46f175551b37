#include "ops/delta_rule.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "core/error.h"
#include "ops/activation.h"
#include "ops/small_gemm.h"

namespace dt {
namespace {

void check(const DeltaRuleProblem& p) {
  if (p.key_heads <= 0 || p.value_heads <= 0 || p.value_heads % p.key_heads != 0)
    fail("delta rule: {} value heads cannot share {} key heads", p.value_heads, p.key_heads);
}

int64_t key_head_of(const DeltaRuleProblem& p, int64_t value_head) {
  return value_head / (p.value_heads / p.key_heads);
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
  const int64_t dk = p.key_dim, dv = p.value_dim, nv = p.value_heads, out_stride = nv * dv;
  const int64_t C = std::min(chunk, p.tokens);
#pragma omp parallel for schedule(static)
  for (int64_t h = 0; h < nv; ++h) {
    // Per-chunk scratch: cumulative log decay G (double, so differences of large sums stay exact
    // enough), the decay matrix Gamma_ij = exp(G_i - G_j) (i >= j), K^T [dk, C], the Gram
    // matrices K K^T and Q K^T [C, C] (the latter turned into the decayed causal scores),
    // T = (I + A)^-1 [C, C], the scaled inputs diag(beta gamma) K and diag(beta) V, and
    // W [C, dk] and U [C, dv] (U turned into V' in place).
    std::vector<double> G(static_cast<size_t>(C));
    std::vector<float> Gamma(size_t(C * C)), Kt(size_t(dk * C)), KK(size_t(C * C)), QK(size_t(C * C));
    std::vector<float> T(size_t(C * C)), scaled_k(size_t(C * dk)), scaled_v(size_t(C * dv));
    std::vector<float> W(size_t(C * dk)), U(size_t(C * dv));
    float* H = state + h * dk * dv;
    const int64_t kh = key_head_of(p, h);
    for (int64_t first = 0; first < p.tokens; first += C) {
      const int64_t n = std::min(C, p.tokens - first);
      const float* Q = p.q + first * p.q_stride + kh * dk;
      const float* K = p.k + first * p.k_stride + kh * dk;
      const float* V = p.v + first * p.v_stride + h * dv;
      float* O = out + first * out_stride + h * dv;
      auto beta = [&](int64_t i) { return p.beta[(first + i) * nv + h]; };
      double running = 0;
      for (int64_t i = 0; i < n; ++i) G[size_t(i)] = running += std::max(p.g[(first + i) * nv + h], kMinLogDecay);
      // Only differences G_i - G_j with i >= j are exponentiated: never a positive exponent.
      for (int64_t i = 0; i < n; ++i)
        for (int64_t j = 0; j <= i; ++j) Gamma[size_t(i * C + j)] = float(std::exp(G[size_t(i)] - G[size_t(j)]));
      auto gamma = [&](int64_t i) { return float(std::exp(G[size_t(i)])); };

      for (int64_t i = 0; i < n; ++i)
        for (int64_t c = 0; c < dk; ++c) Kt[size_t(c * C + i)] = K[i * p.k_stride + c];
      std::fill_n(KK.begin(), n * C, 0.0f);
      std::fill_n(QK.begin(), n * C, 0.0f);
      small_gemm(n, n, dk, 1.0f, K, p.k_stride, Kt.data(), C, KK.data(), C);
      small_gemm(n, n, dk, 1.0f, Q, p.q_stride, Kt.data(), C, QK.data(), C);

      // T = (I + A)^-1 with A_ij = beta_i (k_i . k_j) Gamma_ij for i > j, by forward substitution
      // (row i of T = e_i - sum_{j<i} A_ij T_j; T is unit lower triangular).
      for (int64_t i = 0; i < n; ++i) {
        float* row = T.data() + i * C;
        std::fill_n(row, n, 0.0f);
        row[i] = 1.0f;
        const float beta_i = beta(i);
        for (int64_t j = 0; j < i; ++j)
          axpy(-beta_i * KK[size_t(i * C + j)] * Gamma[size_t(i * C + j)], T.data() + j * C, row, j + 1);
      }
      // W = T diag(beta gamma) K and U = T diag(beta) V.
      for (int64_t i = 0; i < n; ++i) {
        const float beta_i = beta(i), weight = beta_i * gamma(i);
        for (int64_t c = 0; c < dk; ++c) scaled_k[size_t(i * dk + c)] = weight * K[i * p.k_stride + c];
        for (int64_t c = 0; c < dv; ++c) scaled_v[size_t(i * dv + c)] = beta_i * V[i * p.v_stride + c];
      }
      std::fill_n(W.begin(), n * dk, 0.0f);
      std::fill_n(U.begin(), n * dv, 0.0f);
      small_gemm(n, dk, n, 1.0f, T.data(), C, scaled_k.data(), dk, W.data(), dk);
      small_gemm(n, dv, n, 1.0f, T.data(), C, scaled_v.data(), dv, U.data(), dv);
      // V' = U - W H: the correction against the state entering the chunk.
      small_gemm(n, dv, dk, -1.0f, W.data(), dk, H, dv, U.data(), dv);

      // O = scale (diag(gamma) Q H + (Q K^T o Gamma) V'), Gamma lower triangular with its diagonal.
      for (int64_t i = 0; i < n; ++i) std::fill_n(O + i * out_stride, dv, 0.0f);
      small_gemm(n, dv, dk, 1.0f, Q, p.q_stride, H, dv, O, out_stride);
      for (int64_t i = 0; i < n; ++i) {
        const float g_i = gamma(i);
        for (int64_t c = 0; c < dv; ++c) O[i * out_stride + c] *= g_i;
        float* scores = QK.data() + i * C;
        for (int64_t j = 0; j <= i; ++j) scores[j] *= Gamma[size_t(i * C + j)];
        std::fill(scores + i + 1, scores + n, 0.0f);
      }
      small_gemm(n, dv, n, 1.0f, QK.data(), C, U.data(), dv, O, out_stride);
      for (int64_t i = 0; i < n; ++i)
        for (int64_t c = 0; c < dv; ++c) O[i * out_stride + c] *= p.scale;

      // H <- gamma_n H + (diag(e) K)^T V' with e_i = exp(G_n - G_i).
      const float gamma_last = gamma(n - 1);
      for (int64_t c = 0; c < dk * dv; ++c) H[c] *= gamma_last;
      for (int64_t i = 0; i < n; ++i) {
        const float e_i = Gamma[size_t((n - 1) * C + i)];
        for (int64_t c = 0; c < dk; ++c) Kt[size_t(c * C + i)] *= e_i;
      }
      small_gemm(dk, dv, n, 1.0f, Kt.data(), C, U.data(), dv, H, dv);
    }
  }
}

}  // namespace dt
