#include "train/optimizer.h"

#include <cmath>
#include <numbers>

#include "core/error.h"
#include "io/safetensors.h"

namespace dt {
namespace {

// The factor arrays of an adapter, in the order of AdamW::states().
std::vector<std::vector<float>*> factor_arrays(LoraAdapter& adapter) {
  std::vector<std::vector<float>*> out;
  for (LoraModule* module : adapter.modules()) {
    out.push_back(&module->a);
    out.push_back(&module->b);
  }
  return out;
}

std::vector<std::string> factor_names(const LoraAdapter& adapter, StackPrefix prefix) {
  std::vector<std::string> out;
  for (const LoraModule* module : adapter.modules()) {
    out.push_back(lora_tensor_name(prefix, module->layer, module->kind, LoraFactor::A));
    out.push_back(lora_tensor_name(prefix, module->layer, module->kind, LoraFactor::B));
  }
  return out;
}

}  // namespace

AdamW::AdamW(const LoraAdapter& adapter, AdamWOptions options) : options_(options) {
  for (const LoraModule* module : adapter.modules()) {
    for (size_t size : {module->a.size(), module->b.size()})
      states_.push_back({std::vector<float>(size, 0.0f), std::vector<float>(size, 0.0f), 0});
  }
}

void AdamW::step(LoraAdapter& adapter, const LoraGradients& gradients, double lr) {
  std::vector<std::vector<float>*> parameters = factor_arrays(adapter);
  std::vector<const std::vector<float>*> grads;
  for (const auto& module : gradients.modules()) {
    grads.push_back(&module.a);
    grads.push_back(&module.b);
  }
  if (parameters.size() != states_.size() || grads.size() != states_.size())
    fail("AdamW: the adapter or its gradients have {} / {} factors, the optimizer has {}", parameters.size(),
         grads.size(), states_.size());
  const auto beta1 = float(options_.beta1), beta2 = float(options_.beta2);
  const auto decay = float(1.0 - lr * options_.weight_decay);
  for (size_t t = 0; t < states_.size(); ++t) {
    AdamWTensorState& state = states_[t];
    std::vector<float>& p = *parameters[t];
    const std::vector<float>& g = *grads[t];
    if (p.size() != state.exp_avg.size() || g.size() != p.size())
      fail("AdamW: factor {} has {} values, its gradient {}, its state {}", t, p.size(), g.size(), state.exp_avg.size());
    ++state.step;
    const double bias1 = 1.0 - std::pow(options_.beta1, double(state.step));
    const double bias2 = 1.0 - std::pow(options_.beta2, double(state.step));
    const auto step_size = float(lr / bias1);
    const auto bias2_sqrt = float(std::sqrt(bias2));
    const auto epsilon = float(options_.epsilon);
    float* m = state.exp_avg.data();
    float* v = state.exp_avg_sq.data();
    for (size_t i = 0; i < p.size(); ++i) {
      p[i] *= decay;
      m[i] = beta1 * m[i] + (1.0f - beta1) * g[i];
      v[i] = beta2 * v[i] + (1.0f - beta2) * g[i] * g[i];
      p[i] -= step_size * m[i] / (std::sqrt(v[i]) / bias2_sqrt + epsilon);
    }
  }
}

void AdamW::save(const std::filesystem::path& file, const LoraAdapter& adapter, StackPrefix prefix) const {
  const std::vector<std::string> names = factor_names(adapter, prefix);
  std::vector<NamedTensor> tensors;
  std::map<std::string, std::string> metadata{{"format", "deltatune-adamw"}};
  for (size_t t = 0; t < states_.size(); ++t) {
    const auto size = int64_t(states_[t].exp_avg.size());
    tensors.push_back({names[t] + ".exp_avg", Tensor::from_f32(DType::F32, {size}, states_[t].exp_avg)});
    tensors.push_back({names[t] + ".exp_avg_sq", Tensor::from_f32(DType::F32, {size}, states_[t].exp_avg_sq)});
    metadata[names[t] + ".step"] = std::to_string(states_[t].step);
  }
  write_safetensors(file, tensors, metadata);
}

void AdamW::load(const std::filesystem::path& file, const LoraAdapter& adapter, StackPrefix prefix) {
  const SafetensorsFile stored = SafetensorsFile::open(file);
  const std::vector<std::string> names = factor_names(adapter, prefix);
  for (size_t t = 0; t < states_.size(); ++t) {
    for (auto [suffix, values] : {std::pair{".exp_avg", &states_[t].exp_avg}, {".exp_avg_sq", &states_[t].exp_avg_sq}}) {
      const Tensor tensor = stored.get(names[t] + suffix, DType::F32);
      if (size_t(tensor.numel()) != values->size())
        fail("{}: {}{} has {} values, the adapter's factor has {}", file.string(), names[t], suffix, tensor.numel(),
             values->size());
      values->assign(tensor.f32(), tensor.f32() + tensor.numel());
    }
    const auto step = stored.metadata().find(names[t] + ".step");
    if (step == stored.metadata().end()) fail("{}: no step count for {} in the metadata", file.string(), names[t]);
    try {
      states_[t].step = std::stoll(step->second);
    } catch (const std::exception&) {
      fail("{}: the step count of {} is not an integer: \"{}\"", file.string(), names[t], step->second);
    }
  }
}

double clip_gradient_norm(LoraGradients& gradients, double max_norm) {
  const double norm = std::sqrt(gradients.squared_norm());
  // torch.nn.utils.clip_grad_norm_: coefficient max_norm / (norm + 1e-6), applied only below 1.
  if (max_norm > 0 && std::isfinite(norm)) {
    const double coefficient = max_norm / (norm + 1e-6);
    if (coefficient < 1.0) gradients.scale(float(coefficient));
  }
  return norm;
}

LrSchedule parse_lr_schedule(std::string_view name) {
  if (name == "constant") return LrSchedule::Constant;
  if (name == "linear") return LrSchedule::Linear;
  if (name == "cosine") return LrSchedule::Cosine;
  fail("--lr-schedule: unknown schedule \"{}\" (expected constant, linear or cosine)", name);
}

std::string_view lr_schedule_name(LrSchedule schedule) {
  switch (schedule) {
    case LrSchedule::Constant: return "constant";
    case LrSchedule::Linear: return "linear";
    case LrSchedule::Cosine: return "cosine";
  }
  return "";
}

double learning_rate(LrSchedule schedule, double peak, int64_t completed_steps, int64_t warmup_steps,
                     int64_t total_steps) {
  const auto step = double(completed_steps);
  if (completed_steps < warmup_steps) return peak * step / double(std::max<int64_t>(1, warmup_steps));
  const double decay_steps = double(std::max<int64_t>(1, total_steps - warmup_steps));
  const double progress = (step - double(warmup_steps)) / decay_steps;
  switch (schedule) {
    case LrSchedule::Constant: return peak;
    case LrSchedule::Linear: return peak * std::max(0.0, 1.0 - progress);
    case LrSchedule::Cosine: return peak * std::max(0.0, 0.5 * (1.0 + std::cos(std::numbers::pi * progress)));
  }
  return peak;
}

}  // namespace dt
