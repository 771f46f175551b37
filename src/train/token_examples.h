#pragma once
// Pre-tokenised examples from JSONL, one a line: {"input_ids": [...]} or {"input_ids": [...],
// "labels": [...]} (absent labels = input_ids). Labels follow the Hugging Face convention:
// unshifted (labels[t] belongs to input_ids[t]), -100 ignored.
#include <cstdint>
#include <filesystem>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace dt {

struct TokenExample {
  std::vector<int32_t> input_ids, labels;  // same length, at least one token
  int64_t line = 0;                        // 1-based line in the file
};

// One line's JSON value in this form. Fails with the problem (without file:line): not an object,
// no input_ids, an empty input_ids, a non-integer entry, a token id or label outside
// [0, vocab_size) (labels may also be -100), or labels of another length than input_ids.
TokenExample parse_token_example(const nlohmann::json& object, int64_t vocab_size);

// Every non-blank line of `path`. Fails naming "path:line" and the problem on a line that is not a
// JSON object, lacks input_ids, has an empty input_ids, a non-integer entry, a token id or label
// outside [0, vocab_size) (labels may also be -100), or labels of another length than input_ids;
// and on a file without any example.
std::vector<TokenExample> read_token_examples(const std::filesystem::path& path, int64_t vocab_size);

}  // namespace dt
