// init-adapter, validate-adapter and merge end to end on a tiny model written by init-model.
#include <gtest/gtest.h>

#include "io/mapped_file.h"
#include "io/safetensors.h"
#include "lora/adapter_io.h"
#include "lora/peft_config.h"
#include "model/weights.h"
#include "test_util.h"

namespace dt {
namespace {

class AdapterCli : public ::testing::Test {
 protected:
  // One tiny model (small tokenizer, two shards) shared by the suite.
  static void SetUpTestSuite() {
    model_dir_ = new std::filesystem::path(test::temp_dir("adapter-cli-model") / "model");
    const auto result = test::run_deltatune("init-model --preset tiny --vocab-size 320 --shards 2 --seed 5 --out " +
                                            model_dir_->string());
    ASSERT_EQ(result.exit_code, 0) << result.err;
  }
  static void TearDownTestSuite() { delete model_dir_; }

  static test::CommandResult init_adapter(const std::filesystem::path& out, const std::string& arguments) {
    return test::run_deltatune("init-adapter --model " + model_dir_->string() + " --out " + out.string() + " " +
                               arguments);
  }
  static test::CommandResult validate(const std::filesystem::path& adapter) {
    return test::run_deltatune("validate-adapter --model " + model_dir_->string() + " --adapter " + adapter.string());
  }

  static std::filesystem::path* model_dir_;
};

std::filesystem::path* AdapterCli::model_dir_ = nullptr;

TEST_F(AdapterCli, InitThenValidateSummarises) {
  const auto adapter = test::temp_dir() / "adapter";
  const auto made = init_adapter(adapter, "--rank 4 --alpha 8 --targets q_proj,in_proj_z,down_proj --layers 1-3 --rslora");
  ASSERT_EQ(made.exit_code, 0) << made.err;
  EXPECT_TRUE(std::filesystem::exists(adapter / kAdapterConfigFile));
  const auto result = validate(adapter);
  ASSERT_EQ(result.exit_code, 0) << result.err;
  for (const char* expected : {"6 in 3 of 4 layers", "self_attn.q_proj", "linear_attn.in_proj_z", "mlp.down_proj",
                               "rank 4, scaling 4", "rsLoRA", "base_model.model.model.language_model.layers.N.",
                               "parameters:"})
    EXPECT_NE(result.out.find(expected), std::string::npos) << expected << "\n" << result.out;
}

TEST_F(AdapterCli, InitIsDeterministicPerSeed) {
  const auto dir = test::temp_dir();
  ASSERT_EQ(init_adapter(dir / "a", "--rank 2 --alpha 4 --init random --seed 9").exit_code, 0);
  ASSERT_EQ(init_adapter(dir / "b", "--rank 2 --alpha 4 --init random --seed 9").exit_code, 0);
  ASSERT_EQ(init_adapter(dir / "c", "--rank 2 --alpha 4 --init random --seed 10 --dtype bf16").exit_code, 0);
  EXPECT_EQ(read_text_file(dir / "a" / kAdapterWeightsFile), read_text_file(dir / "b" / kAdapterWeightsFile));
  EXPECT_NE(read_text_file(dir / "a" / kAdapterWeightsFile), read_text_file(dir / "c" / kAdapterWeightsFile));
  const SafetensorsFile bf16 = SafetensorsFile::open(dir / "c" / kAdapterWeightsFile);
  EXPECT_EQ(bf16.tensors().front().dtype, DType::BF16);
}

TEST_F(AdapterCli, InitRejectsBadArguments) {
  const auto dir = test::temp_dir();
  const auto target = init_adapter(dir / "a", "--rank 2 --alpha 4 --targets q_proj,lm_head");
  EXPECT_NE(target.exit_code, 0);
  EXPECT_NE(target.err.find("unknown target module \"lm_head\""), std::string::npos) << target.err;
  const auto layers = init_adapter(dir / "b", "--rank 2 --alpha 4 --layers 7");
  EXPECT_NE(layers.exit_code, 0);
  EXPECT_NE(layers.err.find("layer 7 is out of range"), std::string::npos) << layers.err;
  EXPECT_NE(init_adapter(dir / "c", "--rank 0 --alpha 4").exit_code, 0);
}

TEST_F(AdapterCli, ValidatePrintsEveryErrorAndFails) {
  const auto adapter = test::temp_dir() / "adapter";
  ASSERT_EQ(init_adapter(adapter, "--rank 4 --alpha 8 --targets q_proj,up_proj").exit_code, 0);
  std::string config = read_text_file(adapter / kAdapterConfigFile);
  config.replace(config.find("\"use_dora\": false"), 17, "\"use_dora\": true");
  write_file_atomic(adapter / kAdapterConfigFile, config);
  {
    const SafetensorsFile file = SafetensorsFile::open(adapter / kAdapterWeightsFile);
    std::vector<NamedTensor> tensors;
    for (const TensorInfo& info : file.tensors())
      if (info.name.find("layers.3.self_attn.q_proj.lora_B") == std::string::npos)
        tensors.push_back({info.name, file.get(info.name).to(info.dtype)});
    write_safetensors(adapter / kAdapterWeightsFile, tensors, {{"format", "pt"}});
  }
  const auto result = validate(adapter);
  EXPECT_EQ(result.exit_code, 1);
  EXPECT_NE(result.err.find("2 errors"), std::string::npos) << result.err;
  EXPECT_NE(result.err.find("use_dora is true"), std::string::npos) << result.err;
  EXPECT_NE(result.err.find("lora_A is present but lora_B is missing"), std::string::npos) << result.err;
  const auto missing = validate(adapter / "nowhere");
  EXPECT_EQ(missing.exit_code, 1);
  EXPECT_NE(missing.err.find("adapter directory not found"), std::string::npos) << missing.err;
}

TEST_F(AdapterCli, MergeWritesACompleteCheckpoint) {
  const auto dir = test::temp_dir();
  ASSERT_EQ(init_adapter(dir / "adapter", "--rank 4 --alpha 8 --init random --seed 2").exit_code, 0);
  const auto result = test::run_deltatune("merge --model " + model_dir_->string() + " --adapter " +
                                          (dir / "adapter").string() + " --out " + (dir / "merged").string());
  ASSERT_EQ(result.exit_code, 0) << result.err;
  for (const char* file : {"config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json",
                           "model.safetensors.index.json"})
    EXPECT_TRUE(std::filesystem::exists(dir / "merged" / file)) << file;
  const ModelWeights base = load_model(*model_dir_);
  const ModelWeights merged = load_model(dir / "merged");
  EXPECT_EQ(merged.prefix, base.prefix);
  EXPECT_EQ(Checkpoint::open(dir / "merged").files().size(), 2u);
  EXPECT_NE(merged.layers[3].linear(LinearKind::AttnQ).to_f32_vector(),
            base.layers[3].linear(LinearKind::AttnQ).to_f32_vector());
  EXPECT_EQ(merged.embed_tokens.to_f32_vector(), base.embed_tokens.to_f32_vector());
  // The info command accepts the merged model.
  EXPECT_EQ(test::run_deltatune("info --model " + (dir / "merged").string()).exit_code, 0);
}

}  // namespace
}  // namespace dt
