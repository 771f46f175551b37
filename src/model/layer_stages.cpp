#include "model/layer_stages.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "core/error.h"
#include "ops/activation.h"
#include "ops/conv.h"
#include "ops/linear.h"
#include "ops/norm.h"
#include "ops/rope.h"

namespace dt {

const LayerLora& layer_lora(const LoraAdapter* adapter, int layer) {
  static const LayerLora no_lora{};
  return adapter ? adapter->layer(layer) : no_lora;
}

const LoraModule* lora_of(const LayerLora& lora, LinearKind kind) {
  const auto& slot = lora[size_t(kind)];
  return slot ? &*slot : nullptr;
}

const float* f32_of(const Tensor& tensor, const char* name, int64_t numel) {
  if (tensor.numel() != numel)
    fail("forward: {} has shape {}, expected {} values", name, shape_string(tensor.shape()), numel);
  return tensor.f32();
}

namespace {

void check_weight_shape(const Tensor& weight, const char* name, const LoraModule* lora, int64_t in, int64_t out) {
  if (weight.rank() != 2 || weight.dim(0) != out || weight.dim(1) != in)
    fail("forward: {} has shape {}, expected [{}, {}]", name, shape_string(weight.shape()), out, in);
  if (lora &&
      (lora->rank <= 0 || lora->a.size() != size_t(lora->rank * in) || lora->b.size() != size_t(out * lora->rank)))
    fail("forward: the LoRA module on {} of layer {} (rank {}, A {} values, B {} values) does not fit its [{}, {}] "
         "weight",
         name, lora->layer, lora->rank, lora->a.size(), lora->b.size(), out, in);
}

LoraFactors factors_of(const LoraModule& lora) {
  return {lora.a.data(), lora.b.data(), lora.rank, float(lora.scaling)};
}

}  // namespace

void project(const Tensor& weight, const char* name, const LoraModule* lora, const float* x, int64_t tokens,
             int64_t in, int64_t out, float* y) {
  check_weight_shape(weight, name, lora, in, out);
  if (lora)
    lora_linear(x, tokens, weight, factors_of(*lora), y);
  else
    linear(x, tokens, weight, y);
}

void project_backward(const Tensor& weight, const char* name, const LoraModule* lora, LoraModuleGradient* gradient,
                      const float* x, const float* dy, int64_t tokens, float* dx, bool accumulate) {
  if (weight.rank() != 2) fail("backward: {} has shape {}, expected a matrix", name, shape_string(weight.shape()));
  check_weight_shape(weight, name, lora, weight.dim(1), weight.dim(0));
  if (!lora) {
    linear_backward_input(dy, tokens, weight, dx, accumulate);
    return;
  }
  if (!gradient || gradient->a.size() != lora->a.size() || gradient->b.size() != lora->b.size())
    fail("backward: no gradient of the LoRA factors of {} (layer {}) with their shapes", name, lora->layer);
  if (!accumulate) {
    lora_linear_backward(x, dy, tokens, weight, factors_of(*lora), dx, gradient->a.data(), gradient->b.data());
    return;
  }
  std::vector<float> input_gradient(size_t(tokens * weight.dim(1)));
  lora_linear_backward(x, dy, tokens, weight, factors_of(*lora), input_gradient.data(), gradient->a.data(),
                       gradient->b.data());
  for (size_t i = 0; i < input_gradient.size(); ++i) dx[i] += input_gradient[i];
}

void check_example_starts(std::span<const int64_t> example_starts, int64_t tokens) {
  if (tokens <= 0) fail("layer pass: no tokens");
  if (example_starts.empty() || example_starts[0] != 0)
    fail("layer pass: the first example must start at token 0");
  for (size_t i = 1; i < example_starts.size(); ++i)
    if (example_starts[i] <= example_starts[i - 1] || example_starts[i] >= tokens)
      fail("layer pass: example start {} at index {} is not after {} and below the {} tokens", example_starts[i], i,
           example_starts[i - 1], tokens);
}


// ---- Gated attention ----

void attention_projections(const ModelConfig& c, const AttentionWeights& w, const LayerLora& lora,
                           const float* normed, int64_t tokens, float* projected, float* keys, float* values) {
  const int64_t H = c.hidden_size, kv_width = c.num_key_value_heads * c.head_dim;
  project(w.q_proj, "q_proj", lora_of(lora, LinearKind::AttnQ), normed, tokens, H, c.q_proj_out(), projected);
  project(w.k_proj, "k_proj", lora_of(lora, LinearKind::AttnK), normed, tokens, H, kv_width, keys);
  project(w.v_proj, "v_proj", lora_of(lora, LinearKind::AttnV), normed, tokens, H, kv_width, values);
}

void split_query_gate(const ModelConfig& c, const float* projected, int64_t tokens, float* queries, float* gate) {
  const int64_t nq = c.num_attention_heads, hd = c.head_dim;
  if (!c.attn_output_gate) {
    std::copy_n(projected, tokens * nq * hd, queries);
    return;
  }
  for (int64_t t = 0; t < tokens; ++t)
    for (int64_t h = 0; h < nq; ++h) {
      const float* head = projected + (t * nq + h) * 2 * hd;
      std::copy_n(head, hd, queries + (t * nq + h) * hd);
      std::copy_n(head + hd, hd, gate + (t * nq + h) * hd);
    }
}

void merge_query_gate(const ModelConfig& c, const float* queries, const float* gate, int64_t tokens,
                      float* projected) {
  const int64_t nq = c.num_attention_heads, hd = c.head_dim;
  if (!c.attn_output_gate) {
    std::copy_n(queries, tokens * nq * hd, projected);
    return;
  }
  for (int64_t t = 0; t < tokens; ++t)
    for (int64_t h = 0; h < nq; ++h) {
      float* head = projected + (t * nq + h) * 2 * hd;
      std::copy_n(queries + (t * nq + h) * hd, hd, head);
      std::copy_n(gate + (t * nq + h) * hd, hd, head + hd);
    }
}

void normalize_and_rotate(const ModelConfig& c, const AttentionWeights& w, float* queries, float* keys, int64_t tokens,
                          std::span<const int64_t> example_starts, int64_t first_position) {
  const int64_t nq = c.num_attention_heads, nkv = c.num_key_value_heads, hd = c.head_dim;
  const float eps = float(c.rms_norm_eps);
  rms_norm_zero_centred(queries, tokens * nq, hd, f32_of(w.q_norm, "q_norm", hd), eps, queries);
  rms_norm_zero_centred(keys, tokens * nkv, hd, f32_of(w.k_norm, "k_norm", hd), eps, keys);
  for_each_example(example_starts, tokens, [&](int64_t first, int64_t count) {
    apply_rope(queries + first * nq * hd, count, nq, hd, c.rotary_dim(), c.rope_theta, first_position);
    apply_rope(keys + first * nkv * hd, count, nkv, hd, c.rotary_dim(), c.rope_theta, first_position);
  });
}

void rows_to_heads(const float* rows, int64_t tokens, int64_t kv_heads, int64_t head_dim, float* heads,
                   int64_t capacity, int64_t first_row) {
  for (int64_t j = 0; j < kv_heads; ++j)
    for (int64_t t = 0; t < tokens; ++t)
      std::copy_n(rows + (t * kv_heads + j) * head_dim, head_dim, heads + (j * capacity + first_row + t) * head_dim);
}

AttentionProblem attention_problem(const ModelConfig& c, int64_t tokens, int64_t past, int64_t kv_capacity,
                                   const float* queries, const float* keys, const float* values) {
  AttentionProblem problem;
  problem.tokens = tokens;
  problem.past = past;
  problem.q_heads = c.num_attention_heads;
  problem.kv_heads = c.num_key_value_heads;
  problem.head_dim = c.head_dim;
  problem.kv_capacity = kv_capacity;
  problem.scale = 1.0f / std::sqrt(float(c.head_dim));
  problem.q = queries;
  problem.keys = keys;
  problem.values = values;
  return problem;
}

void attention_output(const ModelConfig& c, const AttentionWeights& w, const LayerLora& lora, float* attended,
                      const float* gate, int64_t tokens, float* out) {
  const int64_t width = c.num_attention_heads * c.head_dim;
  if (c.attn_output_gate) multiply_by_sigmoid(attended, gate, tokens * width);
  project(w.o_proj, "o_proj", lora_of(lora, LinearKind::AttnO), attended, tokens, width, c.hidden_size, out);
}


// ---- Gated DeltaNet ----

void deltanet_projections(const ModelConfig& c, const DeltaNetWeights& w, const LayerLora& lora, const float* normed,
                          int64_t tokens, float* projected, float* z, float* b, float* a) {
  const int64_t H = c.hidden_size, nv = c.linear_num_value_heads;
  project(w.in_proj_qkv, "in_proj_qkv", lora_of(lora, LinearKind::GdnQkv), normed, tokens, H, c.conv_dim(),
          projected);
  project(w.in_proj_z, "in_proj_z", lora_of(lora, LinearKind::GdnZ), normed, tokens, H, c.value_dim(), z);
  project(w.in_proj_b, "in_proj_b", lora_of(lora, LinearKind::GdnB), normed, tokens, H, nv, b);
  project(w.in_proj_a, "in_proj_a", lora_of(lora, LinearKind::GdnA), normed, tokens, H, nv, a);
}

void deltanet_rule_inputs(const ModelConfig& c, const DeltaNetWeights& w, const float* projected, const float* b,
                          const float* a, int64_t tokens, float* conv_state, float* conv_out, float* mixed, float* beta,
                          float* decay) {
  const int64_t conv_dim = c.conv_dim(), Kc = c.linear_conv_kernel_dim, nv = c.linear_num_value_heads;
  causal_conv_silu(projected, tokens, conv_dim, f32_of(w.conv1d, "conv1d", conv_dim * Kc), Kc, conv_state, conv_out);
  if (mixed != conv_out) std::copy_n(conv_out, tokens * conv_dim, mixed);
  // q and k heads sit next to each other in each row: 2 * nk vectors of dk.
  for (int64_t t = 0; t < tokens; ++t)
    l2_normalize(mixed + t * conv_dim, 2 * c.linear_num_key_heads, c.linear_key_head_dim, kL2NormEps);
  gated_delta_gates(b, a, tokens, nv, f32_of(w.A_log, "A_log", nv), f32_of(w.dt_bias, "dt_bias", nv), beta, decay);
}

DeltaRuleProblem delta_rule_problem(const ModelConfig& c, const float* mixed, const float* beta, const float* decay,
                                    int64_t tokens) {
  return conv_layout_problem(mixed, tokens, c.linear_num_key_heads, c.linear_num_value_heads, c.linear_key_head_dim,
                             c.linear_value_head_dim, beta, decay);
}

void run_delta_rule(const DeltaRuleProblem& problem, DeltaRuleMode mode, float* state, float* out) {
  if (problem.tokens == 1 || mode == DeltaRuleMode::Recurrent)
    delta_rule_recurrent(problem, state, out);
  else
    delta_rule_chunked(problem, state, out);
}

void gated_core_norm(const ModelConfig& c, const DeltaNetWeights& w, const float* core, const float* z,
                     int64_t tokens, float* normed_core) {
  const int64_t dv = c.linear_value_head_dim;
  gated_rms_norm(core, z, tokens * c.linear_num_value_heads, dv, f32_of(w.norm, "linear_attn.norm", dv),
                 float(c.rms_norm_eps), normed_core);
}

void deltanet_output(const ModelConfig& c, const DeltaNetWeights& w, const LayerLora& lora, const float* core,
                     const float* z, int64_t tokens, float* normed_core, float* out) {
  gated_core_norm(c, w, core, z, tokens, normed_core);
  project(w.out_proj, "out_proj", lora_of(lora, LinearKind::GdnOut), normed_core, tokens, c.value_dim(),
          c.hidden_size, out);
}


// ---- SwiGLU MLP ----

void mlp_block(const ModelConfig& c, const MlpWeights& w, const LayerLora& lora, const float* normed, int64_t tokens,
               float* gate, float* up, float* activated, float* out) {
  const int64_t H = c.hidden_size, I = c.intermediate_size;
  project(w.gate_proj, "gate_proj", lora_of(lora, LinearKind::MlpGate), normed, tokens, H, I, gate);
  project(w.up_proj, "up_proj", lora_of(lora, LinearKind::MlpUp), normed, tokens, H, I, up);
  swiglu(gate, up, activated, tokens * I);
  project(w.down_proj, "down_proj", lora_of(lora, LinearKind::MlpDown), activated, tokens, I, H, out);
}

}  // namespace dt
