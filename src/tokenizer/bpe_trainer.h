#pragma once
// Learns a byte-level BPE tokenizer in the Qwen format (for random test models): the Qwen
// pre-tokenizer regex, byte-level alphabet, merges learned from a corpus, and the Qwen special
// tokens as added tokens.
#include <nlohmann/json.hpp>

#include <string>

namespace dt {

struct TrainedTokenizer {
  nlohmann::json tokenizer_json;         // tokenizer.json
  nlohmann::json tokenizer_config_json;  // tokenizer_config.json (with chat_template, eos)
  int64_t vocab_size = 0;                // ids in use, special tokens included
  int64_t eos_token_id = 0;              // <|im_end|>
  int64_t endoftext_token_id = 0;        // <|endoftext|>
};

// A built-in English/code/multilingual corpus good enough to learn a few thousand merges.
const std::string& builtin_tokenizer_corpus();

// `vocab_size` counts the 256 byte symbols, the merges and the special tokens.
TrainedTokenizer train_bpe_tokenizer(const std::string& corpus, int64_t vocab_size);

}  // namespace dt
