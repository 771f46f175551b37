// deltatune info: describes a model directory after checking every tensor against its config.
#include <fmt/format.h>

#include <map>
#include <memory>

#include "cli/cli.h"
#include "model/weights.h"

namespace dt {

namespace {

enum class ParameterGroup { Embedding, Head, Attention, DeltaNet, Mlp, Norms };

ParameterGroup parameter_group(const WeightSpec& spec) {
  switch (spec.role) {
    case WeightRole::Embedding: return ParameterGroup::Embedding;
    case WeightRole::LmHead: return ParameterGroup::Head;
    case WeightRole::Conv:
    case WeightRole::ALog:
    case WeightRole::DtBias: return ParameterGroup::DeltaNet;
    case WeightRole::Linear:
      if (layer_has_linear(LayerType::FullAttention, *spec.linear) && layer_has_linear(LayerType::LinearAttention, *spec.linear))
        return ParameterGroup::Mlp;
      return layer_has_linear(LayerType::FullAttention, *spec.linear) ? ParameterGroup::Attention : ParameterGroup::DeltaNet;
    default: return ParameterGroup::Norms;
  }
}

// 1234567 -> "1,234,567".
std::string grouped(uint64_t value) {
  std::string digits = std::to_string(value), text;
  for (size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0) text += ',';
    text += digits[i];
  }
  return text;
}

std::string human_bytes(uint64_t bytes) {
  if (bytes >= (uint64_t(1) << 30)) return fmt::format("{:.2f} GiB", double(bytes) / double(uint64_t(1) << 30));
  if (bytes >= (uint64_t(1) << 20)) return fmt::format("{:.1f} MiB", double(bytes) / double(uint64_t(1) << 20));
  return fmt::format("{:.1f} KiB", double(bytes) / 1024.0);
}

void run_info(const std::string& model_dir) {
  const ModelConfig config = load_config(model_dir);
  const Checkpoint checkpoint = Checkpoint::open(model_dir);
  const ModelWeights weights = load_model(config, checkpoint, model_dir);
  const ModelConfig& c = weights.config;

  std::map<ParameterGroup, uint64_t> counts;
  for (const WeightSpec& spec : weight_specs(c, weights.prefix, weights.lm_head_stored))
    counts[parameter_group(spec)] += shape_numel(spec.shape);
  uint64_t total = 0;
  for (const auto& [group, count] : counts) total += count;

  std::map<std::string, std::pair<size_t, uint64_t>> dtypes;  // name -> tensors, bytes
  for (const std::string& name : checkpoint.names()) {
    const TensorInfo& info = checkpoint.info(name);
    auto& entry = dtypes[std::string(dtype_name(info.dtype))];
    entry.first += 1;
    entry.second += info.end - info.begin;
  }
  uint64_t file_bytes = 0;
  for (const SafetensorsFile& file : checkpoint.files()) file_bytes += std::filesystem::file_size(file.path());

  size_t full_layers = 0;
  for (LayerType type : c.layer_types) full_layers += type == LayerType::FullAttention;

  fmt::print("model:        {}\n", model_dir);
  fmt::print("architecture: {} (model_type {}), text stack prefix {}\n",
             c.multimodal_wrapper ? "Qwen3_5ForConditionalGeneration" : "Qwen3_5ForCausalLM",
             c.multimodal_wrapper ? "qwen3_5" : "qwen3_5_text", stack_prefix_string(weights.prefix));
  fmt::print("layers:       {} ({} Gated DeltaNet + {} full attention): {}\n", c.num_hidden_layers,
             c.layer_types.size() - full_layers, full_layers, layer_pattern_string(c.layer_types));
  fmt::print("sizes:        hidden {}, intermediate {}, vocab {}\n", c.hidden_size, c.intermediate_size, c.vocab_size);
  fmt::print("attention:    {} query heads, {} kv heads, head dim {}, rotary dim {} (theta {}), output gate {}\n",
             c.num_attention_heads, c.num_key_value_heads, c.head_dim, c.rotary_dim(), c.rope_theta,
             c.attn_output_gate ? "on" : "off");
  fmt::print("deltanet:     {} key heads x {}, {} value heads x {}, conv kernel {}\n", c.linear_num_key_heads,
             c.linear_key_head_dim, c.linear_num_value_heads, c.linear_value_head_dim, c.linear_conv_kernel_dim);
  fmt::print("embeddings:   {}\n", weights.lm_head_stored ? "untied (lm_head.weight stored)" : "tied (lm_head = embed_tokens)");
  fmt::print("parameters:\n");
  const std::pair<ParameterGroup, const char*> groups[] = {
      {ParameterGroup::Embedding, "embedding"}, {ParameterGroup::Head, "head"},
      {ParameterGroup::Attention, "attention"}, {ParameterGroup::DeltaNet, "deltanet"},
      {ParameterGroup::Mlp, "mlp"},             {ParameterGroup::Norms, "norms"},
  };
  for (const auto& [group, label] : groups) fmt::print("  {:<10} {:>15}\n", label, grouped(counts[group]));
  fmt::print("  {:<10} {:>15}\n", "total", grouped(total));
  fmt::print("on disk:      {} in {} file{}", human_bytes(file_bytes), checkpoint.files().size(),
             checkpoint.files().size() == 1 ? "" : "s (sharded)");
  for (const auto& [name, entry] : dtypes)
    fmt::print(", {} {} tensors ({})", entry.first, name, human_bytes(entry.second));
  fmt::print("\n");
}

}  // namespace

void register_info(CLI::App& app) {
  auto model_dir = std::make_shared<std::string>();
  CLI::App* command = app.add_subcommand(
      "info", "Check a model directory against its config.json and describe it: architecture, layer pattern, "
              "sizes, parameter counts, dtypes and bytes on disk");
  command->add_option("--model", *model_dir, "Model directory (config.json + safetensors)")->required();
  command->callback([model_dir] { run_info(*model_dir); });
}

}  // namespace dt
