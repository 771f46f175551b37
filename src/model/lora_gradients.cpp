#include "model/lora_gradients.h"

#include <algorithm>
#include <utility>

namespace dt {

LoraGradients::LoraGradients(const LoraAdapter& adapter)
    : index_(size_t(adapter.layer_count()), std::vector<int>(kLinearKindCount, -1)) {
  for (const LoraModule* module : adapter.modules()) {
    index_[size_t(module->layer)][size_t(module->kind)] = int(modules_.size());
    modules_.push_back({std::vector<float>(module->a.size(), 0.0f), std::vector<float>(module->b.size(), 0.0f)});
  }
}

const LoraModuleGradient* LoraGradients::find(int layer, LinearKind kind) const {
  if (layer < 0 || size_t(layer) >= index_.size()) return nullptr;
  const int position = index_[size_t(layer)][size_t(kind)];
  return position < 0 ? nullptr : &modules_[size_t(position)];
}

LoraModuleGradient* LoraGradients::find(int layer, LinearKind kind) {
  return const_cast<LoraModuleGradient*>(std::as_const(*this).find(layer, kind));
}

void LoraGradients::set_zero() {
  for (auto& module : modules_) {
    std::fill(module.a.begin(), module.a.end(), 0.0f);
    std::fill(module.b.begin(), module.b.end(), 0.0f);
  }
}

double LoraGradients::squared_norm() const {
  double sum = 0;
  for (const auto& module : modules_) {
    for (float value : module.a) sum += double(value) * value;
    for (float value : module.b) sum += double(value) * value;
  }
  return sum;
}

void LoraGradients::scale(float factor) {
  for (auto& module : modules_) {
    for (float& value : module.a) value *= factor;
    for (float& value : module.b) value *= factor;
  }
}

}  // namespace dt
