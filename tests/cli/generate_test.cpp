// The generation loop, text streaming, and the logits / generate / chat commands on a tiny random
// model. Numerical parity with the PyTorch reference is tests/reference/test_parity.py.
#include <gtest/gtest.h>

#include <fstream>

#include "core/error.h"
#include "io/safetensors.h"
#include "model/generation.h"
#include "model/weights.h"
#include "test_util.h"
#include "tokenizer/tokenizer.h"

namespace dt {
namespace {

class Generation : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    model_dir_ = new std::filesystem::path(test::temp_dir("generation-model"));
    const auto result = test::run_deltatune(
        "init-model --preset tiny --force --seed 5 --randomize-norms --set linear_num_value_heads=6 --out " +
        model_dir_->string());
    ASSERT_EQ(result.exit_code, 0) << result.err;
  }
  static void TearDownTestSuite() { delete model_dir_; }
  static const std::filesystem::path& model_dir() { return *model_dir_; }
  static std::string model_arg() { return "--model " + model_dir_->string(); }

  static std::filesystem::path* model_dir_;
};
std::filesystem::path* Generation::model_dir_ = nullptr;

std::vector<int32_t> split_ids(const std::string& line) { return parse_token_ids(line.substr(0, line.find('\n')), "output"); }

TEST_F(Generation, ContinuingASessionEqualsOneFreshPass) {
  const ModelWeights weights = load_model(model_dir());
  const std::vector<int32_t> first = {5, 17, 300, 41, 9}, second = {77, 12, 600};
  auto collect = [](int32_t) { return true; };

  GenerationSession session(weights, {}, {});
  const auto reply = session.generate(first, 6, collect);
  ASSERT_EQ(reply.tokens.size(), 6u);
  EXPECT_EQ(reply.reason, StopReason::TokenLimit);
  const auto continued = session.generate(second, 6, collect);

  std::vector<int32_t> whole = first;
  whole.insert(whole.end(), reply.tokens.begin(), reply.tokens.end());
  whole.insert(whole.end(), second.begin(), second.end());
  GenerationSession fresh(weights, {}, {});
  const auto expected = fresh.generate(whole, 6, collect);
  EXPECT_EQ(continued.tokens, expected.tokens);
  EXPECT_EQ(continued.prefill_tokens, int64_t(1 + second.size()));  // the pending reply token + new input
  EXPECT_EQ(session.sequence().size(), whole.size() + 6);
}

TEST_F(Generation, StopsAtEndOfSequenceAndAtTheCallersRequest) {
  const ModelWeights weights = load_model(model_dir());
  const std::vector<int32_t> prompt = {3, 4, 5};
  GenerationSession probe(weights, {}, {});
  const auto free_run = probe.generate(prompt, 4, [](int32_t) { return true; });

  GenerationSession with_eos(weights, {}, {free_run.tokens[1]});
  const auto stopped = with_eos.generate(prompt, 4, [](int32_t) { return true; });
  EXPECT_EQ(stopped.reason, StopReason::EndOfSequence);
  EXPECT_EQ(stopped.tokens, std::vector<int32_t>(free_run.tokens.begin(), free_run.tokens.begin() + 2));

  GenerationSession caller(weights, {}, {});
  int calls = 0;
  const auto cut = caller.generate(prompt, 4, [&](int32_t) { return ++calls < 3; });
  EXPECT_EQ(cut.reason, StopReason::Caller);
  EXPECT_EQ(cut.tokens.size(), 3u);
}

TEST_F(Generation, StreamerHoldsBackSplitUtf8AndCutsAtStopStrings) {
  const Tokenizer tokenizer = Tokenizer::load(model_dir());
  // U+20AC is E2 82 AC; byte-level symbols: 0xE2 -> U+00E2, 0x82 -> U+0124, 0xAC -> U+00AC.
  TextStreamer euro(tokenizer, {});
  EXPECT_EQ(euro.add(tokenizer.require_token_id("\u00e2")), "");
  EXPECT_EQ(euro.add(tokenizer.require_token_id("\u0124")), "");
  EXPECT_EQ(euro.add(tokenizer.require_token_id("\u00ac")), "\u20ac");
  EXPECT_EQ(euro.add(tokenizer.require_token_id("a")), "a");

  TextStreamer stop(tokenizer, {"lo w"});
  std::string printed;
  for (int32_t token : tokenizer.encode("hello world")) {
    printed += stop.add(token);
    if (stop.stopped()) break;
  }
  printed += stop.finish();
  EXPECT_TRUE(stop.stopped());
  EXPECT_EQ(printed, "hel");
}

TEST_F(Generation, ReadsGenerationConfig) {
  const auto dir = test::temp_dir();
  std::ofstream(dir / "generation_config.json") << R"({"eos_token_id": [7, 9], "do_sample": true, "top_k": 20})";
  const auto config = load_generation_config(dir);
  EXPECT_EQ(config.eos_token_ids, (std::vector<int32_t>{7, 9}));
  const auto sampling = default_sampling_options(config);
  EXPECT_EQ(sampling.temperature, 1.0);
  EXPECT_EQ(sampling.top_k, 20);

  std::ofstream(dir / "generation_config.json") << R"({"eos_token_id": 4, "temperature": 0.6})";
  const auto greedy = load_generation_config(dir);
  EXPECT_EQ(greedy.eos_token_ids, (std::vector<int32_t>{4}));
  EXPECT_EQ(default_sampling_options(greedy).temperature, 0.0);  // do_sample absent: greedy

  std::ofstream(dir / "generation_config.json") << R"({"eos_token_id": "x"})";
  EXPECT_THROW(load_generation_config(dir), Error);
}

TEST_F(Generation, LogitsCommandWritesEveryPosition) {
  const auto out = test::temp_dir() / "logits.safetensors";
  auto result = test::run_deltatune("logits " + model_arg() + " --tokens 1,2,3,4 --out " + out.string());
  ASSERT_EQ(result.exit_code, 0) << result.err;
  const auto file = SafetensorsFile::open(out);
  const Tensor logits = file.get("logits");
  EXPECT_EQ(logits.dtype(), DType::F32);
  EXPECT_EQ(logits.shape(), (Shape{4, load_config(model_dir()).vocab_size}));

  result = test::run_deltatune("logits " + model_arg() + " --tokens 1,999999 --out " + out.string());
  EXPECT_NE(result.exit_code, 0);
  EXPECT_NE(result.err.find("999999"), std::string::npos) << result.err;
  result = test::run_deltatune("logits " + model_arg() + " --tokens 1,x --out " + out.string());
  EXPECT_NE(result.exit_code, 0);

  result = test::run_deltatune("logits " + model_arg() + " --tokens 1,2,3 --pieces 1,1 --out " + out.string());
  EXPECT_NE(result.exit_code, 0);
  EXPECT_NE(result.err.find("sum to 2"), std::string::npos) << result.err;

  result = test::run_deltatune("logits " + model_arg() + " --text 'Hello world' --out " + out.string());
  ASSERT_EQ(result.exit_code, 0) << result.err;
  const auto text_tokens = Tokenizer::load(model_dir()).encode("Hello world");
  EXPECT_EQ(SafetensorsFile::open(out).get("logits").dim(0), int64_t(text_tokens.size()));
}

TEST_F(Generation, GenerateCommandPrintsIdsTextAndSpeed) {
  auto ids = test::run_deltatune("generate " + model_arg() + " --tokens 8,9,10 --temperature 0 --max-tokens 5 --ignore-eos --print-ids");
  ASSERT_EQ(ids.exit_code, 0) << ids.err;
  EXPECT_EQ(split_ids(ids.out).size(), 5u);
  EXPECT_NE(ids.err.find("prefill: 3 tokens"), std::string::npos) << ids.err;
  EXPECT_NE(ids.err.find("decode: 4 tokens"), std::string::npos) << ids.err;

  const auto sample = [&](int seed) {
    return test::run_deltatune("generate " + model_arg() + " --tokens 8,9,10 --temperature 1 --top-k 50 --seed " +
                               std::to_string(seed) + " --max-tokens 12 --ignore-eos --print-ids").out;
  };
  EXPECT_EQ(sample(1), sample(1));
  EXPECT_NE(sample(1), sample(2));

  auto text = test::run_deltatune("generate " + model_arg() + " --prompt 'Hello there' --temperature 0 --max-tokens 8");
  ASSERT_EQ(text.exit_code, 0) << text.err;
  EXPECT_FALSE(text.out.empty());

  auto bad = test::run_deltatune("generate " + model_arg() + " --tokens 1 --top-p 0");
  EXPECT_NE(bad.exit_code, 0);
  EXPECT_NE(bad.err.find("--top-p"), std::string::npos) << bad.err;
}

TEST_F(Generation, ChatKeepsTheConversationAndResets) {
  const std::string chat = "chat " + model_arg() + " --temperature 0 --max-tokens 6 --no-think";
  const auto input = test::temp_dir() / "turns.txt";
  std::ofstream(input) << "hello\n/reset\nhello\n  and more  \n\n/exit\nnot read\n";
  // The group's own stdin redirection wins over the </dev/null run_command appends.
  auto result = test::run_command("{ " + test::binary().string() + " " + chat + " <" + input.string() + "; }");
  ASSERT_EQ(result.exit_code, 0) << result.err;
  EXPECT_NE(result.err.find("(conversation cleared)"), std::string::npos);

  // The first reply is what generate --chat gives for the same single turn, and /reset starts over,
  // so the output begins with that reply twice (each reply ends with a newline); a third follows.
  auto single = test::run_deltatune("generate " + model_arg() + " --chat --no-think --prompt hello --temperature 0 --max-tokens 6");
  ASSERT_EQ(single.exit_code, 0) << single.err;
  ASSERT_GE(result.out.size(), 2 * single.out.size() + 1) << result.out;
  EXPECT_EQ(result.out.substr(0, 2 * single.out.size()), single.out + single.out) << result.out;
  EXPECT_EQ(result.out.back(), '\n');
  size_t speed_reports = 0;
  for (size_t at = result.err.find("prefill:"); at != std::string::npos; at = result.err.find("prefill:", at + 1))
    ++speed_reports;
  EXPECT_EQ(speed_reports, 3u) << result.err;
}

}  // namespace
}  // namespace dt
