#include "model/weights.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <set>

#include "core/error.h"

namespace dt {

namespace {

// Shared by the const and mutable accessors.
template <typename Layer>
auto& linear_of(Layer& layer, LinearKind kind) {
  if (!layer_has_linear(layer.type, kind))
    fail("internal error: a {} layer has no {}", layer_type_name(layer.type), linear_module_path(kind));
  switch (kind) {
    case LinearKind::AttnQ: return layer.attention.q_proj;
    case LinearKind::AttnK: return layer.attention.k_proj;
    case LinearKind::AttnV: return layer.attention.v_proj;
    case LinearKind::AttnO: return layer.attention.o_proj;
    case LinearKind::GdnQkv: return layer.deltanet.in_proj_qkv;
    case LinearKind::GdnZ: return layer.deltanet.in_proj_z;
    case LinearKind::GdnB: return layer.deltanet.in_proj_b;
    case LinearKind::GdnA: return layer.deltanet.in_proj_a;
    case LinearKind::GdnOut: return layer.deltanet.out_proj;
    case LinearKind::MlpGate: return layer.mlp.gate_proj;
    case LinearKind::MlpUp: return layer.mlp.up_proj;
    case LinearKind::MlpDown: return layer.mlp.down_proj;
  }
  fail("internal error: unknown linear kind {}", int(kind));
}

}  // namespace

const Tensor& LayerWeights::linear(LinearKind kind) const { return linear_of(*this, kind); }
Tensor& LayerWeights::linear(LinearKind kind) { return linear_of(*this, kind); }

namespace {

constexpr size_t kMaxListed = 8;

// "a, b, c" for the first few names, then "... and N more".
std::string name_list(const std::vector<std::string>& names) {
  std::vector<std::string> shown(names.begin(), names.begin() + std::min(names.size(), kMaxListed));
  std::string text = fmt::format("{}", fmt::join(shown, ", "));
  if (names.size() > kMaxListed) text += fmt::format(" ... and {} more", names.size() - kMaxListed);
  return text;
}

StackPrefix detect_prefix(const Checkpoint& checkpoint, const std::string& source) {
  const bool multimodal = checkpoint.contains("model.language_model.embed_tokens.weight");
  const bool text_only = checkpoint.contains("model.embed_tokens.weight");
  if (multimodal && text_only)
    fail("{}: checkpoint holds both model.language_model.embed_tokens.weight and model.embed_tokens.weight; "
         "cannot tell which text stack to load", source);
  if (!multimodal && !text_only)
    fail("{}: checkpoint has no embed_tokens.weight under model.language_model. or model. "
         "(is this a Qwen3.5 model directory?)", source);
  return multimodal ? StackPrefix::Multimodal : StackPrefix::TextOnly;
}

// Per-channel tensors are used in f32 by every kernel; converting once here keeps them simple.
bool converted_to_f32(WeightRole role) {
  switch (role) {
    case WeightRole::Embedding:
    case WeightRole::LmHead:
    case WeightRole::Linear: return false;
    default: return true;
  }
}

// Checks names, shapes and dtypes of the whole checkpoint at once so the user sees every problem.
void check_checkpoint(const std::vector<WeightSpec>& specs, const Checkpoint& checkpoint, const std::string& source) {
  std::vector<std::string> missing, problems;
  std::set<std::string> expected;
  for (const WeightSpec& spec : specs) {
    expected.insert(spec.name);
    if (!checkpoint.contains(spec.name)) {
      missing.push_back(spec.name);
      continue;
    }
    const TensorInfo& info = checkpoint.info(spec.name);
    const std::string file = checkpoint.file_of(spec.name).filename().string();
    if (info.shape != spec.shape)
      problems.push_back(fmt::format("{} in {}: expected shape {}, found {}", spec.name, file,
                                     shape_string(spec.shape), shape_string(info.shape)));
    if (!is_float_storage(info.dtype))
      problems.push_back(fmt::format("{} in {}: dtype {} is not supported (expected F32, BF16 or F16)", spec.name,
                                     file, dtype_name(info.dtype)));
  }
  std::vector<std::string> unexpected;
  for (const std::string& name : checkpoint.names())
    if (!expected.count(name) && !is_ignored_checkpoint_tensor(name)) unexpected.push_back(name);

  if (missing.empty() && problems.empty() && unexpected.empty()) return;
  std::string message = fmt::format("{}: checkpoint does not match its config.json:", source);
  if (!missing.empty()) message += fmt::format("\n  {} missing tensor(s): {}", missing.size(), name_list(missing));
  for (size_t i = 0; i < std::min(problems.size(), kMaxListed); ++i) message += "\n  " + problems[i];
  if (problems.size() > kMaxListed) message += fmt::format("\n  ... and {} more problems", problems.size() - kMaxListed);
  if (!unexpected.empty())
    message += fmt::format("\n  {} unexpected tensor(s) not part of a Qwen3.5 text model with this config: {}",
                           unexpected.size(), name_list(unexpected));
  throw Error(message);
}

}  // namespace

ModelWeights load_model(const ModelConfig& config, const Checkpoint& checkpoint, const std::string& source) {
  validate_config(config, source);
  ModelWeights weights;
  weights.config = config;
  weights.prefix = detect_prefix(checkpoint, source);
  const bool has_lm_head = checkpoint.contains("lm_head.weight");
  if (!has_lm_head && !config.tie_word_embeddings)
    fail("{}: lm_head.weight is missing and config.json has tie_word_embeddings false", source);
  const auto specs = weight_specs(config, weights.prefix, has_lm_head);
  check_checkpoint(specs, checkpoint, source);

  weights.layers.resize(size_t(config.num_hidden_layers));
  for (size_t i = 0; i < weights.layers.size(); ++i) weights.layers[i].type = config.layer_types[i];
  for (const WeightSpec& spec : specs) {
    Tensor tensor = checkpoint.get(spec.name);
    if (converted_to_f32(spec.role)) {
      Shape shape = spec.shape;
      if (spec.role == WeightRole::Conv) shape = {config.conv_dim(), config.linear_conv_kernel_dim};
      tensor = Tensor::from_f32(DType::F32, shape, tensor.to_f32_vector());
    }
    LayerWeights* layer = spec.layer >= 0 ? &weights.layers[size_t(spec.layer)] : nullptr;
    switch (spec.role) {
      case WeightRole::Embedding: weights.embed_tokens = tensor; break;
      case WeightRole::LmHead: weights.lm_head = tensor; break;
      case WeightRole::FinalNorm: weights.final_norm = tensor; break;
      case WeightRole::InputNorm: layer->input_layernorm = tensor; break;
      case WeightRole::PostAttentionNorm: layer->post_attention_layernorm = tensor; break;
      case WeightRole::QNorm: layer->attention.q_norm = tensor; break;
      case WeightRole::KNorm: layer->attention.k_norm = tensor; break;
      case WeightRole::Conv: layer->deltanet.conv1d = tensor; break;
      case WeightRole::ALog: layer->deltanet.A_log = tensor; break;
      case WeightRole::DtBias: layer->deltanet.dt_bias = tensor; break;
      case WeightRole::GatedNorm: layer->deltanet.norm = tensor; break;
      case WeightRole::Linear: layer->linear(*spec.linear) = tensor; break;
    }
  }
  // HF ties the head to the embedding whenever the config says so, even if a copy is stored.
  weights.lm_head_stored = has_lm_head && !config.tie_word_embeddings;
  if (!weights.lm_head_stored) weights.lm_head = weights.embed_tokens;
  return weights;
}

ModelWeights load_model(const std::filesystem::path& model_dir) {
  const ModelConfig config = load_config(model_dir);
  const Checkpoint checkpoint = Checkpoint::open(model_dir);
  return load_model(config, checkpoint, model_dir.string());
}

}  // namespace dt
