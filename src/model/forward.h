#pragma once
// Inference forward pass of the Qwen3.5 text model (spec §3, §4) with KV, conv and recurrent
// caches. Computes in f32 from weights in their stored dtype.
#include <cstdint>
#include <span>
#include <vector>

#include "core/tensor.h"
#include "model/weights.h"

namespace dt {

// How the gated delta rule is evaluated for multi-token input.
enum class DeltaRuleMode { Chunked, Recurrent };

struct ForwardOptions {
  DeltaRuleMode delta_rule = DeltaRuleMode::Chunked;
  bool all_logits = true;  // false: only the last position's logits
};

// Per-sequence caches for incremental decoding. Layer i uses the members of its type.
struct LayerCache {
  std::vector<float> keys;            // [nkv, capacity, hd] post-norm, post-RoPE
  std::vector<float> values;          // [nkv, capacity, hd]
  std::vector<float> conv_state;      // [conv_dim, Kc-1] last projected inputs, oldest first
  std::vector<float> recurrent_state; // [nv, dk, dv]
};

struct InferenceState {
  int64_t position = 0;  // tokens already processed
  std::vector<LayerCache> layers;
};

InferenceState new_inference_state(const ModelConfig& config);

// Runs `tokens` from state.position, updating the caches. Returns logits F32 [T, vocab]
// (or [1, vocab] when !options.all_logits).
Tensor forward(const ModelWeights& weights, std::span<const int32_t> tokens, InferenceState& state,
               const ForwardOptions& options = {});

}  // namespace dt
