// --adapter on logits, generate and chat: the unmerged adapter gives what `deltatune merge` of the
// same adapter gives (F32 base, so the merge does not round), a zero-B adapter gives bitwise the base
// logits, and an adapter for another model is refused by every command.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <fstream>

#include "io/safetensors.h"
#include "test_util.h"

namespace dt {
namespace {

class AdapterForwardCli : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    root_ = new std::filesystem::path(test::temp_dir("adapter-forward-cli"));
    for (const std::string& command :
         {"init-model --preset tiny --dtype f32 --randomize-norms --seed 9 --set linear_num_value_heads=6 --out " +
              dir("model"),
          "init-adapter --model " + dir("model") + " --out " + dir("adapter") + " --rank 4 --alpha 8 --init random --seed 4",
          "init-adapter --model " + dir("model") + " --out " + dir("zero-b") + " --rank 4 --alpha 8 --seed 4",
          "merge --model " + dir("model") + " --adapter " + dir("adapter") + " --out " + dir("merged"),
          "init-model --preset tiny --dtype f32 --set intermediate_size=96 --out " + dir("other-model"),
          "init-adapter --model " + dir("other-model") + " --out " + dir("other-adapter") + " --rank 4 --alpha 8"}) {
      const auto result = test::run_deltatune(command);
      ASSERT_EQ(result.exit_code, 0) << command << "\n" << result.err;
    }
  }
  static void TearDownTestSuite() { delete root_; }

  static std::string dir(const std::string& name) { return (*root_ / name).string(); }

  // The logits of `logits --tokens ... <arguments>`.
  static std::vector<float> logits(const std::string& arguments) {
    const std::string out = dir("logits-" + std::to_string(++files_) + ".safetensors");
    const auto result = test::run_deltatune("logits --tokens 5,17,300,41,9,77,12,600,3,3,8 --out " + out + " " + arguments);
    EXPECT_EQ(result.exit_code, 0) << result.err;
    if (result.exit_code != 0) return {};
    return SafetensorsFile::open(out).get("logits").to_f32_vector();
  }

  static std::filesystem::path* root_;
  static inline int files_ = 0;
};
std::filesystem::path* AdapterForwardCli::root_ = nullptr;

double relative_l2(const std::vector<float>& actual, const std::vector<float>& expected) {
  if (actual.size() != expected.size() || expected.empty()) return INFINITY;
  double difference = 0, norm = 0;
  for (size_t i = 0; i < expected.size(); ++i) {
    difference += std::pow(double(actual[i]) - double(expected[i]), 2);
    norm += std::pow(double(expected[i]), 2);
  }
  return std::sqrt(difference / norm);
}

TEST_F(AdapterForwardCli, LogitsWithTheAdapterEqualTheMergedModel) {
  const auto base = logits("--model " + dir("model"));
  const auto merged = logits("--model " + dir("merged"));
  for (const char* mode : {"", " --recurrent", " --pieces 6,1,1,1,1,1"}) {
    const auto adapted = logits("--model " + dir("model") + " --adapter " + dir("adapter") + mode);
    EXPECT_LT(relative_l2(adapted, merged), 1e-4) << mode;
    EXPECT_GT(relative_l2(adapted, base), 1e-2) << mode;
  }
  const auto zero_b = logits("--model " + dir("model") + " --adapter " + dir("zero-b"));
  ASSERT_EQ(zero_b.size(), base.size());
  EXPECT_EQ(std::memcmp(zero_b.data(), base.data(), base.size() * sizeof(float)), 0);
}

TEST_F(AdapterForwardCli, GenerateAndChatWithTheAdapterEqualTheMergedModel) {
  const std::string generate = "generate --tokens 5,17,300,41 --temperature 0 --max-tokens 12 --ignore-eos --print-ids";
  const auto adapted = test::run_deltatune(generate + " --model " + dir("model") + " --adapter " + dir("adapter"));
  const auto merged = test::run_deltatune(generate + " --model " + dir("merged"));
  ASSERT_EQ(adapted.exit_code, 0) << adapted.err;
  ASSERT_EQ(merged.exit_code, 0) << merged.err;
  EXPECT_EQ(adapted.out, merged.out);

  const std::string input = dir("chat-input.txt");
  std::ofstream(input) << "hello there\nand again\n";
  const std::string chat = "chat --temperature 0 --max-tokens 6 --no-think --ignore-eos";
  auto run_chat = [&](const std::string& arguments) {
    // Grouped so that the file, not run_command's /dev/null, is the command's stdin.
    return test::run_command("{ " + test::binary().string() + " " + chat + " " + arguments + " <" + input + "; }");
  };
  const auto adapted_chat = run_chat("--model " + dir("model") + " --adapter " + dir("adapter"));
  const auto merged_chat = run_chat("--model " + dir("merged"));
  const auto base_chat = run_chat("--model " + dir("model"));
  ASSERT_EQ(adapted_chat.exit_code, 0) << adapted_chat.err;
  EXPECT_EQ(adapted_chat.out, merged_chat.out);
  EXPECT_NE(adapted_chat.out, base_chat.out);
}

TEST_F(AdapterForwardCli, EveryCommandRefusesAnAdapterForAnotherModel) {
  const std::string model_and_adapter = " --model " + dir("model") + " --adapter " + dir("other-adapter");
  for (const std::string& command :
       {"logits --tokens 1,2 --out " + dir("refused.safetensors") + model_and_adapter,
        "generate --tokens 1,2 --max-tokens 2" + model_and_adapter, "chat" + model_and_adapter + " </dev/null"}) {
    const auto result = test::run_command(test::binary().string() + " " + command);
    EXPECT_NE(result.exit_code, 0) << command;
    EXPECT_NE(result.err.find("invalid adapter"), std::string::npos) << command << "\n" << result.err;
    EXPECT_NE(result.err.find("does not match the model"), std::string::npos) << command << "\n" << result.err;
  }
}

}  // namespace
}  // namespace dt
