#include "tokenizer/tokenizer.h"

#include <algorithm>
#include <array>
#include <unordered_map>

#include "core/error.h"
#include "io/mapped_file.h"
#include "tokenizer/bpe_model.h"
#include "tokenizer/byte_level.h"
#include "tokenizer/split_regex.h"
#include "tokenizer/unicode_text.h"

namespace dt {
namespace {

using nlohmann::json;

struct AddedToken {
  int32_t id = 0;
  std::string content;
  bool special = false;
  bool normalized = false;
};

// Finds added tokens in text with leftmost-longest matching (Hugging Face uses an Aho-Corasick
// automaton in that mode; the few tokens make a first-byte index just as good).
class AddedTokenMatcher {
 public:
  void add(const AddedToken& token) {
    auto& bucket = by_first_byte_[static_cast<unsigned char>(token.content[0])];
    bucket.push_back(&token);
    std::stable_sort(bucket.begin(), bucket.end(),
                     [](const AddedToken* a, const AddedToken* b) { return a->content.size() > b->content.size(); });
  }

  struct Match {
    size_t position;
    const AddedToken* token;
  };
  // The leftmost match at or after `from`, longest among those; skips special tokens if asked.
  std::optional<Match> find(std::string_view text, size_t from, bool include_special) const {
    for (size_t position = from; position < text.size(); ++position) {
      for (const AddedToken* token : by_first_byte_[static_cast<unsigned char>(text[position])]) {
        if (token->special && !include_special) continue;
        if (text.compare(position, token->content.size(), token->content) == 0) return Match{position, token};
      }
    }
    return std::nullopt;
  }

 private:
  std::array<std::vector<const AddedToken*>, 256> by_first_byte_;
};

std::string key_path(const std::string& parent, std::string_view key) {
  return parent.empty() ? std::string(key) : parent + "." + std::string(key);
}

const json& member(const json& object, std::string_view key, const std::string& parent, const std::string& source) {
  if (!object.is_object()) fail("{}: {} must be a JSON object", source, parent.empty() ? "the top level" : parent);
  const auto found = object.find(key);
  if (found == object.end()) fail("{}: key \"{}\" is missing", source, key_path(parent, key));
  return *found;
}

std::string string_member(const json& object, std::string_view key, const std::string& parent, const std::string& source) {
  const json& value = member(object, key, parent, source);
  if (!value.is_string()) fail("{}: {} must be a string", source, key_path(parent, key));
  return value.get<std::string>();
}

// An optional member: absent or null give `fallback`.
template <typename T>
T optional_member(const json& object, std::string_view key, const T& fallback, const std::string& parent,
                  const std::string& source) {
  const auto found = object.find(key);
  if (found == object.end() || found->is_null()) return fallback;
  try {
    return found->get<T>();
  } catch (const json::exception&) {
    fail("{}: {} has the wrong type ({})", source, key_path(parent, key), found->dump());
  }
}

void require_value(const json& object, std::string_view key, const json& expected, const std::string& parent,
                   const std::string& source) {
  const auto found = object.find(key);
  const json actual = found == object.end() ? json() : *found;
  const bool absent_means_expected = actual.is_null() && (expected.is_null() || expected == false || expected == "");
  if (actual != expected && !absent_means_expected)
    fail("{}: {} is {}; only {} is supported", source, key_path(parent, key), actual.dump(), expected.dump());
}

std::string escape_literal(const std::string& literal) {
  std::string out;
  for (char c : literal) {
    if (std::string_view("\\^$.|?*+()[]{}").find(c) != std::string_view::npos) out += '\\';
    out += c;
  }
  return out;
}

SplitRegex parse_pre_tokenizer(const json& root, const std::string& source) {
  const json& pre = member(root, "pre_tokenizer", "", source);
  if (string_member(pre, "type", "pre_tokenizer", source) != "Sequence")
    fail("{}: pre_tokenizer.type is {}; only a Sequence of Split(Isolated) and ByteLevel(use_regex false) is supported",
         source, pre["type"].dump());
  const json& list = member(pre, "pretokenizers", "pre_tokenizer", source);
  if (!list.is_array() || list.size() != 2)
    fail("{}: pre_tokenizer.pretokenizers must list exactly [Split, ByteLevel]", source);
  const std::string split_key = "pre_tokenizer.pretokenizers[0]", byte_level_key = "pre_tokenizer.pretokenizers[1]";
  const json& split = list[0];
  if (string_member(split, "type", split_key, source) != "Split")
    fail("{}: {}.type is {}; expected \"Split\"", source, split_key, split["type"].dump());
  require_value(split, "behavior", "Isolated", split_key, source);
  require_value(split, "invert", false, split_key, source);
  const json& pattern = member(split, "pattern", split_key, source);
  std::string regex;
  if (pattern.contains("Regex") && pattern["Regex"].is_string()) regex = pattern["Regex"].get<std::string>();
  else if (pattern.contains("String") && pattern["String"].is_string()) regex = escape_literal(pattern["String"].get<std::string>());
  else fail("{}: {}.pattern must be {{\"Regex\": ...}} or {{\"String\": ...}}", source, split_key);

  const json& byte_level = list[1];
  if (string_member(byte_level, "type", byte_level_key, source) != "ByteLevel")
    fail("{}: {}.type is {}; expected \"ByteLevel\"", source, byte_level_key, byte_level["type"].dump());
  require_value(byte_level, "add_prefix_space", false, byte_level_key, source);
  require_value(byte_level, "use_regex", false, byte_level_key, source);
  return SplitRegex(regex, source + ": " + split_key + ".pattern");
}

bool parse_normalizer(const json& root, const std::string& source) {
  const auto found = root.find("normalizer");
  if (found == root.end() || found->is_null()) return false;
  const std::string type = string_member(*found, "type", "normalizer", source);
  if (type != "NFC") fail("{}: normalizer.type is \"{}\"; only \"NFC\" (or null) is supported", source, type);
  return true;
}

void check_processors(const json& root, const std::string& source) {
  for (const char* key : {"truncation", "padding"}) {
    const auto found = root.find(key);
    if (found != root.end() && !found->is_null())
      fail("{}: {} is set; only null is supported (truncate or pad outside the tokenizer)", source, key);
  }
  const auto post = root.find("post_processor");
  if (post != root.end() && !post->is_null()) {
    const std::string type = string_member(*post, "type", "post_processor", source);
    if (type != "ByteLevel")
      fail("{}: post_processor.type is \"{}\"; only \"ByteLevel\" (or null) is supported", source, type);
  }
  const std::string decoder = string_member(member(root, "decoder", "", source), "type", "decoder", source);
  if (decoder != "ByteLevel") fail("{}: decoder.type is \"{}\"; only \"ByteLevel\" is supported", source, decoder);
}

// One entry of model.merges: "a b" (legacy; "#version" lines give nullopt) or ["a", "b"].
std::optional<BpeMerge> parse_merge(const json& merge, size_t index, const std::string& source) {
  if (merge.is_string()) {
    const auto& line = merge.get_ref<const std::string&>();
    if (line.starts_with("#version")) return std::nullopt;
    const size_t space = line.find(' ');
    if (space == std::string::npos || line.find(' ', space + 1) != std::string::npos)
      fail("{}: model.merges[{}] is {:?}; expected two tokens separated by one space", source, index, line);
    return BpeMerge{line.substr(0, space), line.substr(space + 1)};
  }
  if (merge.is_array() && merge.size() == 2 && merge[0].is_string() && merge[1].is_string())
    return BpeMerge{merge[0].get<std::string>(), merge[1].get<std::string>()};
  fail("{}: model.merges[{}] is {}; expected \"a b\" or [\"a\", \"b\"]", source, index, merge.dump());
}

int32_t parse_vocab_id(std::string_view token, const json& id, const std::string& source) {
  if (!id.is_number_integer() || id.get<int64_t>() < 0 || id.get<int64_t>() > INT32_MAX)
    fail("{}: model.vocab[{:?}] is {}; expected a non-negative integer id", source, token, id.dump());
  return id.get<int32_t>();
}

}  // namespace

// model.vocab and model.merges, the bulk of a real tokenizer.json.
struct VocabAndMerges {
  std::unordered_map<std::string, int32_t> vocab;
  std::vector<BpeMerge> merges;
};

namespace {

VocabAndMerges vocab_and_merges_from_json(const json& model, const std::string& source) {
  VocabAndMerges out;
  const json& vocab = member(model, "vocab", "model", source);
  if (!vocab.is_object()) fail("{}: model.vocab must be an object of token -> id", source);
  out.vocab.reserve(vocab.size());
  for (const auto& [token, id] : vocab.items()) out.vocab.emplace(token, parse_vocab_id(token, id, source));
  const json& merges = member(model, "merges", "model", source);
  if (!merges.is_array()) fail("{}: model.merges must be an array", source);
  out.merges.reserve(merges.size());
  for (size_t i = 0; i < merges.size(); ++i)
    if (auto merge = parse_merge(merges[i], i, source)) out.merges.push_back(std::move(*merge));
  return out;
}

// Parses a tokenizer.json into a DOM, except that model.vocab and model.merges stream straight
// into VocabAndMerges (left as null in the DOM): building a JSON DOM of a 150k-token vocab is
// most of the load time.
class StreamingReader : public nlohmann::json_sax<json> {
 public:
  StreamingReader(json& root, VocabAndMerges& tables, const std::string& source)
      : dom_(root, true), tables_(tables), source_(source) {}

  bool null() override { return value(json()); }
  bool boolean(bool v) override { return value(json(v)); }
  bool number_integer(number_integer_t v) override { return value(json(v)); }
  bool number_unsigned(number_unsigned_t v) override { return value(json(v)); }
  bool number_float(number_float_t v, const string_t& s) override {
    return mode_ == Mode::kDom ? dom_.number_float(v, s) : value(json(v));
  }
  bool string(string_t& v) override { return value(json(std::move(v))); }
  bool binary(binary_t& v) override { return mode_ == Mode::kDom ? dom_.binary(v) : value(json()); }

  bool start_object(std::size_t size) override {
    if (mode_ != Mode::kDom) return value(json());  // rejected below as a bad vocab id or merge
    if (in_model() && pending_key_ == "vocab") return enter(Mode::kVocab);
    path_.push_back(pending_key_);
    pending_key_.clear();
    return dom_.start_object(size);
  }
  bool start_array(std::size_t size) override {
    if (mode_ == Mode::kMerges) {
      if (merge_) return value(json());
      merge_ = json::array();
      return true;
    }
    if (mode_ == Mode::kVocab) return value(json());
    if (in_model() && pending_key_ == "merges") return enter(Mode::kMerges);
    path_.push_back(pending_key_);
    pending_key_.clear();
    return dom_.start_array(size);
  }
  bool key(string_t& k) override {
    if (mode_ == Mode::kVocab) {
      vocab_token_ = k;
      return true;
    }
    pending_key_ = k;
    return dom_.key(k);
  }
  bool end_object() override {
    if (mode_ == Mode::kVocab) return leave();
    path_.pop_back();
    return dom_.end_object();
  }
  bool end_array() override {
    if (mode_ == Mode::kMerges) {
      if (!merge_) return leave();
      add_merge(*merge_);
      merge_.reset();
      return true;
    }
    path_.pop_back();
    return dom_.end_array();
  }
  bool parse_error(std::size_t position, const std::string& last_token, const nlohmann::detail::exception& error) override {
    fail("{}: not valid JSON near byte {} ({:?}): {}", source_, position, last_token, error.what());
  }

 private:
  enum class Mode { kDom, kVocab, kMerges };

  // Directly inside the top-level "model" object (the root itself has the empty key).
  bool in_model() const { return path_.size() == 2 && path_[1] == "model"; }

  bool enter(Mode mode) {
    mode_ = mode;
    return dom_.null();
  }
  bool leave() {
    mode_ = Mode::kDom;
    return true;
  }
  bool value(json v) {
    switch (mode_) {
      case Mode::kDom:
        return forward(std::move(v));
      case Mode::kVocab:
        tables_.vocab.emplace(vocab_token_, parse_vocab_id(vocab_token_, v, source_));
        return true;
      case Mode::kMerges:
        if (merge_) merge_->push_back(std::move(v));
        else add_merge(v);
        return true;
    }
    return false;
  }
  bool forward(json v) {
    if (v.is_null()) return dom_.null();
    if (v.is_boolean()) return dom_.boolean(v.get<bool>());
    if (v.is_number_unsigned()) return dom_.number_unsigned(v.get<number_unsigned_t>());
    if (v.is_number_integer()) return dom_.number_integer(v.get<number_integer_t>());
    auto text = v.get<std::string>();
    return dom_.string(text);
  }
  void add_merge(const json& entry) {
    if (auto merge = parse_merge(entry, merge_index_, source_)) tables_.merges.push_back(std::move(*merge));
    ++merge_index_;
  }

  nlohmann::detail::json_sax_dom_parser<json> dom_;
  VocabAndMerges& tables_;
  std::string source_;
  Mode mode_ = Mode::kDom;
  std::vector<std::string> path_;  // keys of the open containers ("" for array elements)
  std::string pending_key_, vocab_token_;
  std::optional<json> merge_;  // the ["a", "b"] pair being read
  size_t merge_index_ = 0;
};

// Everything in model except vocab and merges, which come from `tables`.
BpeModel parse_model(const json& root, VocabAndMerges tables, const std::string& source) {
  const json& model = member(root, "model", "", source);
  const std::string type = string_member(model, "type", "model", source);
  if (type != "BPE") fail("{}: model.type is \"{}\"; only \"BPE\" is supported", source, type);
  require_value(model, "dropout", json(), "model", source);
  require_value(model, "byte_fallback", false, "model", source);
  require_value(model, "continuing_subword_prefix", "", "model", source);
  require_value(model, "end_of_word_suffix", "", "model", source);
  const bool ignore_merges = optional_member<bool>(model, "ignore_merges", false, "model", source);
  return BpeModel(std::move(tables.vocab), tables.merges, ignore_merges, source);
}

std::vector<AddedToken> parse_added_tokens(const json& root, const std::string& source) {
  std::vector<AddedToken> tokens;
  const auto found = root.find("added_tokens");
  if (found == root.end() || found->is_null()) return tokens;
  if (!found->is_array()) fail("{}: added_tokens must be an array", source);
  for (size_t i = 0; i < found->size(); ++i) {
    const json& entry = (*found)[i];
    const std::string where = fmt::format("added_tokens[{}]", i);
    AddedToken token;
    const json& id = member(entry, "id", where, source);
    if (!id.is_number_integer() || id.get<int64_t>() < 0 || id.get<int64_t>() > INT32_MAX)
      fail("{}: {}.id must be a non-negative integer", source, where);
    token.id = id.get<int32_t>();
    token.content = string_member(entry, "content", where, source);
    if (token.content.empty()) fail("{}: {}.content is empty", source, where);
    token.special = optional_member<bool>(entry, "special", false, where, source);
    token.normalized = optional_member<bool>(entry, "normalized", !token.special, where, source);
    for (const char* flag : {"lstrip", "rstrip", "single_word"}) require_value(entry, flag, false, where, source);
    tokens.push_back(std::move(token));
  }
  return tokens;
}

}  // namespace

struct Tokenizer::Impl {
  std::string source;
  SplitRegex split;
  bool nfc;
  BpeModel model;
  std::vector<AddedToken> added_tokens;
  std::unordered_map<std::string, int32_t> added_by_content;
  AddedTokenMatcher raw_matcher, normalized_matcher;
  std::vector<std::string> id_to_token;  // empty string: id unused
  std::vector<std::string> token_bytes;  // decoded bytes per id
  std::vector<uint8_t> special;

  // Pre-tokenizes and BPE-encodes one normalized stretch without added tokens.
  void encode_plain(std::string_view text, Encoding& out) const {
    std::vector<std::string_view> pieces;
    split.split(text, pieces);
    for (std::string_view piece : pieces) {
      const size_t first = out.ids.size();
      model.encode_piece(piece, out.ids);
      size_t offset = out.text.size();
      for (size_t i = first; i < out.ids.size(); ++i) {
        out.token_begin.push_back(offset);
        offset += token_bytes[out.ids[i]].size();
      }
      out.text.append(piece);
    }
  }

  void append_added(const AddedToken& token, Encoding& out) const {
    out.ids.push_back(token.id);
    out.token_begin.push_back(out.text.size());
    out.text.append(token.content);
  }

  // Splits on the matcher's tokens, handing the gaps to `gap`.
  template <typename Gap>
  void split_added(std::string_view text, const AddedTokenMatcher& matcher, bool parse_special, Encoding& out,
                   Gap&& gap) const {
    size_t position = 0;
    while (position < text.size()) {
      const auto match = matcher.find(text, position, parse_special);
      const size_t gap_end = match ? match->position : text.size();
      if (gap_end > position) gap(text.substr(position, gap_end - position));
      if (!match) break;
      append_added(*match->token, out);
      position = match->position + match->token->content.size();
    }
  }
};

Tokenizer::Tokenizer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Tokenizer::~Tokenizer() = default;
Tokenizer::Tokenizer(Tokenizer&&) noexcept = default;
Tokenizer& Tokenizer::operator=(Tokenizer&&) noexcept = default;

Tokenizer Tokenizer::load(const std::filesystem::path& path) {
  const auto file = std::filesystem::is_directory(path) ? path / "tokenizer.json" : path;
  const std::string text = read_text_file(file);
  json root;
  VocabAndMerges tables;
  StreamingReader reader(root, tables, file.string());
  json::sax_parse(text, &reader);
  // A file without model.vocab / model.merges has no null placeholders for them.
  for (const char* key : {"vocab", "merges"})
    if (root.contains("model") && root["model"].is_object()) member(root["model"], key, "model", file.string());
  return build(root, std::move(tables), file.string());
}

Tokenizer Tokenizer::from_json(const json& root, const std::string& source) {
  return build(root, vocab_and_merges_from_json(member(root, "model", "", source), source), source);
}

Tokenizer Tokenizer::build(const json& root, VocabAndMerges tables, const std::string& source) {
  if (!root.is_object()) fail("{}: a tokenizer.json must be a JSON object", source);
  check_processors(root, source);
  const bool nfc = parse_normalizer(root, source);
  SplitRegex split = parse_pre_tokenizer(root, source);
  BpeModel model = parse_model(root, std::move(tables), source);
  auto impl = std::unique_ptr<Impl>(new Impl{source, std::move(split), nfc, std::move(model), parse_added_tokens(root, source),
                                             {}, {}, {}, {}, {}, {}});

  int32_t max_id = -1;
  for (const auto& [token, id] : impl->model.vocab()) max_id = std::max(max_id, id);
  for (const auto& token : impl->added_tokens) max_id = std::max(max_id, token.id);
  const size_t size = static_cast<size_t>(max_id) + 1;
  impl->id_to_token.resize(size);
  impl->token_bytes.resize(size);
  impl->special.assign(size, 0);
  for (const auto& [token, id] : impl->model.vocab()) {
    if (!impl->id_to_token[id].empty())
      fail("{}: model.vocab gives id {} to both {:?} and {:?}", source, id, impl->id_to_token[id], token);
    impl->id_to_token[id] = token;
    // The ByteLevel decoder keeps a token's own UTF-8 when it is not made of byte-level symbols.
    impl->token_bytes[id] = byte_level_to_bytes(token).value_or(token);
  }
  for (const auto& token : impl->added_tokens) {
    const std::string& existing = impl->id_to_token[token.id];
    if (!existing.empty() && existing != token.content)
      fail("{}: added token {:?} has id {}, which model.vocab gives to {:?}", source, token.content, token.id, existing);
    impl->id_to_token[token.id] = token.content;
    impl->token_bytes[token.id] = token.content;
    impl->special[token.id] = token.special;
    impl->added_by_content[token.content] = token.id;
    (token.normalized ? impl->normalized_matcher : impl->raw_matcher).add(token);
  }
  return Tokenizer(std::move(impl));
}

Tokenizer::Encoding Tokenizer::encode_with_offsets(std::string_view input, bool parse_special) const {
  const std::string repaired = is_valid_utf8(input) ? std::string(input) : replace_invalid_utf8(input);
  Encoding out;
  out.text.reserve(repaired.size());
  impl_->split_added(repaired, impl_->raw_matcher, parse_special, out, [&](std::string_view raw_gap) {
    const std::string normalized = impl_->nfc ? nfc_normalize(raw_gap) : std::string(raw_gap);
    impl_->split_added(normalized, impl_->normalized_matcher, parse_special, out,
                       [&](std::string_view gap) { impl_->encode_plain(gap, out); });
  });
  return out;
}

std::vector<int32_t> Tokenizer::encode(std::string_view text, bool parse_special) const {
  return encode_with_offsets(text, parse_special).ids;
}

std::string Tokenizer::decode(std::span<const int32_t> ids, bool skip_special) const {
  std::string bytes;
  for (int32_t id : ids) {
    id_to_token(id);  // validates the id
    if (skip_special && impl_->special[id]) continue;
    bytes += impl_->token_bytes[id];
  }
  return replace_invalid_utf8(bytes);
}

int64_t Tokenizer::vocab_size() const { return static_cast<int64_t>(impl_->id_to_token.size()); }

std::optional<int32_t> Tokenizer::token_to_id(std::string_view token) const {
  const std::string key(token);
  if (const auto found = impl_->added_by_content.find(key); found != impl_->added_by_content.end()) return found->second;
  if (const auto found = impl_->model.vocab().find(key); found != impl_->model.vocab().end()) return found->second;
  return std::nullopt;
}

int32_t Tokenizer::require_token_id(std::string_view token) const {
  const auto id = token_to_id(token);
  if (!id) fail("{}: the tokenizer has no token {:?}", impl_->source, token);
  return *id;
}

const std::string& Tokenizer::id_to_token(int32_t id) const {
  if (id < 0 || id >= vocab_size() || impl_->id_to_token[id].empty())
    fail("token id {} is not in the vocabulary of {} (ids 0..{})", id, impl_->source, vocab_size() - 1);
  return impl_->id_to_token[id];
}

bool Tokenizer::is_special(int32_t id) const {
  id_to_token(id);
  return impl_->special[id] != 0;
}

const std::string& Tokenizer::source() const { return impl_->source; }

}  // namespace dt
