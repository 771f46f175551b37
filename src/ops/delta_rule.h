#pragma once
// The gated delta rule of Gated DeltaNet (spec §3.6 steps 4-7, §5.1-5.2), per value head h with
// state S_h [dk, dv]:  S <- exp(g) S;  u = beta (v - S^T k);  S <- S + k u^T;  o = scale S^T q.
// Value head h reads q/k head h / (value_heads / key_heads).
#include <cstdint>

namespace dt {

// Per-token log decay below this is clamped to it: exp() of either is exactly 0 in f32 and f64, so
// nothing changes, but cumulative sums stay finite (no -inf - -inf = NaN).
inline constexpr float kMinLogDecay = -1000.0f;

// beta = sigmoid(b); g = -exp(A_log) * softplus(a + dt_bias), clamped to [kMinLogDecay, 0].
// b, a, beta, g: [tokens, heads]; A_log, dt_bias: [heads]. Always finite: a zero softplus gives
// g = 0 even when exp(A_log) overflows.
void gated_delta_gates(const float* b, const float* a, int64_t tokens, int64_t heads,
                       const float* A_log, const float* dt_bias, float* beta, float* g);

struct DeltaRuleProblem {
  int64_t tokens = 0;
  int64_t key_heads = 0, value_heads = 0;  // nk, nv
  int64_t key_dim = 0, value_dim = 0;      // dk, dv
  // Token t, head i starts at base + t * stride + i * head_dim. q and k are l2-normalised; q is
  // not yet scaled.
  const float* q = nullptr;
  int64_t q_stride = 0;
  const float* k = nullptr;
  int64_t k_stride = 0;
  const float* v = nullptr;
  int64_t v_stride = 0;
  const float* beta = nullptr;  // [tokens, value_heads]
  const float* g = nullptr;     // [tokens, value_heads], <= 0
  float scale = 1.0f;           // applied to q (dk^-1/2 in the model)
};

// The problem over the model's conv output, one row per token [q (nk dk) | k (nk dk) | v (nv dv)],
// with the model's scale dk^-1/2 (spec §3.6).
DeltaRuleProblem conv_layout_problem(const float* qkv, int64_t tokens, int64_t key_heads, int64_t value_heads,
                                     int64_t key_dim, int64_t value_dim, const float* beta, const float* g);

// state [value_heads, dk, dv]: the state before the first token on entry, after the last on exit.
// out [tokens, value_heads * dv].

// Token-by-token recurrence: the reference, and the decode path.
void delta_rule_recurrent(const DeltaRuleProblem& problem, float* state, float* out);

// Chunked WY/UT form (spec §5.1) with chunks of `chunk` tokens; decays are handled in log space
// and only non-positive numbers are exponentiated. GEMMs through single-threaded cblas_sgemm;
// parallel over value heads on OpenMP's threads.
void delta_rule_chunked(const DeltaRuleProblem& problem, float* state, float* out, int64_t chunk = 64);


// ---- Backward (spec §5.3, §5.4) ----

// The forward inputs in precision T, for the reference recurrence in float and double (double lets
// finite differences check the backward). Same layout and meaning as DeltaRuleProblem.
template <typename T>
struct BasicDeltaRuleProblem {
  int64_t tokens = 0;
  int64_t key_heads = 0, value_heads = 0;
  int64_t key_dim = 0, value_dim = 0;
  const T* q = nullptr;
  int64_t q_stride = 0;
  const T* k = nullptr;
  int64_t k_stride = 0;
  const T* v = nullptr;
  int64_t v_stride = 0;
  const T* beta = nullptr;
  const T* g = nullptr;
  T scale = 1;
};

BasicDeltaRuleProblem<float> basic_problem(const DeltaRuleProblem& problem);

// Gradients of the loss with respect to the forward inputs. dq, dk and dv have the layout of q, k
// and v (same strides; lanes outside the heads are not touched); dq and dk are summed over the
// value heads sharing a key head and are w.r.t. the l2-normalised, unscaled q and k. dbeta and dg
// are [tokens, value_heads]; d_initial_state is [value_heads, dk, dv]. All are overwritten.
template <typename T>
struct DeltaRuleGradients {
  T* dq = nullptr;
  T* dk = nullptr;
  T* dv = nullptr;
  T* dbeta = nullptr;
  T* dg = nullptr;
  T* d_initial_state = nullptr;
};

// Token-by-token forward in precision T (state in/out as delta_rule_recurrent): the reference the
// double-precision gradient checks differentiate.
template <typename T>
void delta_rule_recurrent_reference(const BasicDeltaRuleProblem<T>& problem, T* state, T* out);

// Per-token backward (§5.4), the reference: from the state before the first token, the output
// gradient d_out [tokens, value_heads * dv] and d_final_state [value_heads, dk, dv] (null means
// zero). Keeps every per-token state, so it is meant for tests and short sequences.
template <typename T>
void delta_rule_recurrent_backward(const BasicDeltaRuleProblem<T>& problem, const T* initial_state,
                                   const T* d_out, const T* d_final_state,
                                   const DeltaRuleGradients<T>& gradients);

// Chunked backward (§5.3), the default: recomputes the chunk-entry states, then walks the chunks
// in reverse. Parallel over key heads, as the forward (each handles its value heads in turn, so the
// GVA sums of dq and dk need no locks).
void delta_rule_chunked_backward(const DeltaRuleProblem& problem, const float* initial_state,
                                 const float* d_out, const float* d_final_state,
                                 const DeltaRuleGradients<float>& gradients, int64_t chunk = 64);

// Backward of gated_delta_gates (§5.5): db, da [tokens, heads] overwritten; dA_log and ddt_bias
// [heads] accumulated (+=, summed over tokens; null: frozen, not computed). Where g was clamped or softplus underflowed to 0,
// g does not depend on the inputs and contributes nothing.
void gated_delta_gates_backward(const float* b, const float* a, int64_t tokens, int64_t heads,
                                const float* A_log, const float* dt_bias, const float* dbeta,
                                const float* dg, float* db, float* da, float* dA_log, float* ddt_bias);

}  // namespace dt
