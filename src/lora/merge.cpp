#include "lora/merge.h"

#include <cblas.h>

#include <algorithm>
#include <map>

#include "core/error.h"
#include "io/safetensors.h"
#include "lora/adapter_io.h"
#include "model/weights.h"

namespace dt {

namespace {

void check_merge_shape(const Tensor& weight, const LoraModule& module) {
  const Shape expected{module.out, module.in};
  if (weight.shape() != expected)
    fail("cannot merge LoRA module {}: base weight shape {}, expected {}",
         lora_module_name(StackPrefix::TextOnly, module.layer, module.kind), shape_string(weight.shape()),
         shape_string(expected));
}

// Files beside the weights that a complete checkpoint carries over unchanged.
constexpr const char* kCheckpointSideFiles[] = {
    "config.json",           "generation_config.json",  "tokenizer.json",
    "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja",
};

}  // namespace

Tensor merge_module(const Tensor& weight, const LoraModule& module) {
  check_merge_shape(weight, module);
  const std::vector<double> a(module.a.begin(), module.a.end());
  const std::vector<double> b(module.b.begin(), module.b.end());
  std::vector<float> merged = weight.to_f32_vector();
  // Row blocks bound the double-precision delta buffer for wide matrices.
  const int64_t block_rows = std::min<int64_t>(module.out, 256);
  std::vector<double> delta(size_t(block_rows * module.in));
  for (int64_t row = 0; row < module.out; row += block_rows) {
    const int64_t rows = std::min(block_rows, module.out - row);
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, int(rows), int(module.in), int(module.rank), 1.0,
                b.data() + row * module.rank, int(module.rank), a.data(), int(module.in), 0.0, delta.data(),
                int(module.in));
    float* target = merged.data() + row * module.in;
    for (int64_t i = 0; i < rows * module.in; ++i) target[i] = float(double(target[i]) + module.scaling * delta[size_t(i)]);
  }
  return Tensor::from_f32(weight.dtype(), weight.shape(), merged);
}

Tensor merge_module_reference(const Tensor& weight, const LoraModule& module) {
  check_merge_shape(weight, module);
  std::vector<float> merged = weight.to_f32_vector();
  for (int64_t o = 0; o < module.out; ++o) {
    for (int64_t i = 0; i < module.in; ++i) {
      double sum = 0;
      for (int64_t k = 0; k < module.rank; ++k)
        sum += double(module.b[size_t(o * module.rank + k)]) * double(module.a[size_t(k * module.in + i)]);
      float& value = merged[size_t(o * module.in + i)];
      value = float(double(value) + module.scaling * sum);
    }
  }
  return Tensor::from_f32(weight.dtype(), weight.shape(), merged);
}

void merge_checkpoint(const std::filesystem::path& model_dir, const std::filesystem::path& adapter_dir,
                      const std::filesystem::path& out_dir) {
  if (std::filesystem::exists(out_dir) && std::filesystem::equivalent(out_dir, model_dir))
    fail("merge output {} is the base model directory; choose another", out_dir.string());
  const ModelConfig config = load_config(model_dir);
  const Checkpoint checkpoint = Checkpoint::open(model_dir);
  const ModelWeights weights = load_model(config, checkpoint, model_dir.string());
  const LoraAdapter adapter = load_adapter(adapter_dir, config);

  std::map<std::string, const LoraModule*> module_by_weight;
  for (const LoraModule* module : adapter.modules())
    module_by_weight[lora_module_name(weights.prefix, module->layer, module->kind) + ".weight"] = module;

  std::vector<NamedTensor> tensors;
  size_t merged_count = 0;
  for (const SafetensorsFile& file : checkpoint.files()) {
    for (const TensorInfo& info : file.tensors()) {
      const auto found = module_by_weight.find(info.name);
      if (found == module_by_weight.end()) {
        tensors.push_back({info.name, file.get(info.name)});
      } else {
        tensors.push_back({info.name, merge_module(file.get(info.name), *found->second)});
        ++merged_count;
      }
    }
  }
  if (merged_count != module_by_weight.size())
    fail("{}: {} adapted weights were not found in the checkpoint", model_dir.string(),
         module_by_weight.size() - merged_count);
  write_checkpoint(out_dir, tensors, int(checkpoint.files().size()));
  for (const char* name : kCheckpointSideFiles)
    if (std::filesystem::is_regular_file(model_dir / name))
      std::filesystem::copy_file(model_dir / name, out_dir / name, std::filesystem::copy_options::overwrite_existing);
}

}  // namespace dt
