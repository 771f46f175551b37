// deltatune merge: folds a LoRA adapter into the base weights and writes a complete checkpoint.
#include <fmt/format.h>

#include <memory>

#include "cli/cli.h"
#include "lora/merge.h"

namespace dt {

void register_merge(CLI::App& app) {
  auto model = std::make_shared<std::string>();
  auto adapter = std::make_shared<std::string>();
  auto out = std::make_shared<std::string>();
  CLI::App* command = app.add_subcommand(
      "merge",
      "Merge a LoRA adapter into the base model: W + scaling * B A for every adapted linear, written in the base's "
      "dtype, prefix and shard count, with its config and tokenizer files");
  command->add_option("--model", *model, "Base model directory")->required();
  command->add_option("--adapter", *adapter, "Adapter directory")->required();
  command->add_option("--out", *out, "Output model directory")->required();
  command->callback([model, adapter, out] {
    merge_checkpoint(*model, *adapter, *out);
    fmt::print("wrote merged model {}\n", *out);
  });
}

}  // namespace dt
