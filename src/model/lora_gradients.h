#pragma once
// Gradients of an adapter's LoRA factors, one pair per module of the adapter, with the same shapes.
// The backward accumulates into them; the optimizer reads them.
#include <cstdint>
#include <vector>

#include "model/lora_adapter.h"

namespace dt {

struct LoraModuleGradient {
  std::vector<float> a;  // [rank, in], like LoraModule::a
  std::vector<float> b;  // [out, rank], like LoraModule::b
};

class LoraGradients {
 public:
  // Zero gradients for every module of `adapter`.
  explicit LoraGradients(const LoraAdapter& adapter);

  // The gradient of the module at (layer, kind); null where the adapter has no module there.
  LoraModuleGradient* find(int layer, LinearKind kind);
  const LoraModuleGradient* find(int layer, LinearKind kind) const;
  // In the order of LoraAdapter::modules() (layer order, then kind order).
  std::vector<LoraModuleGradient>& modules() { return modules_; }
  const std::vector<LoraModuleGradient>& modules() const { return modules_; }

  void set_zero();
  // Sum of squares of every entry, in double (for the global-norm clip and reports).
  double squared_norm() const;
  void scale(float factor);

 private:
  std::vector<LoraModuleGradient> modules_;
  std::vector<std::vector<int>> index_;  // [layer][kind] -> position in modules_, or -1
};

}  // namespace dt
