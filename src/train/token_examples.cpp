#include "train/token_examples.h"

#include <fstream>
#include <string>

#include <nlohmann/json.hpp>

#include "core/error.h"

namespace dt {
namespace {

constexpr int64_t kIgnoredLabel = -100;

// The integer array `key` of a line: every entry in [0, vocab_size), or -100 when `ignorable`.
std::vector<int32_t> token_array(const nlohmann::json& object, const char* key, int64_t vocab_size, bool ignorable) {
  const nlohmann::json& array = object.at(key);
  if (!array.is_array()) fail("\"{}\" must be an array of integers, got {}", key, array.dump());
  std::vector<int32_t> values;
  values.reserve(array.size());
  for (size_t i = 0; i < array.size(); ++i) {
    const nlohmann::json& entry = array[i];
    if (!entry.is_number_integer()) fail("\"{}\"[{}] is {}, expected an integer", key, i, entry.dump());
    const bool in_vocabulary = entry.is_number_unsigned() ? entry.get<uint64_t>() < uint64_t(vocab_size)
                                                          : entry.get<int64_t>() >= 0 && entry.get<int64_t>() < vocab_size;
    const bool ignored = ignorable && !entry.is_number_unsigned() && entry.get<int64_t>() == kIgnoredLabel;
    if (!in_vocabulary && !ignored)
      fail("\"{}\"[{}] = {} is outside the vocabulary [0, {}){}", key, i, entry.dump(), vocab_size,
           ignorable ? " and not -100" : "");
    values.push_back(int32_t(entry.get<int64_t>()));
  }
  return values;
}

TokenExample parse_line(const std::string& text, int64_t vocab_size) {
  nlohmann::json object;
  try {
    object = nlohmann::json::parse(text);
  } catch (const nlohmann::json::parse_error& error) {
    fail("not valid JSON ({})", error.what());
  }
  return parse_token_example(object, vocab_size);
}

}  // namespace

TokenExample parse_token_example(const nlohmann::json& object, int64_t vocab_size) {
  if (!object.is_object()) fail("expected a JSON object with \"input_ids\", got {}", object.type_name());
  if (!object.contains("input_ids")) fail("missing \"input_ids\"");
  TokenExample example;
  example.input_ids = token_array(object, "input_ids", vocab_size, false);
  if (example.input_ids.empty()) fail("\"input_ids\" is empty");
  example.labels = object.contains("labels") ? token_array(object, "labels", vocab_size, true) : example.input_ids;
  if (example.labels.size() != example.input_ids.size())
    fail("\"labels\" has {} entries but \"input_ids\" has {}", example.labels.size(), example.input_ids.size());
  return example;
}

std::vector<TokenExample> read_token_examples(const std::filesystem::path& path, int64_t vocab_size) {
  std::ifstream file(path);
  if (!file) fail("{}: cannot open the data file", path.string());
  std::vector<TokenExample> examples;
  std::string text;
  for (int64_t line = 1; std::getline(file, text); ++line) {
    if (text.find_first_not_of(" \t\r") == std::string::npos) continue;
    try {
      examples.push_back(parse_line(text, vocab_size));
    } catch (const Error& error) {
      fail("{}:{}: {}", path.string(), line, error.what());
    }
    examples.back().line = line;
  }
  if (file.bad()) fail("{}: read error", path.string());
  if (examples.empty()) fail("{}: no examples (every line is blank)", path.string());
  return examples;
}

}  // namespace dt
