// The whole-model LoRA backward on the asymmetric tiny model (nq 4 / nkv 2, nk 2 / nv 4, dk 16 /
// dv 24, untied head, layers 0-2 Gated DeltaNet and 3 full attention, randomised norms) with an
// adapter on all twelve kinds, ranks differing by kind and non-zero B: every LoRA factor array
// against central finite differences of the HF mean loss (one example of 70 tokens; two packed
// examples of 130 with masked prompts, rsLoRA), recomputed activations bitwise equal to kept tapes,
// packed equal to separate examples, batch_loss equal to the accumulated loss and to the mean CE
// of the inference forward's logits, a zero-B adapter's loss equal to the base model's, and every
// bad input refused with its problem named.
#include "model/backward.h"

#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <random>
#include <string>

#include "core/error.h"
#include "model/random_model.h"
#include "ops/cross_entropy.h"
#include "ops/gradcheck.h"
#include "ops/numeric_test_util.h"
#include "test_util.h"

namespace dt {
namespace {

ModelConfig tiny_config(const std::vector<std::string>& overrides = {}) {
  return apply_config_overrides(model_preset("tiny", 256), overrides);
}

// A random checkpoint read back through the real loader.
ModelWeights random_model(const ModelConfig& config, uint64_t seed = 7) {
  RandomInitOptions init;
  init.seed = seed;
  init.dtype = DType::F32;
  init.randomize_norms = true;
  const auto dir = test::temp_dir("model");
  write_checkpoint(dir, random_weights(config, StackPrefix::Multimodal, init), 1);
  return load_model(config, Checkpoint::open(dir), dir.string());
}

// Every linear of every layer, rank 2..4 and alpha `alpha`..`alpha` + 1 by kind. A ~ U(+-1/sqrt(in));
// B ~ U(+-1/sqrt(r)), or zero as PEFT initialises it.
LoraAdapter random_adapter(const ModelConfig& config, bool use_rslora, bool zero_b = false, uint32_t seed = 5,
                           double alpha = 3.0) {
  LoraSettings settings;
  settings.use_rslora = use_rslora;
  LoraAdapter adapter(config, settings);
  std::mt19937 engine(seed);
  for (int layer = 0; layer < config.num_hidden_layers; ++layer)
    for (int kind = 0; kind < kLinearKindCount; ++kind) {
      if (!layer_has_linear(config.layer_types[size_t(layer)], LinearKind(kind))) continue;
      LoraModule& module = adapter.add_module(layer, LinearKind(kind), 2 + kind % 3, alpha + kind % 2);
      std::uniform_real_distribution<float> a(-1.0f / std::sqrt(float(module.in)), 1.0f / std::sqrt(float(module.in)));
      std::uniform_real_distribution<float> b(-1.0f / std::sqrt(float(module.rank)), 1.0f / std::sqrt(float(module.rank)));
      for (float& value : module.a) value = a(engine);
      if (!zero_b)
        for (float& value : module.b) value = b(engine);
    }
  return adapter;
}

std::vector<int32_t> token_ids(int64_t count, int64_t vocab, uint32_t seed) {
  std::mt19937 engine(seed);
  std::uniform_int_distribution<int32_t> pick(0, int32_t(vocab - 1));
  std::vector<int32_t> ids(static_cast<size_t>(count));
  for (int32_t& id : ids) id = pick(engine);
  return ids;
}

struct Example {
  std::vector<int32_t> input_ids, labels;
};

// Labels = input_ids with the first `masked_prompt` and any `masked` positions set to -100.
Example example(int64_t length, int64_t vocab, uint32_t seed, int64_t masked_prompt = 0,
                std::vector<int64_t> masked = {}) {
  Example result{token_ids(length, vocab, seed), {}};
  result.labels = result.input_ids;
  for (int64_t t = 0; t < masked_prompt; ++t) result.labels[size_t(t)] = int32_t(kIgnoreIndex);
  for (int64_t t : masked) result.labels[size_t(t)] = int32_t(kIgnoreIndex);
  return result;
}

PackedBatch pack(const std::vector<Example>& examples) {
  PackedBatch batch;
  for (const Example& e : examples) batch.append(e.input_ids, e.labels);
  return batch;
}

const ModelConfig& config() {
  static const ModelConfig value = tiny_config();
  return value;
}
const ModelWeights& model() {
  static const ModelWeights value = random_model(config());
  return value;
}

// Gradients of the mean loss of `batch`.
LoraGradients mean_loss_gradients(const LoraAdapter& adapter, const PackedBatch& batch, const BackwardOptions& options,
                                  LossSum* loss = nullptr) {
  LoraGradients gradients(adapter);
  const LossSum sum =
      accumulate_lora_gradients(model(), adapter, batch, float(1.0 / double(batch.target_count())), gradients, options);
  if (loss) *loss = sum;
  return gradients;
}

std::string module_label(const LoraModule& module, const char* factor) {
  return "layer " + std::to_string(module.layer) + " " + std::string(linear_module_path(module.kind)) + " " + factor;
}

// Every A and B of the adapter against finite differences of batch_loss's mean, each on its own.
void check_every_factor(LoraAdapter& adapter, const PackedBatch& batch) {
  const LoraGradients gradients = mean_loss_gradients(adapter, batch, {});
  std::vector<test::GradParameter<float>> parameters;
  const std::vector<LoraModule*> modules = adapter.modules();
  for (size_t i = 0; i < modules.size(); ++i) {
    parameters.push_back({module_label(*modules[i], "A"), modules[i]->a, gradients.modules()[i].a});
    parameters.push_back({module_label(*modules[i], "B"), modules[i]->b, gradients.modules()[i].b});
  }
  ASSERT_EQ(parameters.size(), 2 * size_t(3 * 8 + 7));  // three DeltaNet layers, one attention layer
  const double count = double(batch.target_count());
  // Few entries per array (the largest and random ones) keep the ~1000 loss evaluations fast. The
  // float forward's rounding makes the finite differences noisy at ~1e-6 in absolute terms, which
  // is what the absolute floor allows for on arrays whose gradients are all tiny.
  test::GradcheckOptions options;
  options.random_entries = 2;
  options.largest_entries = 1;
  options.steps = {3e-3, 1e-3, 3e-4};
  options.absolute_floor = 2e-4;
  const auto reports =
      test::gradcheck<float>([&] { return batch_loss(model(), &adapter, batch).sum / count; }, parameters, options);
  EXPECT_TRUE(test::gradients_match(reports, 3e-2));
}

TEST(ModelBackward, EveryFactorMatchesFiniteDifferencesOneExampleOf70) {
  LoraAdapter adapter = random_adapter(config(), false);
  check_every_factor(adapter, pack({example(70, 256, 1)}));
}

// 130 tokens (the second example crosses the chunk of 64), masked prompts and a masked position.
// alpha / sqrt(rank) scalings of 0.75 to 1.8, like the plain adapter's (larger ones make the loss
// so curved at layer 0 that finite differences need steps near float round-off).
TEST(ModelBackward, EveryFactorMatchesFiniteDifferencesTwoPackedExamplesRsLora) {
  LoraAdapter adapter = random_adapter(config(), true, false, 6, 1.5);
  check_every_factor(adapter, pack({example(50, 256, 2, 10), example(80, 256, 3, 5, {40})}));
}

TEST(ModelBackward, RecomputedActivationsGiveBitwiseTheSameGradients) {
  const LoraAdapter adapter = random_adapter(config(), false);
  const PackedBatch batch = pack({example(70, 256, 1, 3), example(60, 256, 4)});
  LossSum kept_loss, recomputed_loss;
  const LoraGradients kept = mean_loss_gradients(adapter, batch, {}, &kept_loss);
  BackwardOptions recompute;
  recompute.recompute_activations = true;
  const LoraGradients recomputed = mean_loss_gradients(adapter, batch, recompute, &recomputed_loss);
  EXPECT_EQ(kept_loss.sum, recomputed_loss.sum);
  EXPECT_GT(kept.squared_norm(), 0.0);
  for (size_t i = 0; i < kept.modules().size(); ++i) {
    EXPECT_EQ(kept.modules()[i].a, recomputed.modules()[i].a) << "module " << i << " A";
    EXPECT_EQ(kept.modules()[i].b, recomputed.modules()[i].b) << "module " << i << " B";
  }
}

// An example contributes the same loss and gradients packed with others or alone; the recurrent
// delta rule agrees with the chunked one.
TEST(ModelBackward, PackedExamplesAgreeWithSeparateOnesAndRecurrentWithChunked) {
  const LoraAdapter adapter = random_adapter(config(), false);
  const std::vector<Example> examples = {example(70, 256, 1, 3), example(65, 256, 8, 0, {7}), example(1, 256, 9)};
  const PackedBatch packed = pack(examples);
  const float scale = float(1.0 / double(packed.target_count()));
  LoraGradients together(adapter), separately(adapter), recurrent(adapter);
  const LossSum packed_loss = accumulate_lora_gradients(model(), adapter, packed, scale, together);
  BackwardOptions recurrent_options;
  recurrent_options.delta_rule = DeltaRuleMode::Recurrent;
  accumulate_lora_gradients(model(), adapter, packed, scale, recurrent, recurrent_options);
  LossSum separate_loss;
  for (const Example& e : examples) {
    const LossSum loss = accumulate_lora_gradients(model(), adapter, pack({e}), scale, separately);
    separate_loss.sum += loss.sum;
    separate_loss.targets += loss.targets;
  }
  EXPECT_EQ(packed_loss.targets, separate_loss.targets);
  EXPECT_NEAR(packed_loss.sum, separate_loss.sum, 1e-5 * separate_loss.sum);
  for (size_t i = 0; i < together.modules().size(); ++i) {
    // Float sums in another order: judged on the scale of the largest gradient of all.
    const double floor = std::sqrt(together.squared_norm());
    EXPECT_TRUE(test::all_close(together.modules()[i].a, separately.modules()[i].a, 1e-4, floor)) << "module " << i;
    EXPECT_TRUE(test::all_close(together.modules()[i].b, separately.modules()[i].b, 1e-4, floor)) << "module " << i;
    EXPECT_TRUE(test::all_close(recurrent.modules()[i].a, together.modules()[i].a, 1e-4, floor)) << "module " << i;
    EXPECT_TRUE(test::all_close(recurrent.modules()[i].b, together.modules()[i].b, 1e-4, floor)) << "module " << i;
  }
}

// Mean CE of the shifted labels from the inference forward's full logits, in double.
double inference_mean_loss(const LoraAdapter* adapter, const std::vector<Example>& examples) {
  double sum = 0;
  int64_t count = 0;
  for (const Example& e : examples) {
    InferenceState state = new_inference_state(config());
    ForwardOptions options;
    options.adapter = adapter;
    const std::vector<float> logits = forward(model(), e.input_ids, state, options).to_f32_vector();
    const size_t vocab = size_t(config().vocab_size);
    for (size_t t = 0; t + 1 < e.input_ids.size(); ++t) {
      const int32_t label = e.labels[t + 1];
      if (label == kIgnoreIndex) continue;
      const float* row = logits.data() + t * vocab;
      double max = row[0], total = 0;
      for (size_t v = 0; v < vocab; ++v) max = std::max(max, double(row[v]));
      for (size_t v = 0; v < vocab; ++v) total += std::exp(double(row[v]) - max);
      sum += max + std::log(total) - double(row[label]);
      ++count;
    }
  }
  return sum / double(count);
}

TEST(ModelBackward, BatchLossEqualsAccumulatedLossAndTheInferenceForwardsMeanCrossEntropy) {
  const LoraAdapter adapter = random_adapter(config(), false);
  const std::vector<Example> examples = {example(70, 256, 1, 3), example(40, 256, 4, 0, {20})};
  const PackedBatch batch = pack(examples);
  const LossSum evaluated = batch_loss(model(), &adapter, batch);
  LossSum accumulated;
  mean_loss_gradients(adapter, batch, {}, &accumulated);
  EXPECT_EQ(evaluated.targets, 69 - 2 + 39 - 1);
  EXPECT_EQ(evaluated.targets, accumulated.targets);
  EXPECT_EQ(evaluated.sum, accumulated.sum);
  EXPECT_NEAR(evaluated.mean(), inference_mean_loss(&adapter, examples), 1e-5 * evaluated.mean());
  const LossSum base = batch_loss(model(), nullptr, batch);
  EXPECT_NEAR(base.mean(), inference_mean_loss(nullptr, examples), 1e-5 * base.mean());
  EXPECT_GT(std::abs(base.mean() - evaluated.mean()), 1e-4);  // the adapter is not a no-op
}

TEST(ModelBackward, ZeroBAdapterHasTheBaseLossAndOnlyBGradients) {
  const LoraAdapter adapter = random_adapter(config(), false, /*zero_b=*/true);
  const PackedBatch batch = pack({example(70, 256, 1, 3)});
  EXPECT_EQ(batch_loss(model(), &adapter, batch).sum, batch_loss(model(), nullptr, batch).sum);
  LossSum accumulated;
  const LoraGradients gradients = mean_loss_gradients(adapter, batch, {}, &accumulated);
  EXPECT_EQ(accumulated.sum, batch_loss(model(), nullptr, batch).sum);
  for (const LoraModuleGradient& module : gradients.modules()) {
    EXPECT_EQ(module.a, std::vector<float>(module.a.size(), 0.0f));
    double b_norm = 0;
    for (float value : module.b) b_norm += double(value) * value;
    EXPECT_GT(b_norm, 0.0);
  }
}

TEST(ModelBackward, PackedBatchShiftsUnshiftedLabels) {
  PackedBatch batch;
  batch.append(std::vector<int32_t>{5, 6, 7}, std::vector<int32_t>{-100, 6, -100});
  batch.append(std::vector<int32_t>{8, 9}, std::vector<int32_t>{8, 9});
  batch.append(std::vector<int32_t>{4}, std::vector<int32_t>{4});
  EXPECT_EQ(batch.tokens, (std::vector<int32_t>{5, 6, 7, 8, 9, 4}));
  EXPECT_EQ(batch.targets, (std::vector<int32_t>{6, -100, -100, 9, -100, -100}));
  EXPECT_EQ(batch.example_starts, (std::vector<int64_t>{0, 3, 5}));
  EXPECT_EQ(batch.target_count(), 2);
}

void expect_failure(const std::function<void()>& call, const std::string& expected) {
  try {
    call();
    ADD_FAILURE() << "no error; expected one containing: " << expected;
  } catch (const Error& error) {
    EXPECT_NE(std::string(error.what()).find(expected), std::string::npos) << error.what();
  }
}

TEST(ModelBackward, BadInputsAreRefusedNamingTheProblem) {
  PackedBatch batch;
  expect_failure([&] { batch.append(std::vector<int32_t>{}, std::vector<int32_t>{}); }, "at least one token");
  expect_failure([&] { batch.append(std::vector<int32_t>{1, 2}, std::vector<int32_t>{1}); }, "2 input_ids but 1 labels");
  expect_failure([&] { batch.append(std::vector<int32_t>{1, 2}, std::vector<int32_t>{1, -3}); },
                 "label -3 at position 1");

  const LoraAdapter adapter = random_adapter(config(), false);
  LoraGradients gradients(adapter);
  PackedBatch bad_token = pack({example(10, 256, 1)});
  bad_token.tokens[4] = 256;
  expect_failure([&] { accumulate_lora_gradients(model(), adapter, bad_token, 1.0f, gradients); },
                 "token id 256 at position 4 is outside the vocabulary [0, 256)");
  expect_failure([&] { batch_loss(model(), nullptr, bad_token); }, "token id 256 at position 4");
  PackedBatch bad_starts = pack({example(10, 256, 1), example(5, 256, 2)});
  bad_starts.example_starts.push_back(10);
  expect_failure([&] { batch_loss(model(), nullptr, bad_starts); }, "example 2 starts at 10 after example 1 at 10");
  PackedBatch bad_target = pack({example(10, 256, 1)});
  bad_target.targets[2] = 300;
  expect_failure([&] { accumulate_lora_gradients(model(), adapter, bad_target, 1.0f, gradients); },
                 "target 300 at position 2");

  const PackedBatch good = pack({example(10, 256, 1)});
  const LoraAdapter other_model = random_adapter(tiny_config({"linear_num_value_heads=6"}), false);
  expect_failure([&] { accumulate_lora_gradients(model(), other_model, good, 1.0f, gradients); },
                 "does not fit the model's");
  expect_failure([&] { batch_loss(model(), &other_model, good); }, "does not fit the model's");
  LoraGradients other_gradients(random_adapter(tiny_config({"num_hidden_layers=8"}), false));
  expect_failure([&] { accumulate_lora_gradients(model(), adapter, good, 1.0f, other_gradients); },
                 "gradients were made for another adapter");
}

}  // namespace
}  // namespace dt
