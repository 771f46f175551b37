#pragma once
// The stages of a decoder layer's blocks, shared by the inference forward (forward.cpp: one
// sequence continuing from its caches) and the training blocks (train_layers.cpp: packed examples,
// each starting from zero state, plus their backward), so that both compute the same layer.
// Buffers are [tokens, width] row-major unless said otherwise.
#include <cstdint>
#include <span>

#include "core/tensor.h"
#include "model/config.h"
#include "model/forward.h"
#include "model/lora_adapter.h"
#include "model/lora_gradients.h"
#include "model/weights.h"
#include "ops/attention.h"
#include "ops/delta_rule.h"

namespace dt {

using LayerLora = LoraAdapter::LayerModules;
// The layer's modules, or none when there is no adapter.
const LayerLora& layer_lora(const LoraAdapter* adapter, int layer);
const LoraModule* lora_of(const LayerLora& lora, LinearKind kind);

// The tensor's f32 data after checking it holds `numel` values.
const float* f32_of(const Tensor& tensor, const char* name, int64_t numel);

// y[T, out] = x[T, in] W^T, plus scaling (x A^T) B^T with a LoRA module, after checking that W is
// [out, in] and the factors fit it (a mismatch would read out of bounds).
void project(const Tensor& weight, const char* name, const LoraModule* lora, const float* x, int64_t tokens,
             int64_t in, int64_t out, float* y);
// Backward of project (W frozen): dx = dy W (+ scaling (dy B) A), written or, with accumulate,
// added; with a LoRA module its dA and dB are added to `gradient`, which must then be given.
void project_backward(const Tensor& weight, const char* name, const LoraModule* lora, LoraModuleGradient* gradient,
                      const float* x, const float* dy, int64_t tokens, float* dx, bool accumulate);

// Calls visit(first_token, token_count) for each example of a packed sequence, after checking the
// starts (0, then strictly increasing, each below tokens).
template <typename Visit>
void for_each_example(std::span<const int64_t> example_starts, int64_t tokens, Visit&& visit);
void check_example_starts(std::span<const int64_t> example_starts, int64_t tokens);
// One example covering the whole input (the inference forward).
inline constexpr int64_t kSingleExample[] = {0};


// ---- Gated attention (spec §3.4) ----

// q_proj, k_proj and v_proj of normed: projected [T, q_proj_out], keys and values [T, nkv * hd].
void attention_projections(const ModelConfig& c, const AttentionWeights& w, const LayerLora& lora,
                           const float* normed, int64_t tokens, float* projected, float* keys, float* values);
// With the output gate, q_proj holds per head [query (hd) | gate (hd)]: split into queries and
// gate [T, nq * hd] (gate unused without the output gate). merge_query_gate is the inverse.
void split_query_gate(const ModelConfig& c, const float* projected, int64_t tokens, float* queries, float* gate);
void merge_query_gate(const ModelConfig& c, const float* queries, const float* gate, int64_t tokens, float* projected);
// In place: q_norm and k_norm, then RoPE with positions first_position, first_position + 1, ...
// restarting at each example start.
void normalize_and_rotate(const ModelConfig& c, const AttentionWeights& w, float* queries, float* keys, int64_t tokens,
                          std::span<const int64_t> example_starts, int64_t first_position);
// Copies key or value rows [T, nkv, hd] into the head-major layout of the attention kernels
// ([nkv, capacity, hd]) at rows first_row .. first_row + T - 1.
void rows_to_heads(const float* rows, int64_t tokens, int64_t kv_heads, int64_t head_dim, float* heads,
                   int64_t capacity, int64_t first_row);
AttentionProblem attention_problem(const ModelConfig& c, int64_t tokens, int64_t past, int64_t kv_capacity,
                                   const float* queries, const float* keys, const float* values);
// In place: attended *= sigmoid(gate) with the output gate; then o_proj into out [T, H].
void attention_output(const ModelConfig& c, const AttentionWeights& w, const LayerLora& lora, float* attended,
                      const float* gate, int64_t tokens, float* out);


// ---- Gated DeltaNet (spec §3.6) ----

inline constexpr float kL2NormEps = 1e-6f;

// in_proj_qkv, in_proj_z, in_proj_b and in_proj_a of normed: projected [T, conv_dim], z [T, value_dim],
// b and a [T, nv].
void deltanet_projections(const ModelConfig& c, const DeltaNetWeights& w, const LayerLora& lora, const float* normed,
                          int64_t tokens, float* projected, float* z, float* b, float* a);
// The delta rule's inputs for consecutive tokens of one sequence: causal conv + SiLU of projected
// from conv_state (advanced past the tokens) into conv_out; that with q and k l2-normalised into
// mixed (may alias conv_out); beta and decay [T, nv] from b and a.
void deltanet_rule_inputs(const ModelConfig& c, const DeltaNetWeights& w, const float* projected, const float* b,
                          const float* a, int64_t tokens, float* conv_state, float* conv_out, float* mixed, float* beta,
                          float* decay);
// The delta rule over mixed ([T, conv_dim]: q, k, v heads), scale dk^-1/2.
DeltaRuleProblem delta_rule_problem(const ModelConfig& c, const float* mixed, const float* beta, const float* decay,
                                    int64_t tokens);
// Recurrent for one token or when asked, chunked otherwise; state [nv, dk, dv] in and out.
void run_delta_rule(const DeltaRuleProblem& problem, DeltaRuleMode mode, float* state, float* out);
// Gated RMSNorm of the delta-rule output core [T, value_dim] with z into normed_core (may alias
// core), then out_proj into out [T, H].
void gated_core_norm(const ModelConfig& c, const DeltaNetWeights& w, const float* core, const float* z,
                     int64_t tokens, float* normed_core);
void deltanet_output(const ModelConfig& c, const DeltaNetWeights& w, const LayerLora& lora, const float* core,
                     const float* z, int64_t tokens, float* normed_core, float* out);


// ---- SwiGLU MLP ----

// gate_proj and up_proj of normed into gate and up [T, I], activated = silu(gate) * up (may alias
// gate or up), down_proj into out [T, H].
void mlp_block(const ModelConfig& c, const MlpWeights& w, const LayerLora& lora, const float* normed, int64_t tokens,
               float* gate, float* up, float* activated, float* out);


template <typename Visit>
void for_each_example(std::span<const int64_t> example_starts, int64_t tokens, Visit&& visit) {
  check_example_starts(example_starts, tokens);
  for (size_t i = 0; i < example_starts.size(); ++i) {
    const int64_t end = i + 1 < example_starts.size() ? example_starts[i + 1] : tokens;
    visit(example_starts[i], end - example_starts[i]);
  }
}

}  // namespace dt
