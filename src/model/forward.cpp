#include "model/forward.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"
#include "ops/activation.h"
#include "ops/attention.h"
#include "ops/conv.h"
#include "ops/delta_rule.h"
#include "ops/linear.h"
#include "ops/norm.h"
#include "ops/rope.h"

namespace dt {
namespace {

// Grows a scratch buffer to at least `count` floats (never shrinks, so steady decoding reuses it).
float* take(std::vector<float>& buffer, int64_t count) {
  if (buffer.size() < size_t(count)) buffer.resize(size_t(count));
  return buffer.data();
}

using LayerLora = LoraAdapter::LayerModules;
const LayerLora kNoLora{};

const LoraModule* lora_of(const LayerLora& lora, LinearKind kind) {
  const auto& slot = lora[size_t(kind)];
  return slot ? &*slot : nullptr;
}

// y[T, out] = x[T, in] W^T, plus scaling (x A^T) B^T with a LoRA module, after checking W is
// [out, in] (a mismatch would read out of bounds).
void project(const Tensor& weight, const char* name, const LoraModule* lora, const float* x, int64_t tokens,
             int64_t in, int64_t out, float* y) {
  if (weight.rank() != 2 || weight.dim(0) != out || weight.dim(1) != in)
    fail("forward: {} has shape {}, expected [{}, {}]", name, shape_string(weight.shape()), out, in);
  if (lora)
    lora_linear(x, tokens, weight, {lora->a.data(), lora->b.data(), lora->rank, float(lora->scaling)}, y);
  else
    linear(x, tokens, weight, y);
}

// Every module must sit on a linear the model has, with factors of that linear's shape (lora_linear
// reads them unchecked).
void check_adapter_fits(const ModelConfig& config, const LoraAdapter& adapter) {
  if (adapter.layer_count() != config.num_hidden_layers)
    fail("forward: the LoRA adapter has {} layers, the model {}", adapter.layer_count(), config.num_hidden_layers);
  for (const LoraModule* module : adapter.modules()) {
    const std::string name = lora_module_name(StackPrefix::TextOnly, module->layer, module->kind);
    const LinearShape shape = linear_shape(config, module->kind);
    if (!layer_has_linear(config.layer_types.at(size_t(module->layer)), module->kind))
      fail("forward: LoRA module {} adapts a linear that layer {} does not have", name, module->layer);
    if (module->in != shape.in || module->out != shape.out || module->rank <= 0 ||
        module->a.size() != size_t(module->rank * shape.in) || module->b.size() != size_t(shape.out * module->rank))
      fail("forward: LoRA module {} (rank {}, A {} values, B {} values) does not fit the model's [{}, {}] linear", name,
           module->rank, module->a.size(), module->b.size(), shape.out, shape.in);
  }
}

const float* f32_of(const Tensor& tensor, const char* name, int64_t numel) {
  if (tensor.numel() != numel)
    fail("forward: {} has shape {}, expected {} values", name, shape_string(tensor.shape()), numel);
  return tensor.f32();
}

// Makes room for `needed` positions per kv head, at least doubling so appends stay amortised O(1).
void reserve_kv(LayerCache& cache, int64_t kv_heads, int64_t head_dim, int64_t used, int64_t needed) {
  if (needed <= cache.kv_capacity) return;
  const int64_t capacity = std::max({needed, 2 * cache.kv_capacity, int64_t(64)});
  for (std::vector<float>* rows : {&cache.keys, &cache.values}) {
    std::vector<float> grown(size_t(kv_heads * capacity * head_dim));
    for (int64_t j = 0; j < kv_heads; ++j)
      std::copy_n(rows->data() + j * cache.kv_capacity * head_dim, used * head_dim,
                  grown.data() + j * capacity * head_dim);
    *rows = std::move(grown);
  }
  cache.kv_capacity = capacity;
}

// Gated full attention (spec §3.4) of normed [T, H] into mixer_out [T, H].
void attention_layer(const ModelConfig& c, const AttentionWeights& w, const LayerLora& lora, int64_t tokens,
                     int64_t past, LayerCache& cache, ForwardScratch& s) {
  const int64_t H = c.hidden_size, nq = c.num_attention_heads, nkv = c.num_key_value_heads, hd = c.head_dim;
  const int64_t q_width = c.q_proj_out();
  float* projected = take(s.projection, tokens * q_width);
  float* queries = take(s.queries, tokens * nq * hd);
  float* keys = take(s.keys, tokens * nkv * hd);
  float* values = take(s.values, tokens * nkv * hd);
  project(w.q_proj, "q_proj", lora_of(lora, LinearKind::AttnQ), s.normed.data(), tokens, H, q_width, projected);
  project(w.k_proj, "k_proj", lora_of(lora, LinearKind::AttnK), s.normed.data(), tokens, H, nkv * hd, keys);
  project(w.v_proj, "v_proj", lora_of(lora, LinearKind::AttnV), s.normed.data(), tokens, H, nkv * hd, values);

  // With the output gate, q_proj holds per head [query (hd) | gate (hd)].
  float* gate = c.attn_output_gate ? take(s.attn_gate, tokens * nq * hd) : nullptr;
  if (c.attn_output_gate) {
    for (int64_t t = 0; t < tokens; ++t)
      for (int64_t h = 0; h < nq; ++h) {
        const float* head = projected + t * q_width + h * 2 * hd;
        std::copy_n(head, hd, queries + (t * nq + h) * hd);
        std::copy_n(head + hd, hd, gate + (t * nq + h) * hd);
      }
  } else {
    std::copy_n(projected, tokens * nq * hd, queries);
  }

  const float eps = float(c.rms_norm_eps);
  rms_norm_zero_centred(queries, tokens * nq, hd, f32_of(w.q_norm, "q_norm", hd), eps, queries);
  rms_norm_zero_centred(keys, tokens * nkv, hd, f32_of(w.k_norm, "k_norm", hd), eps, keys);
  apply_rope(queries, tokens, nq, hd, c.rotary_dim(), c.rope_theta, past);
  apply_rope(keys, tokens, nkv, hd, c.rotary_dim(), c.rope_theta, past);

  reserve_kv(cache, nkv, hd, past, past + tokens);
  for (int64_t j = 0; j < nkv; ++j)
    for (int64_t t = 0; t < tokens; ++t) {
      const int64_t row = (j * cache.kv_capacity + past + t) * hd;
      std::copy_n(keys + (t * nkv + j) * hd, hd, cache.keys.data() + row);
      std::copy_n(values + (t * nkv + j) * hd, hd, cache.values.data() + row);
    }

  AttentionProblem problem;
  problem.tokens = tokens;
  problem.past = past;
  problem.q_heads = nq;
  problem.kv_heads = nkv;
  problem.head_dim = hd;
  problem.kv_capacity = cache.kv_capacity;
  problem.scale = 1.0f / std::sqrt(float(hd));
  problem.q = queries;
  problem.keys = cache.keys.data();
  problem.values = cache.values.data();
  float* attended = take(s.mixed, tokens * nq * hd);
  causal_attention(problem, attended);
  if (c.attn_output_gate) multiply_by_sigmoid(attended, gate, tokens * nq * hd);
  project(w.o_proj, "o_proj", lora_of(lora, LinearKind::AttnO), attended, tokens, nq * hd, H, s.mixer_out.data());
}

// Gated DeltaNet (spec §3.6) of normed [T, H] into mixer_out [T, H].
void deltanet_layer(const ModelConfig& c, const DeltaNetWeights& w, const LayerLora& lora, int64_t tokens,
                    DeltaRuleMode mode, LayerCache& cache, ForwardScratch& s) {
  const int64_t H = c.hidden_size, nk = c.linear_num_key_heads, nv = c.linear_num_value_heads;
  const int64_t dk = c.linear_key_head_dim, dv = c.linear_value_head_dim, Kc = c.linear_conv_kernel_dim;
  const int64_t conv_dim = c.conv_dim(), key_dim = c.key_dim(), value_dim = c.value_dim();
  float* projected = take(s.projection, tokens * conv_dim);
  float* z = take(s.z, tokens * value_dim);
  float* b = take(s.b, tokens * nv);
  float* a = take(s.a, tokens * nv);
  project(w.in_proj_qkv, "in_proj_qkv", lora_of(lora, LinearKind::GdnQkv), s.normed.data(), tokens, H, conv_dim,
          projected);
  project(w.in_proj_z, "in_proj_z", lora_of(lora, LinearKind::GdnZ), s.normed.data(), tokens, H, value_dim, z);
  project(w.in_proj_b, "in_proj_b", lora_of(lora, LinearKind::GdnB), s.normed.data(), tokens, H, nv, b);
  project(w.in_proj_a, "in_proj_a", lora_of(lora, LinearKind::GdnA), s.normed.data(), tokens, H, nv, a);

  float* mixed_in = take(s.conv_out, tokens * conv_dim);
  causal_conv_silu(projected, tokens, conv_dim, f32_of(w.conv1d, "conv1d", conv_dim * Kc), Kc,
                   cache.conv_state.data(), mixed_in);
  // q and k heads sit next to each other in each row: 2 * nk vectors of dk.
  for (int64_t t = 0; t < tokens; ++t) l2_normalize(mixed_in + t * conv_dim, 2 * nk, dk, 1e-6f);

  float* beta = take(s.beta, tokens * nv);
  float* decay = take(s.decay, tokens * nv);
  gated_delta_gates(b, a, tokens, nv, f32_of(w.A_log, "A_log", nv), f32_of(w.dt_bias, "dt_bias", nv), beta,
                    decay);

  DeltaRuleProblem problem;
  problem.tokens = tokens;
  problem.key_heads = nk;
  problem.value_heads = nv;
  problem.key_dim = dk;
  problem.value_dim = dv;
  problem.q = mixed_in;
  problem.k = mixed_in + key_dim;
  problem.v = mixed_in + 2 * key_dim;
  problem.q_stride = problem.k_stride = problem.v_stride = conv_dim;
  problem.beta = beta;
  problem.g = decay;
  problem.scale = 1.0f / std::sqrt(float(dk));
  float* out = take(s.mixed, tokens * value_dim);
  if (tokens == 1 || mode == DeltaRuleMode::Recurrent)
    delta_rule_recurrent(problem, cache.recurrent_state.data(), out);
  else
    delta_rule_chunked(problem, cache.recurrent_state.data(), out);

  gated_rms_norm(out, z, tokens * nv, dv, f32_of(w.norm, "linear_attn.norm", dv), float(c.rms_norm_eps), out);
  project(w.out_proj, "out_proj", lora_of(lora, LinearKind::GdnOut), out, tokens, value_dim, H, s.mixer_out.data());
}

// SwiGLU MLP of normed [T, H] into mixer_out [T, H].
void mlp_layer(const ModelConfig& c, const MlpWeights& w, const LayerLora& lora, int64_t tokens, ForwardScratch& s) {
  const int64_t H = c.hidden_size, I = c.intermediate_size;
  float* gate = take(s.mlp_gate, tokens * I);
  float* up = take(s.mlp_up, tokens * I);
  project(w.gate_proj, "gate_proj", lora_of(lora, LinearKind::MlpGate), s.normed.data(), tokens, H, I, gate);
  project(w.up_proj, "up_proj", lora_of(lora, LinearKind::MlpUp), s.normed.data(), tokens, H, I, up);
  swiglu(gate, up, gate, tokens * I);
  project(w.down_proj, "down_proj", lora_of(lora, LinearKind::MlpDown), gate, tokens, I, H, s.mixer_out.data());
}

void add_into(float* target, const float* addend, int64_t count) {
  for (int64_t i = 0; i < count; ++i) target[i] += addend[i];
}

}  // namespace

InferenceState new_inference_state(const ModelConfig& config) {
  InferenceState state;
  state.layers.resize(config.layer_types.size());
  for (size_t i = 0; i < state.layers.size(); ++i) {
    if (config.layer_types[i] != LayerType::LinearAttention) continue;
    LayerCache& cache = state.layers[i];
    cache.conv_state.assign(size_t((config.linear_conv_kernel_dim - 1) * config.conv_dim()), 0.0f);
    cache.recurrent_state.assign(
        size_t(config.linear_num_value_heads * config.linear_key_head_dim * config.linear_value_head_dim), 0.0f);
  }
  return state;
}

Tensor forward(const ModelWeights& weights, std::span<const int32_t> tokens, InferenceState& state,
               const ForwardOptions& options) {
  const ModelConfig& c = weights.config;
  const int64_t T = int64_t(tokens.size()), H = c.hidden_size;
  if (T == 0) fail("forward: no input tokens");
  if (state.layers.size() != weights.layers.size())
    fail("forward: inference state has {} layers, the model {}", state.layers.size(), weights.layers.size());
  for (size_t i = 0; i < state.layers.size(); ++i) {
    const LayerCache& cache = state.layers[i];
    if (weights.layers[i].type == LayerType::LinearAttention &&
        (cache.conv_state.size() != size_t((c.linear_conv_kernel_dim - 1) * c.conv_dim()) ||
         cache.recurrent_state.size() !=
             size_t(c.linear_num_value_heads * c.linear_key_head_dim * c.linear_value_head_dim)))
      fail("forward: inference state of layer {} was made for another model", i);
  }
  if (options.adapter) check_adapter_fits(c, *options.adapter);
  ForwardScratch& s = state.scratch;

  // Embedding rows in their stored dtype.
  const Tensor& embedding = weights.embed_tokens;
  if (embedding.rank() != 2 || embedding.dim(1) != H)
    fail("forward: embed_tokens has shape {}, expected [vocab, {}]", shape_string(embedding.shape()), H);
  const size_t row_bytes = size_t(H) * size_t(dtype_bits(embedding.dtype()) / 8);
  float* hidden = take(s.hidden, T * H);
  for (int64_t t = 0; t < T; ++t) {
    const int32_t id = tokens[size_t(t)];
    if (id < 0 || id >= embedding.dim(0))
      fail("forward: token id {} at position {} is outside the vocabulary [0, {})", id, t, embedding.dim(0));
    convert_to_f32(embedding.dtype(), static_cast<const char*>(embedding.data()) + size_t(id) * row_bytes,
                   hidden + t * H, size_t(H));
  }

  take(s.normed, T * H);
  take(s.mixer_out, T * H);
  const float eps = float(c.rms_norm_eps);
  for (size_t i = 0; i < weights.layers.size(); ++i) {
    const LayerWeights& layer = weights.layers[i];
    LayerCache& cache = state.layers[i];
    const LayerLora& lora = options.adapter ? options.adapter->layer(int(i)) : kNoLora;
    rms_norm_zero_centred(hidden, T, H, f32_of(layer.input_layernorm, "input_layernorm", H), eps, s.normed.data());
    if (layer.type == LayerType::FullAttention)
      attention_layer(c, layer.attention, lora, T, state.position, cache, s);
    else
      deltanet_layer(c, layer.deltanet, lora, T, options.delta_rule, cache, s);
    add_into(hidden, s.mixer_out.data(), T * H);
    rms_norm_zero_centred(hidden, T, H, f32_of(layer.post_attention_layernorm, "post_attention_layernorm", H), eps,
                          s.normed.data());
    mlp_layer(c, layer.mlp, lora, T, s);
    add_into(hidden, s.mixer_out.data(), T * H);
  }
  state.position += T;

  const int64_t rows = options.all_logits ? T : 1;
  const float* last_rows = hidden + (T - rows) * H;
  rms_norm_zero_centred(last_rows, rows, H, f32_of(weights.final_norm, "norm", H), eps, s.normed.data());
  const Tensor& head = weights.lm_head.empty() ? weights.embed_tokens : weights.lm_head;
  Tensor logits = Tensor::zeros(DType::F32, {rows, head.dim(0)});
  project(head, "lm_head", nullptr, s.normed.data(), rows, H, head.dim(0), logits.f32());
  return logits;
}

}  // namespace dt
