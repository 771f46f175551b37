#include "ops/delta_rule.h"

#include <cblas.h>

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

// C[m, n] += alpha * A[m, k] B[k, n], row-major with leading dimensions.
void gemm_accumulate(int64_t m, int64_t n, int64_t k, float alpha, const float* A, int64_t lda, const float* B,
                     int64_t ldb, float* C, int64_t ldc) {
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, int(m), int(n), int(k), alpha, A, int(lda), B, int(ldb),
              1.0f, C, int(ldc));
}

// The heads run in parallel on OpenMP's threads, each with single-threaded sgemm: the chunk GEMMs
// (64 x 64 x 128 at the 0.8B shapes) are too small for OpenBLAS to split well (at T = 512 the
// backward took 105 ms a layer with OpenBLAS's two threads per GEMM, 66 ms with a head per
// thread). The pthread OpenBLAS we link has no per-call thread count, so its global count drops
// to one while the heads run and comes back after; never both pools at once, as nested they
// oversubscribe the cores. Called outside any parallel region, like every op here.
class SingleThreadedBlasScope {
 public:
  SingleThreadedBlasScope() : previous_threads_(openblas_get_num_threads()) {
    if (previous_threads_ != 1) openblas_set_num_threads(1);
  }
  ~SingleThreadedBlasScope() {
    if (previous_threads_ != 1) openblas_set_num_threads(previous_threads_);
  }
  SingleThreadedBlasScope(const SingleThreadedBlasScope&) = delete;
  SingleThreadedBlasScope& operator=(const SingleThreadedBlasScope&) = delete;

 private:
  int previous_threads_;
};

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

DeltaRuleProblem conv_layout_problem(const float* qkv, int64_t tokens, int64_t key_heads, int64_t value_heads,
                                     int64_t key_dim, int64_t value_dim, const float* beta, const float* g) {
  DeltaRuleProblem p;
  p.tokens = tokens;
  p.key_heads = key_heads;
  p.value_heads = value_heads;
  p.key_dim = key_dim;
  p.value_dim = value_dim;
  p.q = qkv;
  p.k = qkv + key_heads * key_dim;
  p.v = qkv + 2 * key_heads * key_dim;
  p.q_stride = p.k_stride = p.v_stride = 2 * key_heads * key_dim + value_heads * value_dim;
  p.beta = beta;
  p.g = g;
  p.scale = 1.0f / std::sqrt(float(key_dim));
  return p;
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
  const SingleThreadedBlasScope single_threaded_blas;
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
      gemm_accumulate(n, n, dk, 1.0f, K, p.k_stride, Kt.data(), C, KK.data(), C);
      gemm_accumulate(n, n, dk, 1.0f, Q, p.q_stride, Kt.data(), C, QK.data(), C);

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
      gemm_accumulate(n, dk, n, 1.0f, T.data(), C, scaled_k.data(), dk, W.data(), dk);
      gemm_accumulate(n, dv, n, 1.0f, T.data(), C, scaled_v.data(), dv, U.data(), dv);
      // V' = U - W H: the correction against the state entering the chunk.
      gemm_accumulate(n, dv, dk, -1.0f, W.data(), dk, H, dv, U.data(), dv);

      // O = scale (diag(gamma) Q H + (Q K^T o Gamma) V'), Gamma lower triangular with its diagonal.
      for (int64_t i = 0; i < n; ++i) std::fill_n(O + i * out_stride, dv, 0.0f);
      gemm_accumulate(n, dv, dk, 1.0f, Q, p.q_stride, H, dv, O, out_stride);
      for (int64_t i = 0; i < n; ++i) {
        const float g_i = gamma(i);
        for (int64_t c = 0; c < dv; ++c) O[i * out_stride + c] *= g_i;
        float* scores = QK.data() + i * C;
        for (int64_t j = 0; j <= i; ++j) scores[j] *= Gamma[size_t(i * C + j)];
        std::fill(scores + i + 1, scores + n, 0.0f);
      }
      gemm_accumulate(n, dv, n, 1.0f, QK.data(), C, U.data(), dv, O, out_stride);
      for (int64_t i = 0; i < n; ++i)
        for (int64_t c = 0; c < dv; ++c) O[i * out_stride + c] *= p.scale;

      // H <- gamma_n H + (diag(e) K)^T V' with e_i = exp(G_n - G_i).
      const float gamma_last = gamma(n - 1);
      for (int64_t c = 0; c < dk * dv; ++c) H[c] *= gamma_last;
      for (int64_t i = 0; i < n; ++i) {
        const float e_i = Gamma[size_t((n - 1) * C + i)];
        for (int64_t c = 0; c < dk; ++c) Kt[size_t(c * C + i)] *= e_i;
      }
      gemm_accumulate(dk, dv, n, 1.0f, Kt.data(), C, U.data(), dv, H, dv);
    }
  }
}


// ---- Backward (spec §5.3, §5.4) ----

namespace {

void check_heads(int64_t key_heads, int64_t value_heads) {
  if (key_heads <= 0 || value_heads <= 0 || value_heads % key_heads != 0)
    fail("delta rule: {} value heads cannot share {} key heads", value_heads, key_heads);
}

template <typename T>
T decay_of(T g) {
  return std::exp(std::max(g, T(kMinLogDecay)));
}

// S <- alpha S (the decayed state Sp), then pred = Sp^T k and u = beta (v - pred).
template <typename T>
void decay_and_correct(T* S, const T* k, const T* v, T alpha, T beta, int64_t dk, int64_t dv, T* pred,
                       T* u) {
  std::fill_n(pred, dv, T(0));
  for (int64_t i = 0; i < dk; ++i)
    for (int64_t j = 0; j < dv; ++j) pred[j] += k[i] * (S[i * dv + j] *= alpha);
  for (int64_t j = 0; j < dv; ++j) u[j] = beta * (v[j] - pred[j]);
}

// S += k u^T
template <typename T>
void add_outer(T* S, const T* k, const T* u, int64_t dk, int64_t dv) {
  for (int64_t i = 0; i < dk; ++i)
    for (int64_t j = 0; j < dv; ++j) S[i * dv + j] += k[i] * u[j];
}

// Zeroes the key-head lanes of dq and dk for every token (they are then summed into).
template <typename T>
void zero_key_head(const BasicDeltaRuleProblem<T>& p, const DeltaRuleGradients<T>& d, int64_t key_head) {
  for (int64_t t = 0; t < p.tokens; ++t) {
    std::fill_n(d.dq + t * p.q_stride + key_head * p.key_dim, p.key_dim, T(0));
    std::fill_n(d.dk + t * p.k_stride + key_head * p.key_dim, p.key_dim, T(0));
  }
}

}  // namespace

BasicDeltaRuleProblem<float> basic_problem(const DeltaRuleProblem& p) {
  BasicDeltaRuleProblem<float> basic;
  basic.tokens = p.tokens;
  basic.key_heads = p.key_heads;
  basic.value_heads = p.value_heads;
  basic.key_dim = p.key_dim;
  basic.value_dim = p.value_dim;
  basic.q = p.q;
  basic.q_stride = p.q_stride;
  basic.k = p.k;
  basic.k_stride = p.k_stride;
  basic.v = p.v;
  basic.v_stride = p.v_stride;
  basic.beta = p.beta;
  basic.g = p.g;
  basic.scale = p.scale;
  return basic;
}

template <typename T>
void delta_rule_recurrent_reference(const BasicDeltaRuleProblem<T>& p, T* state, T* out) {
  check_heads(p.key_heads, p.value_heads);
  const int64_t dk = p.key_dim, dv = p.value_dim, nv = p.value_heads, group = nv / p.key_heads;
  std::vector<T> pred(static_cast<size_t>(dv)), u(static_cast<size_t>(dv));
  for (int64_t h = 0; h < nv; ++h) {
    T* S = state + h * dk * dv;
    const int64_t kh = h / group;
    for (int64_t t = 0; t < p.tokens; ++t) {
      const T* q = p.q + t * p.q_stride + kh * dk;
      const T* k = p.k + t * p.k_stride + kh * dk;
      const T* v = p.v + t * p.v_stride + h * dv;
      decay_and_correct(S, k, v, decay_of(p.g[t * nv + h]), p.beta[t * nv + h], dk, dv, pred.data(), u.data());
      add_outer(S, k, u.data(), dk, dv);
      T* o = out + t * nv * dv + h * dv;
      std::fill_n(o, dv, T(0));
      for (int64_t i = 0; i < dk; ++i)
        for (int64_t j = 0; j < dv; ++j) o[j] += p.scale * q[i] * S[i * dv + j];
    }
  }
}

template <typename T>
void delta_rule_recurrent_backward(const BasicDeltaRuleProblem<T>& p, const T* initial_state,
                                   const T* d_out, const T* d_final_state,
                                   const DeltaRuleGradients<T>& d) {
  check_heads(p.key_heads, p.value_heads);
  const int64_t dk = p.key_dim, dv = p.value_dim, nv = p.value_heads, group = nv / p.key_heads;
  const int64_t state_size = dk * dv;
  for (int64_t kh = 0; kh < p.key_heads; ++kh) zero_key_head(p, d, kh);
  // states[t] = S before token t; Sp the decayed state, St the state after token t.
  std::vector<T> states(static_cast<size_t>(p.tokens * state_size)), Sp(static_cast<size_t>(state_size)), St(static_cast<size_t>(state_size));
  std::vector<T> dS(static_cast<size_t>(state_size)), pred(static_cast<size_t>(dv)), u(static_cast<size_t>(dv)), du(static_cast<size_t>(dv));
  for (int64_t h = 0; h < nv; ++h) {
    const int64_t kh = h / group;
    auto q_of = [&](int64_t t) { return p.q + t * p.q_stride + kh * dk; };
    auto k_of = [&](int64_t t) { return p.k + t * p.k_stride + kh * dk; };
    auto v_of = [&](int64_t t) { return p.v + t * p.v_stride + h * dv; };
    std::copy_n(initial_state + h * state_size, state_size, St.begin());
    for (int64_t t = 0; t < p.tokens; ++t) {
      std::copy(St.begin(), St.end(), states.begin() + t * state_size);
      decay_and_correct(St.data(), k_of(t), v_of(t), decay_of(p.g[t * nv + h]), p.beta[t * nv + h], dk, dv,
                        pred.data(), u.data());
      add_outer(St.data(), k_of(t), u.data(), dk, dv);
    }
    if (d_final_state)
      std::copy_n(d_final_state + h * state_size, state_size, dS.begin());
    else
      std::fill(dS.begin(), dS.end(), T(0));
    for (int64_t t = p.tokens - 1; t >= 0; --t) {
      const T *q = q_of(t), *k = k_of(t), *v = v_of(t), *dout = d_out + t * nv * dv + h * dv;
      const T alpha = decay_of(p.g[t * nv + h]), beta = p.beta[t * nv + h];
      std::copy_n(states.begin() + t * state_size, state_size, Sp.begin());
      decay_and_correct(Sp.data(), k, v, alpha, beta, dk, dv, pred.data(), u.data());
      St = Sp;
      add_outer(St.data(), k, u.data(), dk, dv);
      T* dq = d.dq + t * p.q_stride + kh * dk;
      T* dk_t = d.dk + t * p.k_stride + kh * dk;
      std::fill(du.begin(), du.end(), T(0));
      for (int64_t i = 0; i < dk; ++i) {
        T read = 0;
        for (int64_t j = 0; j < dv; ++j) {
          dS[i * dv + j] += p.scale * q[i] * dout[j];  // o = s S_t^T q
          read += St[i * dv + j] * dout[j];
          du[j] += dS[i * dv + j] * k[i];
        }
        dq[i] += p.scale * read;
      }
      T dbeta = 0;
      for (int64_t j = 0; j < dv; ++j) {
        d.dv[t * p.v_stride + h * dv + j] = beta * du[j];
        dbeta += du[j] * (v[j] - pred[j]);
      }
      d.dbeta[t * nv + h] = dbeta;
      T dg = 0;
      for (int64_t i = 0; i < dk; ++i) {
        T through_update = 0, through_prediction = 0;
        for (int64_t j = 0; j < dv; ++j) {
          through_update += dS[i * dv + j] * u[j];
          through_prediction += Sp[i * dv + j] * du[j];
        }
        dk_t[i] += through_update - beta * through_prediction;
        for (int64_t j = 0; j < dv; ++j) {
          T& dSp = dS[i * dv + j];
          dSp -= beta * k[i] * du[j];
          dg += dSp * Sp[i * dv + j];
          dSp *= alpha;  // now the gradient w.r.t. S_{t-1}
        }
      }
      d.dg[t * nv + h] = dg;
    }
    std::copy(dS.begin(), dS.end(), d.d_initial_state + h * state_size);
  }
}

template void delta_rule_recurrent_reference<float>(const BasicDeltaRuleProblem<float>&, float*, float*);
template void delta_rule_recurrent_reference<double>(const BasicDeltaRuleProblem<double>&, double*, double*);
template void delta_rule_recurrent_backward<float>(const BasicDeltaRuleProblem<float>&, const float*,
                                                   const float*, const float*, const DeltaRuleGradients<float>&);
template void delta_rule_recurrent_backward<double>(const BasicDeltaRuleProblem<double>&, const double*,
                                                    const double*, const double*,
                                                    const DeltaRuleGradients<double>&);

namespace {

// C[m, n] += alpha op(A) op(B), row-major; a transposed A is stored [k, m], a transposed B [n, k].
void gemm_op(CBLAS_TRANSPOSE transpose_a, CBLAS_TRANSPOSE transpose_b, int64_t m, int64_t n, int64_t k, float alpha,
             const float* A, int64_t lda, const float* B, int64_t ldb, float* C, int64_t ldc) {
  cblas_sgemm(CblasRowMajor, transpose_a, transpose_b, int(m), int(n), int(k), alpha, A, int(lda), B, int(ldb), 1.0f,
              C, int(ldc));
}

float dot(const float* a, const float* b, int64_t count) {
  float sum = 0;
#pragma omp simd reduction(+ : sum)
  for (int64_t i = 0; i < count; ++i) sum += a[i] * b[i];
  return sum;
}

// One chunk of one value head, with contiguous copies of its rows; n x n matrices have row stride n.
// Holds the §5.1 quantities (recomputed for the backward) and the backward's scratch.
struct ChunkBackward {
  int64_t dk, dv, n = 0;
  std::vector<double> G;
  std::vector<float> beta, gamma, e, Q, K, V, Gamma, KK, T, scaled_k, scaled_v, W, Vnew;
  std::vector<float> dO, M, scratch_a, scratch_b, dVnew, dP, dQ, dK, dKint, dW, X, Y, dT, dA, dG;
  std::vector<float> dH_in, dbeta, dv_rows;

  ChunkBackward(int64_t C, int64_t dk_, int64_t dv_) : dk(dk_), dv(dv_) {
    const size_t c = size_t(C), wide = size_t(std::max(dk, dv));
    G.resize(c);
    for (auto* v : {&beta, &gamma, &e, &dG, &dbeta}) v->resize(c);
    for (auto* v : {&Q, &K, &scaled_k, &W, &dQ, &dK, &dKint, &dW, &X}) v->resize(c * size_t(dk));
    for (auto* v : {&V, &scaled_v, &Vnew, &dO, &dVnew, &Y, &dv_rows}) v->resize(c * size_t(dv));
    for (auto* v : {&Gamma, &KK, &T, &M, &dP, &dT, &dA}) v->resize(c * c);
    for (auto* v : {&scratch_a, &scratch_b}) v->resize(c * std::max(c, wide));
    dH_in.resize(size_t(dk * dv));
  }

  // Loads rows [first, first + rows) of value head h and computes G, gamma, e, Gamma, K K^T, T, W
  // and V' = T diag(beta) V - W H.
  void prepare(const DeltaRuleProblem& p, int64_t h, int64_t first, int64_t rows, const float* H) {
    n = rows;
    const int64_t nv = p.value_heads, kh = h / (nv / p.key_heads);
    double running = 0;
    for (int64_t i = 0; i < n; ++i) {
      const int64_t t = first + i;
      std::copy_n(p.q + t * p.q_stride + kh * dk, dk, Q.begin() + i * dk);
      std::copy_n(p.k + t * p.k_stride + kh * dk, dk, K.begin() + i * dk);
      std::copy_n(p.v + t * p.v_stride + h * dv, dv, V.begin() + i * dv);
      beta[size_t(i)] = p.beta[t * nv + h];
      G[size_t(i)] = running += std::max(p.g[t * nv + h], kMinLogDecay);
    }
    std::fill_n(Gamma.begin(), n * n, 0.0f);
    for (int64_t i = 0; i < n; ++i) {
      gamma[size_t(i)] = float(std::exp(G[size_t(i)]));
      e[size_t(i)] = float(std::exp(G[size_t(n - 1)] - G[size_t(i)]));
      for (int64_t j = 0; j <= i; ++j) Gamma[size_t(i * n + j)] = float(std::exp(G[size_t(i)] - G[size_t(j)]));
    }
    std::fill_n(KK.begin(), n * n, 0.0f);
    gemm_op(CblasNoTrans, CblasTrans, n, n, dk, 1.0f, K.data(), dk, K.data(), dk, KK.data(), n);
    // T = (I + A)^-1 by forward substitution, A_ij = beta_i (k_i . k_j) Gamma_ij for i > j.
    std::fill_n(T.begin(), n * n, 0.0f);
    for (int64_t i = 0; i < n; ++i) {
      float* row = T.data() + i * n;
      row[i] = 1.0f;
      for (int64_t j = 0; j < i; ++j) {
        const float a = beta[size_t(i)] * KK[size_t(i * n + j)] * Gamma[size_t(i * n + j)];
        for (int64_t c = 0; c <= j; ++c) row[c] -= a * T[size_t(j * n + c)];
      }
    }
    for (int64_t i = 0; i < n; ++i) {
      const float bg = beta[size_t(i)] * gamma[size_t(i)];
      for (int64_t c = 0; c < dk; ++c) scaled_k[size_t(i * dk + c)] = bg * K[size_t(i * dk + c)];
      for (int64_t c = 0; c < dv; ++c) scaled_v[size_t(i * dv + c)] = beta[size_t(i)] * V[size_t(i * dv + c)];
    }
    std::fill_n(W.begin(), n * dk, 0.0f);
    std::fill_n(Vnew.begin(), n * dv, 0.0f);
    gemm_accumulate(n, dk, n, 1.0f, T.data(), n, scaled_k.data(), dk, W.data(), dk);
    gemm_accumulate(n, dv, n, 1.0f, T.data(), n, scaled_v.data(), dv, Vnew.data(), dv);
    gemm_accumulate(n, dv, dk, -1.0f, W.data(), dk, H, dv, Vnew.data(), dv);
  }

  // H <- gamma_n H + (diag(e) K)^T V' (the forward's state update).
  void advance(float* H) {
    const float gamma_last = gamma[size_t(n - 1)];
    for (int64_t c = 0; c < dk * dv; ++c) H[c] *= gamma_last;
    float* Ke = scratch_a.data();
    for (int64_t i = 0; i < n; ++i)
      for (int64_t c = 0; c < dk; ++c) Ke[i * dk + c] = e[size_t(i)] * K[size_t(i * dk + c)];
    gemm_op(CblasTrans, CblasNoTrans, dk, dv, n, 1.0f, Ke, dk, Vnew.data(), dv, H, dv);
  }

  // The §5.3 steps for the prepared chunk: H is the state entering it, dH the gradient w.r.t. the
  // state leaving it on entry and w.r.t. H on exit. Leaves dQ, dK, dVnew -> dv_rows, dbeta and dg
  // (in dG, already reverse-summed) for the chunk's rows.
  void backward(const float* H, float* dH, float scale) {
    const int64_t nn = n * n;
    float *A = scratch_a.data(), *B = scratch_b.data();
    // M = s (Q K^T o Gamma), lower triangular with the diagonal.
    std::fill_n(M.begin(), nn, 0.0f);
    gemm_op(CblasNoTrans, CblasTrans, n, n, dk, scale, Q.data(), dk, K.data(), dk, M.data(), n);
    for (int64_t c = 0; c < nn; ++c) M[size_t(c)] *= Gamma[size_t(c)];
    // (1) dV' = M^T dO + diag(e) K dH_out
    std::fill_n(dVnew.begin(), n * dv, 0.0f);
    gemm_op(CblasTrans, CblasNoTrans, n, dv, n, 1.0f, M.data(), n, dO.data(), dv, dVnew.data(), dv);
    for (int64_t i = 0; i < n; ++i)
      for (int64_t c = 0; c < dk; ++c) B[i * dk + c] = e[size_t(i)] * K[size_t(i * dk + c)];
    gemm_accumulate(n, dv, dk, 1.0f, B, dk, dH, dv, dVnew.data(), dv);
    // (2) dPm = s (dO V'^T) o Gamma;  dQ = s diag(gamma) dO H^T + dPm K
    std::fill_n(dP.begin(), nn, 0.0f);
    gemm_op(CblasNoTrans, CblasTrans, n, n, dv, scale, dO.data(), dv, Vnew.data(), dv, dP.data(), n);
    for (int64_t c = 0; c < nn; ++c) dP[size_t(c)] *= Gamma[size_t(c)];
    std::fill_n(dQ.begin(), n * dk, 0.0f);
    gemm_op(CblasNoTrans, CblasTrans, n, dk, dv, scale, dO.data(), dv, H, dv, dQ.data(), dk);
    for (int64_t i = 0; i < n; ++i)
      for (int64_t c = 0; c < dk; ++c) dQ[size_t(i * dk + c)] *= gamma[size_t(i)];
    gemm_accumulate(n, dk, n, 1.0f, dP.data(), n, K.data(), dk, dQ.data(), dk);
    // (3) dKint = diag(e) V' dH_out^T;  dK = dPm^T Q + dKint
    std::fill_n(dKint.begin(), n * dk, 0.0f);
    gemm_op(CblasNoTrans, CblasTrans, n, dk, dv, 1.0f, Vnew.data(), dv, dH, dv, dKint.data(), dk);
    for (int64_t i = 0; i < n; ++i)
      for (int64_t c = 0; c < dk; ++c) dKint[size_t(i * dk + c)] *= e[size_t(i)];
    std::copy_n(dKint.begin(), n * dk, dK.begin());
    gemm_op(CblasTrans, CblasNoTrans, n, dk, n, 1.0f, dP.data(), n, Q.data(), dk, dK.data(), dk);
    // (4) dG
    const float gamma_last = gamma[size_t(n - 1)];
    float last_extra = gamma_last * dot(H, dH, dk * dv);
    for (int64_t i = 0; i < n; ++i) {
      dG[size_t(i)] = dot(&Q[size_t(i * dk)], &dQ[size_t(i * dk)], dk) - dot(&K[size_t(i * dk)], &dK[size_t(i * dk)], dk);
      last_extra += dot(&K[size_t(i * dk)], &dKint[size_t(i * dk)], dk);
    }
    dG[size_t(n - 1)] += last_extra;
    // (5) dH_in = s (diag(gamma) Q)^T dO + gamma_n dH_out - W^T dV'
    for (int64_t i = 0; i < n; ++i)
      for (int64_t c = 0; c < dk; ++c) A[i * dk + c] = gamma[size_t(i)] * Q[size_t(i * dk + c)];
    for (int64_t c = 0; c < dk * dv; ++c) dH_in[size_t(c)] = gamma_last * dH[c];
    gemm_op(CblasTrans, CblasNoTrans, dk, dv, n, scale, A, dk, dO.data(), dv, dH_in.data(), dv);
    gemm_op(CblasTrans, CblasNoTrans, dk, dv, n, -1.0f, W.data(), dk, dVnew.data(), dv, dH_in.data(), dv);
    // (6) WY backward: dW = -dV' H^T, dU = dV'
    std::fill_n(dW.begin(), n * dk, 0.0f);
    gemm_op(CblasNoTrans, CblasTrans, n, dk, dv, -1.0f, dVnew.data(), dv, H, dv, dW.data(), dk);
    // dT = strict_lower(dW (diag(beta gamma) K)^T + dU (diag(beta) V)^T)
    std::fill_n(dT.begin(), nn, 0.0f);
    gemm_op(CblasNoTrans, CblasTrans, n, n, dk, 1.0f, dW.data(), dk, scaled_k.data(), dk, dT.data(), n);
    gemm_op(CblasNoTrans, CblasTrans, n, n, dv, 1.0f, dVnew.data(), dv, scaled_v.data(), dv, dT.data(), n);
    // X = T^T dW, Y = T^T dU
    std::fill_n(X.begin(), n * dk, 0.0f);
    std::fill_n(Y.begin(), n * dv, 0.0f);
    gemm_op(CblasTrans, CblasNoTrans, n, dk, n, 1.0f, T.data(), n, dW.data(), dk, X.data(), dk);
    gemm_op(CblasTrans, CblasNoTrans, n, dv, n, 1.0f, T.data(), n, dVnew.data(), dv, Y.data(), dv);
    for (int64_t i = 0; i < n; ++i) {
      const float b = beta[size_t(i)], g = gamma[size_t(i)];
      const float xk = dot(&X[size_t(i * dk)], &K[size_t(i * dk)], dk);
      dbeta[size_t(i)] = g * xk + dot(&Y[size_t(i * dv)], &V[size_t(i * dv)], dv);
      dG[size_t(i)] += b * g * xk;
      for (int64_t c = 0; c < dk; ++c) dK[size_t(i * dk + c)] += b * g * X[size_t(i * dk + c)];
      for (int64_t c = 0; c < dv; ++c) dv_rows[size_t(i * dv + c)] = b * Y[size_t(i * dv + c)];
    }
    // dA = -T^T dT T^T;  D = strict_lower(dA) o Gamma (kept in dA)
    for (int64_t i = 0; i < n; ++i)
      for (int64_t j = i; j < n; ++j) dT[size_t(i * n + j)] = 0.0f;
    std::fill_n(B, nn, 0.0f);
    gemm_op(CblasTrans, CblasNoTrans, n, n, n, 1.0f, T.data(), n, dT.data(), n, B, n);
    std::fill_n(dA.begin(), nn, 0.0f);
    gemm_op(CblasNoTrans, CblasTrans, n, n, n, -1.0f, B, n, T.data(), n, dA.data(), n);
    for (int64_t i = 0; i < n; ++i)
      for (int64_t j = 0; j < n; ++j) dA[size_t(i * n + j)] = j < i ? dA[size_t(i * n + j)] * Gamma[size_t(i * n + j)] : 0.0f;
    // dbeta_i += sum_j KK_ij D_ij;  dG_i += sum_j beta_i KK_ij D_ij - sum_j beta_j KK_ji D_ji
    for (int64_t i = 0; i < n; ++i) {
      const float row = dot(&KK[size_t(i * n)], &dA[size_t(i * n)], n);
      dbeta[size_t(i)] += row;
      dG[size_t(i)] += beta[size_t(i)] * row;
      for (int64_t j = 0; j < i; ++j) dG[size_t(j)] -= beta[size_t(i)] * KK[size_t(i * n + j)] * dA[size_t(i * n + j)];
    }
    // dK += diag(beta) D K + D^T diag(beta) K
    for (int64_t i = 0; i < n; ++i)
      for (int64_t j = 0; j < n; ++j) B[i * n + j] = beta[size_t(i)] * dA[size_t(i * n + j)];
    gemm_accumulate(n, dk, n, 1.0f, B, n, K.data(), dk, dK.data(), dk);
    for (int64_t i = 0; i < n; ++i)
      for (int64_t c = 0; c < dk; ++c) B[i * dk + c] = beta[size_t(i)] * K[size_t(i * dk + c)];
    gemm_op(CblasTrans, CblasNoTrans, n, dk, n, 1.0f, dA.data(), n, B, dk, dK.data(), dk);
    // (7) dg_t = sum of dG_i over i >= t in the chunk
    for (int64_t i = n - 2; i >= 0; --i) dG[size_t(i)] += dG[size_t(i + 1)];
    std::copy(dH_in.begin(), dH_in.end(), dH);
  }
};

}  // namespace

void delta_rule_chunked_backward(const DeltaRuleProblem& p, const float* initial_state, const float* d_out,
                                 const float* d_final_state, const DeltaRuleGradients<float>& d,
                                 int64_t chunk) {
  check(p);
  if (chunk <= 0) fail("delta rule: chunk size {} must be positive", chunk);
  if (p.tokens == 0) {
    if (d_final_state)
      std::copy_n(d_final_state, p.value_heads * p.key_dim * p.value_dim, d.d_initial_state);
    else
      std::fill_n(d.d_initial_state, p.value_heads * p.key_dim * p.value_dim, 0.0f);
    return;
  }
  const int64_t dk = p.key_dim, dv = p.value_dim, nv = p.value_heads, group = nv / p.key_heads;
  const int64_t C = std::min(chunk, p.tokens), chunks = (p.tokens + C - 1) / C, state_size = dk * dv;
  const BasicDeltaRuleProblem<float> basic = basic_problem(p);
  const SingleThreadedBlasScope single_threaded_blas;
#pragma omp parallel for schedule(static)
  for (int64_t kh = 0; kh < p.key_heads; ++kh) {
    zero_key_head(basic, d, kh);
    ChunkBackward work(C, dk, dv);
    std::vector<float> entry_states(static_cast<size_t>(chunks * state_size)), H(static_cast<size_t>(state_size));
    for (int64_t h = kh * group; h < (kh + 1) * group; ++h) {
      // Forward sweep: the state entering every chunk.
      std::copy_n(initial_state + h * state_size, state_size, H.begin());
      for (int64_t c = 0; c < chunks; ++c) {
        std::copy(H.begin(), H.end(), entry_states.begin() + c * state_size);
        if (c + 1 == chunks) break;
        work.prepare(p, h, c * C, C, H.data());
        work.advance(H.data());
      }
      // Reverse sweep; H now holds the gradient w.r.t. the state leaving the current chunk.
      float* dH = H.data();
      if (d_final_state)
        std::copy_n(d_final_state + h * state_size, state_size, dH);
      else
        std::fill(H.begin(), H.end(), 0.0f);
      for (int64_t c = chunks - 1; c >= 0; --c) {
        const int64_t first = c * C, n = std::min(C, p.tokens - first);
        const float* entry = entry_states.data() + c * state_size;
        work.prepare(p, h, first, n, entry);
        for (int64_t i = 0; i < n; ++i)
          std::copy_n(d_out + (first + i) * nv * dv + h * dv, dv, work.dO.begin() + i * dv);
        work.backward(entry, dH, p.scale);
        for (int64_t i = 0; i < n; ++i) {
          const int64_t t = first + i;
          float* dq = d.dq + t * p.q_stride + kh * dk;
          float* dk_t = d.dk + t * p.k_stride + kh * dk;
          for (int64_t c2 = 0; c2 < dk; ++c2) {
            dq[c2] += work.dQ[size_t(i * dk + c2)];
            dk_t[c2] += work.dK[size_t(i * dk + c2)];
          }
          std::copy_n(work.dv_rows.begin() + i * dv, dv, d.dv + t * p.v_stride + h * dv);
          d.dbeta[t * nv + h] = work.dbeta[size_t(i)];
          d.dg[t * nv + h] = work.dG[size_t(i)];
        }
      }
      std::copy(H.begin(), H.end(), d.d_initial_state + h * state_size);
    }
  }
}


void gated_delta_gates_backward(const float* b, const float* a, int64_t tokens, int64_t heads,
                                const float* A_log, const float* dt_bias, const float* dbeta,
                                const float* dg, float* db, float* da, float* dA_log, float* ddt_bias) {
  std::vector<double> A_log_gradient(static_cast<size_t>(heads), 0.0), bias_gradient(static_cast<size_t>(heads), 0.0);
  for (int64_t t = 0; t < tokens; ++t) {
    for (int64_t h = 0; h < heads; ++h) {
      const int64_t i = t * heads + h;
      const float beta = sigmoid(b[i]);
      db[i] = dbeta[i] * beta * (1.0f - beta);
      const float x = a[i] + dt_bias[h], rate = softplus(x);
      const float g = rate == 0.0f ? 0.0f : -std::exp(A_log[h]) * rate;
      if (rate == 0.0f || g < kMinLogDecay) {
        da[i] = 0.0f;
        continue;
      }
      da[i] = dg[i] * -std::exp(A_log[h]) * softplus_derivative(x);
      bias_gradient[size_t(h)] += da[i];
      A_log_gradient[size_t(h)] += double(dg[i]) * double(g);
    }
  }
  for (int64_t h = 0; h < heads; ++h) {
    if (dA_log) dA_log[h] += float(A_log_gradient[size_t(h)]);
    if (ddt_bias) ddt_bias[h] += float(bias_gradient[size_t(h)]);
  }
}
}  // namespace dt
