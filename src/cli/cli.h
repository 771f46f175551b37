#pragma once
#include <CLI/CLI.hpp>

namespace dt {

// Parses the command line, runs the chosen command, prints any error to stderr and returns the
// process exit code.
int run_cli(int argc, char** argv);

// One function per command file (src/cli/cmd_*.cpp): adds the subcommand and its callback.
void register_init_model(CLI::App& app);
void register_info(CLI::App& app);
void register_init_adapter(CLI::App& app);
void register_validate_adapter(CLI::App& app);
void register_merge(CLI::App& app);
void register_tokenize(CLI::App& app);
void register_logits(CLI::App& app);
void register_generate(CLI::App& app);
void register_chat(CLI::App& app);
void register_train(CLI::App& app);
void register_eval(CLI::App& app);
void register_demo(CLI::App& app);
void register_grad(CLI::App& app);

}  // namespace dt
