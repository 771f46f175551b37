// `deltatune tokenize` end to end on a trained tokenizer.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <fstream>

#include "test_util.h"
#include "tokenizer/bpe_trainer.h"
#include "tokenizer/chat_template.h"
#include "tokenizer/tokenizer.h"

namespace dt {
namespace {

struct TokenizerDir {
  std::filesystem::path dir;
  Tokenizer tokenizer;
};

TokenizerDir write_trained_tokenizer() {
  const auto dir = test::temp_dir("model");
  const auto trained = train_bpe_tokenizer(builtin_tokenizer_corpus(), 1000);
  std::ofstream(dir / "tokenizer.json") << trained.tokenizer_json.dump();
  std::ofstream(dir / "tokenizer_config.json") << trained.tokenizer_config_json.dump(2);
  return {dir, Tokenizer::from_json(trained.tokenizer_json, "trained")};
}

std::string id_line(const std::vector<int32_t>& ids) { return fmt::format("{}\n", fmt::join(ids, ",")); }

TEST(TokenizeCommand, EncodesTextFileAndChat) {
  const auto [dir, tokenizer] = write_trained_tokenizer();
  auto result = test::run_deltatune("tokenize --model " + dir.string() + " --text 'Hello world, <|im_end|>!'");
  ASSERT_EQ(result.exit_code, 0) << result.err;
  EXPECT_EQ(result.out, id_line(tokenizer.encode("Hello world, <|im_end|>!")));

  result = test::run_deltatune("tokenize --model " + dir.string() + " --no-special --text 'a<|im_end|>'");
  ASSERT_EQ(result.exit_code, 0) << result.err;
  EXPECT_EQ(result.out, id_line(tokenizer.encode("a<|im_end|>", false)));

  std::ofstream(dir / "input.txt") << "line one\nline two\n";
  result = test::run_deltatune("tokenize --model " + dir.string() + " --file " + (dir / "input.txt").string());
  ASSERT_EQ(result.exit_code, 0) << result.err;
  EXPECT_EQ(result.out, id_line(tokenizer.encode("line one\nline two\n")));

  result = test::run_deltatune("tokenize --model " + dir.string() + " --chat --no-thinking --text 'Hi there'");
  ASSERT_EQ(result.exit_code, 0) << result.err;
  EXPECT_EQ(result.out,
            id_line(tokenizer.encode("<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n")));
}

TEST(TokenizeCommand, Decodes) {
  const auto [dir, tokenizer] = write_trained_tokenizer();
  const auto ids = tokenizer.encode("<|im_start|>Hello wörld<|im_end|>");
  auto result = test::run_deltatune("tokenize --model " + dir.string() + " --decode " + fmt::format("{}", fmt::join(ids, ",")));
  ASSERT_EQ(result.exit_code, 0) << result.err;
  EXPECT_EQ(result.out, "<|im_start|>Hello wörld<|im_end|>\n");
  result = test::run_deltatune("tokenize --model " + dir.string() + " --skip-special --decode '" +
                               fmt::format("{}", fmt::join(ids, " ")) + "'");
  ASSERT_EQ(result.exit_code, 0) << result.err;
  EXPECT_EQ(result.out, "Hello wörld\n");
}

TEST(TokenizeCommand, ReportsErrors) {
  const auto [dir, tokenizer] = write_trained_tokenizer();
  auto result = test::run_deltatune("tokenize --model " + (dir / "missing").string() + " --text x");
  EXPECT_NE(result.exit_code, 0);
  EXPECT_NE(result.err.find("missing"), std::string::npos) << result.err;
  result = test::run_deltatune("tokenize --model " + dir.string());
  EXPECT_NE(result.exit_code, 0);
  EXPECT_NE(result.err.find("--text"), std::string::npos) << result.err;
  result = test::run_deltatune("tokenize --model " + dir.string() + " --decode 1,x");
  EXPECT_NE(result.exit_code, 0);
  EXPECT_NE(result.err.find("\"x\""), std::string::npos) << result.err;
  result = test::run_deltatune("tokenize --model " + dir.string() + " --decode 99999");
  EXPECT_NE(result.exit_code, 0);
  EXPECT_NE(result.err.find("99999"), std::string::npos) << result.err;
}

}  // namespace
}  // namespace dt
