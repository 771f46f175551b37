// New adapters: PEFT / gaussian / random init, determinism per seed, independence of each
// module's draws from the others, and the target / layer list parsers.
#include <gtest/gtest.h>

#include <cmath>

#include "lora_fixtures.h"

namespace dt {
namespace {

AdapterInitOptions options_for(std::vector<LinearKind> kinds, LoraInit init, uint64_t seed) {
  AdapterInitOptions options;
  options.rank = 8;
  options.alpha = 16;
  options.kinds = std::move(kinds);
  options.init = init;
  options.seed = seed;
  return options;
}

TEST(AdapterInit, PeftInitIsKaimingUniformAWithZeroB) {
  const ModelConfig config = test::tiny_config();
  const LoraAdapter adapter = init_adapter(config, options_for(parse_target_kinds("all-linear"), LoraInit::Peft, 3));
  for (const LoraModule* module : adapter.modules()) {
    const double bound = 1.0 / std::sqrt(double(module->in));
    double max_abs = 0;
    for (float value : module->a) {
      EXPECT_LE(std::abs(value), bound);
      max_abs = std::max(max_abs, double(std::abs(value)));
    }
    EXPECT_GT(max_abs, 0.8 * bound);  // actually spread over the interval
    for (float value : module->b) EXPECT_EQ(value, 0.0f);
  }
  EXPECT_EQ(adapter.settings().init_lora_weights, "true");
}

TEST(AdapterInit, GaussianInitHasStdOneOverRank) {
  const ModelConfig config = test::tiny_config();
  const LoraAdapter adapter = init_adapter(config, options_for({LinearKind::MlpDown}, LoraInit::Gaussian, 3));
  double sum = 0, sum_squares = 0;
  size_t count = 0;
  for (const LoraModule* module : adapter.modules()) {
    for (float value : module->a) {
      sum += value;
      sum_squares += double(value) * value;
      ++count;
    }
    for (float value : module->b) EXPECT_EQ(value, 0.0f);
  }
  const double mean = sum / double(count);
  const double deviation = std::sqrt(sum_squares / double(count) - mean * mean);
  EXPECT_NEAR(mean, 0.0, 0.01);
  EXPECT_NEAR(deviation, 1.0 / 8, 0.01);  // 4 x 8 x 128 draws
  EXPECT_EQ(adapter.settings().init_lora_weights, "gaussian");
}

TEST(AdapterInit, RandomInitMakesBNonZero) {
  const LoraAdapter adapter = test::random_adapter(test::tiny_config(), 8);
  for (const LoraModule* module : adapter.modules()) {
    const double bound = 1.0 / std::sqrt(8.0);
    bool non_zero = false;
    for (float value : module->b) {
      EXPECT_LE(std::abs(value), bound);
      non_zero |= value != 0.0f;
    }
    EXPECT_TRUE(non_zero);
  }
}

TEST(AdapterInit, DeterministicPerSeedAndIndependentOfOtherModules) {
  const ModelConfig config = test::tiny_config();
  const LoraAdapter all = init_adapter(config, options_for(parse_target_kinds("all-linear"), LoraInit::Random, 11));
  const LoraAdapter again = init_adapter(config, options_for(parse_target_kinds("all-linear"), LoraInit::Random, 11));
  const LoraAdapter fewer = init_adapter(config, options_for({LinearKind::MlpUp, LinearKind::AttnQ}, LoraInit::Random, 11));
  const LoraAdapter other_seed = init_adapter(config, options_for({LinearKind::MlpUp}, LoraInit::Random, 12));
  for (const LoraModule* module : all.modules()) {
    EXPECT_EQ(module->a, again.find(module->layer, module->kind)->a);
    EXPECT_EQ(module->b, again.find(module->layer, module->kind)->b);
  }
  for (const LoraModule* module : fewer.modules()) {
    EXPECT_EQ(module->a, all.find(module->layer, module->kind)->a);
    EXPECT_EQ(module->b, all.find(module->layer, module->kind)->b);
  }
  EXPECT_NE(other_seed.find(1, LinearKind::MlpUp)->a, all.find(1, LinearKind::MlpUp)->a);
  // Different modules of one seed draw different values.
  EXPECT_NE(all.find(1, LinearKind::MlpUp)->a, all.find(2, LinearKind::MlpUp)->a);
  EXPECT_NE(all.find(1, LinearKind::MlpUp)->a, all.find(1, LinearKind::MlpGate)->a);
}

TEST(AdapterInit, LayersSelectTheAdaptedLayers) {
  AdapterInitOptions options = options_for({LinearKind::AttnQ, LinearKind::GdnA}, LoraInit::Peft, 0);
  options.layers = std::vector<int>{0, 3};
  const LoraAdapter adapter = init_adapter(test::tiny_config(), options);
  EXPECT_EQ(adapter.module_count(), 2u);
  EXPECT_NE(adapter.find(0, LinearKind::GdnA), nullptr);
  EXPECT_NE(adapter.find(3, LinearKind::AttnQ), nullptr);
  options.layers = std::vector<int>{1};
  options.kinds = {LinearKind::AttnQ};
  EXPECT_THROW(init_adapter(test::tiny_config(), options), Error);  // layer 1 has no attention
}

TEST(AdapterInit, ParsesTargetsAndLayers) {
  EXPECT_EQ(parse_target_kinds("all-linear").size(), size_t(kLinearKindCount));
  EXPECT_EQ(parse_target_kinds("q_proj,in_proj_qkv,q_proj"), (std::vector<LinearKind>{LinearKind::AttnQ, LinearKind::GdnQkv}));
  EXPECT_THROW(parse_target_kinds("q_proj,lm_head"), Error);
  EXPECT_THROW(parse_target_kinds(""), Error);
  EXPECT_EQ(parse_layer_list("3,0-1", 4), (std::vector<int>{0, 1, 3}));
  EXPECT_THROW(parse_layer_list("4", 4), Error);
  EXPECT_THROW(parse_layer_list("2-1", 4), Error);
  EXPECT_THROW(parse_layer_list("x", 4), Error);
  EXPECT_EQ(parse_lora_init("gaussian"), LoraInit::Gaussian);
  EXPECT_THROW(parse_lora_init("pissa"), Error);
}

}  // namespace
}  // namespace dt
