#include "model/shapes.h"

#include <fmt/format.h>

#include <array>

#include "core/error.h"

namespace dt {

namespace {

struct LinearKindInfo {
  LinearKind kind;
  std::string_view module_path;
  std::string_view leaf;
};

constexpr std::array<LinearKindInfo, kLinearKindCount> kLinearKinds = {{
    {LinearKind::AttnQ, "self_attn.q_proj", "q_proj"},
    {LinearKind::AttnK, "self_attn.k_proj", "k_proj"},
    {LinearKind::AttnV, "self_attn.v_proj", "v_proj"},
    {LinearKind::AttnO, "self_attn.o_proj", "o_proj"},
    {LinearKind::GdnQkv, "linear_attn.in_proj_qkv", "in_proj_qkv"},
    {LinearKind::GdnZ, "linear_attn.in_proj_z", "in_proj_z"},
    {LinearKind::GdnB, "linear_attn.in_proj_b", "in_proj_b"},
    {LinearKind::GdnA, "linear_attn.in_proj_a", "in_proj_a"},
    {LinearKind::GdnOut, "linear_attn.out_proj", "out_proj"},
    {LinearKind::MlpGate, "mlp.gate_proj", "gate_proj"},
    {LinearKind::MlpUp, "mlp.up_proj", "up_proj"},
    {LinearKind::MlpDown, "mlp.down_proj", "down_proj"},
}};

const LinearKindInfo& kind_info(LinearKind kind) { return kLinearKinds.at(size_t(kind)); }

bool is_attention_kind(LinearKind kind) { return kind <= LinearKind::AttnO; }
bool is_deltanet_kind(LinearKind kind) { return kind >= LinearKind::GdnQkv && kind <= LinearKind::GdnOut; }

}  // namespace

std::string_view linear_module_path(LinearKind kind) { return kind_info(kind).module_path; }
std::string_view linear_leaf_name(LinearKind kind) { return kind_info(kind).leaf; }

std::optional<LinearKind> parse_linear_leaf(std::string_view leaf) {
  for (const auto& info : kLinearKinds)
    if (info.leaf == leaf) return info.kind;
  return std::nullopt;
}

bool layer_has_linear(LayerType type, LinearKind kind) {
  if (is_attention_kind(kind)) return type == LayerType::FullAttention;
  if (is_deltanet_kind(kind)) return type == LayerType::LinearAttention;
  return true;
}

LinearShape linear_shape(const ModelConfig& c, LinearKind kind) {
  const int64_t H = c.hidden_size;
  switch (kind) {
    case LinearKind::AttnQ: return {c.q_proj_out(), H};
    case LinearKind::AttnK:
    case LinearKind::AttnV: return {c.num_key_value_heads * c.head_dim, H};
    case LinearKind::AttnO: return {H, c.num_attention_heads * c.head_dim};
    case LinearKind::GdnQkv: return {c.conv_dim(), H};
    case LinearKind::GdnZ: return {c.value_dim(), H};
    case LinearKind::GdnB:
    case LinearKind::GdnA: return {c.linear_num_value_heads, H};
    case LinearKind::GdnOut: return {H, c.value_dim()};
    case LinearKind::MlpGate:
    case LinearKind::MlpUp: return {c.intermediate_size, H};
    case LinearKind::MlpDown: return {H, c.intermediate_size};
  }
  fail("internal error: unknown linear kind {}", int(kind));
}

std::string_view stack_prefix_string(StackPrefix prefix) {
  return prefix == StackPrefix::Multimodal ? "model.language_model." : "model.";
}

std::vector<WeightSpec> weight_specs(const ModelConfig& c, StackPrefix prefix, bool include_lm_head) {
  const std::string stack(stack_prefix_string(prefix));
  std::vector<WeightSpec> specs;
  specs.push_back({stack + "embed_tokens.weight", {c.vocab_size, c.hidden_size}, WeightRole::Embedding, -1, std::nullopt});
  for (int layer = 0; layer < int(c.num_hidden_layers); ++layer) {
    const LayerType type = c.layer_types.at(size_t(layer));
    const std::string base = fmt::format("{}layers.{}.", stack, layer);
    auto add = [&](std::string suffix, Shape shape, WeightRole role) {
      specs.push_back({base + suffix, std::move(shape), role, layer, std::nullopt});
    };
    auto add_linear = [&](LinearKind kind) {
      const LinearShape shape = linear_shape(c, kind);
      specs.push_back({fmt::format("{}{}.weight", base, linear_module_path(kind)), {shape.out, shape.in},
                       WeightRole::Linear, layer, kind});
    };
    add("input_layernorm.weight", {c.hidden_size}, WeightRole::InputNorm);
    if (type == LayerType::FullAttention) {
      for (LinearKind kind : {LinearKind::AttnQ, LinearKind::AttnK, LinearKind::AttnV, LinearKind::AttnO})
        add_linear(kind);
      add("self_attn.q_norm.weight", {c.head_dim}, WeightRole::QNorm);
      add("self_attn.k_norm.weight", {c.head_dim}, WeightRole::KNorm);
    } else {
      for (LinearKind kind : {LinearKind::GdnQkv, LinearKind::GdnZ, LinearKind::GdnB, LinearKind::GdnA})
        add_linear(kind);
      add("linear_attn.conv1d.weight", {c.conv_dim(), 1, c.linear_conv_kernel_dim}, WeightRole::Conv);
      add("linear_attn.A_log", {c.linear_num_value_heads}, WeightRole::ALog);
      add("linear_attn.dt_bias", {c.linear_num_value_heads}, WeightRole::DtBias);
      add("linear_attn.norm.weight", {c.linear_value_head_dim}, WeightRole::GatedNorm);
      add_linear(LinearKind::GdnOut);
    }
    add("post_attention_layernorm.weight", {c.hidden_size}, WeightRole::PostAttentionNorm);
    for (LinearKind kind : {LinearKind::MlpGate, LinearKind::MlpUp, LinearKind::MlpDown}) add_linear(kind);
  }
  specs.push_back({stack + "norm.weight", {c.hidden_size}, WeightRole::FinalNorm, -1, std::nullopt});
  if (include_lm_head) specs.push_back({"lm_head.weight", {c.vocab_size, c.hidden_size}, WeightRole::LmHead, -1, std::nullopt});
  return specs;
}

bool is_ignored_checkpoint_tensor(const std::string& name) {
  return name.starts_with("model.visual.") || name.starts_with("mtp.");
}

}  // namespace dt
