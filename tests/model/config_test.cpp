#include "model/config.h"

#include <gtest/gtest.h>

#include <fstream>

#include "core/error.h"
#include "io/mapped_file.h"
#include "test_util.h"

namespace dt {
namespace {

using nlohmann::json;

json fixture_config() {
  return json::parse(read_text_file(test::source_dir() / "tests/model/data/qwen3.5-0.8b-config.json"));
}

// A small valid qwen3_5_text config to mutate.
json text_config() {
  return {
      {"model_type", "qwen3_5_text"},
      {"vocab_size", 512},
      {"hidden_size", 64},
      {"intermediate_size", 128},
      {"num_hidden_layers", 4},
      {"num_attention_heads", 4},
      {"num_key_value_heads", 2},
      {"head_dim", 32},
      {"linear_num_key_heads", 2},
      {"linear_num_value_heads", 4},
      {"linear_key_head_dim", 16},
      {"linear_value_head_dim", 24},
      {"linear_conv_kernel_dim", 4},
  };
}

// Expects parse_config to fail with a message naming the source file and containing `fragment`.
void expect_parse_error(const json& document, const std::string& fragment) {
  try {
    parse_config(document, "dir/config.json");
    ADD_FAILURE() << "expected an error containing: " << fragment;
  } catch (const Error& error) {
    const std::string message = error.what();
    EXPECT_NE(message.find("dir/config.json"), std::string::npos) << message;
    EXPECT_NE(message.find(fragment), std::string::npos) << "message: " << message << "\nexpected: " << fragment;
  }
}

TEST(Config, RealQwen35_08BParsesToExpectedNumbers) {
  const ModelConfig c = parse_config(fixture_config(), "fixture");
  EXPECT_TRUE(c.multimodal_wrapper);
  EXPECT_EQ(c.hidden_size, 1024);
  EXPECT_EQ(c.intermediate_size, 3584);
  EXPECT_EQ(c.num_hidden_layers, 24);
  ASSERT_EQ(c.layer_types.size(), 24u);
  for (size_t i = 0; i < 24; ++i)
    EXPECT_EQ(c.layer_types[i], (i % 4 == 3) ? LayerType::FullAttention : LayerType::LinearAttention) << i;
  EXPECT_EQ(layer_pattern_string(c.layer_types), "LLLF LLLF LLLF LLLF LLLF LLLF");
  EXPECT_EQ(c.num_attention_heads, 8);
  EXPECT_EQ(c.num_key_value_heads, 2);
  EXPECT_EQ(c.head_dim, 256);
  EXPECT_EQ(c.linear_num_key_heads, 16);
  EXPECT_EQ(c.linear_num_value_heads, 16);
  EXPECT_EQ(c.linear_key_head_dim, 128);
  EXPECT_EQ(c.linear_value_head_dim, 128);
  EXPECT_EQ(c.linear_conv_kernel_dim, 4);
  EXPECT_EQ(c.vocab_size, 248320);
  EXPECT_EQ(c.rotary_dim(), 64);
  EXPECT_DOUBLE_EQ(c.rope_theta, 1e7);
  EXPECT_DOUBLE_EQ(c.partial_rotary_factor, 0.25);
  EXPECT_EQ(c.mrope_section, (std::vector<int64_t>{11, 11, 10}));
  EXPECT_TRUE(c.mrope_interleaved);
  EXPECT_TRUE(c.tie_word_embeddings);
  EXPECT_TRUE(c.attn_output_gate);
  EXPECT_DOUBLE_EQ(c.rms_norm_eps, 1e-6);
  EXPECT_EQ(c.max_position_embeddings, 262144);
  EXPECT_EQ(c.eos_token_ids, (std::vector<int64_t>{248044}));
  EXPECT_EQ(c.conv_dim(), 2 * 16 * 128 + 16 * 128);
  EXPECT_EQ(c.q_proj_out(), 2 * 8 * 256);
}

TEST(Config, LoadConfigReadsTheDirectoryAndNamesMissingFile) {
  const auto dir = test::temp_dir();
  EXPECT_THROW(
      {
        try {
          load_config(dir);
        } catch (const Error& error) {
          EXPECT_NE(std::string(error.what()).find("config.json"), std::string::npos);
          throw;
        }
      },
      Error);
  std::ofstream(dir / "config.json") << fixture_config().dump();
  EXPECT_EQ(load_config(dir).hidden_size, 1024);
  std::ofstream(dir / "config.json") << "{ not json";
  EXPECT_THROW(load_config(dir), Error);
}

TEST(Config, TextOnlyFormAndDefaults) {
  const ModelConfig c = parse_config(text_config(), "x");
  EXPECT_FALSE(c.multimodal_wrapper);
  EXPECT_TRUE(c.attn_output_gate);
  EXPECT_FALSE(c.tie_word_embeddings);
  // full_attention_interval defaults to 4: layer 3 is full.
  EXPECT_EQ(layer_pattern_string(c.layer_types), "LLLF");
  EXPECT_EQ(c.rotary_dim(), 8);
}

TEST(Config, FullAttentionIntervalBuildsLayerTypes) {
  json document = text_config();
  document["num_hidden_layers"] = 6;
  document["full_attention_interval"] = 2;
  EXPECT_EQ(layer_pattern_string(parse_config(document, "x").layer_types), "LFLF LF");
  document["full_attention_interval"] = 0;
  expect_parse_error(document, "'full_attention_interval' must be positive");
}

TEST(Config, ExplicitLayerTypesWin) {
  json document = text_config();
  document["full_attention_interval"] = 2;
  document["layer_types"] = {"full_attention", "linear_attention", "linear_attention", "full_attention"};
  EXPECT_EQ(layer_pattern_string(parse_config(document, "x").layer_types), "FLLF");
}

TEST(Config, RopeParametersTakePrecedenceOverLegacyTopLevel) {
  json document = text_config();
  document["rope_theta"] = 5000.0;
  document["partial_rotary_factor"] = 0.5;
  document["rope_parameters"] = {{"rope_theta", 1e6}, {"partial_rotary_factor", 0.25}};
  ModelConfig c = parse_config(document, "x");
  EXPECT_DOUBLE_EQ(c.rope_theta, 1e6);
  EXPECT_DOUBLE_EQ(c.partial_rotary_factor, 0.25);
  document.erase("rope_parameters");
  c = parse_config(document, "x");
  EXPECT_DOUBLE_EQ(c.rope_theta, 5000.0);
  EXPECT_DOUBLE_EQ(c.partial_rotary_factor, 0.5);
  EXPECT_EQ(c.rotary_dim(), 16);
}

TEST(Config, LegacyRopeScalingSuppliesMrope) {
  json document = text_config();
  document["rope_theta"] = 1e6;
  document["rope_scaling"] = {{"type", "mrope"}, {"mrope_section", {2, 1, 1}}, {"mrope_interleaved", true}};
  const ModelConfig c = parse_config(document, "x");
  EXPECT_DOUBLE_EQ(c.rope_theta, 1e6);
  EXPECT_EQ(c.mrope_section, (std::vector<int64_t>{2, 1, 1}));
  EXPECT_TRUE(c.mrope_interleaved);
}

TEST(Config, WrapperTieFallsBackToTopLevel) {
  json document = fixture_config();
  document["text_config"].erase("tie_word_embeddings");
  document["tie_word_embeddings"] = true;
  EXPECT_TRUE(parse_config(document, "x").tie_word_embeddings);
  document["tie_word_embeddings"] = false;
  document["text_config"]["tie_word_embeddings"] = true;
  EXPECT_TRUE(parse_config(document, "x").tie_word_embeddings);
  document["text_config"]["tie_word_embeddings"] = false;
  document["tie_word_embeddings"] = true;
  EXPECT_FALSE(parse_config(document, "x").tie_word_embeddings);
}

TEST(Config, AttnOutputGateCanBeDisabled) {
  json document = text_config();
  document["attn_output_gate"] = false;
  const ModelConfig c = parse_config(document, "x");
  EXPECT_FALSE(c.attn_output_gate);
  EXPECT_EQ(c.q_proj_out(), 4 * 32);
}

TEST(Config, RejectsNonPositiveSizes) {
  for (const char* key : {"vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "head_dim",
                          "num_attention_heads", "num_key_value_heads", "linear_num_key_heads",
                          "linear_num_value_heads", "linear_key_head_dim", "linear_value_head_dim",
                          "linear_conv_kernel_dim"}) {
    json document = text_config();
    document[key] = 0;
    if (std::string(key) == "num_hidden_layers") document["layer_types"] = json::array();
    expect_parse_error(document, std::string(key) + " must be positive, found 0");
    document[key] = -3;
    expect_parse_error(document, std::string(key) + " must be positive, found -3");
  }
}

TEST(Config, RejectsHeadRatios) {
  json document = text_config();
  document["linear_num_value_heads"] = 3;
  expect_parse_error(document, "linear_num_value_heads (3) must be a multiple of linear_num_key_heads (2)");
  document = text_config();
  document["num_attention_heads"] = 5;
  expect_parse_error(document, "num_attention_heads (5) must be a multiple of num_key_value_heads (2)");
}

TEST(Config, RejectsZeroOrOddRotaryDim) {
  json document = text_config();
  document["rope_parameters"] = {{"partial_rotary_factor", 0.01}};
  expect_parse_error(document, "= 0 must be even and non-zero");
  document["head_dim"] = 36;
  document["rope_parameters"] = {{"partial_rotary_factor", 0.25}};
  expect_parse_error(document, "= 9 must be even and non-zero");
}

TEST(Config, RejectsBadLayerTypes) {
  json document = text_config();
  document["layer_types"] = {"linear_attention", "full_attention"};
  expect_parse_error(document, "layer_types has 2 entries but num_hidden_layers is 4");
  document["layer_types"] = {"linear_attention", "full_attention", "sliding_attention", "full_attention"};
  expect_parse_error(document, "'layer_types[2]' is \"sliding_attention\": expected linear_attention or full_attention");
  document["layer_types"] = {"linear_attention", 3, "full_attention", "full_attention"};
  expect_parse_error(document, "'layer_types[1]' must be a string, found number");
}

TEST(Config, RejectsUnsupportedModelTypes) {
  json document = text_config();
  document["model_type"] = "qwen3_next";
  expect_parse_error(document, "model_type 'qwen3_next' is not supported yet");
  document["model_type"] = "qwen3_5_moe";
  expect_parse_error(document, "model_type 'qwen3_5_moe' is not supported yet");
  document["model_type"] = "llama";
  expect_parse_error(document, "unsupported model_type llama: expected qwen3_5 or qwen3_5_text");
  document = text_config();
  document["num_experts"] = 8;
  expect_parse_error(document, "'num_experts' is 8: mixture-of-experts models are not supported yet");
  document = fixture_config();
  document["text_config"]["model_type"] = "qwen3_5_moe_text";
  expect_parse_error(document, "text_config.model_type 'qwen3_5_moe_text' is not supported yet");
  document = text_config();
  document.erase("model_type");
  expect_parse_error(document, "missing required field 'model_type'");
}

TEST(Config, NamesMissingRequiredField) {
  json document = text_config();
  document.erase("linear_key_head_dim");
  expect_parse_error(document, "missing required field 'linear_key_head_dim'");
  document = fixture_config();
  document["text_config"].erase("hidden_size");
  expect_parse_error(document, "missing required field 'text_config.hidden_size'");
  document = fixture_config();
  document.erase("text_config");
  expect_parse_error(document, "missing required field 'text_config'");
}

TEST(Config, NamesKeyAndExpectedTypeOnWrongJsonType) {
  json document = text_config();
  document["hidden_size"] = "64";
  expect_parse_error(document, "'hidden_size' must be an integer, found string \"64\"");
  document = text_config();
  document["hidden_size"] = 64.5;
  expect_parse_error(document, "'hidden_size' must be an integer, found number");
  document = text_config();
  document["rms_norm_eps"] = "tiny";
  expect_parse_error(document, "'rms_norm_eps' must be a number, found string");
  document = text_config();
  document["attn_output_gate"] = 1;
  expect_parse_error(document, "'attn_output_gate' must be a boolean (true/false), found number");
  document = fixture_config();
  document["text_config"]["rope_parameters"]["rope_theta"] = "1e7";
  expect_parse_error(document, "'text_config.rope_parameters.rope_theta' must be a number, found string");
  document = fixture_config();
  document["text_config"]["layer_types"] = "linear_attention";
  expect_parse_error(document, "'text_config.layer_types' must be an array, found string");
  expect_parse_error(json::array(), "config must be a JSON object");
}

TEST(Config, RoundTripsThroughJson) {
  const ModelConfig real = parse_config(fixture_config(), "fixture");
  EXPECT_EQ(parse_config(config_to_json(real), "round trip"), real);

  ModelConfig text_only = parse_config(text_config(), "x");
  text_only.layer_types = {LayerType::FullAttention, LayerType::LinearAttention, LayerType::FullAttention,
                           LayerType::LinearAttention};
  text_only.eos_token_ids = {7, 9};
  text_only.rope_theta = 12345.678;
  text_only.attn_output_gate = false;
  text_only.rms_norm_eps = 1e-5;
  EXPECT_EQ(parse_config(config_to_json(text_only), "round trip"), text_only);
}

TEST(Config, WritesWrapperOrTextOnlyForm) {
  ModelConfig c = parse_config(fixture_config(), "fixture");
  json wrapper = config_to_json(c);
  EXPECT_EQ(wrapper["model_type"], "qwen3_5");
  EXPECT_EQ(wrapper["architectures"], json::array({"Qwen3_5ForConditionalGeneration"}));
  EXPECT_EQ(wrapper["text_config"]["model_type"], "qwen3_5_text");
  EXPECT_EQ(wrapper["tie_word_embeddings"], true);
  EXPECT_EQ(wrapper["text_config"]["tie_word_embeddings"], true);
  EXPECT_EQ(wrapper["text_config"]["rope_parameters"]["rope_theta"], 1e7);
  EXPECT_EQ(wrapper["text_config"]["hidden_size"], 1024);

  c.multimodal_wrapper = false;
  json text = config_to_json(c);
  EXPECT_EQ(text["model_type"], "qwen3_5_text");
  EXPECT_EQ(text["architectures"], json::array({"Qwen3_5ForCausalLM"}));
  EXPECT_FALSE(text.contains("text_config"));
  EXPECT_EQ(text["tie_word_embeddings"], true);
}

}  // namespace
}  // namespace dt
