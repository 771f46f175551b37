#include "cli/cli.h"

#include <fmt/core.h>

#include "core/error.h"

namespace dt {

int run_cli(int argc, char** argv) {
  CLI::App app{
      "deltatune: LoRA fine-tuning and inference for Qwen3.5 hybrid (Gated DeltaNet + gated "
      "attention) models on the CPU.",
      "deltatune"};
  app.require_subcommand(1);
  app.set_help_all_flag("--help-all", "Show help for every command");
  register_init_model(app);
  register_info(app);
  register_init_adapter(app);
  register_validate_adapter(app);
  register_merge(app);
  register_tokenize(app);
  register_logits(app);
  register_generate(app);
  register_chat(app);
  register_train(app);
  register_eval(app);
  register_demo(app);
  register_grad(app);
  if (argc < 2) {
    // No command: show what there is to run (on stderr, since the run itself failed).
    fmt::print(stderr, "{}", app.help());
    return 1;
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& error) {
    return app.exit(error);
  } catch (const Error& error) {
    fmt::print(stderr, "error: {}\n", error.what());
    return 1;
  } catch (const std::exception& error) {
    fmt::print(stderr, "error: {}\n", error.what());
    return 1;
  }
  return 0;
}

}  // namespace dt
