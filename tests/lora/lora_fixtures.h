#pragma once
// Shared fixtures for the LoRA tests: the tiny model config, tiny checkpoints on disk, random
// adapters, and rewriting a saved adapter's files to plant defects.
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "io/mapped_file.h"
#include "io/safetensors.h"
#include "lora/adapter_io.h"
#include "lora/init.h"
#include "lora/peft_config.h"
#include "model/random_model.h"

namespace dt::test {

// tiny preset: 4 layers (0-2 Gated DeltaNet, 3 full attention), hidden 64.
inline ModelConfig tiny_config(StackPrefix prefix = StackPrefix::Multimodal) {
  ModelConfig config = model_preset("tiny", 256);
  config.multimodal_wrapper = prefix == StackPrefix::Multimodal;
  return config;
}

// Writes config.json and random weights (no tokenizer) into `dir`.
inline void write_tiny_model(const std::filesystem::path& dir, StackPrefix prefix, DType dtype, int shards) {
  const ModelConfig config = tiny_config(prefix);
  RandomInitOptions init;
  init.seed = 7;
  init.dtype = dtype;
  std::filesystem::create_directories(dir);
  write_checkpoint(dir, random_weights(config, prefix, init), shards);
  write_file_atomic(dir / "config.json", config_to_json(config).dump(2));
}

// Every linear of every layer, rank `rank`, A and B random (not a no-op).
inline LoraAdapter random_adapter(const ModelConfig& config, int64_t rank = 4, double alpha = 8, uint64_t seed = 1) {
  AdapterInitOptions options;
  options.rank = rank;
  options.alpha = alpha;
  options.kinds = parse_target_kinds("all-linear");
  options.init = LoraInit::Random;
  options.seed = seed;
  return init_adapter(config, options);
}

inline nlohmann::json read_adapter_config(const std::filesystem::path& dir) {
  return nlohmann::json::parse(read_text_file(dir / kAdapterConfigFile));
}

inline void edit_adapter_config(const std::filesystem::path& dir, const std::function<void(nlohmann::json&)>& edit) {
  nlohmann::json config = read_adapter_config(dir);
  edit(config);
  write_file_atomic(dir / kAdapterConfigFile, config.dump(2));
}

// The adapter's tensors as owned copies (so the file can be rewritten).
inline std::vector<NamedTensor> read_adapter_tensors(const std::filesystem::path& dir) {
  const SafetensorsFile file = SafetensorsFile::open(dir / kAdapterWeightsFile);
  std::vector<NamedTensor> tensors;
  for (const TensorInfo& info : file.tensors()) {
    const Tensor view = file.get(info.name);
    tensors.push_back({info.name, view.to(view.dtype())});
  }
  return tensors;
}

inline void edit_adapter_tensors(const std::filesystem::path& dir,
                                 const std::function<void(std::vector<NamedTensor>&)>& edit) {
  std::vector<NamedTensor> tensors = read_adapter_tensors(dir);
  edit(tensors);
  write_safetensors(dir / kAdapterWeightsFile, tensors, {{"format", "pt"}});
}

inline NamedTensor& find_tensor(std::vector<NamedTensor>& tensors, const std::string& name) {
  for (NamedTensor& tensor : tensors)
    if (tensor.name == name) return tensor;
  throw std::runtime_error("test fixture: no tensor " + name);
}

}  // namespace dt::test
