#include "model/train_layers.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"
#include "model/layer_stages.h"
#include "ops/activation.h"
#include "ops/attention.h"
#include "ops/conv.h"
#include "ops/delta_rule.h"
#include "ops/norm.h"
#include "ops/rope.h"

namespace dt {
namespace {

std::vector<float> zeros(int64_t count) { return std::vector<float>(size_t(count), 0.0f); }

// Sized for this pass; every entry is written before it is read.
void size_to(std::vector<float>& buffer, int64_t count) { buffer.resize(size_t(count)); }

void check_tape(const std::vector<float>& buffer, int64_t expected, const char* what) {
  if (buffer.size() != size_t(expected))
    fail("backward: the tape's {} holds {} values, expected {} (was it filled by this pass's forward?)", what,
         buffer.size(), expected);
}

const LayerLora& lora_of_pass(const LayerPass& pass) { return layer_lora(pass.adapter, pass.layer); }

// The gradient of the module the pass's adapter has on `kind`, or null when it has none.
LoraModuleGradient* gradient_of(const LayerPass& pass, LinearKind kind) {
  if (!lora_of(lora_of_pass(pass), kind)) return nullptr;
  if (!pass.gradients) fail("backward: layer {} has LoRA modules but the pass has no gradients", pass.layer);
  return pass.gradients->find(pass.layer, kind);
}

// project_backward of the linear `kind` of the pass's layer.
void linear_backward(const LayerPass& pass, const Tensor& weight, const char* name, LinearKind kind, const float* x,
                     const float* dy, float* dx, bool accumulate) {
  project_backward(weight, name, lora_of(lora_of_pass(pass), kind), gradient_of(pass, kind), x, dy, pass.tokens, dx,
                   accumulate);
}


// ---- Gated attention ----

// q and k after q_norm/k_norm and RoPE (positions restarting at each example), from the tape.
struct AttentionInputs {
  std::vector<float> raw_queries, gate, queries, keys;
};

AttentionInputs attention_inputs(const LayerPass& pass, const MixerTape& tape) {
  const ModelConfig& c = pass.config;
  const int64_t T = pass.tokens, width = c.num_attention_heads * c.head_dim;
  AttentionInputs in;
  size_to(in.raw_queries, T * width);
  size_to(in.gate, c.attn_output_gate ? T * width : 0);
  split_query_gate(c, tape.projected.data(), T, in.raw_queries.data(), in.gate.data());
  in.queries = in.raw_queries;
  in.keys = tape.keys;
  normalize_and_rotate(c, pass.weights.attention, in.queries.data(), in.keys.data(), T, pass.example_starts, 0);
  return in;
}

// Head-major keys and values of one example, as the attention kernels read them.
struct ExampleHeads {
  std::vector<float> keys, values;
  ExampleHeads(const ModelConfig& c, const float* key_rows, const float* value_rows, int64_t count)
      : keys(size_t(count * c.num_key_value_heads * c.head_dim)), values(keys.size()) {
    rows_to_heads(key_rows, count, c.num_key_value_heads, c.head_dim, keys.data(), count, 0);
    rows_to_heads(value_rows, count, c.num_key_value_heads, c.head_dim, values.data(), count, 0);
  }
};

// The inverse of rows_to_heads for one example of `count` tokens.
void heads_to_rows(const float* heads, int64_t count, int64_t kv_heads, int64_t head_dim, float* rows) {
  for (int64_t j = 0; j < kv_heads; ++j)
    for (int64_t t = 0; t < count; ++t)
      std::copy_n(heads + (j * count + t) * head_dim, head_dim, rows + (t * kv_heads + j) * head_dim);
}

void attention_forward(const LayerPass& pass, const float* normed, float* out, MixerTape& tape) {
  const ModelConfig& c = pass.config;
  const AttentionWeights& w = pass.weights.attention;
  const int64_t T = pass.tokens, nq = c.num_attention_heads, kv_width = c.num_key_value_heads * c.head_dim;
  const int64_t width = nq * c.head_dim;
  size_to(tape.projected, T * c.q_proj_out());
  size_to(tape.keys, T * kv_width);
  size_to(tape.values, T * kv_width);
  size_to(tape.attended, T * width);
  for (auto* unused : {&tape.z, &tape.b, &tape.a, &tape.core}) unused->clear();
  attention_projections(c, w, lora_of_pass(pass), normed, T, tape.projected.data(), tape.keys.data(),
                        tape.values.data());
  const AttentionInputs in = attention_inputs(pass, tape);
  for_each_example(pass.example_starts, T, [&](int64_t first, int64_t count) {
    const ExampleHeads heads(c, in.keys.data() + first * kv_width, tape.values.data() + first * kv_width, count);
    causal_attention(attention_problem(c, count, 0, count, in.queries.data() + first * width, heads.keys.data(),
                                       heads.values.data()),
                     tape.attended.data() + first * width);
  });
  std::vector<float> gated = tape.attended;
  attention_output(c, w, lora_of_pass(pass), gated.data(), in.gate.data(), T, out);
}

void attention_backward(const LayerPass& pass, const float* normed, const MixerTape& tape, const float* d_out,
                        float* d_normed) {
  const ModelConfig& c = pass.config;
  const AttentionWeights& w = pass.weights.attention;
  const int64_t T = pass.tokens, nq = c.num_attention_heads, nkv = c.num_key_value_heads, hd = c.head_dim;
  const int64_t width = nq * hd, kv_width = nkv * hd;
  check_tape(tape.projected, T * c.q_proj_out(), "q_proj output");
  check_tape(tape.keys, T * kv_width, "k_proj output");
  check_tape(tape.values, T * kv_width, "v_proj output");
  check_tape(tape.attended, T * width, "attention output");
  const AttentionInputs in = attention_inputs(pass, tape);

  // o_proj, then the output gate.
  std::vector<float> gated = tape.attended;
  if (c.attn_output_gate) multiply_by_sigmoid(gated.data(), in.gate.data(), T * width);
  std::vector<float> d_attended(size_t(T * width)), d_gate(in.gate.size());
  linear_backward(pass, w.o_proj, "o_proj", LinearKind::AttnO, gated.data(), d_out, d_attended.data(), false);
  if (c.attn_output_gate)
    multiply_by_sigmoid_backward(tape.attended.data(), in.gate.data(), d_attended.data(), d_attended.data(),
                                 d_gate.data(), T * width);

  // Attention within each example, then RoPE.
  std::vector<float> d_queries(size_t(T * width)), d_keys(size_t(T * kv_width)), d_values(size_t(T * kv_width));
  for_each_example(pass.example_starts, T, [&](int64_t first, int64_t count) {
    const ExampleHeads heads(c, in.keys.data() + first * kv_width, tape.values.data() + first * kv_width, count);
    std::vector<float> d_key_heads(heads.keys.size()), d_value_heads(heads.values.size());
    causal_attention_backward(attention_problem(c, count, 0, count, in.queries.data() + first * width,
                                                heads.keys.data(), heads.values.data()),
                              d_attended.data() + first * width, d_queries.data() + first * width,
                              d_key_heads.data(), d_value_heads.data());
    heads_to_rows(d_key_heads.data(), count, nkv, hd, d_keys.data() + first * kv_width);
    heads_to_rows(d_value_heads.data(), count, nkv, hd, d_values.data() + first * kv_width);
    apply_rope_backward(d_queries.data() + first * width, count, nq, hd, c.rotary_dim(), c.rope_theta, 0);
    apply_rope_backward(d_keys.data() + first * kv_width, count, nkv, hd, c.rotary_dim(), c.rope_theta, 0);
  });

  // q_norm and k_norm (their weights are frozen: no weight gradient).
  const float eps = float(c.rms_norm_eps);
  rms_norm_zero_centred_backward(in.raw_queries.data(), d_queries.data(), T * nq, hd, f32_of(w.q_norm, "q_norm", hd),
                                 eps, d_queries.data(), nullptr);
  rms_norm_zero_centred_backward(tape.keys.data(), d_keys.data(), T * nkv, hd, f32_of(w.k_norm, "k_norm", hd), eps,
                                 d_keys.data(), nullptr);

  std::vector<float> d_projected(tape.projected.size());
  merge_query_gate(c, d_queries.data(), d_gate.data(), T, d_projected.data());
  linear_backward(pass, w.q_proj, "q_proj", LinearKind::AttnQ, normed, d_projected.data(), d_normed, false);
  linear_backward(pass, w.k_proj, "k_proj", LinearKind::AttnK, normed, d_keys.data(), d_normed, true);
  linear_backward(pass, w.v_proj, "v_proj", LinearKind::AttnV, normed, d_values.data(), d_normed, true);
}


// ---- Gated DeltaNet ----

// The delta rule's inputs of every example from its zero conv state: the conv output before the
// l2 norm (conv_out), q and k normalised (mixed), beta and decay.
struct DeltaNetInputs {
  std::vector<float> conv_out, mixed, beta, decay;
};

// conv_out is only kept when asked (the backward needs it, the forward does not).
DeltaNetInputs deltanet_inputs(const LayerPass& pass, const MixerTape& tape, bool keep_conv_out) {
  const ModelConfig& c = pass.config;
  const int64_t T = pass.tokens, conv_dim = c.conv_dim(), nv = c.linear_num_value_heads;
  DeltaNetInputs in;
  size_to(in.mixed, T * conv_dim);
  size_to(in.conv_out, keep_conv_out ? T * conv_dim : 0);
  size_to(in.beta, T * nv);
  size_to(in.decay, T * nv);
  std::vector<float> conv_state(size_t((c.linear_conv_kernel_dim - 1) * conv_dim));
  for_each_example(pass.example_starts, T, [&](int64_t first, int64_t count) {
    std::fill(conv_state.begin(), conv_state.end(), 0.0f);
    float* mixed = in.mixed.data() + first * conv_dim;
    deltanet_rule_inputs(c, pass.weights.deltanet, tape.projected.data() + first * conv_dim,
                         tape.b.data() + first * nv, tape.a.data() + first * nv, count, conv_state.data(),
                         keep_conv_out ? in.conv_out.data() + first * conv_dim : mixed, mixed,
                         in.beta.data() + first * nv, in.decay.data() + first * nv);
  });
  return in;
}

DeltaRuleProblem example_problem(const LayerPass& pass, const DeltaNetInputs& in, int64_t first, int64_t count) {
  const ModelConfig& c = pass.config;
  const int64_t nv = c.linear_num_value_heads;
  return delta_rule_problem(c, in.mixed.data() + first * c.conv_dim(), in.beta.data() + first * nv,
                            in.decay.data() + first * nv, count);
}

int64_t state_size(const ModelConfig& c) {
  return c.linear_num_value_heads * c.linear_key_head_dim * c.linear_value_head_dim;
}

void deltanet_forward(const LayerPass& pass, const float* normed, float* out, MixerTape& tape) {
  const ModelConfig& c = pass.config;
  const DeltaNetWeights& w = pass.weights.deltanet;
  const int64_t T = pass.tokens, nv = c.linear_num_value_heads, value_dim = c.value_dim();
  size_to(tape.projected, T * c.conv_dim());
  size_to(tape.z, T * value_dim);
  size_to(tape.b, T * nv);
  size_to(tape.a, T * nv);
  size_to(tape.core, T * value_dim);
  for (auto* unused : {&tape.keys, &tape.values, &tape.attended}) unused->clear();
  deltanet_projections(c, w, lora_of_pass(pass), normed, T, tape.projected.data(), tape.z.data(), tape.b.data(),
                       tape.a.data());
  const DeltaNetInputs in = deltanet_inputs(pass, tape, false);
  std::vector<float> state(size_t(state_size(c)));
  for_each_example(pass.example_starts, T, [&](int64_t first, int64_t count) {
    std::fill(state.begin(), state.end(), 0.0f);
    run_delta_rule(example_problem(pass, in, first, count), pass.delta_rule, state.data(),
                   tape.core.data() + first * value_dim);
  });
  std::vector<float> normed_core(size_t(T * value_dim));
  deltanet_output(c, w, lora_of_pass(pass), tape.core.data(), tape.z.data(), T, normed_core.data(), out);
}

void deltanet_backward(const LayerPass& pass, const float* normed, const MixerTape& tape, const float* d_out,
                       float* d_normed) {
  const ModelConfig& c = pass.config;
  const DeltaNetWeights& w = pass.weights.deltanet;
  const int64_t T = pass.tokens, nv = c.linear_num_value_heads, dv = c.linear_value_head_dim;
  const int64_t conv_dim = c.conv_dim(), value_dim = c.value_dim(), Kc = c.linear_conv_kernel_dim;
  check_tape(tape.projected, T * conv_dim, "in_proj_qkv output");
  check_tape(tape.z, T * value_dim, "in_proj_z output");
  check_tape(tape.b, T * nv, "in_proj_b output");
  check_tape(tape.a, T * nv, "in_proj_a output");
  check_tape(tape.core, T * value_dim, "delta-rule output");
  const DeltaNetInputs in = deltanet_inputs(pass, tape, true);

  // out_proj, then the gated RMSNorm (its weight is frozen: the weight gradient is dropped).
  std::vector<float> normed_core(size_t(T * value_dim)), d_core(size_t(T * value_dim)), dz(size_t(T * value_dim));
  gated_core_norm(c, w, tape.core.data(), tape.z.data(), T, normed_core.data());
  linear_backward(pass, w.out_proj, "out_proj", LinearKind::GdnOut, normed_core.data(), d_out, d_core.data(), false);
  gated_rms_norm_backward(tape.core.data(), tape.z.data(), d_core.data(), T * nv, dv,
                          f32_of(w.norm, "linear_attn.norm", dv), float(c.rms_norm_eps), d_core.data(), dz.data(),
                          nullptr);

  // The delta rule of each example from its zero state.
  std::vector<float> d_mixed(size_t(T * conv_dim)), d_beta(size_t(T * nv)), d_decay(size_t(T * nv));
  const std::vector<float> zero_state = zeros(state_size(c));
  std::vector<float> unused_state_gradient(zero_state.size());
  for_each_example(pass.example_starts, T, [&](int64_t first, int64_t count) {
    const DeltaRuleProblem problem = example_problem(pass, in, first, count);
    float* d_example = d_mixed.data() + first * conv_dim;
    const DeltaRuleGradients<float> gradients{d_example,
                                              d_example + c.key_dim(),
                                              d_example + 2 * c.key_dim(),
                                              d_beta.data() + first * nv,
                                              d_decay.data() + first * nv,
                                              unused_state_gradient.data()};
    const float* d_example_core = d_core.data() + first * value_dim;
    if (pass.delta_rule == DeltaRuleMode::Recurrent)
      delta_rule_recurrent_backward<float>(basic_problem(problem), zero_state.data(), d_example_core, nullptr,
                                           gradients);
    else
      delta_rule_chunked_backward(problem, zero_state.data(), d_example_core, nullptr, gradients);
  });

  // l2 norm of q and k, then the conv of each example from its zero state.
  for (int64_t t = 0; t < T; ++t)
    l2_normalize_backward(in.conv_out.data() + t * conv_dim, d_mixed.data() + t * conv_dim,
                          2 * c.linear_num_key_heads, c.linear_key_head_dim, kL2NormEps,
                          d_mixed.data() + t * conv_dim);
  std::vector<float> d_projected(size_t(T * conv_dim));
  const float* conv_weight = f32_of(w.conv1d, "conv1d", conv_dim * Kc);
  for_each_example(pass.example_starts, T, [&](int64_t first, int64_t count) {
    causal_conv_silu_backward(tape.projected.data() + first * conv_dim, count, conv_dim, conv_weight, Kc, nullptr,
                              d_mixed.data() + first * conv_dim, d_projected.data() + first * conv_dim, nullptr,
                              nullptr);
  });

  // The gates (A_log and dt_bias are frozen).
  std::vector<float> db(size_t(T * nv)), da(size_t(T * nv));
  gated_delta_gates_backward(tape.b.data(), tape.a.data(), T, nv, f32_of(w.A_log, "A_log", nv),
                             f32_of(w.dt_bias, "dt_bias", nv), d_beta.data(), d_decay.data(), db.data(), da.data(),
                             nullptr, nullptr);

  linear_backward(pass, w.in_proj_qkv, "in_proj_qkv", LinearKind::GdnQkv, normed, d_projected.data(), d_normed,
                  false);
  linear_backward(pass, w.in_proj_z, "in_proj_z", LinearKind::GdnZ, normed, dz.data(), d_normed, true);
  linear_backward(pass, w.in_proj_b, "in_proj_b", LinearKind::GdnB, normed, db.data(), d_normed, true);
  linear_backward(pass, w.in_proj_a, "in_proj_a", LinearKind::GdnA, normed, da.data(), d_normed, true);
}

}  // namespace

void mixer_forward(const LayerPass& pass, const float* normed, float* out, MixerTape& tape) {
  check_example_starts(pass.example_starts, pass.tokens);
  if (pass.weights.type == LayerType::FullAttention)
    attention_forward(pass, normed, out, tape);
  else
    deltanet_forward(pass, normed, out, tape);
}

void mixer_backward(const LayerPass& pass, const float* normed, const MixerTape& tape, const float* d_out,
                    float* d_normed) {
  check_example_starts(pass.example_starts, pass.tokens);
  if (pass.weights.type == LayerType::FullAttention)
    attention_backward(pass, normed, tape, d_out, d_normed);
  else
    deltanet_backward(pass, normed, tape, d_out, d_normed);
}

void mlp_forward(const LayerPass& pass, const float* normed, float* out, MlpTape& tape) {
  const int64_t I = pass.config.intermediate_size;
  if (pass.tokens <= 0) fail("layer pass: no tokens");
  size_to(tape.gate, pass.tokens * I);
  size_to(tape.up, pass.tokens * I);
  std::vector<float> activated(tape.gate.size());
  mlp_block(pass.config, pass.weights.mlp, lora_of_pass(pass), normed, pass.tokens, tape.gate.data(), tape.up.data(),
            activated.data(), out);
}

void mlp_backward(const LayerPass& pass, const float* normed, const MlpTape& tape, const float* d_out,
                  float* d_normed) {
  const MlpWeights& w = pass.weights.mlp;
  const int64_t count = pass.tokens * pass.config.intermediate_size;
  check_tape(tape.gate, count, "gate_proj output");
  check_tape(tape.up, count, "up_proj output");
  std::vector<float> activated = zeros(count), d_gate = zeros(count), d_up = zeros(count);
  swiglu(tape.gate.data(), tape.up.data(), activated.data(), count);
  linear_backward(pass, w.down_proj, "down_proj", LinearKind::MlpDown, activated.data(), d_out, d_gate.data(), false);
  swiglu_backward(tape.gate.data(), tape.up.data(), d_gate.data(), d_gate.data(), d_up.data(), count);
  linear_backward(pass, w.gate_proj, "gate_proj", LinearKind::MlpGate, normed, d_gate.data(), d_normed, false);
  linear_backward(pass, w.up_proj, "up_proj", LinearKind::MlpUp, normed, d_up.data(), d_normed, true);
}

}  // namespace dt
