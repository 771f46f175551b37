// The training loop end to end on the tiny model: memorisation, evaluation, packing, resume and
// Ctrl-C, atomic checkpoints, non-finite stops.
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "lora/adapter_io.h"
#include "model/generation.h"
#include "tokenizer/chat_template.h"
#include "train/trainer.h"
#include "train_fixtures.h"

namespace dt {
namespace {

namespace fs = std::filesystem;

struct Fixture {
  ModelWeights weights = load_model(test::tiny_train_model());
  Tokenizer tokenizer = Tokenizer::load(test::tiny_train_model());
};

const Fixture& fixture() {
  static const Fixture instance = [] {
    set_thread_count(1);  // the tiny model gains nothing from threads, and CTest runs tests side by side
    return Fixture{};
  }();
  return instance;
}

const std::vector<std::pair<std::string, std::string>> kPairs = {
    {"What is the capital of France?", "Paris."},
    {"How many legs does a spider have?", "Eight."},
    {"Who wrote Hamlet?", "Shakespeare."},
};

fs::path chat_data(const fs::path& path) {
  std::vector<std::string> lines;
  for (const auto& [question, answer] : kPairs)
    lines.push_back(nlohmann::json{{"messages",
                                    {{{"role", "user"}, {"content", question}},
                                     {{"role", "assistant"}, {"content", answer}}}}}
                        .dump());
  return test::write_lines(path, lines);
}

TrainingOptions small_run(const fs::path& dir) {
  TrainingOptions options;
  options.data = chat_data(dir / "data.jsonl");
  options.out = dir / "out";
  options.adapter.rank = 8;
  options.adapter.alpha = 16;
  options.adapter.kinds = parse_target_kinds("all-linear");
  options.lr = 1e-2;
  options.schedule = LrSchedule::Constant;
  options.batching.batch_size = 3;
  options.max_steps = 6;
  options.dataset.max_seq_len = 128;
  return options;
}

std::vector<double> losses(const TrainingResult& result) {
  std::vector<double> out;
  for (const auto& step : result.history) out.push_back(step.loss);
  return out;
}

std::string greedy_answer(const LoraAdapter& adapter, const std::string& question) {
  const Fixture& f = fixture();
  ForwardOptions forward_options;
  forward_options.adapter = &adapter;
  GenerationSession session(f.weights, SamplingOptions{}, {f.tokenizer.require_token_id("<|im_end|>")},
                            forward_options);
  const std::vector<ChatMessage> messages = {{"user", question, std::nullopt}};
  const std::string prompt = render_chat(messages, {.add_generation_prompt = true, .enable_thinking = false});
  const auto result = session.generate(f.tokenizer.encode(prompt), 12, [](int32_t) { return true; });
  return f.tokenizer.decode(result.tokens, true);
}

TEST(Trainer, LossFallsAndTheAdapterAnswersTheMemorisedQuestions) {
  TrainingOptions options = small_run(test::temp_dir());
  options.max_steps = 40;
  const TrainingResult result = train(fixture().weights, fixture().tokenizer, options);
  ASSERT_EQ(result.history.size(), 40u);
  // The random model's head is small (std 0.02, not adapted), which bounds its logits: the loss
  // cannot approach 0, but the targets become the most likely tokens.
  // (ln 320 = 5.77 falls to about 4.5 here.)
  EXPECT_LT(result.history.back().loss, result.history.front().loss - 1.0);
  const LoraAdapter adapter = load_adapter(options.out, fixture().weights.config);
  for (const auto& [question, answer] : kPairs) EXPECT_EQ(greedy_answer(adapter, question), answer) << question;
  // What --out holds besides the adapter.
  EXPECT_TRUE(fs::exists(options.out / "loss_curve.svg"));
  EXPECT_TRUE(fs::exists(options.out / "checkpoint-40" / "optimizer.safetensors"));
  std::ifstream metrics(options.out / "metrics.jsonl");
  std::string line;
  int count = 0;
  while (std::getline(metrics, line)) {
    const auto json = nlohmann::json::parse(line);
    EXPECT_EQ(json["step"], ++count);
    for (const char* key : {"loss", "lr", "grad_norm", "tokens_per_second"}) EXPECT_TRUE(json.contains(key)) << key;
  }
  EXPECT_EQ(count, 40);
}

TEST(Trainer, FreshPeftAdapterEvaluatesLikeTheBaseModel) {
  const Fixture& f = fixture();
  const Dataset dataset = load_dataset(chat_data(test::temp_dir() / "data.jsonl"), f.tokenizer, f.weights.config.vocab_size, {});
  AdapterInitOptions init;
  init.kinds = parse_target_kinds("all-linear");
  init.seed = 4;
  const LoraAdapter adapter = init_adapter(f.weights.config, init);
  const LossSum with = evaluate(f.weights, &adapter, dataset.examples, 2);
  const LossSum without = evaluate(f.weights, nullptr, dataset.examples, 2);
  EXPECT_GT(with.targets, 0);
  EXPECT_EQ(with.targets, without.targets);
  EXPECT_DOUBLE_EQ(with.sum, without.sum);
}

TEST(Trainer, PackedAndUnpackedStepsAgree) {
  const fs::path dir = test::temp_dir();
  TrainingOptions packed = small_run(dir);
  packed.max_steps = 2;
  packed.batching.batch_size = 1;
  packed.batching.packing = true;  // all three examples in one sequence
  packed.dataset.max_seq_len = 1024;
  packed.out = dir / "packed";
  TrainingOptions separate = packed;
  separate.batching.packing = false;
  separate.batching.grad_accum = 3;  // each example alone, accumulated into one step
  separate.out = dir / "separate";
  const auto a = losses(train(fixture().weights, fixture().tokenizer, packed));
  const auto b = losses(train(fixture().weights, fixture().tokenizer, separate));
  ASSERT_EQ(a.size(), 2u);
  ASSERT_EQ(b.size(), 2u);
  // The second loss is after one update from the first step's gradients, so they agree too.
  for (size_t i = 0; i < a.size(); ++i) EXPECT_NEAR(a[i], b[i], 1e-5 * a[i]) << i;
}

TEST(Trainer, InterruptedAndResumedRunRepeatsTheLossesBitwise) {
  const fs::path dir = test::temp_dir();
  TrainingOptions options = small_run(dir);
  options.batching.batch_size = 2;  // 2 steps per epoch: the resume crosses epochs
  options.save_every = 2;
  const auto uninterrupted = losses(train(fixture().weights, fixture().tokenizer, options));
  ASSERT_EQ(uninterrupted.size(), 6u);
  const LoraAdapter final_adapter = load_adapter(options.out, fixture().weights.config);

  options.out = dir / "interrupted";
  TrainingCallbacks callbacks;
  callbacks.on_step = [](const StepMetrics& metrics) {
    if (metrics.step == 3) request_interrupt();
  };
  const TrainingResult first = [&] {
    const InterruptGuard guard;
    return train(fixture().weights, fixture().tokenizer, options, callbacks);
  }();
  EXPECT_TRUE(first.interrupted);
  EXPECT_EQ(first.steps_done, 3);
  EXPECT_EQ(first.last_checkpoint, options.out / "checkpoint-3");
  EXPECT_FALSE(fs::exists(options.out / "adapter_model.safetensors"));

  // A save killed midway leaves a temporary directory; resume ignores it.
  fs::create_directories(options.out / "checkpoint-5.tmp");
  test::write_lines(options.out / "checkpoint-5.tmp" / "trainer_state.json", {"{"});
  options.resume = options.out;
  const TrainingResult second = train(fixture().weights, fixture().tokenizer, options);
  auto resumed = losses(first);
  for (double loss : losses(second)) resumed.push_back(loss);
  ASSERT_EQ(resumed.size(), uninterrupted.size());
  for (size_t i = 0; i < resumed.size(); ++i) EXPECT_EQ(resumed[i], uninterrupted[i]) << "step " << i + 1;
  const LoraAdapter resumed_adapter = load_adapter(options.out, fixture().weights.config);
  for (size_t m = 0; m < final_adapter.modules().size(); ++m) {
    EXPECT_EQ(resumed_adapter.modules()[m]->a, final_adapter.modules()[m]->a);
    EXPECT_EQ(resumed_adapter.modules()[m]->b, final_adapter.modules()[m]->b);
  }
  EXPECT_FALSE(fs::exists(options.out / "checkpoint-5.tmp"));  // cleared by the next save
  // metrics.jsonl holds each step once.
  std::ifstream metrics(options.out / "metrics.jsonl");
  std::string line;
  int count = 0;
  while (std::getline(metrics, line)) EXPECT_EQ(nlohmann::json::parse(line)["step"], ++count);
  EXPECT_EQ(count, 6);

  // Resuming with other settings is refused, naming them.
  options.lr = 1e-3;
  options.resume = options.out / "checkpoint-4";
  try {
    train(fixture().weights, fixture().tokenizer, options);
    ADD_FAILURE() << "resumed with another learning rate";
  } catch (const Error& error) {
    EXPECT_NE(std::string(error.what()).find("lr (checkpoint 0.01, now 0.001)"), std::string::npos) << error.what();
  }
}

TEST(Trainer, InitAdapterContinuesFromAnAdapter) {
  const fs::path dir = test::temp_dir();
  TrainingOptions options = small_run(dir);
  options.max_steps = 3;
  const auto fresh = losses(train(fixture().weights, fixture().tokenizer, options));
  options.init_adapter = options.out;
  options.out = dir / "continued";
  options.max_steps = 1;
  const auto continued = losses(train(fixture().weights, fixture().tokenizer, options));
  // Its first loss is the loss of the adapter after the first run's three updates.
  EXPECT_LT(continued.at(0), fresh.at(2));
  const LoraAdapter adapter = load_adapter(options.out, fixture().weights.config);
  EXPECT_EQ(adapter.settings().r, 8);
}

TEST(Trainer, KeepsOnlyTheNewestCheckpoints) {
  TrainingOptions options = small_run(test::temp_dir());
  options.max_steps = 4;
  options.save_every = 1;
  options.keep_checkpoints = 2;
  train(fixture().weights, fixture().tokenizer, options);
  EXPECT_FALSE(fs::exists(options.out / "checkpoint-2"));
  EXPECT_TRUE(fs::exists(options.out / "checkpoint-3" / "adapter_config.json"));
  EXPECT_TRUE(fs::exists(options.out / "checkpoint-4" / "trainer_state.json"));
  EXPECT_EQ(find_checkpoint(options.out), options.out / "checkpoint-4");
}

TEST(Trainer, NonFiniteLossStopsNamingTheLastCheckpoint) {
  TrainingOptions options = small_run(test::temp_dir());
  options.lr = 1e30;
  options.max_grad_norm = 0;
  options.save_every = 1;
  try {
    train(fixture().weights, fixture().tokenizer, options);
    ADD_FAILURE() << "trained through a non-finite loss";
  } catch (const Error& error) {
    const std::string message = error.what();
    EXPECT_NE(message.find("step 2: the loss is"), std::string::npos) << message;
    EXPECT_NE(message.find("the last good checkpoint is " + (options.out / "checkpoint-1").string()), std::string::npos)
        << message;
  }
}

}  // namespace
}  // namespace dt
