#pragma once
// Training data from JSONL in the forms TRL and axolotl users already have, one example a line:
//   {"text": "..."}                                 loss on every token
//   {"prompt": "...", "completion": "..."}          loss on the completion (and the prompt with
//                                                   train_on_prompt)
//   {"messages": [{"role": ..., "content": ...}]}   rendered with the chat template, loss on the
//                                                   assistant turns (tokenize_chat_for_training)
//   {"input_ids": [...], "labels": [...]}           pre-tokenised (parse_token_example), labels
//                                                   optional
// Text and completions end with the tokenizer's end-of-turn token <|im_end|> when it has one, as
// TRL appends eos_token. Labels follow the Hugging Face convention (unshifted, -100 ignored).
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "tokenizer/tokenizer.h"
#include "train/token_examples.h"

namespace dt {

inline constexpr int32_t kIgnoreLabel = -100;

// Labels that are predicted: not ignored and not the first (no position predicts labels[0]).
int64_t predicted_target_count(const TokenExample& example);

struct DatasetOptions {
  int64_t max_seq_len = 0;       // examples longer than this are cut to it; 0: no limit
  bool train_on_prompt = false;  // prompt/completion: take the loss on the prompt too
  bool skip_bad_lines = false;   // skip (and count) bad lines instead of failing
};

struct Dataset {
  std::vector<TokenExample> examples;
  int64_t skipped_lines = 0;       // bad lines skipped under skip_bad_lines
  std::string first_skip_reason;   // "file:line: problem" of the first skipped line
  int64_t truncated_examples = 0;  // examples cut to max_seq_len

  int64_t token_count() const;
  // Messages for the user about skipped lines and truncation; empty when there is nothing to say.
  std::vector<std::string> warnings(const DatasetOptions& options) const;
};

// One JSONL line of any form as an example (before truncation). Fails with the problem (without
// file:line) when the line is not JSON, has none of the forms, has a field of the wrong type or a
// token id outside [0, vocab_size), or would give no token to train on.
TokenExample parse_example(const std::string& line, const Tokenizer& tokenizer, int64_t vocab_size,
                           const DatasetOptions& options);

// Every non-blank line of `path`. A bad line fails naming "path:line: problem" unless
// skip_bad_lines; a file without any example fails. vocab_size is the model's (pre-tokenised ids
// index its embedding).
Dataset load_dataset(const std::filesystem::path& path, const Tokenizer& tokenizer, int64_t vocab_size,
                     const DatasetOptions& options);

// Splits off the last `fraction` of the examples (at least one, leaving at least one) after a
// shuffle seeded by `seed`, for --eval-split. Returns the held-out examples.
std::vector<TokenExample> split_off_eval(Dataset& dataset, double fraction, uint64_t seed);

}  // namespace dt
