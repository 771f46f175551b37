#pragma once
// Causal grouped-query softmax attention over a KV cache (spec §3.4).
#include <cstdint>

namespace dt {

struct AttentionProblem {
  int64_t tokens = 0;     // new queries, at positions past .. past + tokens - 1
  int64_t past = 0;       // cached positions before the first query
  int64_t q_heads = 0;    // nq
  int64_t kv_heads = 0;   // nkv; q head h reads kv head h / (q_heads / kv_heads)
  int64_t head_dim = 0;
  int64_t kv_capacity = 0;  // row stride of one kv head in keys/values
  float scale = 1.0f;       // applied to q.k
  const float* q = nullptr;       // [tokens, q_heads, head_dim]
  const float* keys = nullptr;    // [kv_heads, kv_capacity, head_dim], rows 0 .. past + tokens - 1 set
  const float* values = nullptr;  // same layout as keys
};

// out [tokens, q_heads * head_dim]. Query t sees keys 0 .. past + t. Uses sgemm for multi-token
// input; must not be called from inside an OpenMP parallel region.
void causal_attention(const AttentionProblem& problem, float* out);

// Naive loops with double accumulation; the reference for causal_attention.
void causal_attention_reference(const AttentionProblem& problem, float* out);


// ---- Backward ----

// Gradients of causal_attention given d_out [tokens, q_heads * head_dim]: dq (layout of q)
// overwritten; dkeys and dvalues (layout of keys and values) have rows 0 .. past + tokens - 1 of
// every kv head overwritten with the sum over all queries that see a position and over the query
// heads sharing the kv head. Probabilities are recomputed; sgemm throughout, so it must not be
// called from inside an OpenMP parallel region.
void causal_attention_backward(const AttentionProblem& problem, const float* d_out, float* dq, float* dkeys,
                               float* dvalues);

// Naive loops with double accumulation; the reference for causal_attention_backward.
void causal_attention_backward_reference(const AttentionProblem& problem, const float* d_out, float* dq,
                                         float* dkeys, float* dvalues);

}  // namespace dt
