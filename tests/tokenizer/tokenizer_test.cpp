// Unit tests of the tokenizer pieces: UTF-8 repair, byte-level alphabet, BPE against its reference,
// pre-tokenizer details, offsets, and the errors for unsupported or malformed tokenizer.json files.
#include <gtest/gtest.h>

#include <fstream>
#include <random>

#include "core/error.h"
#include "io/mapped_file.h"
#include "test_util.h"
#include "tokenizer/bpe_model.h"
#include "tokenizer/bpe_trainer.h"
#include "tokenizer/byte_level.h"
#include "tokenizer/split_regex.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/unicode_text.h"

namespace dt {
namespace {

using nlohmann::json;

const json& small_tokenizer_json() {
  static const json tokenizer = train_bpe_tokenizer(builtin_tokenizer_corpus(), 800).tokenizer_json;
  return tokenizer;
}

std::vector<std::string> parity_strings() {
  const auto data = json::parse(read_text_file(test::source_dir() / "tests" / "tokenizer" / "data" / "parity_strings.json"));
  return data["strings"].get<std::vector<std::string>>();
}

// Expects loading `tokenizer_json` to fail with a message containing every one of `fragments`.
void expect_load_error(const json& tokenizer_json, const std::vector<std::string>& fragments) {
  try {
    Tokenizer::from_json(tokenizer_json, "bad/tokenizer.json");
    ADD_FAILURE() << "loading succeeded; expected an error mentioning " << fragments[0];
  } catch (const Error& error) {
    const std::string message = error.what();
    EXPECT_NE(message.find("bad/tokenizer.json"), std::string::npos) << message;
    for (const auto& fragment : fragments) EXPECT_NE(message.find(fragment), std::string::npos) << message;
  }
}

TEST(Utf8, RepairsInvalidSequencesLikeTextDecoder) {
  EXPECT_EQ(replace_invalid_utf8("abc"), "abc");
  EXPECT_EQ(replace_invalid_utf8("\xff"), "\xEF\xBF\xBD");
  // A truncated sequence is one maximal subpart: one U+FFFD, then the next byte starts afresh.
  EXPECT_EQ(replace_invalid_utf8("\xE2\x82" "A"), "\xEF\xBF\xBD" "A");
  // Overlong and surrogate encodings: each byte is its own subpart.
  EXPECT_EQ(replace_invalid_utf8("\xC0\xAF"), "\xEF\xBF\xBD\xEF\xBF\xBD");
  EXPECT_EQ(replace_invalid_utf8("\xED\xA0\x80"), "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD");
  EXPECT_EQ(replace_invalid_utf8("\xF4\x90\x80\x80"), "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD");
  EXPECT_EQ(replace_invalid_utf8(std::string("a\0b", 3)), std::string("a\0b", 3));
  EXPECT_TRUE(is_valid_utf8("caf\xC3\xA9 \xF0\x9F\x91\x8D"));
  EXPECT_FALSE(is_valid_utf8("\xF0\x9F\x91"));
}

TEST(Utf8, NfcComposesAndKeepsNul) {
  EXPECT_EQ(nfc_normalize("cafe\xCC\x81"), "caf\xC3\xA9");
  EXPECT_EQ(nfc_normalize("\xE1\x84\x80\xE1\x85\xA1"), "\xEA\xB0\x80");  // Hangul jamo -> syllable
  EXPECT_EQ(nfc_normalize(std::string("e\xCC\x81\0x", 5)), std::string("\xC3\xA9\0x", 4));
}

TEST(ByteLevel, MatchesGpt2Alphabet) {
  const auto& symbols = byte_level_symbols();
  EXPECT_EQ(symbols[' '], "\xC4\xA0");   // U+0120 Ġ
  EXPECT_EQ(symbols['\n'], "\xC4\x8A");  // U+010A Ċ
  EXPECT_EQ(symbols['A'], "A");
  EXPECT_EQ(symbols[0xAD], "\xC5\x83");  // the last remapped byte -> U+0143
  EXPECT_EQ(byte_level_order()[0], '!');
  EXPECT_EQ(byte_level_order()[188], 0x00);
  std::string all_bytes;
  for (int b = 0; b < 256; ++b) all_bytes += static_cast<char>(b);
  EXPECT_EQ(byte_level_to_bytes(bytes_to_byte_level(all_bytes)), all_bytes);
  EXPECT_EQ(byte_level_to_bytes("<\xE4\xBD\xA0>"), std::nullopt);  // 你 is not a byte symbol
}

TEST(SplitRegex, QwenPatternPieces) {
  const SplitRegex regex(kQwen35SplitPattern, "test");
  std::vector<std::string_view> pieces;
  regex.split("Hello  world's 123\n\n  x\xE1\xA0\x8Ey", pieces);
  const std::vector<std::string_view> expected = {"Hello", " ", " world", "'s", " ", "1", "2", "3", "\n\n", " ", " x",
                                                  "\xE1\xA0\x8Ey"};  // U+180E is Cf, a letter prefix
  EXPECT_EQ(pieces, expected);
}

TEST(SplitRegex, LongWhitespaceRunDoesNotOverflow) {
  const SplitRegex regex(kQwen35SplitPattern, "test");
  const std::string text = std::string(200000, ' ') + "x";  // the pieces view into it
  std::vector<std::string_view> pieces;
  regex.split(text, pieces);
  ASSERT_EQ(pieces.size(), 2u);
  EXPECT_EQ(pieces[0].size(), 199999u);
  EXPECT_EQ(pieces[1], " x");
}

TEST(SplitRegex, BadPatternNamesTheKey) {
  try {
    SplitRegex("(unclosed", "file.json: pre_tokenizer.pattern");
    ADD_FAILURE() << "expected a compile error";
  } catch (const Error& error) {
    EXPECT_NE(std::string(error.what()).find("pre_tokenizer.pattern"), std::string::npos) << error.what();
  }
}

TEST(Bpe, FastMergeMatchesReference) {
  const json& tokenizer = small_tokenizer_json();
  std::vector<BpeMerge> merges;
  for (const auto& merge : tokenizer["model"]["merges"]) merges.push_back({merge[0], merge[1]});
  const BpeModel model(tokenizer["model"]["vocab"].get<std::unordered_map<std::string, int32_t>>(), merges, false,
                       "trained");
  std::mt19937 rng(7);
  const std::string alphabet = "aaaabbbeeeettthhhiinnss  \n'.";
  for (int trial = 0; trial < 3000; ++trial) {
    std::string piece;
    for (int n = std::uniform_int_distribution<int>(1, 60)(rng); n > 0; --n)
      piece += alphabet[std::uniform_int_distribution<size_t>(0, alphabet.size() - 1)(rng)];
    ASSERT_EQ(model.encode_piece_uncached(piece), model.encode_piece_reference(piece)) << piece;
  }
  for (const auto& text : parity_strings()) ASSERT_EQ(model.encode_piece_uncached(text), model.encode_piece_reference(text));
}

TEST(Bpe, LegacyStringMergesEqualPairMerges) {
  json legacy = small_tokenizer_json();
  json merges = json::array({"#version: 0.2"});
  for (const auto& merge : legacy["model"]["merges"]) merges.push_back(merge[0].get<std::string>() + " " + merge[1].get<std::string>());
  legacy["model"]["merges"] = merges;
  const auto pairs = Tokenizer::from_json(small_tokenizer_json(), "pairs");
  const auto strings = Tokenizer::from_json(legacy, "strings");
  for (const auto& text : parity_strings()) EXPECT_EQ(pairs.encode(text), strings.encode(text)) << text;
}

TEST(Bpe, IgnoreMergesEmitsWholeVocabPieces) {
  // "qzx" is a vocab token no merge produces: only ignore_merges emits it whole.
  json tokenizer = small_tokenizer_json();
  auto& vocab = tokenizer["model"]["vocab"];
  const int32_t next = 10000;  // past the added tokens; ids may have gaps
  vocab["qzx"] = next;
  const auto plain = Tokenizer::from_json(tokenizer, "plain");
  tokenizer["model"]["ignore_merges"] = true;
  const auto ignoring = Tokenizer::from_json(tokenizer, "ignoring");
  EXPECT_GT(plain.encode("qzx").size(), 1u);
  EXPECT_EQ(ignoring.encode("qzx"), std::vector<int32_t>{next});
}

TEST(Tokenizer, OffsetsTileTheText) {
  const auto tokenizer = Tokenizer::from_json(small_tokenizer_json(), "trained");
  for (const auto& text : parity_strings()) {
    const auto encoding = tokenizer.encode_with_offsets(text);
    EXPECT_EQ(encoding.text, nfc_normalize(text));
    ASSERT_EQ(encoding.ids.size(), encoding.token_begin.size());
    std::string rebuilt;
    for (size_t i = 0; i < encoding.ids.size(); ++i) {
      ASSERT_EQ(encoding.token_begin[i], rebuilt.size()) << text;
      const std::string& token = tokenizer.id_to_token(encoding.ids[i]);
      rebuilt += byte_level_to_bytes(token).value_or(token);
    }
    EXPECT_EQ(rebuilt, encoding.text);
  }
}

TEST(Tokenizer, SpecialTokensAndParseSpecialFlag) {
  const auto tokenizer = Tokenizer::from_json(small_tokenizer_json(), "trained");
  const int32_t im_start = tokenizer.require_token_id("<|im_start|>"), im_end = tokenizer.require_token_id("<|im_end|>");
  const auto ids = tokenizer.encode("<|im_start|>user\nhi<|im_end|>");
  EXPECT_EQ(ids.front(), im_start);
  EXPECT_EQ(ids.back(), im_end);
  const auto plain = tokenizer.encode("<|im_start|>user", false);
  EXPECT_EQ(std::count(plain.begin(), plain.end(), im_start), 0);
  // <think> is a non-special added token (as in Qwen3): always recognised, kept when skipping specials.
  const int32_t think = tokenizer.require_token_id("<think>");
  EXPECT_EQ(tokenizer.encode("<think>", false), std::vector<int32_t>{think});
  EXPECT_EQ(tokenizer.decode(tokenizer.encode("<|im_start|><think>x</think><|im_end|>"), true), "<think>x</think>");
}

TEST(Tokenizer, DecodeRejectsUnknownIds) {
  const auto tokenizer = Tokenizer::from_json(small_tokenizer_json(), "trained");
  EXPECT_THROW(tokenizer.decode(std::vector<int32_t>{static_cast<int32_t>(tokenizer.vocab_size())}), Error);
  EXPECT_THROW(tokenizer.decode(std::vector<int32_t>{-1}), Error);
  // Bytes of a split character come back as U+FFFD, like from_utf8_lossy.
  const auto ids = tokenizer.encode("\xE4\xBD\xA0");
  ASSERT_GT(ids.size(), 1u);
  EXPECT_EQ(tokenizer.decode(std::vector<int32_t>{ids[0]}), "\xEF\xBF\xBD");
}

TEST(TokenizerErrors, MalformedFilesNameTheKey) {
  json missing_model = small_tokenizer_json();
  missing_model.erase("model");
  expect_load_error(missing_model, {"\"model\" is missing"});

  json word_piece = small_tokenizer_json();
  word_piece["model"]["type"] = "WordPiece";
  expect_load_error(word_piece, {"model.type", "WordPiece", "BPE"});

  json unknown_merge = small_tokenizer_json();
  unknown_merge["model"]["merges"][3] = json::array({"Ġthe", "zzzz-not-a-token"});
  expect_load_error(unknown_merge, {"model.merges[3]", "zzzz-not-a-token"});

  json byte_fallback = small_tokenizer_json();
  byte_fallback["model"]["byte_fallback"] = true;
  expect_load_error(byte_fallback, {"model.byte_fallback"});

  json normalizer = small_tokenizer_json();
  normalizer["normalizer"] = {{"type", "Lowercase"}};
  expect_load_error(normalizer, {"normalizer.type", "Lowercase"});

  json pre_tokenizer = small_tokenizer_json();
  pre_tokenizer["pre_tokenizer"] = {{"type", "Whitespace"}};
  expect_load_error(pre_tokenizer, {"pre_tokenizer.type"});

  json missing_byte = small_tokenizer_json();
  missing_byte["model"]["vocab"].erase("Ġ");
  expect_load_error(missing_byte, {"model.vocab", "0x20"});

  json bad_merge_text = small_tokenizer_json();
  bad_merge_text["model"]["merges"][0] = "onlyone";
  expect_load_error(bad_merge_text, {"model.merges[0]"});

  json lstrip = small_tokenizer_json();
  lstrip["added_tokens"][0]["lstrip"] = true;
  expect_load_error(lstrip, {"added_tokens[0].lstrip"});
}

TEST(TokenizerErrors, UnreadableFilesNameThePath) {
  const auto dir = test::temp_dir();
  EXPECT_THROW(Tokenizer::load(dir / "absent.json"), Error);
  std::ofstream(dir / "tokenizer.json") << "{ not json";
  try {
    Tokenizer::load(dir);
    ADD_FAILURE() << "expected a parse error";
  } catch (const Error& error) {
    EXPECT_NE(std::string(error.what()).find("tokenizer.json"), std::string::npos) << error.what();
  }
}

}  // namespace
}  // namespace dt
