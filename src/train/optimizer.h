#pragma once
// AdamW over an adapter's LoRA factors, as torch.optim.AdamW: decoupled weight decay
// (p -= lr * weight_decay * p before the Adam update), bias-corrected moments and a step count
// per tensor. Also the global-norm gradient clip (torch.nn.utils.clip_grad_norm_) and the
// learning-rate schedules of transformers (get_constant/linear/cosine_schedule_with_warmup).
#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "model/lora_adapter.h"
#include "model/lora_gradients.h"

namespace dt {

struct AdamWOptions {
  double beta1 = 0.9;
  double beta2 = 0.999;
  double epsilon = 1e-8;
  double weight_decay = 0.0;
};

// The moments and step count of one factor (A or B of one module).
struct AdamWTensorState {
  std::vector<float> exp_avg;
  std::vector<float> exp_avg_sq;
  int64_t step = 0;
};

class AdamW {
 public:
  // Zero moments for every factor of `adapter`.
  AdamW(const LoraAdapter& adapter, AdamWOptions options);

  // One update of every factor with learning rate `lr`.
  void step(LoraAdapter& adapter, const LoraGradients& gradients, double lr);

  // Factors in LoraAdapter::modules() order, A then B of each module.
  const std::vector<AdamWTensorState>& states() const { return states_; }

  // optimizer.safetensors: exp_avg and exp_avg_sq per factor (named after the adapter's tensor
  // keys in `prefix`'s namespace) and each step count in the metadata. Loading fails naming the
  // file when a tensor is missing or has another size.
  void save(const std::filesystem::path& file, const LoraAdapter& adapter, StackPrefix prefix) const;
  void load(const std::filesystem::path& file, const LoraAdapter& adapter, StackPrefix prefix);

 private:
  AdamWOptions options_;
  std::vector<AdamWTensorState> states_;
};

// Scales the gradients so that their global L2 norm is at most max_norm (no clipping when
// max_norm <= 0) and returns the norm before clipping.
double clip_gradient_norm(LoraGradients& gradients, double max_norm);

enum class LrSchedule { Constant, Linear, Cosine };
LrSchedule parse_lr_schedule(std::string_view name);  // constant, linear or cosine
std::string_view lr_schedule_name(LrSchedule schedule);

// The learning rate for the optimizer step taken after `completed_steps` steps, with a linear
// warmup from 0 over `warmup_steps` and then the schedule's decay to 0 at `total_steps`.
double learning_rate(LrSchedule schedule, double peak, int64_t completed_steps, int64_t warmup_steps,
                     int64_t total_steps);

}  // namespace dt
