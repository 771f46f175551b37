#pragma once
// Inference forward pass of the Qwen3.5 text model (spec §3, §4) with KV, conv and recurrent
// caches. Computes in f32 from weights in their stored dtype.
#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

#include "core/tensor.h"
#include "model/lora_adapter.h"
#include "model/weights.h"

namespace dt {

// How the gated delta rule is evaluated for multi-token input (a single token always steps the
// recurrence).
enum class DeltaRuleMode { Chunked, Recurrent };

struct ForwardOptions {
  DeltaRuleMode delta_rule = DeltaRuleMode::Chunked;
  bool all_logits = true;  // false: only the last position's logits
  // Applied to every linear it adapts, y = W x + scaling B (A x), in every path (chunked,
  // recurrent, prefill, decode); must outlive the call. Null: the base model.
  const LoraAdapter* adapter = nullptr;
};

// Per-sequence caches for incremental decoding. Layer i uses the members of its type.
struct LayerCache {
  // Full attention: rows 0 .. InferenceState::position - 1 of each kv head are set. The capacity
  // grows geometrically.
  int64_t kv_capacity = 0;
  std::vector<float> keys;            // [nkv, kv_capacity, hd] post-norm, post-RoPE
  std::vector<float> values;          // [nkv, kv_capacity, hd]
  // Gated DeltaNet.
  std::vector<float> conv_state;      // [Kc-1, conv_dim] last projected inputs, oldest first
  std::vector<float> recurrent_state; // [nv, dk, dv]
};

// Buffers of one forward call, kept in the state so that decoding allocates nothing per token.
struct ForwardScratch {
  std::vector<float> hidden, normed, mixer_out;          // [T, H]
  std::vector<float> projection, conv_out;               // q_proj or in_proj_qkv output; conv output
  std::vector<float> queries, keys, values, attn_gate;   // attention heads of the new tokens
  std::vector<float> z, b, a, beta, decay;               // DeltaNet gates
  std::vector<float> mixed;                              // attention / delta-rule output before its projection
  std::vector<float> mlp_gate, mlp_up;                   // [T, I]
};

struct InferenceState {
  int64_t position = 0;  // tokens already processed
  std::vector<LayerCache> layers;
  ForwardScratch scratch;
};

InferenceState new_inference_state(const ModelConfig& config);

// Fails unless every module of `adapter` sits on a linear the model has, with factors of that
// linear's shape (lora_linear reads them unchecked). Messages start with `context`.
void check_adapter_fits(const ModelConfig& config, const LoraAdapter& adapter, std::string_view context);

// hidden [tokens, H] = the embedding rows of `tokens`, converted from the stored dtype to f32.
// Fails on an id outside the vocabulary, naming its position. Messages start with `context`.
void embed_tokens(const ModelWeights& weights, std::span<const int32_t> tokens, float* hidden, std::string_view context);

// Runs `tokens` from state.position, updating the caches. Returns logits F32 [T, vocab]
// (or [1, vocab] when !options.all_logits). Fails, leaving the state untouched, on an empty input,
// an out-of-range token id, a state made for another model or an adapter whose modules do not fit
// the model; a weight of the wrong shape (which
// load_model rules out) fails midway and leaves the state unusable.
Tensor forward(const ModelWeights& weights, std::span<const int32_t> tokens, InferenceState& state,
               const ForwardOptions& options = {});

}  // namespace dt
