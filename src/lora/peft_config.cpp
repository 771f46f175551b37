#include "lora/peft_config.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <set>

#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include "core/error.h"

namespace dt {

namespace {

// Ordered, so that rank_pattern / alpha_pattern keep the file's order (first match wins).
using OrderedJson = nlohmann::ordered_json;

class ConfigReader {
 public:
  ConfigReader(const OrderedJson& document, const std::string& source, std::vector<std::string>& errors)
      : document_(document), source_(source), errors_(errors) {}

  // The value of `key`, or nullptr when absent or null (PEFT treats both as the default).
  const OrderedJson* get(const char* key) const {
    auto found = document_.find(key);
    return found == document_.end() || found->is_null() ? nullptr : &*found;
  }

  template <typename... Args>
  void error(fmt::format_string<Args...> format, Args&&... args) {
    errors_.push_back(fmt::format("{}: {}", source_, fmt::format(format, std::forward<Args>(args)...)));
  }

  std::optional<bool> boolean(const char* key) {
    const OrderedJson* value = get(key);
    if (!value) return std::nullopt;
    if (!value->is_boolean()) {
      error("{} must be true or false, got {}", key, value->dump());
      return std::nullopt;
    }
    return value->get<bool>();
  }

  std::optional<std::string> string(const char* key) {
    const OrderedJson* value = get(key);
    if (!value) return std::nullopt;
    if (!value->is_string()) {
      error("{} must be a string, got {}", key, value->dump());
      return std::nullopt;
    }
    return value->get<std::string>();
  }

  // A string or a list of strings.
  std::optional<std::vector<std::string>> string_list(const char* key, const OrderedJson& value) {
    if (value.is_string()) return std::vector<std::string>{value.get<std::string>()};
    std::vector<std::string> names;
    if (value.is_array() && std::all_of(value.begin(), value.end(), [](const auto& item) { return item.is_string(); })) {
      for (const auto& item : value) names.push_back(item.get<std::string>());
      return names;
    }
    error("{} must be a string or a list of strings, got {}", key, value.dump());
    return std::nullopt;
  }

  std::optional<ModuleSelector> selector(const char* key, bool allow_all_linear) {
    const OrderedJson* value = get(key);
    if (!value) return std::nullopt;
    ModuleSelector selector;
    if (value->is_string()) {
      std::string text = value->get<std::string>();
      std::string lower = text;
      std::transform(lower.begin(), lower.end(), lower.begin(), [](unsigned char c) { return char(std::tolower(c)); });
      if (allow_all_linear && lower == "all-linear") {
        selector.form = ModuleSelector::Form::AllLinear;
      } else {
        selector.form = ModuleSelector::Form::Regex;
        selector.pattern = std::move(text);
      }
      return selector;
    }
    auto names = string_list(key, *value);
    if (!names) return std::nullopt;
    selector.names = std::move(*names);
    return selector;
  }

 private:
  const OrderedJson& document_;
  const std::string& source_;
  std::vector<std::string>& errors_;
};

bool is_positive_integer(const OrderedJson& value) {
  return value.is_number_integer() && value.get<int64_t>() > 0;
}

bool is_positive_finite(const OrderedJson& value) {
  return value.is_number() && std::isfinite(value.get<double>()) && value.get<double>() > 0;
}

bool ends_with_segment(const std::string& name, const std::string& entry) {
  return name.size() > entry.size() && name.ends_with(entry) && name[name.size() - entry.size() - 1] == '.';
}

bool list_matches(const std::vector<std::string>& names, const std::string& module_name) {
  return std::any_of(names.begin(), names.end(),
                     [&](const std::string& entry) { return entry == module_name || ends_with_segment(module_name, entry); });
}

std::vector<std::string> all_linear_leaves() {
  std::vector<std::string> leaves;
  for (int kind = 0; kind < kLinearKindCount; ++kind) leaves.emplace_back(linear_leaf_name(LinearKind(kind)));
  return leaves;
}

// Integral values as JSON integers (PEFT configs hold lora_alpha = 16, not 16.0).
nlohmann::json number_json(double value) {
  if (value == std::floor(value) && std::abs(value) < 9e15) return int64_t(value);
  return value;
}

}  // namespace

PeftLoraConfig parse_peft_config(const std::string& text, const std::string& source, std::vector<std::string>& errors) {
  PeftLoraConfig config;
  OrderedJson document;
  try {
    document = OrderedJson::parse(text);
  } catch (const OrderedJson::parse_error& error) {
    errors.push_back(fmt::format("{}: invalid JSON: {}", source, error.what()));
    return config;
  }
  ConfigReader reader(document, source, errors);
  if (!document.is_object()) {
    reader.error("expected a JSON object, got {}", document.type_name());
    return config;
  }

  const auto peft_type = reader.string("peft_type");
  if (!peft_type)
    reader.error("peft_type is missing; expected \"LORA\"");
  else if (*peft_type != "LORA")
    reader.error("peft_type is \"{}\"; only \"LORA\" adapters are supported", *peft_type);

  if (const OrderedJson* r = reader.get("r")) {
    if (is_positive_integer(*r))
      config.settings.r = r->get<int64_t>();
    else
      reader.error("r must be a positive integer, got {}", r->dump());
  }
  if (const OrderedJson* alpha = reader.get("lora_alpha")) {
    if (is_positive_finite(*alpha))
      config.settings.lora_alpha = alpha->get<double>();
    else
      reader.error("lora_alpha must be a finite positive number, got {}", alpha->dump());
  }
  if (const OrderedJson* dropout = reader.get("lora_dropout")) {
    if (dropout->is_number() && dropout->get<double>() >= 0 && dropout->get<double>() < 1)
      config.settings.lora_dropout = dropout->get<double>();
    else
      reader.error("lora_dropout must be a number in [0, 1), got {}", dropout->dump());
  }
  config.settings.use_rslora = reader.boolean("use_rslora").value_or(false);
  if (const OrderedJson* init = reader.get("init_lora_weights"))
    config.settings.init_lora_weights = init->is_string() ? init->get<std::string>() : init->dump();
  config.settings.base_model_name_or_path = reader.string("base_model_name_or_path");

  // Variants whose weights or forward we do not implement.
  if (reader.boolean("use_dora").value_or(false))
    reader.error("use_dora is true; DoRA adapters (lora_magnitude_vector) are not supported");
  if (const auto bias = reader.string("bias"); bias && *bias != "none")
    reader.error("bias is \"{}\"; only \"none\" is supported (Qwen3.5 linears have no bias)", *bias);
  if (reader.boolean("lora_bias").value_or(false))
    reader.error("lora_bias is true; LoRA biases (lora_B.bias) are not supported");
  if (reader.boolean("fan_in_fan_out").value_or(false))
    reader.error("fan_in_fan_out is true; expected false for nn.Linear weights");
  if (reader.boolean("use_qalora").value_or(false)) reader.error("use_qalora is true; QALoRA is not supported");
  if (const OrderedJson* modules = reader.get("modules_to_save"); modules && !(modules->is_array() && modules->empty()))
    reader.error("modules_to_save is {}; adapters with fully trained extra modules are not supported", modules->dump());
  for (const char* key : {"layer_replication", "trainable_token_indices", "alora_invocation_tokens", "arrow_config"})
    if (const OrderedJson* value = reader.get(key); value && !(value->is_array() && value->empty()))
      reader.error("{} is {}; this LoRA variant is not supported", key, value->dump());
  if (const OrderedJson* value = reader.get("target_parameters"); value && !(value->is_array() && value->empty()))
    reader.error("target_parameters is {}; LoRA on parameters (not modules) is not supported", value->dump());

  config.target_modules = reader.selector("target_modules", true);
  if (!reader.get("target_modules"))
    reader.error("target_modules is missing; PEFT has no default targets for qwen3_5, the config must name them");
  config.exclude_modules = reader.selector("exclude_modules", false);

  if (const OrderedJson* layers = reader.get("layers_to_transform")) {
    std::vector<int64_t> indexes;
    if (layers->is_number_integer()) {
      indexes.push_back(layers->get<int64_t>());
    } else if (layers->is_array() && std::all_of(layers->begin(), layers->end(),
                                                 [](const auto& item) { return item.is_number_integer(); })) {
      for (const auto& item : *layers) indexes.push_back(item.get<int64_t>());
    } else {
      reader.error("layers_to_transform must be an integer or a list of integers, got {}", layers->dump());
    }
    config.layers_to_transform = std::move(indexes);
  }
  if (const OrderedJson* pattern = reader.get("layers_pattern"))
    config.layers_pattern = reader.string_list("layers_pattern", *pattern).value_or(std::vector<std::string>{});
  // LoraConfig.__post_init__ rejects these combinations.
  const bool string_targets = reader.get("target_modules") && reader.get("target_modules")->is_string();
  if (string_targets && reader.get("layers_to_transform"))
    reader.error("layers_to_transform cannot be used when target_modules is a string");
  if (string_targets && reader.get("layers_pattern"))
    reader.error("layers_pattern cannot be used when target_modules is a string");
  if (!config.layers_pattern.empty() && !config.layers_to_transform)
    reader.error("layers_pattern is set but layers_to_transform is not; PEFT requires both");

  if (const OrderedJson* patterns = reader.get("rank_pattern")) {
    if (!patterns->is_object()) {
      reader.error("rank_pattern must be an object, got {}", patterns->dump());
    } else {
      for (const auto& [key, value] : patterns->items()) {
        if (is_positive_integer(value))
          config.rank_pattern.emplace_back(key, value.get<int64_t>());
        else
          reader.error("rank_pattern[\"{}\"] must be a positive integer, got {}", key, value.dump());
      }
    }
  }
  if (const OrderedJson* patterns = reader.get("alpha_pattern")) {
    if (!patterns->is_object()) {
      reader.error("alpha_pattern must be an object, got {}", patterns->dump());
    } else {
      for (const auto& [key, value] : patterns->items()) {
        if (is_positive_finite(value))
          config.alpha_pattern.emplace_back(key, value.get<double>());
        else
          reader.error("alpha_pattern[\"{}\"] must be a finite positive number, got {}", key, value.dump());
      }
    }
  }
  return config;
}

PeftModuleRules::PeftModuleRules(const PeftLoraConfig& config, const std::string& source) : config_(config) {
  if (config.target_modules) {
    switch (config.target_modules->form) {
      case ModuleSelector::Form::Regex:
        target_regex_.emplace(config.target_modules->pattern, source + ": target_modules");
        break;
      case ModuleSelector::Form::AllLinear:
        target_names_ = all_linear_leaves();
        break;
      case ModuleSelector::Form::List:
        target_names_ = config.target_modules->names;
        break;
    }
  }
  if (config.exclude_modules && config.exclude_modules->form == ModuleSelector::Form::Regex)
    exclude_regex_.emplace(config.exclude_modules->pattern, source + ": exclude_modules");
  if (config.layers_pattern.empty()) {
    layer_index_regexes_.emplace_back(R"(.*\.[^.]*\.(\d+)\.)", source + ": layers_to_transform");
  } else {
    for (const std::string& pattern : config.layers_pattern)
      layer_index_regexes_.emplace_back(fmt::format(R"(.*\.{}\.(\d+)\.)", pattern), source + ": layers_pattern");
  }
  for (const auto& [key, rank] : config.rank_pattern)
    rank_regexes_.emplace_back(peft_pattern_regex(key, fmt::format("{}: rank_pattern key \"{}\"", source, key)), rank);
  for (const auto& [key, alpha] : config.alpha_pattern)
    alpha_regexes_.emplace_back(peft_pattern_regex(key, fmt::format("{}: alpha_pattern key \"{}\"", source, key)), alpha);
}

bool PeftModuleRules::layer_selected(const std::string& module_name) const {
  for (const Regex& regex : layer_index_regexes_) {
    if (auto index = regex.prefix_match_group(module_name, 1)) {
      const int64_t layer = std::stoll(*index);
      const auto& layers = *config_.layers_to_transform;
      return std::find(layers.begin(), layers.end(), layer) != layers.end();
    }
  }
  return false;
}

bool PeftModuleRules::targets(const std::string& module_name) const {
  if (const auto& exclude = config_.exclude_modules) {
    const bool excluded = exclude->form == ModuleSelector::Form::Regex ? exclude_regex_->full_match(module_name)
                                                                        : list_matches(exclude->names, module_name);
    if (excluded) return false;
  }
  if (!config_.target_modules) return false;
  if (target_regex_) return target_regex_->full_match(module_name);
  // A list entry equal to the full name selects the module whatever layers_to_transform says.
  if (std::find(target_names_.begin(), target_names_.end(), module_name) != target_names_.end()) return true;
  if (!list_matches(target_names_, module_name)) return false;
  const bool using_layer_indexes = config_.layers_to_transform && !config_.layers_to_transform->empty();
  return !using_layer_indexes || layer_selected(module_name);
}

int64_t PeftModuleRules::rank_for(const std::string& module_name) const {
  for (const auto& [regex, rank] : rank_regexes_)
    if (regex.prefix_match(module_name)) return rank;
  return config_.settings.r;
}

double PeftModuleRules::alpha_for(const std::string& module_name) const {
  for (const auto& [regex, alpha] : alpha_regexes_)
    if (regex.prefix_match(module_name)) return alpha;
  return config_.settings.lora_alpha;
}

std::string PeftModuleRules::describe_targets() const {
  std::string text;
  if (!config_.target_modules)
    text = "no target_modules";
  else if (target_regex_)
    text = fmt::format("target_modules \"{}\" (full match)", config_.target_modules->pattern);
  else if (config_.target_modules->form == ModuleSelector::Form::AllLinear)
    text = "target_modules \"all-linear\"";
  else
    text = fmt::format("target_modules [{}]", fmt::join(target_names_, ", "));
  if (config_.layers_to_transform && !config_.layers_to_transform->empty())
    text += fmt::format(", layers_to_transform [{}]", fmt::join(*config_.layers_to_transform, ", "));
  if (!config_.layers_pattern.empty()) text += fmt::format(", layers_pattern [{}]", fmt::join(config_.layers_pattern, ", "));
  if (const auto& exclude = config_.exclude_modules)
    text += exclude->form == ModuleSelector::Form::Regex ? fmt::format(", exclude_modules \"{}\"", exclude->pattern)
                                                         : fmt::format(", exclude_modules [{}]", fmt::join(exclude->names, ", "));
  return text;
}

std::string peft_config_text(const LoraAdapter& adapter, StackPrefix prefix) {
  const LoraSettings& settings = adapter.settings();
  std::set<std::string> target_leaves;
  std::set<int> adapted_layers;
  nlohmann::json rank_pattern = nlohmann::json::object();
  nlohmann::json alpha_pattern = nlohmann::json::object();
  for (const LoraModule* module : adapter.modules()) {
    target_leaves.emplace(linear_leaf_name(module->kind));
    adapted_layers.insert(module->layer);
    const std::string name = lora_module_name(prefix, module->layer, module->kind);
    if (module->rank != settings.r) rank_pattern[name] = module->rank;
    if (module->alpha != settings.lora_alpha) alpha_pattern[name] = number_json(module->alpha);
  }
  nlohmann::json init_lora_weights;
  if (settings.init_lora_weights == "true" || settings.init_lora_weights == "false")
    init_lora_weights = settings.init_lora_weights == "true";
  else
    init_lora_weights = settings.init_lora_weights;

  nlohmann::json config = {
      {"alpha_pattern", alpha_pattern},
      {"base_model_name_or_path", settings.base_model_name_or_path ? nlohmann::json(*settings.base_model_name_or_path)
                                                                   : nlohmann::json(nullptr)},
      {"bias", "none"},
      {"exclude_modules", nullptr},
      {"fan_in_fan_out", false},
      {"inference_mode", true},
      {"init_lora_weights", init_lora_weights},
      {"layers_pattern", nullptr},
      {"layers_to_transform", int(adapted_layers.size()) == adapter.layer_count()
                                  ? nlohmann::json(nullptr)
                                  : nlohmann::json(std::vector<int>(adapted_layers.begin(), adapted_layers.end()))},
      {"lora_alpha", number_json(settings.lora_alpha)},
      {"lora_bias", false},
      {"lora_dropout", settings.lora_dropout},
      {"modules_to_save", nullptr},
      {"peft_type", "LORA"},
      {"r", settings.r},
      {"rank_pattern", rank_pattern},
      {"revision", nullptr},
      {"target_modules", std::vector<std::string>(target_leaves.begin(), target_leaves.end())},
      {"task_type", "CAUSAL_LM"},
      {"use_dora", false},
      {"use_rslora", settings.use_rslora},
  };
  return config.dump(2, ' ', true);
}

}  // namespace dt
