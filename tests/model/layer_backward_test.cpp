#include "model/train_layers.h"

#include <cblas.h>
#include <gtest/gtest.h>
#include <omp.h>

#include <cmath>
#include <functional>
#include <random>

#include "core/error.h"
#include "model/random_model.h"
#include "ops/gradcheck.h"
#include "ops/linear.h"
#include "ops/norm.h"
#include "ops/numeric_test_util.h"
#include "test_util.h"

namespace dt {
namespace {

using test::all_close;

// Asymmetric everywhere: nq 4 / nkv 2, nk 2 / nv 6, dk 8 / dv 12, head_dim 16 with 4 rotary lanes;
// layer 0 is Gated DeltaNet, layer 1 full attention. Small so that finite differences are cheap.
ModelConfig layer_config(bool output_gate) {
  return apply_config_overrides(
      model_preset("tiny", 256),
      {"hidden_size=32", "intermediate_size=48", "num_hidden_layers=2", "layer_types=linear_attention,full_attention",
       "num_attention_heads=4", "num_key_value_heads=2", "head_dim=16", "linear_num_key_heads=2",
       "linear_num_value_heads=6", "linear_key_head_dim=8", "linear_value_head_dim=12",
       output_gate ? "attn_output_gate=true" : "attn_output_gate=false"});
}

constexpr int kDeltaNetLayer = 0, kAttentionLayer = 1;

NamedTensor& tensor_named(std::vector<NamedTensor>& tensors, const std::string& suffix) {
  for (NamedTensor& tensor : tensors)
    if (tensor.name.ends_with(suffix)) return tensor;
  throw std::runtime_error("test: no tensor " + suffix);
}

// Random F32 weights (norms randomised) with the DeltaNet value heads in different regimes:
// head 0 strong decay (A_log = log 16, large a), head 1 weak decay (g near 0), heads 2 and 3 beta
// saturated towards 0 or 1 (large in_proj_b rows); heads 2 to 5 have moderate decay (g near -0.1),
// where the loss depends on a most (the initialised A_log mostly decays too fast for that).
ModelWeights layer_weights(const ModelConfig& config) {
  RandomInitOptions init;
  init.seed = 11;
  init.dtype = DType::F32;
  init.randomize_norms = true;
  std::vector<NamedTensor> tensors = random_weights(config, StackPrefix::Multimodal, init);
  const int64_t H = config.hidden_size;
  float* A_log = tensor_named(tensors, "layers.0.linear_attn.A_log").tensor.f32();
  float* dt_bias = tensor_named(tensors, "layers.0.linear_attn.dt_bias").tensor.f32();
  float* in_proj_a = tensor_named(tensors, "layers.0.linear_attn.in_proj_a.weight").tensor.f32();
  float* in_proj_b = tensor_named(tensors, "layers.0.linear_attn.in_proj_b.weight").tensor.f32();
  A_log[0] = std::log(16.0f);
  dt_bias[0] = 2.0f;
  for (int64_t i = 0; i < H; ++i) in_proj_a[i] *= 15.0f;
  A_log[1] = std::log(0.5f);
  dt_bias[1] = -5.0f;
  for (int head : {2, 3})
    for (int64_t i = 0; i < H; ++i) in_proj_b[head * H + i] *= 25.0f;
  for (int head = 2; head < int(config.linear_num_value_heads); ++head) {
    A_log[head] = std::log(0.3f);
    dt_bias[head] = -1.0f;
  }
  const auto dir = test::temp_dir("layer_model");
  write_checkpoint(dir, tensors, 1);
  return load_model(config, Checkpoint::open(dir), dir.string());
}

// Every linear of every layer, ranks 2 to 4, scalings 1 to 3, random A and non-zero random B.
LoraAdapter layer_adapter(const ModelConfig& config) {
  LoraAdapter adapter(config, LoraSettings{});
  std::mt19937 engine(5);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  for (int layer = 0; layer < int(config.num_hidden_layers); ++layer)
    for (int k = 0; k < kLinearKindCount; ++k) {
      const auto kind = LinearKind(k);
      if (!layer_has_linear(config.layer_types[size_t(layer)], kind)) continue;
      const int64_t rank = 2 + k % 3;
      LoraModule& module = adapter.add_module(layer, kind, rank, double(rank) * (1 + k % 3));
      for (float& value : module.a) value = normal(engine) / std::sqrt(float(module.in));
      for (float& value : module.b) value = 0.3f * normal(engine) / std::sqrt(float(rank));
    }
  return adapter;
}

struct Fixture {
  explicit Fixture(bool output_gate) : config(layer_config(output_gate)) {}
  ModelConfig config;
  ModelWeights weights = layer_weights(config);
  LoraAdapter adapter = layer_adapter(config);
};

// The model with the attention output gate, or without (q_proj then holds only the queries).
const Fixture& fixture(bool output_gate = true) {
  static const Fixture gated(true), ungated(false);
  return output_gate ? gated : ungated;
}

enum class Block { Mixer, Mlp };

// One block of one layer over packed examples: forward, backward, and the probe loss sum(out * R).
class BlockRun {
 public:
  BlockRun(const Fixture& f, int layer, Block block, const LoraAdapter* adapter, std::vector<int64_t> example_starts,
           int64_t tokens, DeltaRuleMode mode = DeltaRuleMode::Chunked, uint32_t seed = 21)
      : f_(f),
        block_(block),
        starts_(std::move(example_starts)),
        gradients_(f.adapter),
        pass_{f.config, f.weights.layers[size_t(layer)], layer, adapter, &gradients_, tokens, starts_, mode} {
    const int64_t H = f.config.hidden_size;
    normed = test::random_vector(size_t(tokens * H), seed);
    probe = test::random_vector(size_t(tokens * H), seed + 1);
    out.resize(normed.size());
    d_normed.resize(normed.size());
  }

  void forward() {
    if (block_ == Block::Mixer)
      mixer_forward(pass_, normed.data(), out.data(), mixer_tape_);
    else
      mlp_forward(pass_, normed.data(), out.data(), mlp_tape_);
  }
  // d loss / d out = R.
  void backward() {
    gradients_.set_zero();
    forward();
    if (block_ == Block::Mixer)
      mixer_backward(pass_, normed.data(), mixer_tape_, probe.data(), d_normed.data());
    else
      mlp_backward(pass_, normed.data(), mlp_tape_, probe.data(), d_normed.data());
  }
  double loss() {
    forward();
    return test::weighted_sum<float, float>(out, probe);
  }

  LoraGradients& gradients() { return gradients_; }
  LayerPass& pass() { return pass_; }

  std::vector<float> normed, probe, out, d_normed;

 private:
  const Fixture& f_;
  Block block_;
  std::vector<int64_t> starts_;
  LoraGradients gradients_;
  LayerPass pass_;
  MixerTape mixer_tape_;
  MlpTape mlp_tape_;
};

std::vector<LinearKind> kinds_of(Block block, LayerType type) {
  if (block == Block::Mlp) return {LinearKind::MlpGate, LinearKind::MlpUp, LinearKind::MlpDown};
  if (type == LayerType::FullAttention)
    return {LinearKind::AttnQ, LinearKind::AttnK, LinearKind::AttnV, LinearKind::AttnO};
  return {LinearKind::GdnQkv, LinearKind::GdnZ, LinearKind::GdnB, LinearKind::GdnA, LinearKind::GdnOut};
}

// The float loss is rounded at ~1e-6 of its size: steps up to 3e-2 keep the round-off of the
// differences below the smallest gradients checked (in_proj_a's B rows of the weak-decay head).
// 12 entries per array (the 4 largest, 8 random) keep the runtime small.
test::GradcheckOptions gradcheck_options() {
  test::GradcheckOptions options;
  options.random_entries = 8;
  options.largest_entries = 4;
  options.steps = {3e-2, 1e-2, 3e-3, 1e-3};
  return options;
}
// The worst entries (gradients near 5e-3, e.g. k_proj's B) reach 1-2% from that round-off; wrong
// terms (a RoPE position off by one, a gate gradient routed to the wrong projection) give 25% and more.
constexpr double kFiniteDifferenceTolerance = 3e-2;

// The finite differences run thousands of tiny forwards, where thread start-up costs more than the
// work (10x slower on a loaded machine): one thread while the guard lives.
class SingleThreaded {
 public:
  SingleThreaded() : blas_threads_(openblas_get_num_threads()), omp_threads_(omp_get_max_threads()) {
    openblas_set_num_threads(1);
    omp_set_num_threads(1);
  }
  ~SingleThreaded() {
    openblas_set_num_threads(blas_threads_);
    omp_set_num_threads(omp_threads_);
  }

 private:
  int blas_threads_, omp_threads_;
};

// Finite differences of every LoRA factor of the block (each array on its own) and of the block
// input, through a private copy of the adapter that the checker perturbs.
void expect_block_gradients(int layer, Block block, std::vector<int64_t> starts, int64_t tokens, double tolerance,
                            bool output_gate = true) {
  const SingleThreaded single_threaded;
  const Fixture& f = fixture(output_gate);
  LoraAdapter adapter = f.adapter;
  BlockRun run(f, layer, block, &adapter, std::move(starts), tokens);
  run.backward();
  std::vector<test::GradParameter<float>> parameters;
  for (LinearKind kind : kinds_of(block, f.config.layer_types[size_t(layer)])) {
    LoraModule* module = adapter.find(layer, kind);
    const LoraModuleGradient* gradient = run.gradients().find(layer, kind);
    ASSERT_TRUE(module && gradient);
    const std::string name(linear_leaf_name(kind));
    parameters.push_back({name + ".lora_A", module->a, gradient->a});
    parameters.push_back({name + ".lora_B", module->b, gradient->b});
  }
  parameters.push_back({"d_normed", run.normed, run.d_normed});
  EXPECT_TRUE(
      test::gradients_match(test::gradcheck<float>([&] { return run.loss(); }, parameters, gradcheck_options()),
                            tolerance));
}

// 130 tokens: one example across two chunk boundaries, or two packed (70 across a boundary, 60).
TEST(LayerBackward, DeltaNetMixerMatchesFiniteDifferences) {
  expect_block_gradients(kDeltaNetLayer, Block::Mixer, {0}, 130, kFiniteDifferenceTolerance);
}
TEST(LayerBackward, DeltaNetMixerOfPackedExamplesMatchesFiniteDifferences) {
  expect_block_gradients(kDeltaNetLayer, Block::Mixer, {0, 70}, 130, kFiniteDifferenceTolerance);
}
TEST(LayerBackward, AttentionMixerOfPackedExamplesMatchesFiniteDifferences) {
  expect_block_gradients(kAttentionLayer, Block::Mixer, {0, 70}, 130, kFiniteDifferenceTolerance);
}
TEST(LayerBackward, UngatedAttentionMixerMatchesFiniteDifferences) {
  expect_block_gradients(kAttentionLayer, Block::Mixer, {0, 70}, 130, kFiniteDifferenceTolerance, false);
}
TEST(LayerBackward, MlpMatchesFiniteDifferences) {
  expect_block_gradients(kAttentionLayer, Block::Mlp, {0, 70}, 130, kFiniteDifferenceTolerance);
}

// The examples run alone give the packed run's outputs, input gradients and (summed) LoRA
// gradients: sequence mixing restarts at each example.
void expect_packed_equals_separate(int layer, Block block) {
  const Fixture& f = fixture();
  const int64_t H = f.config.hidden_size, first_length = 70, tokens = 130;
  BlockRun packed(f, layer, block, &f.adapter, {0, first_length}, tokens);
  packed.backward();
  std::vector<float> out, d_normed;
  std::vector<std::vector<float>> gradient_sums(packed.gradients().modules().size());
  for (auto [first, count] : {std::pair<int64_t, int64_t>{0, first_length}, {first_length, tokens - first_length}}) {
    BlockRun alone(f, layer, block, &f.adapter, {0}, count);
    std::copy_n(packed.normed.begin() + first * H, count * H, alone.normed.begin());
    std::copy_n(packed.probe.begin() + first * H, count * H, alone.probe.begin());
    alone.backward();
    out.insert(out.end(), alone.out.begin(), alone.out.end());
    d_normed.insert(d_normed.end(), alone.d_normed.begin(), alone.d_normed.end());
    for (size_t m = 0; m < gradient_sums.size(); ++m) {
      const LoraModuleGradient& gradient = alone.gradients().modules()[m];
      std::vector<float>& sum = gradient_sums[m];
      sum.resize(gradient.a.size() + gradient.b.size());
      for (size_t i = 0; i < gradient.a.size(); ++i) sum[i] += gradient.a[i];
      for (size_t i = 0; i < gradient.b.size(); ++i) sum[gradient.a.size() + i] += gradient.b[i];
    }
  }
  // The projections of 130 and of 70 rows round differently; the strong-decay head amplifies that
  // in the LoRA gradients of in_proj_a.
  EXPECT_TRUE(all_close(packed.out, out, 1e-5));
  EXPECT_TRUE(all_close(packed.d_normed, d_normed, 1e-5));
  int compared = 0;
  for (size_t m = 0; m < gradient_sums.size(); ++m) {
    const LoraModuleGradient& gradient = packed.gradients().modules()[m];
    std::vector<float> both(gradient.a.begin(), gradient.a.end());
    both.insert(both.end(), gradient.b.begin(), gradient.b.end());
    const bool in_block = std::any_of(both.begin(), both.end(), [](float v) { return v != 0; });
    compared += in_block;
    EXPECT_TRUE(all_close(both, gradient_sums[m], 1e-4)) << "module " << m;
  }
  EXPECT_EQ(compared, int(kinds_of(block, f.config.layer_types[size_t(layer)]).size()));
}

TEST(LayerBackward, DeltaNetPackedEqualsSeparate) { expect_packed_equals_separate(kDeltaNetLayer, Block::Mixer); }
TEST(LayerBackward, AttentionPackedEqualsSeparate) { expect_packed_equals_separate(kAttentionLayer, Block::Mixer); }
TEST(LayerBackward, MlpPackedEqualsSeparate) { expect_packed_equals_separate(kDeltaNetLayer, Block::Mlp); }

// The recurrent delta rule (forward and per-token backward) gives what the chunked one gives.
TEST(LayerBackward, DeltaNetChunkedAndRecurrentAgree) {
  const Fixture& f = fixture();
  BlockRun chunked(f, kDeltaNetLayer, Block::Mixer, &f.adapter, {0, 70}, 130, DeltaRuleMode::Chunked);
  BlockRun recurrent(f, kDeltaNetLayer, Block::Mixer, &f.adapter, {0, 70}, 130, DeltaRuleMode::Recurrent);
  chunked.backward();
  recurrent.backward();
  EXPECT_TRUE(all_close(chunked.out, recurrent.out, 1e-5));
  EXPECT_TRUE(all_close(chunked.d_normed, recurrent.d_normed, 1e-4));
  for (size_t m = 0; m < chunked.gradients().modules().size(); ++m) {
    EXPECT_TRUE(all_close(chunked.gradients().modules()[m].a, recurrent.gradients().modules()[m].a, 1e-4));
    EXPECT_TRUE(all_close(chunked.gradients().modules()[m].b, recurrent.gradients().modules()[m].b, 1e-4));
  }
}

// Without an adapter the backward still gives the input gradient, and needs no gradients.
TEST(LayerBackward, BaseLayerInputGradientMatchesFiniteDifferences) {
  const SingleThreaded single_threaded;
  const Fixture& f = fixture();
  for (int layer : {kDeltaNetLayer, kAttentionLayer}) {
    BlockRun run(f, layer, Block::Mixer, nullptr, {0, 70}, 130);
    run.pass().gradients = nullptr;
    run.backward();
    EXPECT_TRUE(test::gradients_match(
        test::gradcheck<float>([&] { return run.loss(); }, {{"d_normed", run.normed, run.d_normed}},
                               gradcheck_options()),
        kFiniteDifferenceTolerance));
  }
}

// The blocks with the layer norms between them give forward()'s logits, for each example alone and
// for both packed (each against a fresh inference state).
TEST(LayerBackward, BlocksReproduceTheInferenceForward) {
  const Fixture& f = fixture();
  const ModelConfig& c = f.config;
  const int64_t H = c.hidden_size, first_length = 70, tokens = 130;
  std::vector<int32_t> ids(static_cast<size_t>(tokens));
  for (int64_t t = 0; t < tokens; ++t) ids[size_t(t)] = int32_t((t * 37 + t * t + 5) % c.vocab_size);

  std::vector<int64_t> starts = {0, first_length};
  std::vector<float> hidden(size_t(tokens * H)), normed(hidden.size()), block_out(hidden.size());
  for (int64_t t = 0; t < tokens; ++t)
    std::copy_n(f.weights.embed_tokens.f32() + ids[size_t(t)] * H, H, hidden.begin() + t * H);
  const float eps = float(c.rms_norm_eps);
  for (int layer = 0; layer < int(c.num_hidden_layers); ++layer) {
    const LayerWeights& w = f.weights.layers[size_t(layer)];
    LayerPass pass{c, w, layer, &f.adapter, nullptr, tokens, starts};
    MixerTape mixer_tape;
    MlpTape mlp_tape;
    rms_norm_zero_centred(hidden.data(), tokens, H, w.input_layernorm.f32(), eps, normed.data());
    mixer_forward(pass, normed.data(), block_out.data(), mixer_tape);
    for (size_t i = 0; i < hidden.size(); ++i) hidden[i] += block_out[i];
    rms_norm_zero_centred(hidden.data(), tokens, H, w.post_attention_layernorm.f32(), eps, normed.data());
    mlp_forward(pass, normed.data(), block_out.data(), mlp_tape);
    for (size_t i = 0; i < hidden.size(); ++i) hidden[i] += block_out[i];
  }
  rms_norm_zero_centred(hidden.data(), tokens, H, f.weights.final_norm.f32(), eps, normed.data());
  std::vector<float> block_logits(size_t(tokens * c.vocab_size));
  linear(normed.data(), tokens, f.weights.lm_head, block_logits.data());

  ForwardOptions options;
  options.adapter = &f.adapter;
  std::vector<float> inference_logits;
  for (auto [first, count] : {std::pair<int64_t, int64_t>{0, first_length}, {first_length, tokens - first_length}}) {
    InferenceState state = new_inference_state(c);
    const auto logits =
        forward(f.weights, std::span<const int32_t>(ids).subspan(size_t(first), size_t(count)), state, options)
            .to_f32_vector();
    inference_logits.insert(inference_logits.end(), logits.begin(), logits.end());
  }
  EXPECT_TRUE(all_close(block_logits, inference_logits, 1e-5));
}

TEST(LayerBackward, FailsOnBadExampleStartsAndForeignTapes) {
  const Fixture& f = fixture();
  for (std::vector<int64_t> starts : std::vector<std::vector<int64_t>>{{}, {1}, {0, 0}, {0, 50, 40}, {0, 130}}) {
    BlockRun run(f, kDeltaNetLayer, Block::Mixer, &f.adapter, starts, 130);
    EXPECT_THROW(run.forward(), Error);
  }
  // A tape filled for fewer tokens, or by the other mixer type, is refused.
  BlockRun shorter(f, kDeltaNetLayer, Block::Mixer, &f.adapter, {0}, 60);
  MixerTape tape;
  mixer_forward(shorter.pass(), shorter.normed.data(), shorter.out.data(), tape);
  BlockRun longer(f, kDeltaNetLayer, Block::Mixer, &f.adapter, {0}, 130);
  EXPECT_THROW(mixer_backward(longer.pass(), longer.normed.data(), tape, longer.probe.data(), longer.d_normed.data()),
               Error);
  BlockRun attention(f, kAttentionLayer, Block::Mixer, &f.adapter, {0}, 60);
  EXPECT_THROW(mixer_backward(attention.pass(), attention.normed.data(), tape, attention.probe.data(),
                              attention.d_normed.data()),
               Error);
  // LoRA modules but nowhere to put their gradients.
  shorter.pass().gradients = nullptr;
  EXPECT_THROW(mixer_backward(shorter.pass(), shorter.normed.data(), tape, shorter.probe.data(),
                              shorter.d_normed.data()),
               Error);
}

}  // namespace
}  // namespace dt
