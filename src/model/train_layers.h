#pragma once
// Training forward and backward of the blocks of one decoder layer (spec §5.5): the token mixer
// (Gated DeltaNet or gated attention, by the layer's type) and the SwiGLU MLP. The input of each
// block is its normed hidden state [tokens, H]; the output [tokens, H] is what is added to the
// residual. A forward fills a tape with what its backward needs; the backward adds the gradient of
// each LoRA factor of the block to the pass's gradients and writes the gradient of the block's
// input. Sequence mixing restarts at each example start (conv state, delta-rule state and
// attention all begin afresh), as for separate sequences.
#include <cstdint>
#include <span>
#include <vector>

#include "model/forward.h"
#include "model/lora_adapter.h"
#include "model/lora_gradients.h"
#include "model/weights.h"

namespace dt {

struct LayerPass {
  const ModelConfig& config;
  const LayerWeights& weights;
  int layer = 0;
  const LoraAdapter* adapter = nullptr;     // null: the base layer
  LoraGradients* gradients = nullptr;       // where the backward accumulates (required by backward)
  int64_t tokens = 0;
  std::span<const int64_t> example_starts;  // 0, then increasing, each < tokens
  DeltaRuleMode delta_rule = DeltaRuleMode::Chunked;
};

// What the backward of a block needs: O(tokens x width) buffers, refilled by each forward (nothing
// of an earlier call survives). Callers only create them, let the forward fill them and hand them
// to the backward. The backward recomputes the cheap rest (norms, RoPE, conv, gates, the gated
// outputs); DeltaNet keeps no delta-rule state at all (the chunked backward recomputes the
// chunk-entry states from each example's zero state).
struct MixerTape {
  std::vector<float> projected;       // q_proj or in_proj_qkv output
  // Attention: k_proj and v_proj outputs [tokens, nkv * hd] (keys before k_norm), and the attention
  // output before its gate [tokens, nq * hd].
  std::vector<float> keys, values, attended;
  // DeltaNet: in_proj_z [tokens, value_dim], in_proj_b and in_proj_a [tokens, nv] outputs, and the
  // delta-rule output before the gated norm [tokens, value_dim].
  std::vector<float> z, b, a, core;
};
struct MlpTape {
  std::vector<float> gate, up;  // [tokens, I] pre-activation projections
};

// d_normed [tokens, H] is overwritten. Fails naming the problem on bad example starts, a weight or
// LoRA module of the wrong shape, or (backward) a LoRA module without its gradient.
void mixer_forward(const LayerPass& pass, const float* normed, float* out, MixerTape& tape);
void mixer_backward(const LayerPass& pass, const float* normed, const MixerTape& tape, const float* d_out,
                    float* d_normed);

void mlp_forward(const LayerPass& pass, const float* normed, float* out, MlpTape& tape);
void mlp_backward(const LayerPass& pass, const float* normed, const MlpTape& tape, const float* d_out,
                  float* d_normed);

}  // namespace dt
