#pragma once
// Qwen3.5 text-model configuration (spec §1): parsed from config.json of type qwen3_5 (fields under
// text_config) or qwen3_5_text (top level), validated, and written back.
#include <nlohmann/json.hpp>

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

namespace dt {

enum class LayerType { LinearAttention, FullAttention };
std::string_view layer_type_name(LayerType type);  // "linear_attention" / "full_attention"

struct ModelConfig {
  bool multimodal_wrapper = true;  // config.json form: qwen3_5 wrapper or qwen3_5_text
  int64_t vocab_size = 0;
  int64_t hidden_size = 0;
  int64_t intermediate_size = 0;
  int64_t num_hidden_layers = 0;
  int64_t num_attention_heads = 0;   // nq
  int64_t num_key_value_heads = 0;   // nkv
  int64_t head_dim = 0;              // hd
  int64_t linear_num_key_heads = 0;  // nk
  int64_t linear_num_value_heads = 0;  // nv
  int64_t linear_key_head_dim = 0;     // dk
  int64_t linear_value_head_dim = 0;   // dv
  int64_t linear_conv_kernel_dim = 0;  // Kc
  double rms_norm_eps = 1e-6;
  double rope_theta = 1e7;
  double partial_rotary_factor = 0.25;
  std::vector<int64_t> mrope_section;
  bool mrope_interleaved = false;
  bool tie_word_embeddings = false;
  bool attn_output_gate = true;
  int64_t max_position_embeddings = 262144;
  double initializer_range = 0.02;
  std::vector<LayerType> layer_types;
  std::vector<int64_t> eos_token_ids;  // from the config, if given

  // Derived sizes (spec notation).
  int64_t key_dim() const { return linear_num_key_heads * linear_key_head_dim; }
  int64_t value_dim() const { return linear_num_value_heads * linear_value_head_dim; }
  int64_t conv_dim() const { return 2 * key_dim() + value_dim(); }
  int64_t rotary_dim() const { return int64_t(double(head_dim) * partial_rotary_factor); }
  // Width of q_proj's output: per head [query | gate] when attn_output_gate.
  int64_t q_proj_out() const { return (attn_output_gate ? 2 : 1) * num_attention_heads * head_dim; }

  bool operator==(const ModelConfig&) const = default;
};

// Parses "linear_attention" / "full_attention"; nullopt for anything else.
std::optional<LayerType> parse_layer_type(std::string_view name);
// One letter per layer, grouped by four: "LLLF LLLF".
std::string layer_pattern_string(const std::vector<LayerType>& layer_types);

// Parses and validates; `source` names the file in errors.
ModelConfig parse_config(const nlohmann::json& document, const std::string& source);
ModelConfig load_config(const std::filesystem::path& model_dir);
// Fails with an explanation when the config is not a valid Qwen3.5 text model.
void validate_config(const ModelConfig& config, const std::string& source);
// config.json in the multimodal-wrapper or text-only form.
nlohmann::json config_to_json(const ModelConfig& config);

}  // namespace dt
