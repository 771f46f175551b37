#include "lora/adapter_io.h"

#include <cmath>
#include <map>
#include <variant>

#include <fmt/ranges.h>

#include "core/error.h"
#include "io/mapped_file.h"
#include "io/safetensors.h"
#include "lora/peft_config.h"

namespace dt {

namespace {

constexpr std::string_view kWrapperPrefix = "base_model.model.";

struct LoraKey {
  StackPrefix key_namespace;
  int layer;
  LinearKind kind;
  LoraFactor factor;
};

std::string known_module_paths() {
  std::vector<std::string_view> paths;
  for (int kind = 0; kind < kLinearKindCount; ++kind) paths.push_back(linear_module_path(LinearKind(kind)));
  return fmt::format("{}", fmt::join(paths, ", "));
}

// Parses "base_model.model.<stack>layers.<N>.<module path>.lora_{A,B}.weight", checking the layer
// and module against the model. Returns the parsed key or what is wrong with it.
std::variant<LoraKey, std::string> parse_lora_key(std::string_view key, const ModelConfig& config) {
  const std::string expected_form =
      "expected base_model.model.model.layers.<N>.<module>.lora_A.weight or .lora_B.weight (or the "
      "base_model.model.model.language_model.layers.<N>. namespace)";
  auto unknown = [&] { return fmt::format("unknown key; {}", expected_form); };
  if (!key.starts_with(kWrapperPrefix)) return unknown();
  std::string_view rest = key.substr(kWrapperPrefix.size());
  LoraKey parsed{};
  bool matched_stack = false;
  for (StackPrefix prefix : {StackPrefix::Multimodal, StackPrefix::TextOnly}) {
    const std::string stack = std::string(stack_prefix_string(prefix)) + "layers.";
    if (rest.starts_with(stack)) {
      parsed.key_namespace = prefix;
      rest.remove_prefix(stack.size());
      matched_stack = true;
      break;
    }
  }
  if (!matched_stack) return unknown();
  const size_t digits = rest.find_first_not_of("0123456789");
  if (digits == 0 || digits == std::string_view::npos || rest[digits] != '.' || (digits > 1 && rest[0] == '0') ||
      digits > 9)
    return unknown();
  parsed.layer = std::stoi(std::string(rest.substr(0, digits)));
  rest.remove_prefix(digits + 1);

  if (rest.ends_with(".lora_A.weight")) {
    parsed.factor = LoraFactor::A;
    rest.remove_suffix(std::string_view(".lora_A.weight").size());
  } else if (rest.ends_with(".lora_B.weight")) {
    parsed.factor = LoraFactor::B;
    rest.remove_suffix(std::string_view(".lora_B.weight").size());
  } else if (rest.ends_with(".lora_B.bias")) {
    return std::string("LoRA biases (lora_B.bias, lora_bias=true) are not supported");
  } else {
    return unknown();
  }

  std::optional<LinearKind> kind;
  for (int candidate = 0; candidate < kLinearKindCount; ++candidate)
    if (linear_module_path(LinearKind(candidate)) == rest) kind = LinearKind(candidate);
  if (!kind) return fmt::format("unknown module \"{}\"; expected one of {}", rest, known_module_paths());
  parsed.kind = *kind;
  if (parsed.layer >= config.num_hidden_layers)
    return fmt::format("layer {} is out of range (the model has {} layers)", parsed.layer, config.num_hidden_layers);
  const LayerType type = config.layer_types.at(size_t(parsed.layer));
  if (!layer_has_linear(type, parsed.kind))
    return fmt::format("layer {} is a {} layer and has no {}", parsed.layer, layer_type_name(type),
                       linear_leaf_name(parsed.kind));
  return parsed;
}

struct ModuleTensors {
  const TensorInfo* a = nullptr;
  const TensorInfo* b = nullptr;
};

// Index of the first non-finite value, if any.
std::optional<size_t> first_non_finite(const std::vector<float>& values) {
  for (size_t i = 0; i < values.size(); ++i)
    if (!std::isfinite(values[i])) return i;
  return std::nullopt;
}

}  // namespace

AdapterCheck check_adapter(const std::filesystem::path& directory, const ModelConfig& config) {
  AdapterCheck check;
  auto& errors = check.errors;
  const auto config_path = directory / kAdapterConfigFile;
  const auto weights_path = directory / kAdapterWeightsFile;
  if (!std::filesystem::is_directory(directory)) {
    errors.push_back(fmt::format("{}: adapter directory not found", directory.string()));
    return check;
  }
  if (!std::filesystem::is_regular_file(config_path)) errors.push_back(fmt::format("{}: missing file", config_path.string()));
  if (!std::filesystem::is_regular_file(weights_path)) {
    const bool has_bin = std::filesystem::exists(directory / "adapter_model.bin");
    errors.push_back(fmt::format("{}: missing file{}", weights_path.string(),
                                 has_bin ? " (adapter_model.bin found: only safetensors adapters are supported)" : ""));
  }
  if (!errors.empty()) return check;

  const std::string config_source = config_path.string();
  const size_t errors_before_config = errors.size();
  const PeftLoraConfig peft = parse_peft_config(read_text_file(config_path), config_source, errors);
  std::optional<PeftModuleRules> rules;
  if (errors.size() == errors_before_config) {
    try {
      rules.emplace(peft, config_source);
    } catch (const Error& error) {
      errors.push_back(error.what());
    }
  }

  const std::string weights_source = weights_path.string();
  std::optional<SafetensorsFile> file;
  try {
    file.emplace(SafetensorsFile::open(weights_path));
  } catch (const Error& error) {
    errors.push_back(error.what());
    return check;
  }

  std::map<std::pair<int, int>, ModuleTensors> modules;  // (layer, kind) -> tensors
  std::map<StackPrefix, std::string> namespaces_seen;     // namespace -> an example key
  for (const TensorInfo& info : file->tensors()) {
    auto parsed = parse_lora_key(info.name, config);
    if (auto* problem = std::get_if<std::string>(&parsed)) {
      errors.push_back(fmt::format("{}: {}: {}", weights_source, info.name, *problem));
      continue;
    }
    const LoraKey& key = std::get<LoraKey>(parsed);
    namespaces_seen.emplace(key.key_namespace, info.name);
    if (!is_float_storage(info.dtype)) {
      errors.push_back(fmt::format("{}: {}: dtype {}; expected F32, BF16 or F16", weights_source, info.name,
                                   dtype_name(info.dtype)));
      continue;
    }
    if (info.shape.size() != 2) {
      errors.push_back(fmt::format("{}: {}: shape {} must have 2 dimensions", weights_source, info.name,
                                   shape_string(info.shape)));
      continue;
    }
    ModuleTensors& tensors = modules[{key.layer, int(key.kind)}];
    (key.factor == LoraFactor::A ? tensors.a : tensors.b) = &info;
  }
  if (namespaces_seen.size() > 1)
    errors.push_back(fmt::format("{}: keys mix two namespaces (e.g. {} and {}); expected one", weights_source,
                                 namespaces_seen.begin()->second, namespaces_seen.rbegin()->second));
  if (file->tensors().empty()) errors.push_back(fmt::format("{}: holds no LoRA tensors", weights_source));
  // Module names for targeting and patterns are those of the model the adapter was trained on.
  const StackPrefix key_namespace = namespaces_seen.empty() ? StackPrefix::TextOnly : namespaces_seen.begin()->first;
  if (!namespaces_seen.empty()) check.key_namespace = key_namespace;

  LoraAdapter adapter(config, peft.settings);
  for (const auto& [position, tensors] : modules) {
    const auto [layer, kind_index] = position;
    const LinearKind kind = LinearKind(kind_index);
    const std::string name = lora_module_name(key_namespace, layer, kind);
    const std::string where = fmt::format("{}: {}", weights_source, name);
    if (!tensors.a || !tensors.b) {
      const bool has_a = tensors.a != nullptr;
      errors.push_back(fmt::format("{}: {} is present but {} is missing (expected {})", where,
                                   has_a ? "lora_A" : "lora_B", has_a ? "lora_B" : "lora_A",
                                   lora_tensor_name(key_namespace, layer, kind, has_a ? LoraFactor::B : LoraFactor::A)));
      continue;
    }
    const LinearShape shape = linear_shape(config, kind);
    const int64_t rank = tensors.a->shape[0];
    bool consistent = true;
    if (tensors.b->shape[1] != rank) {
      errors.push_back(fmt::format("{}: lora_A has rank {} (shape {}) but lora_B has rank {} (shape {})", where, rank,
                                   shape_string(tensors.a->shape), tensors.b->shape[1], shape_string(tensors.b->shape)));
      consistent = false;
    }
    if (tensors.a->shape[1] != shape.in) {
      errors.push_back(fmt::format("{}: lora_A shape {} does not match the model: expected [{}, {}]", where,
                                   shape_string(tensors.a->shape), rank, shape.in));
      consistent = false;
    }
    if (tensors.b->shape[0] != shape.out) {
      errors.push_back(fmt::format("{}: lora_B shape {} does not match the model: expected [{}, {}]", where,
                                   shape_string(tensors.b->shape), shape.out, tensors.b->shape[1]));
      consistent = false;
    }
    double alpha = peft.settings.lora_alpha;
    if (rules) {
      if (!rules->targets(name)) {
        errors.push_back(fmt::format("{}: the config does not target this module ({})", where, rules->describe_targets()));
        consistent = false;
      }
      const int64_t configured_rank = rules->rank_for(name);
      if (rank != configured_rank) {
        errors.push_back(fmt::format("{}: rank {} does not match the configured rank {} (r / rank_pattern)", where,
                                     rank, configured_rank));
        consistent = false;
      }
      alpha = rules->alpha_for(name);
    }
    std::vector<float> a = file->get(tensors.a->name).to_f32_vector();
    std::vector<float> b = file->get(tensors.b->name).to_f32_vector();
    for (const auto& [info, values] : {std::pair{tensors.a, &a}, std::pair{tensors.b, &b}}) {
      if (auto index = first_non_finite(*values)) {
        errors.push_back(fmt::format("{}: {}: non-finite value {} at element {}", weights_source, info->name,
                                     (*values)[*index], *index));
        consistent = false;
      }
    }
    if (!consistent || !errors.empty() || rank <= 0) continue;
    LoraModule& module = adapter.add_module(layer, kind, rank, alpha);
    module.a = std::move(a);
    module.b = std::move(b);
  }
  if (errors.empty()) check.adapter = std::move(adapter);
  return check;
}

LoraAdapter load_adapter(const std::filesystem::path& directory, const ModelConfig& config) {
  AdapterCheck check = check_adapter(directory, config);
  if (!check.adapter)
    fail("invalid adapter {} ({} error{}):\n{}", directory.string(), check.errors.size(),
         check.errors.size() == 1 ? "" : "s", fmt::join(check.errors, "\n"));
  return std::move(*check.adapter);
}

void save_adapter(const LoraAdapter& adapter, const std::filesystem::path& directory, StackPrefix prefix, DType dtype) {
  if (!is_float_storage(dtype)) fail("adapter dtype {} is not supported; expected F32, BF16 or F16", dtype_name(dtype));
  create_output_directory(directory);
  std::vector<NamedTensor> tensors;
  for (const LoraModule* module : adapter.modules()) {
    tensors.push_back({lora_tensor_name(prefix, module->layer, module->kind, LoraFactor::A),
                       Tensor::from_f32(dtype, {module->rank, module->in}, module->a)});
    tensors.push_back({lora_tensor_name(prefix, module->layer, module->kind, LoraFactor::B),
                       Tensor::from_f32(dtype, {module->out, module->rank}, module->b)});
  }
  write_safetensors(directory / kAdapterWeightsFile, tensors, {{"format", "pt"}});
  write_file_atomic(directory / kAdapterConfigFile, peft_config_text(adapter, prefix));
}

}  // namespace dt
