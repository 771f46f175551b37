#pragma once
// Hugging Face `tokenizer.json` tokenizer for the Qwen family: added tokens (leftmost-longest, before
// normalisation), NFC, Split(regex, Isolated) + ByteLevel pre-tokenisation, byte-level BPE, and the
// ByteLevel decoder. Anything else in the file is rejected with an error naming the file and key.
//
// Invalid UTF-8 input: Hugging Face's bindings take Unicode strings, so callers there have already
// replaced invalid bytes with U+FFFD. encode() does the same first (replace_invalid_utf8, the
// from_utf8_lossy / TextDecoder rule) and then tokenizes the repaired text.
#include <cstdint>
#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace dt {

struct VocabAndMerges;

class Tokenizer {
 public:
  // `path` is a tokenizer.json file or a directory holding one.
  static Tokenizer load(const std::filesystem::path& path);
  // `source` names the origin (a file path) in error messages.
  static Tokenizer from_json(const nlohmann::json& tokenizer_json, const std::string& source);

  ~Tokenizer();
  Tokenizer(Tokenizer&&) noexcept;
  Tokenizer& operator=(Tokenizer&&) noexcept;

  // Token ids of `text`. With parse_special false, added tokens marked special are not recognised
  // and are tokenized as plain text (like split_special_tokens in Hugging Face); non-special added
  // tokens are always recognised.
  std::vector<int32_t> encode(std::string_view text, bool parse_special = true) const;

  struct Encoding {
    std::vector<int32_t> ids;
    std::vector<size_t> token_begin;  // byte offset of each token in `text`
    std::string text;                 // the input after UTF-8 repair and normalisation
  };
  Encoding encode_with_offsets(std::string_view text, bool parse_special = true) const;

  // Concatenates the tokens' bytes and repairs invalid UTF-8 with U+FFFD. Fails on an id outside
  // the vocabulary.
  std::string decode(std::span<const int32_t> ids, bool skip_special = false) const;

  // One past the largest id (added tokens included).
  int64_t vocab_size() const;
  std::optional<int32_t> token_to_id(std::string_view token) const;
  // Like token_to_id, but fails naming the tokenizer when the token is absent.
  int32_t require_token_id(std::string_view token) const;
  // The token's vocabulary string (byte-level form for model tokens, content for added tokens).
  const std::string& id_to_token(int32_t id) const;
  bool is_special(int32_t id) const;
  const std::string& source() const;

 private:
  struct Impl;
  explicit Tokenizer(std::unique_ptr<Impl> impl);
  static Tokenizer build(const nlohmann::json& tokenizer_json, VocabAndMerges tables, const std::string& source);
  const Impl& impl() const { return *impl_; }
  std::unique_ptr<Impl> impl_;
};

}  // namespace dt
