// JSONL training data: each form, its loss mask, truncation, bad lines and the eval split.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <set>

#include "core/error.h"
#include "model/config.h"
#include "tokenizer/chat_template.h"
#include "train/dataset.h"
#include "train_fixtures.h"

namespace dt {
namespace {

const Tokenizer& tokenizer() {
  static const Tokenizer instance = Tokenizer::load(test::tiny_train_model());
  return instance;
}

int64_t vocab_size() {
  static const int64_t size = load_config(test::tiny_train_model()).vocab_size;
  return size;
}

Dataset load(const std::vector<std::string>& lines, const DatasetOptions& options = {}) {
  return load_dataset(test::write_lines(test::temp_dir() / "data.jsonl", lines), tokenizer(), vocab_size(), options);
}

std::string load_error(const std::vector<std::string>& lines, const DatasetOptions& options = {}) {
  try {
    load(lines, options);
  } catch (const Error& error) {
    return error.what();
  }
  return "no error";
}

TEST(Dataset, TextTakesTheLossOnEveryTokenAndEndsTheTurn) {
  const Dataset dataset = load({R"({"text": "hello world"})"});
  ASSERT_EQ(dataset.examples.size(), 1u);
  std::vector<int32_t> expected = tokenizer().encode("hello world");
  expected.push_back(tokenizer().require_token_id("<|im_end|>"));
  EXPECT_EQ(dataset.examples[0].input_ids, expected);
  EXPECT_EQ(dataset.examples[0].labels, expected);
  EXPECT_EQ(dataset.examples[0].line, 1);
}

TEST(Dataset, PromptCompletionMasksThePromptUnlessAsked) {
  const std::string line = R"({"prompt": "Question: two plus two? ", "completion": "Four."})";
  const auto prompt_tokens = tokenizer().encode("Question: two plus two? ").size();
  const TokenExample masked = load({line}).examples.at(0);
  EXPECT_EQ(masked.input_ids, [&] {
    auto ids = tokenizer().encode("Question: two plus two? Four.");
    ids.push_back(tokenizer().require_token_id("<|im_end|>"));
    return ids;
  }());
  for (size_t i = 0; i < masked.labels.size(); ++i)
    EXPECT_EQ(masked.labels[i], i < prompt_tokens ? kIgnoreLabel : masked.input_ids[i]) << i;
  const TokenExample full = load({line}, {.train_on_prompt = true}).examples.at(0);
  EXPECT_EQ(full.labels, full.input_ids);
}

TEST(Dataset, ChatMaskMatchesTheTemplateTokenByToken) {
  const std::string line =
      R"({"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},)"
      R"( {"role": "assistant", "content": "Hello!"}, {"role": "user", "content": "Capital of France?"},)"
      R"( {"role": "assistant", "content": "Paris."}]})";
  const TokenExample example = load({line}).examples.at(0);
  const std::vector<ChatMessage> messages = {{"system", "Be brief.", std::nullopt},
                                             {"user", "Hi", std::nullopt},
                                             {"assistant", "Hello!", std::nullopt},
                                             {"user", "Capital of France?", std::nullopt},
                                             {"assistant", "Paris.", std::nullopt}};
  const MaskedTokens reference = tokenize_chat_for_training(tokenizer(), messages, {});
  ASSERT_EQ(example.input_ids, reference.ids);
  EXPECT_EQ(example.input_ids, tokenizer().encode(render_chat(messages, {})));
  std::string trained;
  for (size_t i = 0; i < example.labels.size(); ++i) {
    EXPECT_EQ(example.labels[i], reference.trainable[i] ? example.input_ids[i] : kIgnoreLabel) << i;
    if (example.labels[i] != kIgnoreLabel) trained += tokenizer().decode(std::vector<int32_t>{example.labels[i]});
  }
  // Exactly the assistant bodies with their end-of-turn tokens (the empty think block is not trained).
  EXPECT_EQ(trained, "Hello!<|im_end|>Paris.<|im_end|>");
}

TEST(Dataset, PretokenizedLinesKeepTheirLabels) {
  const Dataset dataset = load({R"({"input_ids": [5, 6, 7, 8], "labels": [-100, -100, 7, 8]})",
                                R"({"input_ids": [9, 10]})"});
  ASSERT_EQ(dataset.examples.size(), 2u);
  EXPECT_EQ(dataset.examples[0].labels, (std::vector<int32_t>{-100, -100, 7, 8}));
  EXPECT_EQ(dataset.examples[1].labels, (std::vector<int32_t>{9, 10}));
  EXPECT_EQ(predicted_target_count(dataset.examples[0]), 2);
  EXPECT_EQ(predicted_target_count(dataset.examples[1]), 1);  // labels[0] is never predicted
}

TEST(Dataset, LongExamplesAreTruncatedAndCounted) {
  const Dataset dataset = load({R"({"input_ids": [1, 2, 3, 4, 5, 6]})", R"({"input_ids": [1, 2]})"}, {.max_seq_len = 4});
  EXPECT_EQ(dataset.examples[0].input_ids, (std::vector<int32_t>{1, 2, 3, 4}));
  EXPECT_EQ(dataset.examples[0].labels.size(), 4u);
  EXPECT_EQ(dataset.truncated_examples, 1);
  const auto warnings = dataset.warnings({.max_seq_len = 4});
  ASSERT_EQ(warnings.size(), 1u);
  EXPECT_NE(warnings[0].find("1 example longer than --max-seq-len 4 was truncated"), std::string::npos) << warnings[0];
}

TEST(Dataset, EachBadLineNamesFileLineAndProblem) {
  const std::string good = R"({"text": "fine"})";
  const std::vector<std::pair<std::string, std::string>> cases = {
      {R"({"text": "cut)", "not valid JSON"},
      {R"([1, 2])", "expected a JSON object, got array"},
      {R"({"question": "?"})", "expected one of the forms"},
      {R"({"text": 5})", "\"text\" must be a string, got number"},
      {R"({"prompt": "only a prompt"})", "\"prompt\" and \"completion\" go together; only \"prompt\" is present"},
      {R"({"prompt": "p", "completion": ""})", "\"completion\" is empty"},
      {R"({"messages": []})", "\"messages\" must be a non-empty array"},
      {R"({"messages": [{"role": "user"}]})", "\"messages\"[0] must be an object with \"role\" and \"content\""},
      {R"({"messages": [{"role": "robot", "content": "x"}]})", "unknown role \"robot\""},
      {R"({"messages": [{"role": "user", "content": "no answer"}]})", "no token to train on"},
  };
  for (const auto& [line, problem] : cases) {
    const std::string message = load_error({good, "", line});
    EXPECT_NE(message.find("data.jsonl:3: "), std::string::npos) << line << " -> " << message;
    EXPECT_NE(message.find(problem), std::string::npos) << line << " -> " << message;
  }
  // Pre-tokenised lines: ids index the model's embedding, whatever the tokenizer's size.
  const std::string message = load_error({R"({"input_ids": [1, 2]})", R"({"input_ids": [1, 99999]})"});
  EXPECT_NE(message.find(fmt::format("data.jsonl:2: \"input_ids\"[1] = 99999 is outside the vocabulary [0, {})",
                                     vocab_size())),
            std::string::npos)
      << message;
  EXPECT_EQ(load({fmt::format(R"({{"input_ids": [1, {}]}})", vocab_size() - 1)}).examples.size(), 1u);
  EXPECT_NE(load_error({R"({"input_ids": [1, 2], "labels": [1, -100]})"}).find("data.jsonl:1: the example has no token"),
            std::string::npos);
  EXPECT_NE(load_error({R"({"input_ids": [1, 2], "text": "x"})"}).find("data.jsonl:1: \"input_ids\" and \"text\""),
            std::string::npos);
}

TEST(Dataset, SkipBadLinesCountsThem) {
  const DatasetOptions options{.skip_bad_lines = true};
  const Dataset dataset = load({R"({"text": "a"})", "nonsense", R"({"text": 1})", R"({"text": "b"})"}, options);
  EXPECT_EQ(dataset.examples.size(), 2u);
  EXPECT_EQ(dataset.skipped_lines, 2);
  EXPECT_EQ(dataset.examples[1].line, 4);
  const auto warnings = dataset.warnings(options);
  ASSERT_EQ(warnings.size(), 1u);
  EXPECT_NE(warnings[0].find("skipped 2 bad lines (the first: "), std::string::npos) << warnings[0];
  // Pre-tokenised lines are skipped the same way.
  const Dataset tokens = load({R"({"input_ids": [1, 2]})", R"({"input_ids": [1, -5]})", R"({"input_ids": [3, 4]})"}, options);
  EXPECT_EQ(tokens.examples.size(), 2u);
  EXPECT_EQ(tokens.skipped_lines, 1);
  EXPECT_NE(warnings[0].find("data.jsonl:2: not valid JSON"), std::string::npos) << warnings[0];
  EXPECT_NE(load_error({"nonsense"}, options).find("no examples (1 bad lines skipped"), std::string::npos);
}

TEST(Dataset, EvalSplitHoldsOutAFractionDeterministically) {
  std::vector<std::string> lines;
  for (int i = 0; i < 10; ++i) lines.push_back(fmt::format(R"({{"text": "example {}"}})", i));
  Dataset first = load(lines), second = load(lines);
  const auto eval = split_off_eval(first, 0.2, 7);
  const auto again = split_off_eval(second, 0.2, 7);
  ASSERT_EQ(eval.size(), 2u);
  EXPECT_EQ(first.examples.size(), 8u);
  std::set<int64_t> seen;
  for (const auto& example : first.examples) seen.insert(example.line);
  for (size_t i = 0; i < eval.size(); ++i) {
    EXPECT_EQ(eval[i].line, again[i].line);
    EXPECT_TRUE(seen.insert(eval[i].line).second);
  }
  EXPECT_EQ(seen.size(), 10u);
  EXPECT_THROW(split_off_eval(first, 1.5, 0), Error);
}

}  // namespace
}  // namespace dt
