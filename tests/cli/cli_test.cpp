#include <gtest/gtest.h>

#include <sstream>

#include "test_util.h"

namespace dt {
namespace {

// The command names listed under "SUBCOMMANDS" in `deltatune --help`.
std::vector<std::string> listed_commands(const std::string& help) {
  std::vector<std::string> commands;
  std::istringstream lines(help);
  bool in_section = false;
  for (std::string line; std::getline(lines, line);) {
    if (line.find("ubcommands:") != std::string::npos || line.find("UBCOMMANDS:") != std::string::npos) {
      in_section = true;
      continue;
    }
    if (!in_section) continue;
    if (line.size() < 3 || line[0] != ' ' || line[2] == ' ') break;
    commands.push_back(line.substr(2, line.find(' ', 2) - 2));
  }
  return commands;
}

TEST(Cli, HelpListsAndExplainsEveryCommand) {
  const auto help = test::run_deltatune("--help");
  ASSERT_EQ(help.exit_code, 0) << help.err;
  EXPECT_NE(help.out.find("deltatune"), std::string::npos);
  const auto commands = listed_commands(help.out);
  ASSERT_GE(commands.size(), 2u) << help.out;
  EXPECT_NE(std::find(commands.begin(), commands.end(), "init-model"), commands.end()) << help.out;
  EXPECT_NE(std::find(commands.begin(), commands.end(), "info"), commands.end()) << help.out;
  for (const std::string& command : commands) {
    const auto result = test::run_deltatune(command + " --help");
    EXPECT_EQ(result.exit_code, 0) << command << ": " << result.err;
    EXPECT_NE(result.out.find("--help"), std::string::npos) << command << ": " << result.out;
  }
}

TEST(Cli, InitModelHelpNamesEveryOption) {
  const auto help = test::run_deltatune("init-model --help");
  ASSERT_EQ(help.exit_code, 0);
  for (const char* option : {"--preset", "--out", "--seed", "--set", "--dtype", "--text-only", "--shards",
                             "--randomize-norms", "--tokenizer-corpus", "--vocab-size", "--force", "qwen3.5-0.8b"})
    EXPECT_NE(help.out.find(option), std::string::npos) << option << "\n" << help.out;
  const auto info = test::run_deltatune("info --help");
  ASSERT_EQ(info.exit_code, 0);
  EXPECT_NE(info.out.find("--model"), std::string::npos);
}

TEST(Cli, MissingOrUnknownCommandFails) {
  const auto bare = test::run_deltatune("");
  EXPECT_NE(bare.exit_code, 0);
  EXPECT_EQ(listed_commands(bare.err), listed_commands(test::run_deltatune("--help").out)) << bare.err;
  const auto unknown = test::run_deltatune("frobnicate");
  EXPECT_NE(unknown.exit_code, 0);
  EXPECT_FALSE(unknown.err.empty());
}

}  // namespace
}  // namespace dt
