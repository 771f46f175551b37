// deltatune train / eval / demo end to end on a tiny model written by init-model.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>

#include "test_util.h"

namespace dt {
namespace {

namespace fs = std::filesystem;

class TrainCli : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new fs::path(test::temp_dir("train-cli"));
    const auto made = test::run_deltatune("init-model --preset tiny --vocab-size 320 --dtype f32 --seed 2 --out " +
                                          (*dir_ / "model").string());
    ASSERT_EQ(made.exit_code, 0) << made.err;
    std::ofstream data(*dir_ / "data.jsonl");
    data << R"({"prompt": "Q: capital of France? A:", "completion": " Paris"})" << "\n"
         << R"({"messages": [{"role": "user", "content": "Who wrote Hamlet?"}, {"role": "assistant", "content": "Shakespeare."}]})"
         << "\n"
         << R"({"text": "The quick brown fox jumps over the lazy dog."})" << "\n";
  }
  static void TearDownTestSuite() { delete dir_; }

  static std::string model() { return (*dir_ / "model").string(); }
  static std::string data() { return (*dir_ / "data.jsonl").string(); }
  static fs::path* dir_;
};

fs::path* TrainCli::dir_ = nullptr;

TEST_F(TrainCli, TrainsFromAConfigFileWithCommandLineOverrides) {
  const fs::path dir = test::temp_dir();
  const fs::path out = dir / "out";
  const fs::path config = dir / "config.json";
  std::ofstream(config) << R"({"lr": 0.01, "max_steps": 50, "batch-size": 3, "rank": 4, "lr_schedule": "cosine",
                               "warmup_steps": 1, "packing": true, "max_seq_len": 64})";
  const auto result = test::run_deltatune("train --model " + model() + " --data " + data() + " --out " + out.string() +
                                          " --config " + config.string() + " --max-steps 4 --threads 1 --eval-split 0.34 --eval-every 2");
  ASSERT_EQ(result.exit_code, 0) << result.out << result.err;
  EXPECT_NE(result.out.find("step 4/4"), std::string::npos) << result.out;  // --max-steps overrides the file
  EXPECT_NE(result.out.find("adapter written to " + out.string()), std::string::npos) << result.out;
  for (const char* file : {"adapter_config.json", "adapter_model.safetensors", "metrics.jsonl", "loss_curve.svg",
                           "checkpoint-4/optimizer.safetensors"})
    EXPECT_TRUE(fs::exists(out / file)) << file;
  std::ifstream metrics(out / "metrics.jsonl");
  std::string line;
  for (int step = 1; std::getline(metrics, line); ++step) {
    const auto json = nlohmann::json::parse(line);
    EXPECT_EQ(json["step"], step);
    EXPECT_EQ(json.contains("eval_loss"), step % 2 == 0) << line;
    if (step % 2 == 0) {
      EXPECT_NEAR(json["eval_perplexity"].get<double>(), std::exp(json["eval_loss"].get<double>()), 1e-9);
    }
  }
  std::ifstream adapter_config(out / "adapter_config.json");
  EXPECT_EQ(nlohmann::json::parse(adapter_config)["r"], 4);

  // eval: the base model and the trained adapter on the same data.
  const auto base = test::run_deltatune("eval --model " + model() + " --data " + data());
  const auto tuned = test::run_deltatune("eval --model " + model() + " --data " + data() + " --adapter " + out.string());
  ASSERT_EQ(base.exit_code, 0) << base.err;
  ASSERT_EQ(tuned.exit_code, 0) << tuned.err;
  const auto loss_of = [](const std::string& text) { return std::stod(text.substr(text.find("loss ") + 5)); };
  EXPECT_NE(base.out.find("perplexity "), std::string::npos) << base.out;
  EXPECT_LT(loss_of(tuned.out), loss_of(base.out)) << base.out << tuned.out;
}

TEST_F(TrainCli, BadDataNamesFileAndLine) {
  const fs::path dir = test::temp_dir();
  const fs::path bad = dir / "bad.jsonl";
  std::ofstream(bad) << R"({"text": "fine"})" << "\n" << R"({"prompt": "no completion"})" << "\n";
  const auto result =
      test::run_deltatune("train --model " + model() + " --data " + bad.string() + " --out " + (dir / "out").string());
  EXPECT_EQ(result.exit_code, 1);
  EXPECT_NE(result.err.find(bad.string() + ":2: \"prompt\" and \"completion\" go together"), std::string::npos)
      << result.err;
  const auto skipped = test::run_deltatune("eval --model " + model() + " --data " + bad.string() + " --skip-bad-lines");
  EXPECT_EQ(skipped.exit_code, 0) << skipped.err;
  EXPECT_NE(skipped.err.find("skipped 1 bad line"), std::string::npos) << skipped.err;
}

TEST_F(TrainCli, OutThatIsAFileIsRefused) {
  const fs::path file = test::temp_dir() / "not-a-directory";
  std::ofstream(file) << "x";
  const auto result = test::run_deltatune("train --model " + model() + " --data " + data() + " --out " + file.string());
  EXPECT_EQ(result.exit_code, 1);
  EXPECT_NE(result.err.find(file.string() + ": exists and is not a directory"), std::string::npos) << result.err;
}

TEST_F(TrainCli, CtrlCSavesACheckpointThatResumeChecksAgainstTheRun) {
  const fs::path out = test::temp_dir() / "out";
  const std::string command = "train --model " + model() + " --data " + data() + " --out " + out.string() +
                              " --threads 1 --lr-schedule constant --max-steps ";
  // One SIGINT after 3 s of a run far too long to finish, as a Ctrl-C sends. Without --foreground,
  // timeout signals the child and then its whole process group, so a second SIGINT could arrive
  // after the first was handled and stop the run at once, as a second Ctrl-C is meant to.
  const auto interrupted = test::run_command("timeout --foreground --preserve-status -s INT 3 " + test::binary().string() + " " + command + "1000000");
  ASSERT_EQ(interrupted.exit_code, 0) << interrupted.out << interrupted.err;
  EXPECT_NE(interrupted.out.find("interrupted at step "), std::string::npos) << interrupted.out;
  EXPECT_NE(interrupted.out.find("continue with --resume " + out.string()), std::string::npos) << interrupted.out;
  bool saved = false;
  for (const auto& entry : fs::directory_iterator(out))
    saved |= entry.path().filename().string().rfind("checkpoint-", 0) == 0 && fs::exists(entry.path() / "trainer_state.json");
  EXPECT_TRUE(saved);
  // Resuming with other settings (here the step count) is refused, naming them.
  const auto refused = test::run_deltatune(command + "5 --resume " + out.string());
  EXPECT_EQ(refused.exit_code, 1);
  EXPECT_NE(refused.err.find("total_steps (checkpoint 1000000, now 5)"), std::string::npos) << refused.err;
}

TEST_F(TrainCli, HelpListsTheOptions) {
  const auto result = test::run_deltatune("train --help");
  EXPECT_EQ(result.exit_code, 0);
  for (const char* option : {"--eval-split", "--lr-schedule", "--warmup-ratio", "--grad-accum", "--packing",
                             "--keep-checkpoints", "--resume", "--init-adapter", "--config", "--threads"})
    EXPECT_NE(result.out.find(option), std::string::npos) << option;
}

TEST_F(TrainCli, DemoTrainsAndAnswersWithAndWithoutTheAdapter) {
  const fs::path out = test::temp_dir() / "demo";
  const auto result =
      test::run_deltatune("demo --model " + model() + " --out " + out.string() + " --steps 3 --threads 1");
  ASSERT_EQ(result.exit_code, 0) << result.out << result.err;
  EXPECT_NE(result.out.find("base model: "), std::string::npos) << result.out;
  EXPECT_NE(result.out.find("+ adapter: "), std::string::npos) << result.out;
  EXPECT_NE(result.out.find("The adapter (PEFT format) is in " + out.string()), std::string::npos) << result.out;
  EXPECT_TRUE(fs::exists(out / "adapter_model.safetensors"));
}

}  // namespace
}  // namespace dt
