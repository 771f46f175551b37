// PEFT's module-selection and pattern rules: regex semantics of rank_pattern / alpha_pattern keys
// (expected values computed with Python's re), target_modules list / regex / all-linear,
// layers_to_transform / layers_pattern, exclude_modules, and scaling.
#include <gtest/gtest.h>

#include "core/error.h"
#include "lora/peft_config.h"

namespace dt {
namespace {

PeftLoraConfig parse_ok(const std::string& text) {
  std::vector<std::string> errors;
  PeftLoraConfig config = parse_peft_config(text, "adapter_config.json", errors);
  EXPECT_TRUE(errors.empty()) << errors.front();
  return config;
}

TEST(PeftPattern, MatchesLikePythonRe) {
  const std::vector<std::string> names = {"model.layers.3.self_attn.q_proj", "model.language_model.layers.3.self_attn.q_proj",
                                          "model.layers.13.self_attn.q_proj", "model.layers.3.mlp.up_proj"};
  // re.match(rf"(.*\.)?({key})$", name) for each name, from CPython 3.
  const std::vector<std::pair<std::string, std::vector<bool>>> table = {
      {"q_proj", {true, true, true, false}},
      {"layers.3.self_attn.q_proj", {true, true, false, false}},
      {"^model.layers.3", {false, false, false, false}},
      {"^model.layers.3.*", {true, false, false, true}},
      {"model.layers.3.self_attn.q_proj", {true, false, false, false}},
      {"proj", {false, false, false, false}},
      {"_proj", {false, false, false, false}},
      {"self_attn\\..*", {true, true, true, false}},
      {"(q|k)_proj", {true, true, true, false}},
      {"layers\\.\\d+\\.mlp\\.up_proj", {false, false, false, true}},
      {".*_proj", {true, true, true, true}},
      {"q_proj|up_proj", {true, true, true, true}},
      {"^model\\.layers\\.3\\..*", {true, false, false, true}},
  };
  for (const auto& [key, expected] : table) {
    const Regex regex = peft_pattern_regex(key, "test");
    for (size_t i = 0; i < names.size(); ++i)
      EXPECT_EQ(regex.prefix_match(names[i]), expected[i]) << "key " << key << " name " << names[i];
  }
}

TEST(PeftPattern, InvalidRegexNamesTheKey) {
  try {
    peft_pattern_regex("q_proj(", "adapter_config.json: rank_pattern key \"q_proj(\"");
    FAIL() << "expected an error";
  } catch (const Error& error) {
    EXPECT_NE(std::string(error.what()).find("rank_pattern key \"q_proj(\""), std::string::npos) << error.what();
    EXPECT_NE(std::string(error.what()).find("invalid regular expression"), std::string::npos) << error.what();
  }
}

TEST(PeftRules, RankAndAlphaPatternsFirstMatchWinsInFileOrder) {
  const PeftLoraConfig config = parse_ok(R"({"peft_type": "LORA", "r": 8, "lora_alpha": 16,
      "target_modules": ["q_proj", "v_proj", "down_proj"],
      "rank_pattern": {"layers.3.self_attn.q_proj": 2, "q_proj": 4, "^model.layers.1.*": 6},
      "alpha_pattern": {"model.layers.3.self_attn.q_proj": 3.5, "down_proj": 32}})");
  const PeftModuleRules rules(config, "adapter_config.json");
  EXPECT_EQ(rules.rank_for("model.layers.3.self_attn.q_proj"), 2);
  EXPECT_EQ(rules.rank_for("model.layers.7.self_attn.q_proj"), 4);
  EXPECT_EQ(rules.rank_for("model.layers.1.mlp.down_proj"), 6);
  EXPECT_EQ(rules.rank_for("model.layers.1.self_attn.q_proj"), 4);  // "q_proj" comes first
  EXPECT_EQ(rules.rank_for("model.layers.2.self_attn.v_proj"), 8);
  EXPECT_EQ(rules.alpha_for("model.layers.3.self_attn.q_proj"), 3.5);
  EXPECT_EQ(rules.alpha_for("model.language_model.layers.3.self_attn.q_proj"), 16);
  EXPECT_EQ(rules.alpha_for("model.layers.0.mlp.down_proj"), 32);
  EXPECT_EQ(rules.alpha_for("model.layers.0.mlp.up_proj"), 16);
}

TEST(PeftRules, ScalingPlainAndRsLora) {
  EXPECT_DOUBLE_EQ(lora_scaling(16, 8, false), 2.0);
  EXPECT_DOUBLE_EQ(lora_scaling(16, 4, true), 8.0);
  EXPECT_DOUBLE_EQ(lora_scaling(3, 9, true), 1.0);
}

TEST(PeftRules, TargetListMatchesWholeNameOrDotSuffix) {
  const PeftModuleRules rules(parse_ok(R"({"peft_type": "LORA", "target_modules": ["q_proj", "mlp.up_proj"]})"), "c");
  EXPECT_TRUE(rules.targets("model.layers.3.self_attn.q_proj"));
  EXPECT_TRUE(rules.targets("model.language_model.layers.3.self_attn.q_proj"));
  EXPECT_TRUE(rules.targets("model.layers.0.mlp.up_proj"));
  EXPECT_FALSE(rules.targets("model.layers.0.mlp.gate_proj"));
  EXPECT_FALSE(rules.targets("model.layers.0.self_attn.xq_proj"));  // suffix without a dot
  EXPECT_TRUE(PeftModuleRules(parse_ok(R"({"peft_type": "LORA", "target_modules": "q_proj"})"), "c")
                  .targets("q_proj"));  // a string is a regex, full match
}

TEST(PeftRules, TargetRegexIsFullMatch) {
  const PeftModuleRules rules(
      parse_ok(R"({"peft_type": "LORA", "target_modules": ".*\\.layers\\.[13]\\.(self_attn|mlp)\\.(q|up)_proj"})"), "c");
  EXPECT_TRUE(rules.targets("model.layers.3.self_attn.q_proj"));
  EXPECT_TRUE(rules.targets("model.language_model.layers.1.mlp.up_proj"));
  EXPECT_FALSE(rules.targets("model.layers.2.self_attn.q_proj"));
  EXPECT_FALSE(PeftModuleRules(parse_ok(R"({"peft_type": "LORA", "target_modules": "q_proj"})"), "c")
                   .targets("model.layers.3.self_attn.q_proj"));  // fullmatch, not search
}

TEST(PeftRules, AllLinearTargetsEveryKind) {
  const PeftModuleRules rules(parse_ok(R"({"peft_type": "LORA", "target_modules": "ALL-LINEAR"})"), "c");
  for (int kind = 0; kind < kLinearKindCount; ++kind)
    EXPECT_TRUE(rules.targets(lora_module_name(StackPrefix::Multimodal, 2, LinearKind(kind))));
  EXPECT_FALSE(rules.targets("lm_head"));
}

TEST(PeftRules, LayersToTransformAndPattern) {
  const PeftModuleRules by_list(
      parse_ok(R"({"peft_type": "LORA", "target_modules": ["q_proj"], "layers_to_transform": [1, 3]})"), "c");
  EXPECT_TRUE(by_list.targets("model.layers.3.self_attn.q_proj"));
  EXPECT_TRUE(by_list.targets("model.language_model.layers.1.self_attn.q_proj"));
  EXPECT_FALSE(by_list.targets("model.layers.2.self_attn.q_proj"));
  // A list entry equal to the full name bypasses the layer filter, as in PEFT.
  const PeftModuleRules exact(parse_ok(R"({"peft_type": "LORA", "target_modules": ["model.layers.2.self_attn.q_proj"],
      "layers_to_transform": 1})"), "c");
  EXPECT_TRUE(exact.targets("model.layers.2.self_attn.q_proj"));

  const PeftModuleRules by_int(
      parse_ok(R"({"peft_type": "LORA", "target_modules": ["q_proj"], "layers_to_transform": 3, "layers_pattern": "layers"})"),
      "c");
  EXPECT_TRUE(by_int.targets("model.layers.3.self_attn.q_proj"));
  EXPECT_FALSE(by_int.targets("model.layers.1.self_attn.q_proj"));
  const PeftModuleRules wrong_pattern(parse_ok(R"({"peft_type": "LORA", "target_modules": ["q_proj"],
      "layers_to_transform": [3], "layers_pattern": ["blocks", "h"]})"), "c");
  EXPECT_FALSE(wrong_pattern.targets("model.layers.3.self_attn.q_proj"));
  const PeftModuleRules empty_list(
      parse_ok(R"({"peft_type": "LORA", "target_modules": ["q_proj"], "layers_to_transform": []})"), "c");
  EXPECT_TRUE(empty_list.targets("model.layers.2.self_attn.q_proj"));
}

TEST(PeftRules, ExcludeModules) {
  const PeftModuleRules rules(parse_ok(R"({"peft_type": "LORA", "target_modules": "all-linear",
      "exclude_modules": ["model.layers.0.mlp.up_proj", "down_proj"]})"), "c");
  EXPECT_FALSE(rules.targets("model.layers.0.mlp.up_proj"));
  EXPECT_TRUE(rules.targets("model.layers.1.mlp.up_proj"));
  EXPECT_FALSE(rules.targets("model.layers.1.mlp.down_proj"));
  const PeftModuleRules by_regex(
      parse_ok(R"({"peft_type": "LORA", "target_modules": ["q_proj"], "exclude_modules": ".*layers\\.3\\..*"})"), "c");
  EXPECT_FALSE(by_regex.targets("model.layers.3.self_attn.q_proj"));
  EXPECT_TRUE(by_regex.targets("model.layers.7.self_attn.q_proj"));
}

TEST(PeftConfig, DefaultsAndTolerance) {
  // Only peft_type and target_modules are needed; unknown keys are ignored as PEFT does.
  const PeftLoraConfig config = parse_ok(
      R"({"peft_type": "LORA", "target_modules": ["q_proj"], "loftq_config": {}, "megatron_core": "megatron.core",
          "eva_config": null, "layer_replication": null, "modules_to_save": null, "future_field": 3})");
  EXPECT_EQ(config.settings.r, 8);
  EXPECT_EQ(config.settings.lora_alpha, 8);
  EXPECT_FALSE(config.settings.use_rslora);
}

TEST(PeftConfig, CollectsEveryError) {
  std::vector<std::string> errors;
  parse_peft_config(R"({"peft_type": "LOHA", "r": 0, "lora_alpha": -1, "use_dora": true, "target_modules": "q_proj",
                        "layers_to_transform": [1]})",
                    "dir/adapter_config.json", errors);
  ASSERT_EQ(errors.size(), 5u);
  for (const std::string& error : errors) EXPECT_EQ(error.rfind("dir/adapter_config.json: ", 0), 0u) << error;
}

}  // namespace
}  // namespace dt
