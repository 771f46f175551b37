#pragma once
// Shared helpers for the GoogleTest suites: paths handed in by CTest and running the CLI.
#include <filesystem>
#include <string>

namespace dt::test {

std::filesystem::path source_dir();  // repository root
std::filesystem::path binary();      // the deltatune executable
// A fresh, empty directory unique to the calling test (under the build tree).
std::filesystem::path temp_dir(const std::string& label = "");

struct CommandResult {
  int exit_code = 0;
  std::string out;  // stdout
  std::string err;  // stderr
};
// Runs a shell command line and captures stdout, stderr and the exit code.
CommandResult run_command(const std::string& command_line);
// Runs `deltatune <arguments>`.
CommandResult run_deltatune(const std::string& arguments);

}  // namespace dt::test
