#include "model/lora_adapter.h"

#include <cmath>
#include <utility>

#include "core/error.h"

namespace dt {

double lora_scaling(double alpha, int64_t rank, bool use_rslora) {
  return use_rslora ? alpha / std::sqrt(double(rank)) : alpha / double(rank);
}

LoraAdapter::LoraAdapter(const ModelConfig& config, LoraSettings settings)
    : config_(config), settings_(std::move(settings)), layers_(size_t(config.num_hidden_layers)) {}

LoraModule& LoraAdapter::add_module(int layer, LinearKind kind, int64_t rank, double alpha) {
  const std::string name = lora_module_name(StackPrefix::TextOnly, layer, kind);
  if (layer < 0 || layer >= layer_count())
    fail("LoRA module {}: layer {} is out of range (the model has {} layers)", name, layer, layer_count());
  const LayerType type = config_.layer_types.at(size_t(layer));
  if (!layer_has_linear(type, kind))
    fail("LoRA module {}: layer {} is a {} layer and has no {}", name, layer, layer_type_name(type),
         linear_leaf_name(kind));
  if (rank <= 0) fail("LoRA module {}: rank must be positive, got {}", name, rank);
  if (!(std::isfinite(alpha) && alpha > 0)) fail("LoRA module {}: alpha must be finite and positive, got {}", name, alpha);
  auto& slot = layers_[size_t(layer)][size_t(kind)];
  if (slot) fail("LoRA module {} is already present", name);
  const LinearShape shape = linear_shape(config_, kind);
  LoraModule& module = slot.emplace();
  module.layer = layer;
  module.kind = kind;
  module.rank = rank;
  module.in = shape.in;
  module.out = shape.out;
  module.alpha = alpha;
  module.scaling = lora_scaling(alpha, rank, settings_.use_rslora);
  module.a.assign(size_t(rank * shape.in), 0.0f);
  module.b.assign(size_t(shape.out * rank), 0.0f);
  return module;
}

const LoraModule* LoraAdapter::find(int layer, LinearKind kind) const {
  if (layer < 0 || layer >= layer_count()) return nullptr;
  const auto& slot = layers_[size_t(layer)][size_t(kind)];
  return slot ? &*slot : nullptr;
}

LoraModule* LoraAdapter::find(int layer, LinearKind kind) {
  return const_cast<LoraModule*>(std::as_const(*this).find(layer, kind));
}

std::vector<const LoraModule*> LoraAdapter::modules() const {
  std::vector<const LoraModule*> result;
  for (const auto& layer : layers_)
    for (const auto& slot : layer)
      if (slot) result.push_back(&*slot);
  return result;
}

std::vector<LoraModule*> LoraAdapter::modules() {
  std::vector<LoraModule*> result;
  for (const LoraModule* module : std::as_const(*this).modules()) result.push_back(const_cast<LoraModule*>(module));
  return result;
}

size_t LoraAdapter::module_count() const { return modules().size(); }

int64_t LoraAdapter::parameter_count() const {
  int64_t total = 0;
  for (const LoraModule* module : modules()) total += module->parameter_count();
  return total;
}

std::string lora_module_name(StackPrefix prefix, int layer, LinearKind kind) {
  return fmt::format("{}layers.{}.{}", stack_prefix_string(prefix), layer, linear_module_path(kind));
}

std::string lora_tensor_name(StackPrefix prefix, int layer, LinearKind kind, LoraFactor factor) {
  return fmt::format("base_model.model.{}.{}.weight", lora_module_name(prefix, layer, kind),
                     factor == LoraFactor::A ? "lora_A" : "lora_B");
}

}  // namespace dt
