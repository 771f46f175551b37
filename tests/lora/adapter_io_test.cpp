// Saving and loading PEFT adapters: bit-exact round trips (F32, BF16), the exact config PEFT
// writes, both key namespaces against both checkpoint prefixes, per-module rank/alpha.
#include <gtest/gtest.h>

#include <cstring>

#include "lora_fixtures.h"
#include "test_util.h"

namespace dt {
namespace {

using test::temp_dir;

void expect_same_factors(const LoraAdapter& expected, const LoraAdapter& actual) {
  ASSERT_EQ(expected.module_count(), actual.module_count());
  for (const LoraModule* module : expected.modules()) {
    const LoraModule* loaded = actual.find(module->layer, module->kind);
    ASSERT_NE(loaded, nullptr);
    EXPECT_EQ(loaded->rank, module->rank);
    EXPECT_EQ(loaded->alpha, module->alpha);
    EXPECT_EQ(loaded->scaling, module->scaling);
    ASSERT_EQ(loaded->a.size(), module->a.size());
    ASSERT_EQ(loaded->b.size(), module->b.size());
    EXPECT_EQ(std::memcmp(loaded->a.data(), module->a.data(), module->a.size() * sizeof(float)), 0);
    EXPECT_EQ(std::memcmp(loaded->b.data(), module->b.data(), module->b.size() * sizeof(float)), 0);
  }
}

TEST(AdapterModel, GeometryComesFromTheShapeAuthority) {
  const ModelConfig config = test::tiny_config();
  const LoraAdapter adapter = test::random_adapter(config, 4);
  // 3 DeltaNet layers x (5 + 3) kinds + 1 attention layer x (4 + 3) kinds.
  EXPECT_EQ(adapter.module_count(), 3u * 8 + 7);
  int64_t parameters = 0;
  for (const LoraModule* module : adapter.modules()) {
    const LinearShape shape = linear_shape(config, module->kind);
    EXPECT_EQ(module->in, shape.in);
    EXPECT_EQ(module->out, shape.out);
    EXPECT_EQ(module->a.size(), size_t(4 * shape.in));
    EXPECT_EQ(module->b.size(), size_t(shape.out * 4));
    EXPECT_DOUBLE_EQ(module->scaling, 2.0);
    parameters += 4 * (shape.in + shape.out);
  }
  EXPECT_EQ(adapter.parameter_count(), parameters);
  EXPECT_EQ(adapter.find(0, LinearKind::AttnQ), nullptr);  // DeltaNet layer
  ASSERT_NE(adapter.find(3, LinearKind::AttnQ), nullptr);
  EXPECT_EQ(adapter.find(3, LinearKind::AttnQ)->out, 2 * 4 * 32);  // query + gate
  EXPECT_TRUE(adapter.layer(3)[size_t(LinearKind::AttnQ)].has_value());
}

TEST(AdapterModel, AddModuleRejectsImpossibleModules) {
  LoraAdapter adapter(test::tiny_config(), LoraSettings{});
  EXPECT_THROW(adapter.add_module(0, LinearKind::AttnQ, 4, 8), Error);
  EXPECT_THROW(adapter.add_module(4, LinearKind::MlpUp, 4, 8), Error);
  EXPECT_THROW(adapter.add_module(1, LinearKind::MlpUp, 0, 8), Error);
  adapter.add_module(1, LinearKind::MlpUp, 4, 8);
  EXPECT_THROW(adapter.add_module(1, LinearKind::MlpUp, 4, 8), Error);
}

TEST(AdapterIo, RoundTripF32IsBitExact) {
  const ModelConfig config = test::tiny_config();
  const LoraAdapter adapter = test::random_adapter(config);
  const auto dir = temp_dir();
  save_adapter(adapter, dir, StackPrefix::Multimodal);
  expect_same_factors(adapter, load_adapter(dir, config));
}

TEST(AdapterIo, RoundTripBf16IsBitExactAfterRounding) {
  const ModelConfig config = test::tiny_config();
  const LoraAdapter adapter = test::random_adapter(config);
  const auto first = temp_dir("first"), second = temp_dir("second");
  save_adapter(adapter, first, StackPrefix::TextOnly, DType::BF16);
  const LoraAdapter loaded = load_adapter(first, config);
  LoraAdapter rounded = adapter;
  for (LoraModule* module : rounded.modules())
    for (auto* values : {&module->a, &module->b})
      for (float& value : *values) value = bf16_to_f32(f32_to_bf16(value));
  expect_same_factors(rounded, loaded);
  save_adapter(loaded, second, StackPrefix::TextOnly, DType::BF16);
  EXPECT_EQ(read_text_file(first / kAdapterWeightsFile), read_text_file(second / kAdapterWeightsFile));
  EXPECT_EQ(read_text_file(first / kAdapterConfigFile), read_text_file(second / kAdapterConfigFile));
}

TEST(AdapterIo, WritesPeftKeysMetadataAndZeroFactors) {
  const ModelConfig config = test::tiny_config();
  AdapterInitOptions options;
  options.rank = 2;
  options.alpha = 4;
  options.kinds = {LinearKind::AttnQ, LinearKind::GdnB};
  const LoraAdapter adapter = init_adapter(config, options);  // PEFT init: B is zero
  for (StackPrefix prefix : {StackPrefix::Multimodal, StackPrefix::TextOnly}) {
    const auto dir = temp_dir(prefix == StackPrefix::Multimodal ? "multimodal" : "text");
    save_adapter(adapter, dir, prefix);
    const SafetensorsFile file = SafetensorsFile::open(dir / kAdapterWeightsFile);
    EXPECT_EQ(file.metadata(), (std::map<std::string, std::string>{{"format", "pt"}}));
    const std::string stack = prefix == StackPrefix::Multimodal ? "base_model.model.model.language_model.layers."
                                                                : "base_model.model.model.layers.";
    const TensorInfo* q_b = file.find(stack + "3.self_attn.q_proj.lora_B.weight");
    ASSERT_NE(q_b, nullptr);
    EXPECT_EQ(q_b->dtype, DType::F32);
    EXPECT_EQ(q_b->shape, (Shape{256, 2}));
    for (float value : file.get(q_b->name).to_f32_vector()) EXPECT_EQ(value, 0.0f);
    const TensorInfo* b_a = file.find(stack + "0.linear_attn.in_proj_b.lora_A.weight");
    ASSERT_NE(b_a, nullptr);
    EXPECT_EQ(b_a->shape, (Shape{2, 64}));
    EXPECT_EQ(file.tensors().size(), 2u * (1 + 3));
  }
}

TEST(AdapterIo, ConfigIsWhatPeftWrites) {
  const ModelConfig config = test::tiny_config();
  AdapterInitOptions options;
  options.rank = 4;
  options.alpha = 16;
  options.use_rslora = true;
  options.kinds = {LinearKind::MlpUp, LinearKind::AttnV, LinearKind::GdnQkv};
  options.layers = std::vector<int>{1, 3};
  options.base_model_name_or_path = "Qwen/Qwen3.5-0.8B";
  LoraAdapter adapter = init_adapter(config, options);
  LoraModule* v_proj = adapter.find(3, LinearKind::AttnV);
  v_proj->alpha = 8;
  v_proj->scaling = lora_scaling(8, 4, true);
  const auto dir = temp_dir();
  save_adapter(adapter, dir, StackPrefix::Multimodal);
  const std::string text = read_text_file(dir / kAdapterConfigFile);
  const nlohmann::json json = nlohmann::json::parse(text);
  EXPECT_EQ(text, json.dump(2, ' ', true));  // indent 2, sorted keys
  EXPECT_EQ(json["peft_type"], "LORA");
  EXPECT_EQ(json["task_type"], "CAUSAL_LM");
  EXPECT_EQ(json["r"], 4);
  EXPECT_TRUE(json["lora_alpha"].is_number_integer());
  EXPECT_EQ(json["lora_alpha"], 16);
  EXPECT_EQ(json["use_rslora"], true);
  EXPECT_EQ(json["bias"], "none");
  EXPECT_EQ(json["fan_in_fan_out"], false);
  EXPECT_EQ(json["use_dora"], false);
  EXPECT_TRUE(json["modules_to_save"].is_null());
  EXPECT_EQ(json["inference_mode"], true);
  EXPECT_EQ(json["init_lora_weights"], true);
  EXPECT_EQ(json["base_model_name_or_path"], "Qwen/Qwen3.5-0.8B");
  EXPECT_EQ(json["target_modules"], (nlohmann::json{"in_proj_qkv", "up_proj", "v_proj"}));
  EXPECT_EQ(json["layers_to_transform"], (nlohmann::json{1, 3}));
  EXPECT_EQ(json["rank_pattern"], nlohmann::json::object());
  EXPECT_EQ(json["alpha_pattern"], (nlohmann::json{{"model.language_model.layers.3.self_attn.v_proj", 8}}));
  // Reloading resolves the same per-module alpha and rsLoRA scaling.
  const LoraAdapter loaded = load_adapter(dir, config);
  EXPECT_DOUBLE_EQ(loaded.find(3, LinearKind::AttnV)->scaling, 8 / 2.0);
  EXPECT_DOUBLE_EQ(loaded.find(1, LinearKind::MlpUp)->scaling, 16 / 2.0);
  expect_same_factors(adapter, loaded);
}

TEST(AdapterIo, PerModuleRanksRoundTripThroughRankPattern) {
  const ModelConfig config = test::tiny_config();
  LoraSettings settings;
  settings.r = 4;
  settings.lora_alpha = 8;
  LoraAdapter adapter(config, settings);
  for (LoraModule* module : {&adapter.add_module(3, LinearKind::AttnQ, 2, 8), &adapter.add_module(2, LinearKind::MlpDown, 4, 8),
                             &adapter.add_module(0, LinearKind::GdnZ, 6, 3)})
    initialize_module(*module, LoraInit::Random, 5);
  const auto dir = temp_dir();
  save_adapter(adapter, dir, StackPrefix::TextOnly);
  const nlohmann::json json = test::read_adapter_config(dir);
  EXPECT_EQ(json["rank_pattern"], (nlohmann::json{{"model.layers.3.self_attn.q_proj", 2},
                                                  {"model.layers.0.linear_attn.in_proj_z", 6}}));
  EXPECT_EQ(json["alpha_pattern"], (nlohmann::json{{"model.layers.0.linear_attn.in_proj_z", 3}}));
  EXPECT_EQ(json["layers_to_transform"], (nlohmann::json{0, 2, 3}));
  expect_same_factors(adapter, load_adapter(dir, config));
}

TEST(AdapterIo, BothNamespacesLoadAgainstBothPrefixes) {
  const LoraAdapter adapter = test::random_adapter(test::tiny_config());
  for (StackPrefix written : {StackPrefix::Multimodal, StackPrefix::TextOnly}) {
    const auto dir = temp_dir(written == StackPrefix::Multimodal ? "multimodal" : "text");
    save_adapter(adapter, dir, written);
    for (StackPrefix base : {StackPrefix::Multimodal, StackPrefix::TextOnly}) {
      const AdapterCheck check = check_adapter(dir, test::tiny_config(base));
      ASSERT_TRUE(check.adapter) << check.errors.front();
      EXPECT_EQ(check.key_namespace, written);
      expect_same_factors(adapter, *check.adapter);
    }
  }
}

TEST(AdapterIo, LoadsBf16AndF16Files) {
  const ModelConfig config = test::tiny_config();
  const LoraAdapter adapter = test::random_adapter(config);
  for (DType dtype : {DType::BF16, DType::F16}) {
    const auto dir = temp_dir(std::string(dtype_name(dtype)));
    save_adapter(adapter, dir, StackPrefix::Multimodal, dtype);
    const LoraAdapter loaded = load_adapter(dir, config);
    const LoraModule* original = adapter.find(3, LinearKind::AttnO);
    const LoraModule* copy = loaded.find(3, LinearKind::AttnO);
    for (size_t i = 0; i < original->a.size(); ++i) EXPECT_NEAR(copy->a[i], original->a[i], 4e-3);
  }
}

TEST(AdapterIo, TensorsDefineTheModulesWithinTheTargets) {
  // A config targeting more than the file holds is fine: absent modules are simply not adapted.
  const ModelConfig config = test::tiny_config();
  AdapterInitOptions options;
  options.kinds = {LinearKind::AttnQ};
  const auto dir = temp_dir();
  save_adapter(init_adapter(config, options), dir, StackPrefix::Multimodal);
  test::edit_adapter_config(dir, [](nlohmann::json& json) {
    json["target_modules"] = "all-linear";
    json["layers_to_transform"] = nullptr;  // PEFT forbids it with a string target
  });
  const LoraAdapter loaded = load_adapter(dir, config);
  EXPECT_EQ(loaded.module_count(), 1u);
  EXPECT_NE(loaded.find(3, LinearKind::AttnQ), nullptr);
}

}  // namespace
}  // namespace dt
