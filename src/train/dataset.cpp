#include "train/dataset.h"

#include <fmt/format.h>

#include <algorithm>
#include <fstream>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "tokenizer/chat_template.h"
#include "train/batching.h"

namespace dt {
namespace {

using nlohmann::json;

const std::string& string_field(const json& object, const char* key) {
  const json& value = object.at(key);
  if (!value.is_string()) fail("\"{}\" must be a string, got {}", key, value.type_name());
  return value.get_ref<const std::string&>();
}

// TRL appends eos_token to text and completions; ours is <|im_end|> (tokenizer_config.json).
void append_end_of_turn(std::vector<int32_t>& ids, const Tokenizer& tokenizer) {
  if (const auto end = tokenizer.token_to_id("<|im_end|>"); end && (ids.empty() || ids.back() != *end))
    ids.push_back(*end);
}

TokenExample text_example(const json& object, const Tokenizer& tokenizer) {
  TokenExample example;
  example.input_ids = tokenizer.encode(string_field(object, "text"));
  append_end_of_turn(example.input_ids, tokenizer);
  example.labels = example.input_ids;
  return example;
}

TokenExample prompt_completion_example(const json& object, const Tokenizer& tokenizer,
                                          const DatasetOptions& options) {
  const std::string& prompt = string_field(object, "prompt");
  const std::string& completion = string_field(object, "completion");
  if (completion.empty()) fail("\"completion\" is empty");
  // As TRL: tokenize the whole text, and mask as many leading tokens as the prompt alone has.
  TokenExample example;
  example.input_ids = tokenizer.encode(prompt + completion);
  append_end_of_turn(example.input_ids, tokenizer);
  example.labels = example.input_ids;
  if (!options.train_on_prompt) {
    const size_t prompt_tokens = std::min(tokenizer.encode(prompt).size(), example.labels.size());
    std::fill_n(example.labels.begin(), prompt_tokens, kIgnoreLabel);
  }
  return example;
}

TokenExample chat_example(const json& object, const Tokenizer& tokenizer) {
  const json& list = object.at("messages");
  if (!list.is_array() || list.empty()) fail("\"messages\" must be a non-empty array of {{\"role\", \"content\"}}");
  std::vector<ChatMessage> messages;
  for (size_t i = 0; i < list.size(); ++i) {
    const json& item = list[i];
    if (!item.is_object() || !item.contains("role") || !item.contains("content"))
      fail("\"messages\"[{}] must be an object with \"role\" and \"content\"", i);
    ChatMessage message;
    try {
      message.role = string_field(item, "role");
      message.content = string_field(item, "content");
      if (item.contains("reasoning_content") && !item["reasoning_content"].is_null())
        message.reasoning_content = string_field(item, "reasoning_content");
    } catch (const Error& error) {
      fail("\"messages\"[{}]: {}", i, error.what());
    }
    if (message.role != "system" && message.role != "user" && message.role != "assistant" && message.role != "tool")
      fail("\"messages\"[{}]: unknown role \"{}\" (expected system, user, assistant or tool)", i, message.role);
    messages.push_back(std::move(message));
  }
  const MaskedTokens masked = tokenize_chat_for_training(tokenizer, messages, ChatOptions{});
  TokenExample example;
  example.input_ids = masked.ids;
  example.labels.resize(masked.ids.size());
  for (size_t i = 0; i < masked.ids.size(); ++i) example.labels[i] = masked.trainable[i] ? masked.ids[i] : kIgnoreLabel;
  return example;
}

}  // namespace

int64_t predicted_target_count(const TokenExample& example) {
  const auto& labels = example.labels;
  if (labels.size() < 2) return 0;
  return int64_t(std::count_if(labels.begin() + 1, labels.end(), [](int32_t label) { return label != kIgnoreLabel; }));
}

int64_t Dataset::token_count() const {
  int64_t total = 0;
  for (const auto& example : examples) total += int64_t(example.input_ids.size());
  return total;
}

std::vector<std::string> Dataset::warnings(const DatasetOptions& options) const {
  std::vector<std::string> out;
  if (skipped_lines > 0)
    out.push_back(fmt::format("skipped {} bad line{} (the first: {})", skipped_lines, skipped_lines == 1 ? "" : "s",
                              first_skip_reason));
  if (truncated_examples > 0)
    out.push_back(fmt::format("{} example{} longer than --max-seq-len {} {} truncated", truncated_examples,
                              truncated_examples == 1 ? "" : "s", options.max_seq_len,
                              truncated_examples == 1 ? "was" : "were"));
  return out;
}

TokenExample parse_example(const std::string& line, const Tokenizer& tokenizer, int64_t vocab_size,
                           const DatasetOptions& options) {
  json object;
  try {
    object = json::parse(line);
  } catch (const json::parse_error& error) {
    fail("not valid JSON ({})", error.what());
  }
  if (!object.is_object()) fail("expected a JSON object, got {}", object.type_name());
  TokenExample example;
  if (object.contains("input_ids")) {
    for (const char* key : {"text", "prompt", "completion", "messages"})
      if (object.contains(key)) fail("\"input_ids\" and \"{}\" are different forms; give one", key);
    example = parse_token_example(object, vocab_size);
  } else if (object.contains("messages")) {
    example = chat_example(object, tokenizer);
  } else if (object.contains("prompt") || object.contains("completion")) {
    if (!object.contains("prompt") || !object.contains("completion"))
      fail("\"prompt\" and \"completion\" go together; only \"{}\" is present",
           object.contains("prompt") ? "prompt" : "completion");
    example = prompt_completion_example(object, tokenizer, options);
  } else if (object.contains("text")) {
    example = text_example(object, tokenizer);
  } else {
    fail("expected one of the forms {{\"text\"}}, {{\"prompt\", \"completion\"}}, {{\"messages\"}} or "
         "{{\"input_ids\", \"labels\"}}");
  }
  if (example.input_ids.empty()) fail("the example has no tokens");
  if (predicted_target_count(example) == 0)
    fail("the example has no token to train on (no assistant turn, or every label after the first is -100)");
  return example;
}

Dataset load_dataset(const std::filesystem::path& path, const Tokenizer& tokenizer, int64_t vocab_size,
                     const DatasetOptions& options) {
  std::ifstream stream(path, std::ios::binary);
  if (!stream) fail("cannot open the dataset {}", path.string());
  Dataset dataset;
  const auto add = [&](TokenExample example) {
    if (options.max_seq_len > 0 && int64_t(example.input_ids.size()) > options.max_seq_len) {
      example.input_ids.resize(size_t(options.max_seq_len));
      example.labels.resize(size_t(options.max_seq_len));
      ++dataset.truncated_examples;
    }
    dataset.examples.push_back(std::move(example));
  };
  std::string line;
  for (int64_t number = 1; std::getline(stream, line); ++number) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    try {
      TokenExample example = parse_example(line, tokenizer, vocab_size, options);
      example.line = number;
      add(std::move(example));
    } catch (const Error& error) {
      const std::string message = fmt::format("{}:{}: {}", path.string(), number, error.what());
      if (!options.skip_bad_lines) fail("{}", message);
      if (dataset.skipped_lines++ == 0) dataset.first_skip_reason = message;
    }
  }
  if (dataset.examples.empty())
    fail("{}: no examples{}", path.string(),
         dataset.skipped_lines ? fmt::format(" ({} bad lines skipped; the first: {})", dataset.skipped_lines,
                                             dataset.first_skip_reason)
                               : "");
  return dataset;
}

std::vector<TokenExample> split_off_eval(Dataset& dataset, double fraction, uint64_t seed) {
  if (!(fraction > 0 && fraction < 1)) fail("--eval-split must be between 0 and 1, got {}", fraction);
  const size_t count = dataset.examples.size();
  if (count < 2) fail("--eval-split needs at least two examples, the dataset has {}", count);
  const size_t held_out = std::clamp<size_t>(size_t(double(count) * fraction + 0.5), 1, count - 1);
  const std::vector<size_t> order = shuffled_order(count, seed);
  std::vector<TokenExample> train, eval;
  for (size_t i = 0; i < count; ++i)
    (i < count - held_out ? train : eval).push_back(std::move(dataset.examples[order[i]]));
  dataset.examples = std::move(train);
  return eval;
}

}  // namespace dt
