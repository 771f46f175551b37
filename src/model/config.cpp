#include "model/config.h"

#include <fmt/format.h>

#include <utility>

#include "core/error.h"
#include "io/mapped_file.h"

namespace dt {

using nlohmann::json;

std::string_view layer_type_name(LayerType type) {
  return type == LayerType::FullAttention ? "full_attention" : "linear_attention";
}

std::optional<LayerType> parse_layer_type(std::string_view name) {
  if (name == "linear_attention") return LayerType::LinearAttention;
  if (name == "full_attention") return LayerType::FullAttention;
  return std::nullopt;
}

std::string layer_pattern_string(const std::vector<LayerType>& layer_types) {
  std::string pattern;
  for (size_t i = 0; i < layer_types.size(); ++i) {
    if (i > 0 && i % 4 == 0) pattern += ' ';
    pattern += layer_types[i] == LayerType::FullAttention ? 'F' : 'L';
  }
  return pattern;
}

namespace {

// The sizes every config must state; each is read, validated (positive) and written the same way.
constexpr std::pair<const char*, int64_t ModelConfig::*> kSizeFields[] = {
    {"vocab_size", &ModelConfig::vocab_size},
    {"hidden_size", &ModelConfig::hidden_size},
    {"intermediate_size", &ModelConfig::intermediate_size},
    {"num_hidden_layers", &ModelConfig::num_hidden_layers},
    {"num_attention_heads", &ModelConfig::num_attention_heads},
    {"num_key_value_heads", &ModelConfig::num_key_value_heads},
    {"head_dim", &ModelConfig::head_dim},
    {"linear_num_key_heads", &ModelConfig::linear_num_key_heads},
    {"linear_num_value_heads", &ModelConfig::linear_num_value_heads},
    {"linear_key_head_dim", &ModelConfig::linear_key_head_dim},
    {"linear_value_head_dim", &ModelConfig::linear_value_head_dim},
    {"linear_conv_kernel_dim", &ModelConfig::linear_conv_kernel_dim},
};


// Typed, optional access to the keys of one JSON object; every error names the file and the full
// key path ("text_config.hidden_size"). JSON null counts as absent, as in HF configs.
class JsonFields {
 public:
  JsonFields(const json& object, std::string path_prefix, const std::string& source)
      : object_(object), prefix_(std::move(path_prefix)), source_(source) {}

  std::string path(std::string_view key) const { return prefix_ + std::string(key); }

  const json* find(std::string_view key) const {
    auto it = object_.find(key);
    return it == object_.end() || it->is_null() ? nullptr : &*it;
  }

  int64_t integer(std::string_view key) const {
    if (auto value = optional_integer(key)) return *value;
    fail("{}: missing required field '{}'", source_, path(key));
  }

  std::optional<int64_t> optional_integer(std::string_view key) const {
    const json* value = find(key);
    if (!value) return std::nullopt;
    if (!value->is_number_integer() || (value->is_number_unsigned() && value->get<uint64_t>() > uint64_t(INT64_MAX)))
      type_error(key, *value, "an integer");
    return value->get<int64_t>();
  }

  std::optional<double> optional_number(std::string_view key) const {
    const json* value = find(key);
    if (!value) return std::nullopt;
    if (!value->is_number()) type_error(key, *value, "a number");
    return value->get<double>();
  }

  std::optional<bool> optional_bool(std::string_view key) const {
    const json* value = find(key);
    if (!value) return std::nullopt;
    if (!value->is_boolean()) type_error(key, *value, "a boolean (true/false)");
    return value->get<bool>();
  }

  std::optional<std::string> optional_string(std::string_view key) const {
    const json* value = find(key);
    if (!value) return std::nullopt;
    if (!value->is_string()) type_error(key, *value, "a string");
    return value->get<std::string>();
  }

  const json* optional_object(std::string_view key) const {
    const json* value = find(key);
    if (value && !value->is_object()) type_error(key, *value, "an object");
    return value;
  }

  const json* optional_array(std::string_view key) const {
    const json* value = find(key);
    if (value && !value->is_array()) type_error(key, *value, "an array");
    return value;
  }

  // An integer or a list of integers (eos_token_id).
  std::optional<std::vector<int64_t>> optional_integer_list(std::string_view key) const {
    const json* value = find(key);
    if (!value) return std::nullopt;
    if (value->is_number_integer()) return std::vector<int64_t>{value->get<int64_t>()};
    if (!value->is_array()) type_error(key, *value, "an integer or an array of integers");
    std::vector<int64_t> values;
    for (size_t i = 0; i < value->size(); ++i) {
      const json& element = (*value)[i];
      if (!element.is_number_integer()) type_error(fmt::format("{}[{}]", key, i), element, "an integer");
      values.push_back(element.get<int64_t>());
    }
    return values;
  }

  [[noreturn]] void type_error(std::string_view key, const json& value, std::string_view expected) const {
    std::string shown = value.dump();
    if (shown.size() > 40) shown = shown.substr(0, 37) + "...";
    fail("{}: '{}' must be {}, found {} {}", source_, path(key), expected, value.type_name(), shown);
  }

 private:
  const json& object_;
  std::string prefix_;
  const std::string& source_;
};

[[noreturn]] void reject_model_type(const std::string& model_type, const std::string& key, const std::string& source) {
  if (model_type == "qwen3_next" || model_type.find("moe") != std::string::npos)
    fail("{}: {} '{}' is not supported yet: deltatune runs dense Qwen3.5 models (qwen3_5 or qwen3_5_text)",
         source, key, model_type);
  fail("{}: unsupported {} {}: expected qwen3_5 or qwen3_5_text", source, key, model_type);
}

// The rope fields live in rope_parameters (current HF); older configs put rope_theta and
// partial_rotary_factor at the top of the text config, or the mrope fields in rope_scaling.
template <typename T, typename Getter>
std::optional<T> rope_field(const std::vector<JsonFields>& sources_in_priority, Getter getter) {
  for (const JsonFields& fields : sources_in_priority)
    if (auto value = getter(fields)) return value;
  return std::nullopt;
}

}  // namespace

ModelConfig parse_config(const json& document, const std::string& source) {
  if (!document.is_object()) fail("{}: config must be a JSON object, found {}", source, document.type_name());
  const JsonFields top(document, "", source);
  const auto model_type = top.optional_string("model_type");
  if (!model_type) fail("{}: missing required field 'model_type' (expected qwen3_5 or qwen3_5_text)", source);

  ModelConfig config;
  const json* text_object = &document;
  std::string prefix;
  if (*model_type == "qwen3_5") {
    text_object = top.optional_object("text_config");
    if (!text_object) fail("{}: missing required field 'text_config' (model_type qwen3_5 keeps the language model there)", source);
    prefix = "text_config.";
    config.multimodal_wrapper = true;
  } else if (*model_type == "qwen3_5_text") {
    config.multimodal_wrapper = false;
  } else {
    reject_model_type(*model_type, "model_type", source);
  }
  const JsonFields text(*text_object, prefix, source);
  if (config.multimodal_wrapper) {
    const auto text_type = text.optional_string("model_type");
    if (text_type && *text_type != "qwen3_5_text") reject_model_type(*text_type, text.path("model_type"), source);
  }
  if (const auto experts = text.optional_integer("num_experts"); experts && *experts > 0)
    fail("{}: '{}' is {}: mixture-of-experts models are not supported yet", source, text.path("num_experts"), *experts);

  for (const auto& [name, member] : kSizeFields) config.*member = text.integer(name);
  config.rms_norm_eps = text.optional_number("rms_norm_eps").value_or(config.rms_norm_eps);
  config.attn_output_gate = text.optional_bool("attn_output_gate").value_or(config.attn_output_gate);
  config.max_position_embeddings =
      text.optional_integer("max_position_embeddings").value_or(config.max_position_embeddings);
  config.initializer_range = text.optional_number("initializer_range").value_or(config.initializer_range);

  // The wrapper's text_config value wins; HF also ties when only the top level says so.
  config.tie_word_embeddings = text.optional_bool("tie_word_embeddings")
                                   .value_or(top.optional_bool("tie_word_embeddings").value_or(false));
  config.eos_token_ids = text.optional_integer_list("eos_token_id")
                             .value_or(top.optional_integer_list("eos_token_id").value_or(std::vector<int64_t>{}));

  std::vector<JsonFields> rope_sources;
  if (const json* parameters = text.optional_object("rope_parameters"))
    rope_sources.emplace_back(*parameters, text.path("rope_parameters."), source);
  rope_sources.push_back(text);
  if (const json* scaling = text.optional_object("rope_scaling"))
    rope_sources.emplace_back(*scaling, text.path("rope_scaling."), source);
  config.rope_theta = rope_field<double>(rope_sources, [](const JsonFields& f) { return f.optional_number("rope_theta"); })
                          .value_or(config.rope_theta);
  config.partial_rotary_factor =
      rope_field<double>(rope_sources, [](const JsonFields& f) { return f.optional_number("partial_rotary_factor"); })
          .value_or(config.partial_rotary_factor);
  config.mrope_interleaved =
      rope_field<bool>(rope_sources, [](const JsonFields& f) { return f.optional_bool("mrope_interleaved"); })
          .value_or(config.mrope_interleaved);
  config.mrope_section = rope_field<std::vector<int64_t>>(rope_sources, [](const JsonFields& f) -> std::optional<std::vector<int64_t>> {
                           if (!f.optional_array("mrope_section")) return std::nullopt;
                           return f.optional_integer_list("mrope_section");
                         }).value_or(std::vector<int64_t>{});

  if (const json* layer_types = text.optional_array("layer_types")) {
    for (size_t i = 0; i < layer_types->size(); ++i) {
      const json& entry = (*layer_types)[i];
      const std::string key = fmt::format("layer_types[{}]", i);
      if (!entry.is_string()) text.type_error(key, entry, "a string");
      const auto type = parse_layer_type(entry.get<std::string>());
      if (!type)
        fail("{}: '{}' is \"{}\": expected linear_attention or full_attention", source, text.path(key),
             entry.get<std::string>());
      config.layer_types.push_back(*type);
    }
  } else {
    const int64_t interval = text.optional_integer("full_attention_interval").value_or(4);
    if (interval <= 0) fail("{}: '{}' must be positive, found {}", source, text.path("full_attention_interval"), interval);
    for (int64_t i = 0; i < std::max<int64_t>(config.num_hidden_layers, 0); ++i)
      config.layer_types.push_back((i + 1) % interval == 0 ? LayerType::FullAttention : LayerType::LinearAttention);
  }

  validate_config(config, source);
  return config;
}

ModelConfig load_config(const std::filesystem::path& model_dir) {
  const auto path = model_dir / "config.json";
  if (!std::filesystem::is_regular_file(path))
    fail("{}: no config.json there (expected a Hugging Face model directory)", path.string());
  return parse_config(read_json_file(path), path.string());
}

void validate_config(const ModelConfig& config, const std::string& source) {
  for (const auto& [name, member] : kSizeFields)
    if (config.*member <= 0) fail("{}: {} must be positive, found {}", source, name, config.*member);
  if (config.max_position_embeddings <= 0)
    fail("{}: max_position_embeddings must be positive, found {}", source, config.max_position_embeddings);
  if (config.linear_num_value_heads % config.linear_num_key_heads != 0)
    fail("{}: linear_num_value_heads ({}) must be a multiple of linear_num_key_heads ({})", source,
         config.linear_num_value_heads, config.linear_num_key_heads);
  if (config.num_attention_heads % config.num_key_value_heads != 0)
    fail("{}: num_attention_heads ({}) must be a multiple of num_key_value_heads ({})", source,
         config.num_attention_heads, config.num_key_value_heads);
  if (!(config.rms_norm_eps > 0)) fail("{}: rms_norm_eps must be positive, found {}", source, config.rms_norm_eps);
  if (!(config.rope_theta > 0)) fail("{}: rope_theta must be positive, found {}", source, config.rope_theta);
  if (!(config.initializer_range >= 0))
    fail("{}: initializer_range must be non-negative, found {}", source, config.initializer_range);
  if (!(config.partial_rotary_factor > 0 && config.partial_rotary_factor <= 1))
    fail("{}: partial_rotary_factor must be in (0, 1], found {}", source, config.partial_rotary_factor);
  const int64_t rotary = config.rotary_dim();
  if (rotary == 0 || rotary % 2 != 0)
    fail("{}: rotary dimension int(head_dim {} * partial_rotary_factor {}) = {} must be even and non-zero", source,
         config.head_dim, config.partial_rotary_factor, rotary);
  if (int64_t(config.layer_types.size()) != config.num_hidden_layers)
    fail("{}: layer_types has {} entries but num_hidden_layers is {}", source, config.layer_types.size(),
         config.num_hidden_layers);
  for (int64_t section : config.mrope_section)
    if (section < 0) fail("{}: mrope_section entries must be non-negative, found {}", source, section);
}

json config_to_json(const ModelConfig& config) {
  json layer_types = json::array();
  for (LayerType type : config.layer_types) layer_types.push_back(layer_type_name(type));
  json rope = {
      {"rope_type", "default"},
      {"rope_theta", config.rope_theta},
      {"partial_rotary_factor", config.partial_rotary_factor},
      {"mrope_interleaved", config.mrope_interleaved},
  };
  if (!config.mrope_section.empty()) rope["mrope_section"] = config.mrope_section;
  json text = {
      {"model_type", "qwen3_5_text"},
      {"layer_types", layer_types},
      {"rope_parameters", rope},
      {"rms_norm_eps", config.rms_norm_eps},
      {"attn_output_gate", config.attn_output_gate},
      {"attention_bias", false},
      {"attention_dropout", 0.0},
      {"hidden_act", "silu"},
      {"max_position_embeddings", config.max_position_embeddings},
      {"initializer_range", config.initializer_range},
      {"tie_word_embeddings", config.tie_word_embeddings},
      {"use_cache", true},
  };
  for (const auto& [name, member] : kSizeFields) text[name] = config.*member;
  if (config.eos_token_ids.size() == 1)
    text["eos_token_id"] = config.eos_token_ids.front();
  else if (!config.eos_token_ids.empty())
    text["eos_token_id"] = config.eos_token_ids;
  if (!config.multimodal_wrapper) {
    text["architectures"] = json::array({"Qwen3_5ForCausalLM"});
    return text;
  }
  return {
      {"architectures", json::array({"Qwen3_5ForConditionalGeneration"})},
      {"model_type", "qwen3_5"},
      {"text_config", text},
      {"tie_word_embeddings", config.tie_word_embeddings},
  };
}

}  // namespace dt
