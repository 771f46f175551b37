#include <gtest/gtest.h>

#include <algorithm>

#include <fmt/format.h>

#include "io/mapped_file.h"
#include "model/weights.h"
#include "test_util.h"

namespace dt {
namespace {

using nlohmann::json;

// A small tokenizer keeps each init-model call fast; the model code does not care about its size.
const std::string kSmallTokenizer = " --vocab-size 320";

json read_json(const std::filesystem::path& path) { return json::parse(read_text_file(path)); }

test::CommandResult init_model(const std::filesystem::path& out, const std::string& arguments) {
  return test::run_deltatune("init-model --out " + out.string() + " " + arguments);
}

// Writes a model with `arguments`, loads it back (every name, shape and dtype is checked by the
// loader) and checks the files around the checkpoint.
ModelWeights write_and_load(const std::filesystem::path& out, const std::string& arguments, DType dtype) {
  const auto result = init_model(out, arguments);
  EXPECT_EQ(result.exit_code, 0) << result.err;
  EXPECT_NE(result.out.find("wrote"), std::string::npos) << result.out;
  for (const char* file : {"config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json"})
    EXPECT_TRUE(std::filesystem::exists(out / file)) << file;
  ModelWeights weights = load_model(out);
  EXPECT_EQ(weights.embed_tokens.dtype(), dtype);
  EXPECT_EQ(weights.layers.back().mlp.down_proj.dtype(), dtype);
  return weights;
}

TEST(InitModel, TinyInEveryDtype) {
  const auto dir = test::temp_dir();
  for (const auto& [name, dtype] : {std::pair{"f32", DType::F32}, {"bf16", DType::BF16}, {"f16", DType::F16}}) {
    const auto out = dir / name;
    const ModelWeights w = write_and_load(out, fmt::format("--preset tiny --dtype {}{}", name, kSmallTokenizer), dtype);
    const ModelConfig& c = w.config;
    EXPECT_TRUE(c.multimodal_wrapper);
    EXPECT_EQ(w.prefix, StackPrefix::Multimodal);
    EXPECT_TRUE(w.lm_head_stored);  // tiny is untied on purpose
    EXPECT_EQ(c.hidden_size, 64);
    EXPECT_EQ(layer_pattern_string(c.layer_types), "LLLF");
    EXPECT_EQ(c.linear_num_key_heads, 2);
    EXPECT_EQ(c.linear_num_value_heads, 4);
    EXPECT_EQ(c.linear_key_head_dim, 16);
    EXPECT_EQ(c.linear_value_head_dim, 24);
    EXPECT_EQ(c.rotary_dim(), 8);
    EXPECT_EQ(c.vocab_size % 64, 0);

    const json config = read_json(out / "config.json");
    EXPECT_EQ(config["model_type"], "qwen3_5");
    EXPECT_EQ(config["architectures"][0], "Qwen3_5ForConditionalGeneration");
    EXPECT_EQ(config["text_config"]["model_type"], "qwen3_5_text");
    EXPECT_EQ(config["text_config"]["dtype"], name == std::string("f32") ? "float32" : name == std::string("bf16") ? "bfloat16" : "float16");

    const json tokenizer = read_json(out / "tokenizer.json");
    const json generation = read_json(out / "generation_config.json");
    ASSERT_TRUE(generation["eos_token_id"].is_array());
    ASSERT_EQ(generation["eos_token_id"].size(), 2u);
    int64_t im_end = -1, endoftext = -1;
    for (const json& token : tokenizer["added_tokens"]) {
      if (token["content"] == "<|im_end|>") im_end = token["id"];
      if (token["content"] == "<|endoftext|>") endoftext = token["id"];
    }
    EXPECT_EQ(generation["eos_token_id"][0], im_end);
    EXPECT_EQ(generation["eos_token_id"][1], endoftext);
    EXPECT_EQ(generation["pad_token_id"], endoftext);
    EXPECT_EQ(generation["do_sample"], false);
    EXPECT_LT(im_end, c.vocab_size);
    EXPECT_LT(endoftext, c.vocab_size);
  }
}

TEST(InitModel, SmallInEveryDtypeIsTied) {
  const auto dir = test::temp_dir();
  for (const auto& [name, dtype] : {std::pair{"f32", DType::F32}, {"bf16", DType::BF16}, {"f16", DType::F16}}) {
    const ModelWeights w = write_and_load(dir / name, fmt::format("--preset small --dtype {}{}", name, kSmallTokenizer), dtype);
    EXPECT_FALSE(w.lm_head_stored);
    EXPECT_EQ(w.lm_head.data(), w.embed_tokens.data());
    EXPECT_EQ(w.config.num_hidden_layers, 8);
    EXPECT_EQ(w.config.hidden_size, 384);
  }
}

TEST(InitModel, TextOnlyShardedModelLoads) {
  const auto out = test::temp_dir() / "model";
  const ModelWeights w = write_and_load(out, "--preset tiny --text-only --shards 3 --randomize-norms" + kSmallTokenizer, DType::BF16);
  EXPECT_EQ(w.prefix, StackPrefix::TextOnly);
  EXPECT_FALSE(w.config.multimodal_wrapper);
  EXPECT_EQ(read_json(out / "config.json")["model_type"], "qwen3_5_text");
  EXPECT_EQ(read_json(out / "config.json")["architectures"][0], "Qwen3_5ForCausalLM");
  EXPECT_TRUE(std::filesystem::exists(out / "model.safetensors.index.json"));
  EXPECT_TRUE(std::filesystem::exists(out / "model-00003-of-00003.safetensors"));
  EXPECT_FALSE(std::filesystem::exists(out / "model.safetensors"));
  const auto norm = w.final_norm.to_f32_vector();
  EXPECT_TRUE(std::any_of(norm.begin(), norm.end(), [](float v) { return v != 0.0f; }));

  const auto info = test::run_deltatune("info --model " + out.string());
  EXPECT_EQ(info.exit_code, 0) << info.err;
  EXPECT_NE(info.out.find("3 files (sharded)"), std::string::npos) << info.out;
  EXPECT_NE(info.out.find("prefix model."), std::string::npos) << info.out;
}

TEST(InitModel, SameSeedSameBytesAndOverridesApply) {
  const auto dir = test::temp_dir();
  const std::string arguments = "--preset tiny --seed 5 --set num_hidden_layers=8 --set rope_theta=1e6" + kSmallTokenizer;
  ASSERT_EQ(init_model(dir / "a", arguments).exit_code, 0);
  ASSERT_EQ(init_model(dir / "b", arguments).exit_code, 0);
  ASSERT_EQ(init_model(dir / "c", "--preset tiny --seed 6" + kSmallTokenizer).exit_code, 0);
  const std::string a = read_text_file(dir / "a/model.safetensors");
  EXPECT_EQ(a, read_text_file(dir / "b/model.safetensors"));
  EXPECT_NE(a, read_text_file(dir / "c/model.safetensors"));
  const ModelConfig config = load_config(dir / "a");
  EXPECT_EQ(layer_pattern_string(config.layer_types), "LLLF LLLF");
  EXPECT_DOUBLE_EQ(config.rope_theta, 1e6);

  const auto bad = init_model(dir / "d", "--preset tiny --set num_key_value_heads=3" + kSmallTokenizer);
  EXPECT_NE(bad.exit_code, 0);
  EXPECT_NE(bad.err.find("num_attention_heads (4) must be a multiple of num_key_value_heads (3)"), std::string::npos) << bad.err;
  EXPECT_FALSE(std::filesystem::exists(dir / "d"));
}

TEST(InitModel, RefusesNonEmptyOutputUnlessForced) {
  const auto out = test::temp_dir() / "model";
  std::filesystem::create_directories(out);
  write_file_atomic(out / "notes.txt", "keep me");
  const auto refused = init_model(out, "--preset tiny" + kSmallTokenizer);
  EXPECT_NE(refused.exit_code, 0);
  EXPECT_NE(refused.err.find("--force"), std::string::npos) << refused.err;
  EXPECT_TRUE(std::filesystem::exists(out / "notes.txt"));
  const auto forced = init_model(out, "--preset tiny --force" + kSmallTokenizer);
  EXPECT_EQ(forced.exit_code, 0) << forced.err;
  EXPECT_FALSE(std::filesystem::exists(out / "notes.txt"));
  EXPECT_NO_THROW(load_model(out));
  // Nothing is left beside the output.
  for (const auto& entry : std::filesystem::directory_iterator(out.parent_path()))
    EXPECT_EQ(entry.path().filename(), "model") << entry.path();
}

TEST(InitModel, BadArgumentsAreExplained) {
  const auto dir = test::temp_dir();
  auto result = init_model(dir / "x", "--preset huge");
  EXPECT_NE(result.exit_code, 0);
  EXPECT_NE(result.err.find("unknown preset 'huge'"), std::string::npos) << result.err;
  result = init_model(dir / "x", "--preset tiny --dtype f64" + kSmallTokenizer);
  EXPECT_NE(result.exit_code, 0);
  EXPECT_NE(result.err.find("unknown dtype 'f64'"), std::string::npos) << result.err;
  result = init_model(dir / "x", "--preset tiny --set hidden=3" + kSmallTokenizer);
  EXPECT_NE(result.exit_code, 0);
  EXPECT_NE(result.err.find("unknown config key 'hidden'"), std::string::npos) << result.err;
  result = test::run_deltatune("init-model --preset tiny");
  EXPECT_NE(result.exit_code, 0);
  EXPECT_NE(result.err.find("--out"), std::string::npos) << result.err;
}

TEST(InitModel, RealSizedPresetWritesAndLoads) {
  const auto out = test::temp_dir() / "model";
  const auto result = init_model(out, "--preset qwen3.5-0.8b --dtype bf16" + kSmallTokenizer);
  ASSERT_EQ(result.exit_code, 0) << result.err;
  const ModelConfig real = parse_config(read_json(test::source_dir() / "tests/model/data/qwen3.5-0.8b-config.json"), "fixture");
  const ModelWeights w = load_model(out);
  const ModelConfig& c = w.config;
  EXPECT_EQ(c.hidden_size, real.hidden_size);
  EXPECT_EQ(c.vocab_size, 248320);
  EXPECT_EQ(c.layer_types, real.layer_types);
  EXPECT_EQ(c.linear_num_value_heads, real.linear_num_value_heads);
  EXPECT_EQ(c.head_dim, real.head_dim);
  EXPECT_EQ(c.mrope_section, real.mrope_section);
  EXPECT_EQ(c.tie_word_embeddings, real.tie_word_embeddings);
  EXPECT_EQ(w.embed_tokens.shape(), (Shape{248320, 1024}));
  EXPECT_EQ(w.layers[3].attention.q_proj.shape(), (Shape{4096, 1024}));
  EXPECT_EQ(w.layers[0].deltanet.conv1d.shape(), (Shape{6144, 4}));

  const auto info = test::run_deltatune("info --model " + out.string());
  EXPECT_EQ(info.exit_code, 0) << info.err;
  EXPECT_NE(info.out.find("LLLF LLLF LLLF LLLF LLLF LLLF"), std::string::npos) << info.out;
  EXPECT_NE(info.out.find("tied"), std::string::npos) << info.out;
  std::filesystem::remove_all(out);
}

TEST(Info, DescribesTinyModel) {
  const auto out = test::temp_dir() / "model";
  ASSERT_EQ(init_model(out, "--preset tiny" + kSmallTokenizer).exit_code, 0);
  const auto info = test::run_deltatune("info --model " + out.string());
  EXPECT_EQ(info.exit_code, 0) << info.err;
  for (const char* fragment : {"Qwen3_5ForConditionalGeneration", "model.language_model.", "LLLF", "untied",
                               "embedding", "head", "attention", "deltanet", "mlp", "norms", "total", "BF16",
                               "1 file"})
    EXPECT_NE(info.out.find(fragment), std::string::npos) << fragment << "\n" << info.out;
}

TEST(Info, ErrorsGoToStderr) {
  const auto dir = test::temp_dir();
  const auto result = test::run_deltatune("info --model " + dir.string());
  EXPECT_NE(result.exit_code, 0);
  EXPECT_EQ(result.out, "");
  EXPECT_NE(result.err.find("error:"), std::string::npos) << result.err;
  EXPECT_NE(result.err.find("config.json"), std::string::npos) << result.err;
}

}  // namespace
}  // namespace dt
