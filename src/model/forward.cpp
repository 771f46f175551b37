#include "model/forward.h"

#include <algorithm>

#include "core/error.h"
#include "model/layer_stages.h"
#include "ops/attention.h"
#include "ops/norm.h"

namespace dt {
namespace {

// Grows a scratch buffer to at least `count` floats (never shrinks, so steady decoding reuses it).
float* take(std::vector<float>& buffer, int64_t count) {
  if (buffer.size() < size_t(count)) buffer.resize(size_t(count));
  return buffer.data();
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
  const int64_t nq = c.num_attention_heads, nkv = c.num_key_value_heads, hd = c.head_dim;
  float* projected = take(s.projection, tokens * c.q_proj_out());
  float* queries = take(s.queries, tokens * nq * hd);
  float* keys = take(s.keys, tokens * nkv * hd);
  float* values = take(s.values, tokens * nkv * hd);
  float* gate = c.attn_output_gate ? take(s.attn_gate, tokens * nq * hd) : nullptr;
  attention_projections(c, w, lora, s.normed.data(), tokens, projected, keys, values);
  split_query_gate(c, projected, tokens, queries, gate);
  normalize_and_rotate(c, w, queries, keys, tokens, kSingleExample, past);

  reserve_kv(cache, nkv, hd, past, past + tokens);
  rows_to_heads(keys, tokens, nkv, hd, cache.keys.data(), cache.kv_capacity, past);
  rows_to_heads(values, tokens, nkv, hd, cache.values.data(), cache.kv_capacity, past);
  float* attended = take(s.mixed, tokens * nq * hd);
  causal_attention(
      attention_problem(c, tokens, past, cache.kv_capacity, queries, cache.keys.data(), cache.values.data()),
      attended);
  attention_output(c, w, lora, attended, gate, tokens, s.mixer_out.data());
}

// Gated DeltaNet (spec §3.6) of normed [T, H] into mixer_out [T, H].
void deltanet_layer(const ModelConfig& c, const DeltaNetWeights& w, const LayerLora& lora, int64_t tokens,
                    DeltaRuleMode mode, LayerCache& cache, ForwardScratch& s) {
  const int64_t nv = c.linear_num_value_heads, conv_dim = c.conv_dim(), value_dim = c.value_dim();
  float* projected = take(s.projection, tokens * conv_dim);
  float* z = take(s.z, tokens * value_dim);
  float* b = take(s.b, tokens * nv);
  float* a = take(s.a, tokens * nv);
  deltanet_projections(c, w, lora, s.normed.data(), tokens, projected, z, b, a);

  float* mixed = take(s.conv_out, tokens * conv_dim);
  float* beta = take(s.beta, tokens * nv);
  float* decay = take(s.decay, tokens * nv);
  deltanet_rule_inputs(c, w, projected, b, a, tokens, cache.conv_state.data(), mixed, mixed, beta, decay);
  float* core = take(s.mixed, tokens * value_dim);
  run_delta_rule(delta_rule_problem(c, mixed, beta, decay, tokens), mode, cache.recurrent_state.data(), core);
  deltanet_output(c, w, lora, core, z, tokens, core, s.mixer_out.data());
}

// SwiGLU MLP of normed [T, H] into mixer_out [T, H].
void mlp_layer(const ModelConfig& c, const MlpWeights& w, const LayerLora& lora, int64_t tokens, ForwardScratch& s) {
  const int64_t I = c.intermediate_size;
  float* gate = take(s.mlp_gate, tokens * I);
  mlp_block(c, w, lora, s.normed.data(), tokens, gate, take(s.mlp_up, tokens * I), gate, s.mixer_out.data());
}

void add_into(float* target, const float* addend, int64_t count) {
  for (int64_t i = 0; i < count; ++i) target[i] += addend[i];
}

}  // namespace

void check_adapter_fits(const ModelConfig& config, const LoraAdapter& adapter, std::string_view context) {
  if (adapter.layer_count() != config.num_hidden_layers)
    fail("{}: the LoRA adapter has {} layers, the model {}", context, adapter.layer_count(), config.num_hidden_layers);
  for (const LoraModule* module : adapter.modules()) {
    const std::string name = lora_module_name(StackPrefix::TextOnly, module->layer, module->kind);
    const LinearShape shape = linear_shape(config, module->kind);
    if (!layer_has_linear(config.layer_types.at(size_t(module->layer)), module->kind))
      fail("{}: LoRA module {} adapts a linear that layer {} does not have", context, name, module->layer);
    if (module->in != shape.in || module->out != shape.out || module->rank <= 0 ||
        module->a.size() != size_t(module->rank * shape.in) || module->b.size() != size_t(shape.out * module->rank))
      fail("{}: LoRA module {} (rank {}, A {} values, B {} values) does not fit the model's [{}, {}] linear", context,
           name, module->rank, module->a.size(), module->b.size(), shape.out, shape.in);
  }
}

void embed_tokens(const ModelWeights& weights, std::span<const int32_t> tokens, float* hidden, std::string_view context) {
  const Tensor& embedding = weights.embed_tokens;
  const int64_t H = weights.config.hidden_size;
  if (embedding.rank() != 2 || embedding.dim(1) != H)
    fail("{}: embed_tokens has shape {}, expected [vocab, {}]", context, shape_string(embedding.shape()), H);
  const size_t row_bytes = size_t(H) * size_t(dtype_bits(embedding.dtype()) / 8);
  for (size_t t = 0; t < tokens.size(); ++t) {
    const int32_t id = tokens[t];
    if (id < 0 || id >= embedding.dim(0))
      fail("{}: token id {} at position {} is outside the vocabulary [0, {})", context, id, t, embedding.dim(0));
    convert_to_f32(embedding.dtype(), static_cast<const char*>(embedding.data()) + size_t(id) * row_bytes,
                   hidden + int64_t(t) * H, size_t(H));
  }
}

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
  if (options.adapter) check_adapter_fits(c, *options.adapter, "forward");
  ForwardScratch& s = state.scratch;

  float* hidden = take(s.hidden, T * H);
  embed_tokens(weights, tokens, hidden, "forward");

  take(s.normed, T * H);
  take(s.mixer_out, T * H);
  const float eps = float(c.rms_norm_eps);
  for (size_t i = 0; i < weights.layers.size(); ++i) {
    const LayerWeights& layer = weights.layers[i];
    LayerCache& cache = state.layers[i];
    const LayerLora& lora = layer_lora(options.adapter, int(i));
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
