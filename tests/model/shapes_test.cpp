#include "model/shapes.h"

#include <gtest/gtest.h>

#include <map>
#include <set>

#include "io/mapped_file.h"
#include "model/random_model.h"
#include "test_util.h"

namespace dt {
namespace {

ModelConfig real_config() {
  return parse_config(nlohmann::json::parse(read_text_file(test::source_dir() / "tests/model/data/qwen3.5-0.8b-config.json")),
                      "fixture");
}

std::map<std::string, Shape> by_name(const std::vector<WeightSpec>& specs) {
  std::map<std::string, Shape> shapes;
  for (const WeightSpec& spec : specs) shapes[spec.name] = spec.shape;
  return shapes;
}

TEST(Shapes, LinearShapesOfTheAsymmetricTinyPreset) {
  const ModelConfig c = model_preset("tiny", 300);  // H 64, nq 4, nkv 2, hd 32, nk 2, nv 4, dk 16, dv 24, I 128
  auto expect = [&](LinearKind kind, int64_t out, int64_t in) {
    const LinearShape shape = linear_shape(c, kind);
    EXPECT_EQ(shape.out, out) << linear_module_path(kind);
    EXPECT_EQ(shape.in, in) << linear_module_path(kind);
  };
  expect(LinearKind::AttnQ, 2 * 4 * 32, 64);
  expect(LinearKind::AttnK, 2 * 32, 64);
  expect(LinearKind::AttnV, 2 * 32, 64);
  expect(LinearKind::AttnO, 64, 4 * 32);
  expect(LinearKind::GdnQkv, 2 * 2 * 16 + 4 * 24, 64);
  expect(LinearKind::GdnZ, 4 * 24, 64);
  expect(LinearKind::GdnB, 4, 64);
  expect(LinearKind::GdnA, 4, 64);
  expect(LinearKind::GdnOut, 64, 4 * 24);
  expect(LinearKind::MlpGate, 128, 64);
  expect(LinearKind::MlpUp, 128, 64);
  expect(LinearKind::MlpDown, 64, 128);
  EXPECT_EQ(c.vocab_size, 320);  // rounded up to a multiple of 64
}

TEST(Shapes, LinearKindNamesRoundTrip) {
  std::set<std::string> leaves;
  for (int i = 0; i < kLinearKindCount; ++i) {
    const auto kind = LinearKind(i);
    const std::string leaf(linear_leaf_name(kind));
    leaves.insert(leaf);
    EXPECT_EQ(parse_linear_leaf(leaf), kind);
    EXPECT_TRUE(std::string(linear_module_path(kind)).ends_with("." + leaf));
    EXPECT_TRUE(layer_has_linear(LayerType::FullAttention, kind) || layer_has_linear(LayerType::LinearAttention, kind));
  }
  EXPECT_EQ(leaves.size(), size_t(kLinearKindCount));
  EXPECT_FALSE(parse_linear_leaf("in_proj_qkvz").has_value());
  EXPECT_TRUE(layer_has_linear(LayerType::FullAttention, LinearKind::AttnQ));
  EXPECT_FALSE(layer_has_linear(LayerType::LinearAttention, LinearKind::AttnQ));
  EXPECT_TRUE(layer_has_linear(LayerType::LinearAttention, LinearKind::GdnB));
  EXPECT_FALSE(layer_has_linear(LayerType::FullAttention, LinearKind::GdnB));
  EXPECT_TRUE(layer_has_linear(LayerType::FullAttention, LinearKind::MlpDown));
  EXPECT_TRUE(layer_has_linear(LayerType::LinearAttention, LinearKind::MlpDown));
}

TEST(Shapes, RealModelSpecsUnderTheMultimodalPrefix) {
  const ModelConfig c = real_config();
  const auto specs = weight_specs(c, StackPrefix::Multimodal, false);
  // Embedding and final norm; 11 tensors per attention layer, 14 per Gated DeltaNet layer.
  size_t expected = 2;
  for (LayerType type : c.layer_types) expected += type == LayerType::FullAttention ? 11 : 14;
  EXPECT_EQ(specs.size(), expected);
  const auto shapes = by_name(specs);
  const std::string p = "model.language_model.";
  EXPECT_EQ(shapes.at(p + "embed_tokens.weight"), (Shape{248320, 1024}));
  EXPECT_EQ(shapes.at(p + "norm.weight"), (Shape{1024}));
  EXPECT_EQ(shapes.count("lm_head.weight"), 0u);
  EXPECT_EQ(shapes.at(p + "layers.3.self_attn.q_proj.weight"), (Shape{4096, 1024}));
  EXPECT_EQ(shapes.at(p + "layers.3.self_attn.k_proj.weight"), (Shape{512, 1024}));
  EXPECT_EQ(shapes.at(p + "layers.3.self_attn.o_proj.weight"), (Shape{1024, 2048}));
  EXPECT_EQ(shapes.at(p + "layers.3.self_attn.q_norm.weight"), (Shape{256}));
  EXPECT_EQ(shapes.at(p + "layers.0.linear_attn.in_proj_qkv.weight"), (Shape{6144, 1024}));
  EXPECT_EQ(shapes.at(p + "layers.0.linear_attn.in_proj_z.weight"), (Shape{2048, 1024}));
  EXPECT_EQ(shapes.at(p + "layers.0.linear_attn.in_proj_b.weight"), (Shape{16, 1024}));
  EXPECT_EQ(shapes.at(p + "layers.0.linear_attn.in_proj_a.weight"), (Shape{16, 1024}));
  EXPECT_EQ(shapes.at(p + "layers.0.linear_attn.conv1d.weight"), (Shape{6144, 1, 4}));
  EXPECT_EQ(shapes.at(p + "layers.0.linear_attn.A_log"), (Shape{16}));
  EXPECT_EQ(shapes.at(p + "layers.0.linear_attn.dt_bias"), (Shape{16}));
  EXPECT_EQ(shapes.at(p + "layers.0.linear_attn.norm.weight"), (Shape{128}));
  EXPECT_EQ(shapes.at(p + "layers.0.linear_attn.out_proj.weight"), (Shape{1024, 2048}));
  EXPECT_EQ(shapes.at(p + "layers.23.mlp.down_proj.weight"), (Shape{1024, 3584}));
  EXPECT_EQ(shapes.count(p + "layers.0.self_attn.q_proj.weight"), 0u);
  EXPECT_EQ(shapes.count(p + "layers.3.linear_attn.A_log"), 0u);
  EXPECT_EQ(shapes.count(p + "layers.24.mlp.down_proj.weight"), 0u);
}

TEST(Shapes, TextOnlyPrefixAndUntiedHead) {
  const ModelConfig c = model_preset("tiny", 300);
  const auto specs = weight_specs(c, StackPrefix::TextOnly, true);
  EXPECT_EQ(specs.front().name, "model.embed_tokens.weight");
  EXPECT_EQ(specs.front().role, WeightRole::Embedding);
  EXPECT_EQ(specs.back().name, "lm_head.weight");
  EXPECT_EQ(specs.back().role, WeightRole::LmHead);
  EXPECT_EQ(specs.back().shape, (Shape{320, 64}));
  for (const WeightSpec& spec : specs) {
    EXPECT_FALSE(spec.name.starts_with("model.language_model.")) << spec.name;
    EXPECT_EQ(spec.role == WeightRole::Linear, spec.linear.has_value()) << spec.name;
    if (spec.linear) {
      const LinearShape shape = linear_shape(c, *spec.linear);
      EXPECT_EQ(spec.shape, (Shape{shape.out, shape.in})) << spec.name;
      EXPECT_TRUE(layer_has_linear(c.layer_types.at(size_t(spec.layer)), *spec.linear)) << spec.name;
    }
  }
  EXPECT_EQ(stack_prefix_string(StackPrefix::TextOnly), "model.");
  EXPECT_EQ(stack_prefix_string(StackPrefix::Multimodal), "model.language_model.");
}

TEST(Shapes, IgnoredCheckpointTensors) {
  EXPECT_TRUE(is_ignored_checkpoint_tensor("model.visual.blocks.0.attn.qkv.weight"));
  EXPECT_TRUE(is_ignored_checkpoint_tensor("mtp.layers.0.mlp.up_proj.weight"));
  EXPECT_FALSE(is_ignored_checkpoint_tensor("model.language_model.norm.weight"));
  EXPECT_FALSE(is_ignored_checkpoint_tensor("lm_head.weight"));
  EXPECT_FALSE(is_ignored_checkpoint_tensor("model.visualizer.weight"));
}

}  // namespace
}  // namespace dt
