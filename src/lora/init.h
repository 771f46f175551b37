#pragma once
// New adapters: which modules (target kinds x layers), their factors' initial values (PEFT's
// default or gaussian init, or random A and B for tests), deterministic per seed and per module.
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "model/lora_adapter.h"

namespace dt {

enum class LoraInit {
  Peft,      // A ~ kaiming_uniform(a=sqrt(5)) = U(-1/sqrt(in), 1/sqrt(in)), B = 0 (init_lora_weights=true)
  Gaussian,  // A ~ N(0, std = 1/r), B = 0 (init_lora_weights="gaussian")
  Random,    // for tests only: A as Peft and B ~ U(-1/sqrt(r), 1/sqrt(r)), so the adapter is not a no-op
};
// "peft", "gaussian" or "random".
LoraInit parse_lora_init(std::string_view name);

struct AdapterInitOptions {
  int64_t rank = 8;
  double alpha = 16;
  bool use_rslora = false;
  std::vector<LinearKind> kinds;   // the target kinds
  std::optional<std::vector<int>> layers;  // nullopt: every layer
  LoraInit init = LoraInit::Peft;
  uint64_t seed = 0;
  std::optional<std::string> base_model_name_or_path;
};

// An adapter with a module for every selected layer that has a selected kind. Fails when the
// selection matches no module.
LoraAdapter init_adapter(const ModelConfig& config, const AdapterInitOptions& options);

// Fills a module's factors. The draws depend only on (seed, layer, kind), not on which other
// modules exist nor on the checkpoint's prefix.
void initialize_module(LoraModule& module, LoraInit init, uint64_t seed);

// "all-linear" or a comma-separated list of leaf names ("q_proj,v_proj,in_proj_qkv").
std::vector<LinearKind> parse_target_kinds(std::string_view text);
// Comma-separated layer indexes and inclusive ranges ("0,2,4-7"), each below `layer_count`.
std::vector<int> parse_layer_list(std::string_view text, int layer_count);

}  // namespace dt
