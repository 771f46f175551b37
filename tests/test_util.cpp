#include "test_util.h"

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <sstream>

namespace dt::test {
namespace {

std::string env_or(const char* name, const std::string& fallback) {
  const char* value = std::getenv(name);
  return value ? std::string(value) : fallback;
}

std::string slurp(const std::filesystem::path& path) {
  std::ifstream stream(path, std::ios::binary);
  std::ostringstream contents;
  contents << stream.rdbuf();
  return contents.str();
}

}  // namespace

std::filesystem::path source_dir() { return env_or("DELTATUNE_SOURCE_DIR", DELTATUNE_DEFAULT_SOURCE_DIR); }
std::filesystem::path binary() { return env_or("DELTATUNE_BIN", DELTATUNE_DEFAULT_BIN); }

namespace {

// CTest runs every test in its own process, several at once, and each process runs its suite's
// SetUpTestSuite, so names alone would collide: every process works under its own directory,
// removed at exit when all its tests passed (a failure leaves its files to inspect).
const std::filesystem::path& process_dir() {
  static const std::filesystem::path* const dir = [] {
    const auto* path = new std::filesystem::path(std::filesystem::path(env_or("DELTATUNE_TEST_TMP", DELTATUNE_DEFAULT_TEST_TMP)) /
                                                 ("pid-" + std::to_string(getpid())));
    std::filesystem::remove_all(*path);  // left by an earlier process with this id
    std::atexit([] {
      if (::testing::UnitTest::GetInstance()->Passed()) {
        std::error_code ignored;
        std::filesystem::remove_all(process_dir(), ignored);
      }
    });
    return path;
  }();
  return *dir;
}

}  // namespace

std::filesystem::path temp_dir(const std::string& label) {
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  std::string name = info ? std::string(info->test_suite_name()) + "." + info->name() : "suite-setup";
  if (!label.empty()) name += "." + label;
  for (char& c : name)
    if (c == '/') c = '_';
  const auto dir = process_dir() / name;
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir;
}

CommandResult run_command(const std::string& command_line) {
  const auto dir = temp_dir("cmd");
  const auto out_path = dir / "stdout", err_path = dir / "stderr";
  const std::string full = command_line + " >" + out_path.string() + " 2>" + err_path.string() + " </dev/null";
  const int status = std::system(full.c_str());
  CommandResult result;
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  result.out = slurp(out_path);
  result.err = slurp(err_path);
  return result;
}

CommandResult run_deltatune(const std::string& arguments) {
  return run_command(binary().string() + " " + arguments);
}

}  // namespace dt::test
