#include "tokenizer/bpe_trainer.h"

#include <algorithm>
#include <map>
#include <unordered_map>

#include "core/error.h"
#include "tokenizer/byte_level.h"
#include "tokenizer/chat_template.h"
#include "tokenizer/split_regex.h"
#include "tokenizer/unicode_text.h"

namespace dt {
namespace {

using nlohmann::json;

struct SpecialToken {
  const char* content;
  bool special;  // Qwen3 marks <think> and </think> as non-special, so decoding keeps them
};
constexpr SpecialToken kSpecialTokens[] = {
    {"<|endoftext|>", true}, {"<|im_start|>", true}, {"<|im_end|>", true}, {"<think>", false}, {"</think>", false}};
constexpr int64_t kSpecialTokenCount = std::size(kSpecialTokens);

uint64_t pair_key(int32_t left, int32_t right) {
  return (static_cast<uint64_t>(static_cast<uint32_t>(left)) << 32) | static_cast<uint32_t>(right);
}
int32_t left_of(uint64_t key) { return static_cast<int32_t>(key >> 32); }
int32_t right_of(uint64_t key) { return static_cast<int32_t>(key & 0xFFFFFFFFu); }

struct Word {
  std::vector<int32_t> symbols;
  int64_t count = 0;
};

// Pair statistics with a lazily-updated max-heap: an entry is current when its count equals the
// pair's count; increases push a fresh entry, decreases are corrected when a stale entry surfaces.
class PairQueue {
 public:
  void add(uint64_t pair, int64_t delta) {
    auto& count = counts_[pair];
    count += delta;
    if (delta > 0) push(pair, count);
  }
  int64_t count(uint64_t pair) const {
    const auto found = counts_.find(pair);
    return found == counts_.end() ? 0 : found->second;
  }
  // The most frequent pair (ties: smallest left id, then right id), or nullopt when none is left.
  std::optional<uint64_t> pop_best() {
    while (!heap_.empty()) {
      std::pop_heap(heap_.begin(), heap_.end(), worse);
      const Entry top = heap_.back();
      heap_.pop_back();
      const int64_t current = count(top.pair);
      if (current == top.count && current > 0) return top.pair;
      if (current > 0 && current < top.count) push(top.pair, current);
    }
    return std::nullopt;
  }
  void erase(uint64_t pair) { counts_.erase(pair); }

 private:
  struct Entry {
    int64_t count;
    uint64_t pair;
  };
  static bool worse(const Entry& a, const Entry& b) {
    if (a.count != b.count) return a.count < b.count;
    return a.pair > b.pair;  // the key orders by left id, then right id
  }
  void push(uint64_t pair, int64_t count) {
    heap_.push_back({count, pair});
    std::push_heap(heap_.begin(), heap_.end(), worse);
  }
  std::unordered_map<uint64_t, int64_t> counts_;
  std::vector<Entry> heap_;
};

// Per-word change of pair counts when a word's symbols change.
void count_pairs(const std::vector<int32_t>& symbols, int sign, std::vector<std::pair<uint64_t, int>>& changes) {
  for (size_t i = 0; i + 1 < symbols.size(); ++i) {
    const uint64_t pair = pair_key(symbols[i], symbols[i + 1]);
    const auto found = std::find_if(changes.begin(), changes.end(), [&](const auto& c) { return c.first == pair; });
    if (found == changes.end()) changes.emplace_back(pair, sign);
    else found->second += sign;
  }
}

json byte_level_step() {
  return {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", false}, {"use_regex", false}};
}

json added_token_entry(const SpecialToken& token, int64_t id) {
  return {{"id", id},          {"content", token.content}, {"single_word", false}, {"lstrip", false},
          {"rstrip", false},   {"normalized", false},      {"special", token.special}};
}

}  // namespace

TrainedTokenizer train_bpe_tokenizer(const std::string& corpus, int64_t vocab_size) {
  const int64_t model_vocab_size = vocab_size - kSpecialTokenCount;
  if (model_vocab_size < 256)
    fail("tokenizer vocab_size {} is too small: it needs the 256 byte symbols and {} special tokens", vocab_size,
         kSpecialTokenCount);

  // Words: pre-tokenized pieces of the normalized corpus with their counts, in sorted order.
  const std::string text = nfc_normalize(replace_invalid_utf8(corpus));
  std::vector<std::string_view> pieces;
  SplitRegex(kQwen35SplitPattern, "the Qwen3.5 pre-tokenizer pattern").split(text, pieces);
  std::map<std::string_view, int64_t> piece_counts;
  for (std::string_view piece : pieces) ++piece_counts[piece];

  std::vector<std::string> tokens;
  std::unordered_map<std::string, int32_t> token_ids;
  std::array<int32_t, 256> byte_id{};
  for (int32_t id = 0; id < 256; ++id) {
    const uint8_t byte = byte_level_order()[id];
    byte_id[byte] = id;
    tokens.push_back(byte_level_symbols()[byte]);
    token_ids.emplace(tokens.back(), id);
  }

  std::vector<Word> words;
  PairQueue queue;
  std::unordered_map<uint64_t, std::vector<int32_t>> words_with_pair;
  for (const auto& [piece, count] : piece_counts) {
    Word word{{}, count};
    for (char byte : piece) word.symbols.push_back(byte_id[static_cast<unsigned char>(byte)]);
    const auto index = static_cast<int32_t>(words.size());
    std::vector<std::pair<uint64_t, int>> changes;
    count_pairs(word.symbols, +1, changes);
    for (const auto& [pair, occurrences] : changes) {
      queue.add(pair, occurrences * count);
      words_with_pair[pair].push_back(index);
    }
    words.push_back(std::move(word));
  }

  json merges = json::array();
  std::vector<int32_t> visited(words.size(), -1);
  while (static_cast<int64_t>(tokens.size()) < model_vocab_size) {
    const auto best = queue.pop_best();
    if (!best)
      fail("the tokenizer corpus ({} bytes) has too few distinct pairs for vocab_size {}: it stops at {} tokens",
           corpus.size(), vocab_size, tokens.size() + kSpecialTokenCount);
    const int32_t left = left_of(*best), right = right_of(*best);
    const std::string merged = tokens[left] + tokens[right];
    auto [found, inserted] = token_ids.try_emplace(merged, static_cast<int32_t>(tokens.size()));
    if (inserted) tokens.push_back(merged);
    const int32_t merged_id = found->second;
    merges.push_back({tokens[left], tokens[right]});

    const auto affected = std::move(words_with_pair[*best]);
    words_with_pair.erase(*best);
    const auto merge_index = static_cast<int32_t>(merges.size());
    for (int32_t index : affected) {
      if (visited[index] == merge_index) continue;
      visited[index] = merge_index;
      Word& word = words[index];
      std::vector<std::pair<uint64_t, int>> changes;
      count_pairs(word.symbols, -1, changes);
      std::vector<int32_t> symbols;
      for (size_t i = 0; i < word.symbols.size(); ++i) {
        if (i + 1 < word.symbols.size() && word.symbols[i] == left && word.symbols[i + 1] == right) {
          symbols.push_back(merged_id);
          ++i;
        } else {
          symbols.push_back(word.symbols[i]);
        }
      }
      word.symbols = std::move(symbols);
      count_pairs(word.symbols, +1, changes);
      for (const auto& [pair, delta] : changes) {
        if (delta == 0) continue;
        queue.add(pair, delta * word.count);
        if (delta > 0) words_with_pair[pair].push_back(index);
      }
    }
    queue.erase(*best);
  }

  json vocab = json::object();
  for (size_t id = 0; id < tokens.size(); ++id) vocab[tokens[id]] = id;

  TrainedTokenizer out;
  json added_tokens = json::array();
  json added_tokens_decoder = json::object();
  for (int64_t i = 0; i < kSpecialTokenCount; ++i) {
    const int64_t id = model_vocab_size + i;
    json entry = added_token_entry(kSpecialTokens[i], id);
    added_tokens.push_back(entry);
    entry.erase("id");
    added_tokens_decoder[std::to_string(id)] = entry;
  }
  out.tokenizer_json = {
      {"version", "1.0"},
      {"truncation", nullptr},
      {"padding", nullptr},
      {"added_tokens", added_tokens},
      {"normalizer", {{"type", "NFC"}}},
      {"pre_tokenizer",
       {{"type", "Sequence"},
        {"pretokenizers",
         {{{"type", "Split"}, {"pattern", {{"Regex", kQwen35SplitPattern}}}, {"behavior", "Isolated"}, {"invert", false}},
          byte_level_step()}}}},
      {"post_processor", byte_level_step()},
      {"decoder", byte_level_step()},
      {"model",
       {{"type", "BPE"},
        {"dropout", nullptr},
        {"unk_token", nullptr},
        {"continuing_subword_prefix", ""},
        {"end_of_word_suffix", ""},
        {"fuse_unk", false},
        {"byte_fallback", false},
        {"ignore_merges", false},
        {"vocab", vocab},
        {"merges", merges}}}};
  out.tokenizer_config_json = {
      {"add_bos_token", false},
      {"add_prefix_space", false},
      {"added_tokens_decoder", added_tokens_decoder},
      {"additional_special_tokens", {"<|im_start|>", "<|im_end|>"}},
      {"bos_token", nullptr},
      {"chat_template", qwen_chat_template_jinja()},
      {"clean_up_tokenization_spaces", false},
      {"eos_token", "<|im_end|>"},
      {"errors", "replace"},
      {"model_max_length", 262144},
      {"pad_token", "<|endoftext|>"},
      {"split_special_tokens", false},
      {"tokenizer_class", "Qwen2Tokenizer"},
      {"unk_token", nullptr}};
  out.vocab_size = vocab_size;
  out.endoftext_token_id = model_vocab_size;
  out.eos_token_id = model_vocab_size + 2;
  return out;
}

}  // namespace dt
