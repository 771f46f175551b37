// The BPE trainer: determinism, layout of ids, and the Qwen file conventions.
#include <gtest/gtest.h>

#include "core/error.h"
#include "test_util.h"
#include "tokenizer/bpe_trainer.h"
#include "tokenizer/byte_level.h"
#include "tokenizer/tokenizer.h"

namespace dt {
namespace {

// Speed is measured in bench/tokenizer_bench.cpp.
TEST(BpeTrainer, Deterministic) {
  const auto first = train_bpe_tokenizer(builtin_tokenizer_corpus(), 4096);
  const auto second = train_bpe_tokenizer(builtin_tokenizer_corpus(), 4096);
  EXPECT_EQ(first.tokenizer_json, second.tokenizer_json);
  EXPECT_EQ(first.vocab_size, 4096);
}

TEST(BpeTrainer, IdLayoutAndSpecialTokens) {
  const auto trained = train_bpe_tokenizer(builtin_tokenizer_corpus(), 1000);
  const auto tokenizer = Tokenizer::from_json(trained.tokenizer_json, "trained");
  EXPECT_EQ(tokenizer.vocab_size(), 1000);
  for (int32_t id = 0; id < 256; ++id) EXPECT_EQ(tokenizer.id_to_token(id), byte_level_symbols()[byte_level_order()[id]]);
  EXPECT_EQ(tokenizer.id_to_token(0), "!");
  EXPECT_EQ(tokenizer.require_token_id("<|endoftext|>"), 995);
  EXPECT_EQ(tokenizer.require_token_id("<|im_start|>"), 996);
  EXPECT_EQ(tokenizer.require_token_id("<|im_end|>"), 997);
  EXPECT_EQ(tokenizer.require_token_id("<think>"), 998);
  EXPECT_EQ(tokenizer.require_token_id("</think>"), 999);
  EXPECT_EQ(trained.endoftext_token_id, 995);
  EXPECT_EQ(trained.eos_token_id, 997);
  EXPECT_TRUE(tokenizer.is_special(997));
  EXPECT_FALSE(tokenizer.is_special(998));
  // Common English words became single tokens.
  EXPECT_EQ(tokenizer.encode(" the").size(), 1u);
  EXPECT_EQ(tokenizer.decode(tokenizer.encode("Hello, wörld 你好 👍")), "Hello, wörld 你好 👍");
}

TEST(BpeTrainer, QwenFileConventions) {
  const auto trained = train_bpe_tokenizer(builtin_tokenizer_corpus(), 600);
  const auto& file = trained.tokenizer_json;
  EXPECT_EQ(file["version"], "1.0");
  EXPECT_TRUE(file["truncation"].is_null());
  EXPECT_EQ(file["normalizer"]["type"], "NFC");
  EXPECT_EQ(file["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"].get<std::string>().find("\\p{M}") != std::string::npos, true);
  EXPECT_EQ(file["model"]["merges"][0].size(), 2u);
  EXPECT_EQ(file["model"]["ignore_merges"], false);
  EXPECT_EQ(file["added_tokens"][2]["content"], "<|im_end|>");
  EXPECT_EQ(file["added_tokens"][2]["normalized"], false);
  const auto& config = trained.tokenizer_config_json;
  EXPECT_EQ(config["eos_token"], "<|im_end|>");
  EXPECT_EQ(config["pad_token"], "<|endoftext|>");
  EXPECT_EQ(config["tokenizer_class"], "Qwen2Tokenizer");
  EXPECT_EQ(config["added_tokens_decoder"]["597"]["content"], "<|im_end|>");
  EXPECT_TRUE(config["chat_template"].is_string());
}

TEST(BpeTrainer, RejectsImpossibleSizes) {
  EXPECT_THROW(train_bpe_tokenizer(builtin_tokenizer_corpus(), 100), Error);
  EXPECT_THROW(train_bpe_tokenizer("tiny corpus", 2000), Error);
}

}  // namespace
}  // namespace dt
