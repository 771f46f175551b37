#pragma once
// PEFT adapter directories: adapter_config.json + adapter_model.safetensors. Loading checks every
// tensor against the config and the model's geometry and reports every problem found; saving
// writes exactly what PEFT's save_pretrained writes.
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "model/lora_adapter.h"

namespace dt {

inline constexpr const char* kAdapterWeightsFile = "adapter_model.safetensors";

struct AdapterCheck {
  std::optional<LoraAdapter> adapter;  // set only when there is no error
  std::vector<std::string> errors;     // each names the file and key at fault and what was expected
  // The namespace the adapter's keys use (base_model.model.model.language_model.layers.N. or
  // base_model.model.model.layers.N.), whatever the base checkpoint's prefix.
  std::optional<StackPrefix> key_namespace;
};

// Reads and validates an adapter for a model of `config`, collecting every error.
AdapterCheck check_adapter(const std::filesystem::path& directory, const ModelConfig& config);
// Same, failing with all errors (one per line) unless the adapter is valid.
LoraAdapter load_adapter(const std::filesystem::path& directory, const ModelConfig& config);

// Writes adapter_config.json and adapter_model.safetensors (metadata {"format":"pt"}) into
// `directory`, keys in the namespace of a base checkpoint with `prefix`, factors stored as
// `dtype` (F32, BF16 or F16).
void save_adapter(const LoraAdapter& adapter, const std::filesystem::path& directory, StackPrefix prefix,
                  DType dtype = DType::F32);

}  // namespace dt
