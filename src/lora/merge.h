#pragma once
// Folding an adapter into the base weights: W' = W + scaling * B A, accumulated in double and
// rounded to the weight's stored dtype.
#include <filesystem>

#include "core/tensor.h"
#include "model/lora_adapter.h"

namespace dt {

// The merged weight, same dtype and shape as `weight` ([out, in], F32/BF16/F16). Blocked BLAS.
Tensor merge_module(const Tensor& weight, const LoraModule& module);
// Same by plain loops; the reference the BLAS version is tested against.
Tensor merge_module_reference(const Tensor& weight, const LoraModule& module);

// Writes a complete checkpoint into `out_dir`: every tensor of the base (same names, dtypes and
// shard count), the adapted linears merged, plus config.json, generation_config.json and the
// tokenizer files.
void merge_checkpoint(const std::filesystem::path& model_dir, const std::filesystem::path& adapter_dir,
                      const std::filesystem::path& out_dir);

}  // namespace dt
