// deltatune grad: the output holds "loss" and, for every key of the adapter file, an F32 gradient
// of the same shape; the loss is the mean CE over every line's targets (the whole file one batch)
// and the gradients are those of accumulate_lora_gradients; bad data lines are refused naming
// file:line, and an adapter made for another model is refused.
#include <gtest/gtest.h>

#include <fstream>

#include "io/safetensors.h"
#include "lora/adapter_io.h"
#include "model/backward.h"
#include "model/weights.h"
#include "ops/numeric_test_util.h"
#include "test_util.h"
#include "train/token_examples.h"

namespace dt {
namespace {

class GradCli : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    root_ = new std::filesystem::path(test::temp_dir("grad-cli"));
    for (const std::string& command :
         {"init-model --preset tiny --dtype bf16 --randomize-norms --seed 9 --set linear_num_value_heads=6 --out " +
              dir("model"),
          "init-adapter --model " + dir("model") + " --out " + dir("adapter") + " --rank 4 --alpha 8 --init random --seed 4",
          "init-model --preset tiny --dtype f32 --set intermediate_size=96 --out " + dir("other-model"),
          "init-adapter --model " + dir("other-model") + " --out " + dir("other-adapter") + " --rank 4 --alpha 8"}) {
      const auto result = test::run_deltatune(command);
      ASSERT_EQ(result.exit_code, 0) << command << "\n" << result.err;
    }
    // 70 tokens with a masked prompt, 20 without labels.
    std::string first_ids, first_labels, second_ids;
    for (int t = 0; t < 70; ++t) {
      const std::string id = std::to_string((t * 37 + 11) % 1024);
      first_ids += (t ? "," : "") + id;
      first_labels += (t ? "," : "") + (t < 12 ? std::string("-100") : id);
    }
    for (int t = 0; t < 20; ++t) second_ids += (t ? "," : "") + std::to_string((t * 53 + 5) % 1024);
    write(dir("data.jsonl"), "{\"input_ids\": [" + first_ids + "], \"labels\": [" + first_labels + "]}\n\n" +
                                 "{\"input_ids\": [" + second_ids + "]}\n");
  }
  static void TearDownTestSuite() { delete root_; }

  static std::string dir(const std::string& name) { return (*root_ / name).string(); }
  static void write(const std::string& path, const std::string& text) { std::ofstream(path) << text; }

  static std::filesystem::path* root_;
};
std::filesystem::path* GradCli::root_ = nullptr;

TEST_F(GradCli, WritesTheLossAndEveryAdapterKeysGradient) {
  const std::string out = dir("grad.safetensors");
  const auto result = test::run_deltatune("grad --model " + dir("model") + " --adapter " + dir("adapter") + " --data " +
                                          dir("data.jsonl") + " --out " + out);
  ASSERT_EQ(result.exit_code, 0) << result.err;
  EXPECT_NE(result.err.find("grad: tokens 90 loss "), std::string::npos) << result.err;
  EXPECT_NE(result.err.find(" peak_rss_mib "), std::string::npos) << result.err;

  // The same batch in process.
  const ModelWeights weights = load_model(dir("model"));
  const LoraAdapter adapter = load_adapter(dir("adapter"), weights.config);
  const std::vector<TokenExample> examples = read_token_examples(dir("data.jsonl"), weights.config.vocab_size);
  ASSERT_EQ(examples.size(), 2u);
  EXPECT_EQ(examples[1].line, 3);
  PackedBatch batch;
  for (const TokenExample& example : examples) batch.append(example.input_ids, example.labels);
  ASSERT_EQ(batch.target_count(), 69 - 11 + 19);
  LoraGradients expected(adapter);
  const LossSum loss =
      accumulate_lora_gradients(weights, adapter, batch, float(1.0 / double(batch.target_count())), expected);

  const SafetensorsFile written = SafetensorsFile::open(out);
  const SafetensorsFile adapter_file = SafetensorsFile::open(std::filesystem::path(dir("adapter")) / kAdapterWeightsFile);
  ASSERT_EQ(written.tensors().size(), adapter_file.tensors().size() + 1);
  const Tensor written_loss = written.get("loss");
  ASSERT_EQ(written_loss.shape(), Shape{1});
  EXPECT_NEAR(written_loss.f32()[0], loss.mean(), 1e-5 * loss.mean());

  const std::vector<const LoraModule*> modules = adapter.modules();
  size_t checked = 0;
  for (const TensorInfo& info : adapter_file.tensors()) {
    const TensorInfo* gradient = written.find(info.name);
    ASSERT_NE(gradient, nullptr) << info.name;
    EXPECT_EQ(gradient->dtype, DType::F32) << info.name;
    EXPECT_EQ(gradient->shape, info.shape) << info.name;
    for (size_t i = 0; i < modules.size(); ++i)
      for (LoraFactor factor : {LoraFactor::A, LoraFactor::B}) {
        if (lora_tensor_name(StackPrefix::Multimodal, modules[i]->layer, modules[i]->kind, factor) != info.name) continue;
        const std::vector<float>& values = factor == LoraFactor::A ? expected.modules()[i].a : expected.modules()[i].b;
        // The command runs the lines one by one, the test packed: float sums in another order.
        EXPECT_TRUE(test::all_close(written.get(info.name).to_f32_vector(), values, 1e-3)) << info.name;
        ++checked;
      }
  }
  EXPECT_EQ(checked, adapter_file.tensors().size());
}

TEST_F(GradCli, RecomputingActivationsWritesTheSameGradients) {
  const std::string base = "grad --model " + dir("model") + " --adapter " + dir("adapter") + " --data " + dir("data.jsonl");
  ASSERT_EQ(test::run_deltatune(base + " --out " + dir("kept.safetensors")).exit_code, 0);
  const auto result = test::run_deltatune(base + " --recompute-activations --out " + dir("recomputed.safetensors"));
  ASSERT_EQ(result.exit_code, 0) << result.err;
  const SafetensorsFile kept = SafetensorsFile::open(dir("kept.safetensors"));
  const SafetensorsFile recomputed = SafetensorsFile::open(dir("recomputed.safetensors"));
  for (const TensorInfo& info : kept.tensors())
    EXPECT_EQ(kept.get(info.name).to_f32_vector(), recomputed.get(info.name).to_f32_vector()) << info.name;
}

TEST_F(GradCli, BadDataLinesAreRefusedNamingFileAndLine) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"not json", "not valid JSON"},
      {"[1, 2]", "expected a JSON object"},
      {"{\"labels\": [1, 2]}", "missing \"input_ids\""},
      {"{\"input_ids\": [1, 2.5]}", "\"input_ids\"[1] is 2.5, expected an integer"},
      {"{\"input_ids\": [1, \"7\"]}", "\"input_ids\"[1] is \"7\", expected an integer"},
      {"{\"input_ids\": [1, 1024]}", "\"input_ids\"[1] = 1024 is outside the vocabulary [0, 1024)"},
      {"{\"input_ids\": [-100, 3]}", "\"input_ids\"[0] = -100 is outside the vocabulary"},
      {"{\"input_ids\": [1, 2], \"labels\": [1, -5]}", "\"labels\"[1] = -5 is outside the vocabulary [0, 1024) and not -100"},
      {"{\"input_ids\": [1, 2, 3], \"labels\": [1, 2]}", "\"labels\" has 2 entries but \"input_ids\" has 3"},
      {"{\"input_ids\": []}", "\"input_ids\" is empty"},
  };
  for (size_t i = 0; i < cases.size(); ++i) {
    const std::string data = dir("bad-" + std::to_string(i) + ".jsonl");
    write(data, "{\"input_ids\": [1, 2, 3]}\n" + cases[i].first + "\n");
    const auto result = test::run_deltatune("grad --model " + dir("model") + " --adapter " + dir("adapter") +
                                            " --data " + data + " --out " + dir("bad.safetensors"));
    EXPECT_EQ(result.exit_code, 1) << cases[i].first;
    EXPECT_NE(result.err.find(data + ":2: " + cases[i].second), std::string::npos) << result.err;
  }
  const std::string nothing = dir("nothing.jsonl");
  write(nothing, "{\"input_ids\": [7]}\n{\"input_ids\": [1, 2], \"labels\": [1, -100]}\n");
  const auto result = test::run_deltatune("grad --model " + dir("model") + " --adapter " + dir("adapter") +
                                          " --data " + nothing + " --out " + dir("bad.safetensors"));
  EXPECT_EQ(result.exit_code, 1);
  EXPECT_NE(result.err.find("nothing to predict"), std::string::npos) << result.err;
}

TEST_F(GradCli, AnAdapterForAnotherModelIsRefused) {
  const auto result = test::run_deltatune("grad --model " + dir("model") + " --adapter " + dir("other-adapter") +
                                          " --data " + dir("data.jsonl") + " --out " + dir("other.safetensors"));
  EXPECT_EQ(result.exit_code, 1);
  EXPECT_NE(result.err.find("invalid adapter"), std::string::npos) << result.err;
  EXPECT_FALSE(std::filesystem::exists(dir("other.safetensors")));
}

}  // namespace
}  // namespace dt
