// AdamW against a hand-computed torch.optim.AdamW step, the global-norm clip, the schedules and
// the optimizer state file.
#include <gtest/gtest.h>

#include <cmath>

#include "core/error.h"
#include "model/random_model.h"
#include "test_util.h"
#include "train/optimizer.h"

namespace dt {
namespace {

// One rank-1 module on a 64-wide linear: A [1, 64], B [out, 1].
LoraAdapter one_module_adapter() {
  LoraAdapter adapter(model_preset("tiny", 256), LoraSettings{});
  LoraModule& module = adapter.add_module(0, LinearKind::MlpGate, 1, 2.0);
  for (size_t i = 0; i < module.a.size(); ++i) module.a[i] = 0.01f * float(i % 7) - 0.02f;
  for (size_t i = 0; i < module.b.size(); ++i) module.b[i] = 0.005f * float(i % 5);
  return adapter;
}

TEST(AdamW, TwoStepsMatchAHandComputedReference) {
  LoraAdapter adapter = one_module_adapter();
  LoraGradients gradients(adapter);
  const AdamWOptions options{.beta1 = 0.9, .beta2 = 0.99, .epsilon = 1e-6, .weight_decay = 0.1};
  AdamW optimizer(adapter, options);
  const std::vector<float> a0 = adapter.modules()[0]->a;
  const std::vector<double> lrs = {0.01, 0.005};
  const std::vector<float> g_values = {0.3f, -0.02f};  // gradient of A[0] at each step

  // Reference for A[0] in double: p *= 1 - lr wd; m, v moments; p -= lr / bc1 * m / (sqrt(v / bc2) + eps).
  double p = a0[0], m = 0, v = 0;
  for (int step = 0; step < 2; ++step) {
    std::fill(gradients.modules()[0].a.begin(), gradients.modules()[0].a.end(), 0.0f);
    gradients.modules()[0].a[0] = g_values[size_t(step)];
    optimizer.step(adapter, gradients, lrs[size_t(step)]);
    const double g = g_values[size_t(step)], t = step + 1;
    p *= 1 - lrs[size_t(step)] * options.weight_decay;
    m = options.beta1 * m + (1 - options.beta1) * g;
    v = options.beta2 * v + (1 - options.beta2) * g * g;
    const double bc1 = 1 - std::pow(options.beta1, t), bc2 = 1 - std::pow(options.beta2, t);
    p -= lrs[size_t(step)] / bc1 * m / (std::sqrt(v) / std::sqrt(bc2) + options.epsilon);
    EXPECT_NEAR(adapter.modules()[0]->a[0], p, 1e-6) << "step " << t;
  }
  // A zero-gradient entry only decays: p (1 - lr1 wd)(1 - lr2 wd).
  EXPECT_NEAR(adapter.modules()[0]->a[3], a0[3] * (1 - 0.01 * 0.1) * (1 - 0.005 * 0.1), 1e-8);
  // The first step moves every entry with a gradient by about lr (Adam's normalised step).
  EXPECT_EQ(optimizer.states().size(), 2u);  // A and B, each with its own step count
  EXPECT_EQ(optimizer.states()[0].step, 2);
  EXPECT_EQ(optimizer.states()[1].step, 2);
}

TEST(AdamW, StateRoundTripsThroughItsFile) {
  LoraAdapter adapter = one_module_adapter();
  LoraGradients gradients(adapter);
  for (auto& value : gradients.modules()[0].b) value = 0.25f;
  AdamW optimizer(adapter, {});
  optimizer.step(adapter, gradients, 1e-3);
  const auto file = test::temp_dir() / "optimizer.safetensors";
  optimizer.save(file, adapter, StackPrefix::Multimodal);
  AdamW loaded(adapter, {});
  loaded.load(file, adapter, StackPrefix::Multimodal);
  for (size_t t = 0; t < optimizer.states().size(); ++t) {
    EXPECT_EQ(loaded.states()[t].exp_avg, optimizer.states()[t].exp_avg);
    EXPECT_EQ(loaded.states()[t].exp_avg_sq, optimizer.states()[t].exp_avg_sq);
    EXPECT_EQ(loaded.states()[t].step, 1);
  }
  LoraAdapter other(model_preset("tiny", 256), LoraSettings{});
  other.add_module(0, LinearKind::MlpGate, 2, 2.0);
  AdamW mismatched(other, {});
  EXPECT_THROW(mismatched.load(file, other, StackPrefix::Multimodal), Error);
}

TEST(GradientClip, ScalesToTheMaximumNormOnlyWhenAbove) {
  LoraAdapter adapter = one_module_adapter();
  LoraGradients gradients(adapter);
  gradients.modules()[0].a[0] = 3.0f;
  gradients.modules()[0].b[0] = 4.0f;
  EXPECT_DOUBLE_EQ(clip_gradient_norm(gradients, 10.0), 5.0);
  EXPECT_FLOAT_EQ(gradients.modules()[0].a[0], 3.0f);
  EXPECT_DOUBLE_EQ(clip_gradient_norm(gradients, 1.0), 5.0);
  EXPECT_NEAR(std::sqrt(gradients.squared_norm()), 1.0, 1e-6);
  EXPECT_NEAR(gradients.modules()[0].b[0], 0.8, 1e-6);
}

TEST(LearningRate, SchedulesFollowTransformers) {
  // Warmup 2 of 10 steps, peak 1.
  EXPECT_DOUBLE_EQ(learning_rate(LrSchedule::Constant, 1.0, 0, 2, 10), 0.0);
  EXPECT_DOUBLE_EQ(learning_rate(LrSchedule::Constant, 1.0, 1, 2, 10), 0.5);
  EXPECT_DOUBLE_EQ(learning_rate(LrSchedule::Constant, 1.0, 9, 2, 10), 1.0);
  EXPECT_DOUBLE_EQ(learning_rate(LrSchedule::Linear, 1.0, 2, 2, 10), 1.0);
  EXPECT_DOUBLE_EQ(learning_rate(LrSchedule::Linear, 1.0, 6, 2, 10), 0.5);
  EXPECT_DOUBLE_EQ(learning_rate(LrSchedule::Linear, 1.0, 9, 2, 10), 0.125);
  EXPECT_DOUBLE_EQ(learning_rate(LrSchedule::Cosine, 1.0, 2, 2, 10), 1.0);
  EXPECT_NEAR(learning_rate(LrSchedule::Cosine, 1.0, 6, 2, 10), 0.5, 1e-12);
  EXPECT_NEAR(learning_rate(LrSchedule::Cosine, 1.0, 4, 2, 10), 0.5 * (1 + std::cos(M_PI / 4)), 1e-12);
  // No warmup: the first step runs at the peak.
  EXPECT_DOUBLE_EQ(learning_rate(LrSchedule::Linear, 2e-4, 0, 0, 4), 2e-4);
  EXPECT_EQ(parse_lr_schedule("cosine"), LrSchedule::Cosine);
  EXPECT_THROW(parse_lr_schedule("exponential"), Error);
}

}  // namespace
}  // namespace dt
