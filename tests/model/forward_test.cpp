#include "model/forward.h"

#include <gtest/gtest.h>

#include <cmath>
#include <numeric>

#include "core/error.h"
#include "model/random_model.h"
#include "ops/numeric_test_util.h"
#include "test_util.h"

namespace dt {
namespace {

using test::all_close;

// The tiny preset is asymmetric already: nq 4 / nkv 2, nk 2 / nv 4, dk 16 / dv 24; layer 3 is
// full attention. Norms are randomised so the (1 + w) and plain-w paths both matter.
ModelConfig tiny_config(const std::vector<std::string>& overrides = {}) {
  return apply_config_overrides(model_preset("tiny", 256), overrides);
}

// A random model written as a checkpoint and read back through the real loader.
ModelWeights random_model(const ModelConfig& config, DType dtype, uint64_t seed = 7) {
  RandomInitOptions init;
  init.seed = seed;
  init.dtype = dtype;
  init.randomize_norms = true;
  const auto dir = test::temp_dir("model");
  write_checkpoint(dir, random_weights(config, StackPrefix::Multimodal, init), 1);
  return load_model(config, Checkpoint::open(dir), dir.string());
}

std::vector<int32_t> token_ids(int64_t count, int64_t vocab, uint32_t seed = 3) {
  std::vector<int32_t> ids(static_cast<size_t>(count));
  for (int64_t i = 0; i < count; ++i) ids[size_t(i)] = int32_t((i * 37 + seed * 101 + i * i) % vocab);
  return ids;
}

std::vector<float> values_of(const Tensor& tensor) { return tensor.to_f32_vector(); }

// Logits of the whole sequence in one call.
std::vector<float> full_logits(const ModelWeights& weights, std::span<const int32_t> ids, DeltaRuleMode mode) {
  InferenceState state = new_inference_state(weights.config);
  ForwardOptions options;
  options.delta_rule = mode;
  return values_of(forward(weights, ids, state, options));
}

// Logits of the sequence fed in pieces of the given sizes through one state.
std::vector<float> piecewise_logits(const ModelWeights& weights, std::span<const int32_t> ids,
                                    const std::vector<int64_t>& pieces, DeltaRuleMode mode) {
  InferenceState state = new_inference_state(weights.config);
  ForwardOptions options;
  options.delta_rule = mode;
  std::vector<float> logits;
  int64_t done = 0;
  for (int64_t count : pieces) {
    const auto piece = values_of(forward(weights, ids.subspan(size_t(done), size_t(count)), state, options));
    logits.insert(logits.end(), piece.begin(), piece.end());
    done += count;
  }
  EXPECT_EQ(state.position, done);
  return logits;
}

class ForwardModes : public ::testing::TestWithParam<DeltaRuleMode> {};

// Prefill in pieces (a single token among them, chunk boundaries not aligned with the pieces)
// carries KV, conv and recurrent caches exactly like one full forward.
TEST_P(ForwardModes, PiecewisePrefillMatchesFullForward) {
  const ModelWeights weights = random_model(tiny_config(), DType::F32);
  const auto ids = token_ids(130, weights.config.vocab_size);
  const auto full = full_logits(weights, ids, GetParam());
  EXPECT_TRUE(all_close(piecewise_logits(weights, ids, {50, 1, 79}, GetParam()), full, 1e-5));
}

TEST_P(ForwardModes, PrefillThenTokenByTokenDecodeMatchesFullForward) {
  const ModelWeights weights = random_model(tiny_config(), DType::BF16);
  const auto ids = token_ids(30, weights.config.vocab_size);
  std::vector<int64_t> pieces = {18};
  pieces.resize(13, 1);
  EXPECT_TRUE(all_close(piecewise_logits(weights, ids, pieces, GetParam()), full_logits(weights, ids, GetParam()), 1e-5));
}

INSTANTIATE_TEST_SUITE_P(DeltaRule, ForwardModes, ::testing::Values(DeltaRuleMode::Chunked, DeltaRuleMode::Recurrent),
                         [](const auto& info) {
                           return info.param == DeltaRuleMode::Chunked ? std::string("Chunked") : std::string("Recurrent");
                         });

TEST(Forward, ChunkedAndRecurrentDeltaRuleGiveTheSameLogits) {
  const ModelWeights weights = random_model(tiny_config(), DType::F32);
  const auto ids = token_ids(130, weights.config.vocab_size);
  EXPECT_TRUE(all_close(full_logits(weights, ids, DeltaRuleMode::Chunked),
                        full_logits(weights, ids, DeltaRuleMode::Recurrent), 1e-5));
}

// The 16-bit GEMV / blockwise-sgemm paths compute what the f32 path computes on the same values.
TEST(Forward, HalfPrecisionWeightsComputeLikeTheirF32Copy) {
  for (DType dtype : {DType::BF16, DType::F16}) {
    const ModelWeights half = random_model(tiny_config(), dtype);
    ModelWeights widened = half;
    widened.embed_tokens = half.embed_tokens.to(DType::F32);
    widened.lm_head = half.lm_head.to(DType::F32);
    for (LayerWeights& layer : widened.layers)
      for (int kind = 0; kind < kLinearKindCount; ++kind)
        if (layer_has_linear(layer.type, LinearKind(kind)))
          layer.linear(LinearKind(kind)) = layer.linear(LinearKind(kind)).to(DType::F32);
    for (int64_t count : {1, 70}) {
      const auto ids = token_ids(count, half.config.vocab_size);
      EXPECT_TRUE(all_close(full_logits(half, ids, DeltaRuleMode::Chunked),
                            full_logits(widened, ids, DeltaRuleMode::Chunked), 1e-5))
          << dtype_name(dtype) << " T=" << count;
    }
  }
}

TEST(Forward, TiedHeadAndUngatedAttentionKeepCacheEquivalence) {
  const ModelWeights weights =
      random_model(tiny_config({"tie_word_embeddings=true", "attn_output_gate=false", "full_attention_interval=2"}),
                   DType::F32);
  ASSERT_EQ(weights.layers[1].attention.q_proj.dim(0), 4 * 32);  // nq * hd: no gate half
  const auto ids = token_ids(40, weights.config.vocab_size);
  EXPECT_TRUE(all_close(piecewise_logits(weights, ids, {25, 1, 1, 13}, DeltaRuleMode::Chunked),
                        full_logits(weights, ids, DeltaRuleMode::Chunked), 1e-5));
}

TEST(Forward, LastLogitsOnlyIsTheLastRowOfAllLogits) {
  const ModelWeights weights = random_model(tiny_config(), DType::F32);
  const auto ids = token_ids(9, weights.config.vocab_size);
  const auto all = full_logits(weights, ids, DeltaRuleMode::Chunked);
  InferenceState state = new_inference_state(weights.config);
  ForwardOptions options;
  options.all_logits = false;
  const Tensor last = forward(weights, ids, state, options);
  ASSERT_EQ(last.shape(), (Shape{1, weights.config.vocab_size}));
  const size_t vocab = size_t(weights.config.vocab_size);
  EXPECT_TRUE(all_close(values_of(last), std::vector<float>(all.end() - long(vocab), all.end()), 1e-6));
}

// The conv cache only reaches Kc - 1 tokens back and the recurrent state starts at zero: the first
// token's logits must not depend on anything but that token, and must depend on it.
TEST(Forward, LogitsDependOnPastTokensThroughEveryCache) {
  const ModelWeights weights = random_model(tiny_config(), DType::F32);
  const std::vector<int32_t> a = {5, 6, 7, 8, 9, 10}, b = {11, 6, 7, 8, 9, 10};
  const auto logits_a = full_logits(weights, a, DeltaRuleMode::Chunked);
  const auto logits_b = full_logits(weights, b, DeltaRuleMode::Chunked);
  const size_t vocab = size_t(weights.config.vocab_size);
  // Position 5 is more than Kc - 1 = 3 tokens after the change: only the recurrent state and the
  // KV cache can carry it.
  const std::vector<float> last_a(logits_a.end() - long(vocab), logits_a.end());
  const std::vector<float> last_b(logits_b.end() - long(vocab), logits_b.end());
  EXPECT_FALSE(all_close(last_a, last_b, 1e-4));
}

// A_log = 30 with a = -100, and exp(A_log) overflowing (A_log = 100) against softplus underflowing
// to 0: logits stay finite in both delta-rule modes.
TEST(Forward, ExtremeDecayParametersStayFinite) {
  ModelWeights weights = random_model(tiny_config(), DType::F32);
  const int64_t nv = weights.config.linear_num_value_heads, H = weights.config.hidden_size;
  for (LayerWeights& layer : weights.layers) {
    if (layer.type != LayerType::LinearAttention) continue;
    layer.deltanet.in_proj_a = Tensor::zeros(DType::F32, {nv, H});
    layer.deltanet.A_log = Tensor::from_f32(DType::F32, {nv}, std::vector<float>{30, 30, 100, 100});
    layer.deltanet.dt_bias = Tensor::from_f32(DType::F32, {nv}, std::vector<float>{-100, -100, -200, 0});
  }
  const auto ids = token_ids(70, weights.config.vocab_size);
  const auto chunked = full_logits(weights, ids, DeltaRuleMode::Chunked);
  ASSERT_TRUE(test::all_finite(chunked));
  EXPECT_TRUE(all_close(chunked, full_logits(weights, ids, DeltaRuleMode::Recurrent), 1e-5));
  EXPECT_TRUE(all_close(piecewise_logits(weights, ids, {33, 1, 36}, DeltaRuleMode::Chunked), chunked, 1e-5));
}

TEST(Forward, RejectsEmptyInputAndOutOfRangeTokens) {
  const ModelWeights weights = random_model(tiny_config(), DType::F32);
  InferenceState state = new_inference_state(weights.config);
  EXPECT_THROW(forward(weights, std::vector<int32_t>{}, state), Error);
  const int32_t vocab = int32_t(weights.config.vocab_size);
  EXPECT_THROW(forward(weights, std::vector<int32_t>{1, vocab}, state), Error);
  EXPECT_THROW(forward(weights, std::vector<int32_t>{-1}, state), Error);
  EXPECT_EQ(state.position, 0);
  InferenceState wrong;
  EXPECT_THROW(forward(weights, std::vector<int32_t>{1}, wrong), Error);
  InferenceState other_model = new_inference_state(tiny_config({"linear_num_value_heads=6"}));
  EXPECT_THROW(forward(weights, std::vector<int32_t>{1}, other_model), Error);
}

}  // namespace
}  // namespace dt
