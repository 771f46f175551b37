#pragma once
// A LoRA adapter in memory: for any (layer, linear kind) of the model, an optional module with its
// own rank, alpha and scaling, delta W = scaling * B A. The factors are contiguous row-major f32
// arrays that the forward pass reads and the trainer updates in place. It lives with the model
// (dt_model) so that forward() can apply it; reading, writing, initialising and merging adapters
// (PEFT files and rules) are in src/lora.
#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "model/config.h"
#include "model/shapes.h"

namespace dt {

struct LoraModule {
  int layer = 0;
  LinearKind kind = LinearKind::AttnQ;
  int64_t rank = 0;
  int64_t in = 0;      // the base linear's input width (columns of A)
  int64_t out = 0;     // the base linear's output width (rows of B)
  double alpha = 0;    // lora_alpha for this module (alpha_pattern resolved)
  double scaling = 0;  // alpha / rank, or alpha / sqrt(rank) with rsLoRA
  std::vector<float> a;  // [rank, in]
  std::vector<float> b;  // [out, rank]

  int64_t parameter_count() const { return rank * (in + out); }
};

// Adapter-wide hyperparameters (adapter_config.json). Modules may override rank and alpha.
struct LoraSettings {
  int64_t r = 8;
  double lora_alpha = 8;
  double lora_dropout = 0;
  bool use_rslora = false;
  std::string init_lora_weights = "true";  // "true" or "gaussian", as recorded in the config
  std::optional<std::string> base_model_name_or_path;
};

double lora_scaling(double alpha, int64_t rank, bool use_rslora);

class LoraAdapter {
 public:
  using LayerModules = std::array<std::optional<LoraModule>, kLinearKindCount>;

  // An adapter with no modules for a model of this configuration.
  LoraAdapter(const ModelConfig& config, LoraSettings settings);

  // Adds a module with zero factors; fails when the layer is out of range, lacks the kind, or
  // already has it, or when rank or alpha is not positive.
  LoraModule& add_module(int layer, LinearKind kind, int64_t rank, double alpha);

  const LoraModule* find(int layer, LinearKind kind) const;
  LoraModule* find(int layer, LinearKind kind);
  // All twelve kinds of one layer (for the forward pass).
  const LayerModules& layer(int index) const { return layers_.at(size_t(index)); }
  int layer_count() const { return int(layers_.size()); }

  // Modules in layer order, then kind order.
  std::vector<const LoraModule*> modules() const;
  std::vector<LoraModule*> modules();
  size_t module_count() const;
  int64_t parameter_count() const;

  const ModelConfig& model_config() const { return config_; }
  const LoraSettings& settings() const { return settings_; }
  LoraSettings& settings() { return settings_; }

 private:
  ModelConfig config_;
  LoraSettings settings_;
  std::vector<LayerModules> layers_;
};

// PEFT module name inside the wrapped HF model, e.g. "model.layers.3.self_attn.q_proj" or
// "model.language_model.layers.3.self_attn.q_proj" (what rank_pattern keys are matched against).
std::string lora_module_name(StackPrefix prefix, int layer, LinearKind kind);

enum class LoraFactor { A, B };
// Key in adapter_model.safetensors: "base_model.model.<module name>.lora_A.weight".
std::string lora_tensor_name(StackPrefix prefix, int layer, LinearKind kind, LoraFactor factor);

}  // namespace dt
