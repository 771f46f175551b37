// LoRA in the forward pass on the asymmetric tiny model (nq 4 / nkv 2, nk 2 / nv 4): an adapter
// whose B is zero gives bitwise the base logits in every path, an adapted call leaves no trace in a
// later plain one, recurrent and cached prefill + decode equal one full chunked pass (all twelve kinds
// adapted), each kind alone is applied as its merged weight would be, and a merged checkpoint
// (merge_checkpoint) agrees with the adapter in every path.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <map>

#include "lora/merge.h"
#include "model/forward.h"
#include "model/weights.h"
#include "lora_fixtures.h"
#include "test_util.h"

namespace dt {
namespace {

std::vector<int32_t> token_ids(int64_t count) {
  std::vector<int32_t> ids(static_cast<size_t>(count));
  for (int64_t i = 0; i < count; ++i) ids[size_t(i)] = int32_t((i * 37 + 101 + i * i) % 256);
  return ids;
}

const std::vector<int32_t> kTokens = token_ids(140);

// How the sequence is fed: one chunked pass, one recurrent pass, or cached pieces (chunked
// prefills, then single-token decode steps).
struct FeedPlan {
  std::string name;
  DeltaRuleMode mode = DeltaRuleMode::Chunked;
  std::vector<int64_t> pieces;  // empty: the whole sequence at once
};
const std::vector<FeedPlan> kPlans = {
    {"chunked", DeltaRuleMode::Chunked, {}},
    {"recurrent", DeltaRuleMode::Recurrent, {}},
    {"prefill+decode", DeltaRuleMode::Chunked, {70, 65, 1, 1, 1, 1, 1}},
};

std::vector<float> run_plan(const ModelWeights& weights, const LoraAdapter* adapter, const FeedPlan& plan,
                            InferenceState& state) {
  ForwardOptions options;
  options.delta_rule = plan.mode;
  options.adapter = adapter;
  const std::vector<int64_t> pieces = plan.pieces.empty() ? std::vector<int64_t>{int64_t(kTokens.size())} : plan.pieces;
  std::vector<float> logits;
  size_t begin = 0;
  for (int64_t count : pieces) {
    const std::vector<float> piece =
        forward(weights, std::span(kTokens).subspan(begin, size_t(count)), state, options).to_f32_vector();
    logits.insert(logits.end(), piece.begin(), piece.end());
    begin += size_t(count);
  }
  return logits;
}

std::vector<float> run_plan(const ModelWeights& weights, const LoraAdapter* adapter, const FeedPlan& plan) {
  InferenceState state = new_inference_state(weights.config);
  return run_plan(weights, adapter, plan, state);
}

bool bitwise_equal(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

double relative_l2(const std::vector<float>& actual, const std::vector<float>& expected) {
  double difference = 0, norm = 0;
  for (size_t i = 0; i < expected.size(); ++i) {
    difference += std::pow(double(actual.at(i)) - double(expected[i]), 2);
    norm += std::pow(double(expected[i]), 2);
  }
  return actual.size() == expected.size() ? std::sqrt(difference / norm) : INFINITY;
}

LoraAdapter adapter_of(const ModelConfig& config, const std::vector<LinearKind>& kinds, LoraInit init,
                       bool use_rslora = false) {
  AdapterInitOptions options;
  options.rank = 4;
  options.alpha = 8;
  options.use_rslora = use_rslora;
  options.kinds = kinds;
  options.init = init;
  options.seed = 3;
  return init_adapter(config, options);
}

class ForwardAdapter : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    for (DType dtype : {DType::F32, DType::BF16}) {
      const auto dir = test::temp_dir(std::string("model-") + std::string(dtype_name(dtype)));
      test::write_tiny_model(dir, StackPrefix::Multimodal, dtype, 1);
      models_->emplace(dtype, Model{dir, load_model(dir)});
    }
  }
  static void TearDownTestSuite() { models_->clear(); }

  struct Model {
    std::filesystem::path dir;
    ModelWeights weights;
  };
  static const Model& model(DType dtype) { return models_->at(dtype); }

  static inline std::map<DType, Model>* models_ = new std::map<DType, Model>;
};

TEST_F(ForwardAdapter, ZeroBIsBitwiseTheBaseModelInEveryPath) {
  for (DType dtype : {DType::F32, DType::BF16}) {
    const ModelWeights& weights = model(dtype).weights;
    const LoraAdapter adapter = adapter_of(weights.config, parse_target_kinds("all-linear"), LoraInit::Peft);
    for (const FeedPlan& plan : kPlans)
      EXPECT_TRUE(bitwise_equal(run_plan(weights, &adapter, plan), run_plan(weights, nullptr, plan)))
          << dtype_name(dtype) << " " << plan.name;
  }
}

TEST_F(ForwardAdapter, AnAdaptedCallLeavesNoTraceInALaterPlainOne) {
  const ModelWeights& weights = model(DType::F32).weights;
  const LoraAdapter adapter = test::random_adapter(weights.config);
  for (const FeedPlan& plan : kPlans) {
    const std::vector<float> plain = run_plan(weights, nullptr, plan);
    InferenceState state = new_inference_state(weights.config);
    const std::vector<float> adapted = run_plan(weights, &adapter, plan, state);
    EXPECT_GT(relative_l2(adapted, plain), 1e-3) << plan.name;  // the adapter does change the logits
    // The same state (its scratch buffers kept) with fresh caches, now without the adapter.
    state.layers = new_inference_state(weights.config).layers;
    state.position = 0;
    EXPECT_TRUE(bitwise_equal(run_plan(weights, nullptr, plan, state), plain)) << plan.name;
  }
}

TEST_F(ForwardAdapter, EveryPathAgreesWithOneFullChunkedPass) {
  for (DType dtype : {DType::F32, DType::BF16}) {
    const ModelWeights& weights = model(dtype).weights;
    const LoraAdapter adapter = test::random_adapter(weights.config);
    const std::vector<float> full = run_plan(weights, &adapter, kPlans[0]);
    for (const FeedPlan& plan : kPlans) EXPECT_LT(relative_l2(run_plan(weights, &adapter, plan), full), 1e-5) << plan.name;
  }
}

TEST_F(ForwardAdapter, EachKindIsAppliedAsItsMergedWeight) {
  const ModelWeights& weights = model(DType::F32).weights;
  const std::vector<float> base = run_plan(weights, nullptr, kPlans[0]);
  for (int kind_index = 0; kind_index < kLinearKindCount; ++kind_index) {
    const LinearKind kind = LinearKind(kind_index);
    const LoraAdapter adapter = adapter_of(weights.config, {kind}, LoraInit::Random, kind_index % 2 == 1);
    ModelWeights merged = weights;  // shares the unchanged tensors
    for (const LoraModule* module : adapter.modules()) {
      Tensor& weight = merged.layers[size_t(module->layer)].linear(kind);
      weight = merge_module(weight, *module);
    }
    const std::vector<float> adapted = run_plan(weights, &adapter, kPlans[0]);
    EXPECT_GT(relative_l2(adapted, base), 1e-4) << linear_leaf_name(kind);
    EXPECT_LT(relative_l2(adapted, run_plan(merged, nullptr, kPlans[0])), 1e-5) << linear_leaf_name(kind);
  }
}

TEST_F(ForwardAdapter, MergedCheckpointAgreesWithTheAdapter) {
  const Model& base = model(DType::F32);
  const auto root = test::temp_dir("merged");
  const LoraAdapter adapter = adapter_of(base.weights.config, parse_target_kinds("all-linear"), LoraInit::Random, true);
  save_adapter(adapter, root / "adapter", StackPrefix::TextOnly);
  merge_checkpoint(base.dir, root / "adapter", root / "model");
  const ModelWeights merged = load_model(root / "model");
  const LoraAdapter loaded = load_adapter(root / "adapter", base.weights.config);
  for (const FeedPlan& plan : kPlans)
    EXPECT_LT(relative_l2(run_plan(base.weights, &loaded, plan), run_plan(merged, nullptr, plan)), 1e-4) << plan.name;
}

TEST_F(ForwardAdapter, RejectsAnAdapterForAnotherModelLeavingTheStateUntouched) {
  const ModelWeights& weights = model(DType::F32).weights;
  const ModelConfig wider = apply_config_overrides(weights.config, {"intermediate_size=160"});
  const LoraAdapter adapter = test::random_adapter(wider);
  InferenceState state = new_inference_state(weights.config);
  ForwardOptions options;
  options.adapter = &adapter;
  EXPECT_THROW(forward(weights, kTokens, state, options), Error);
  EXPECT_EQ(state.position, 0);
}

}  // namespace
}  // namespace dt
