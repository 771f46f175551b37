// deltatune eval: loss and perplexity of a model, with or without an adapter, on a JSONL dataset.
#include <fmt/format.h>

#include <cmath>
#include <memory>

#include "cli/cli.h"
#include "cli/generation_options.h"
#include "model/weights.h"
#include "train/trainer.h"

namespace dt {
namespace {

struct EvalCommand {
  std::string model, adapter, data;
  DatasetOptions dataset;
  int64_t batch_size = 4;
  int threads = 0;
};

void run_eval(const EvalCommand& command) {
  if (command.threads > 0) set_thread_count(command.threads);
  const ModelWeights weights = load_model(command.model);
  const Tokenizer tokenizer = Tokenizer::load(command.model);
  const Dataset dataset = load_dataset(command.data, tokenizer, weights.config.vocab_size, command.dataset);
  for (const std::string& warning : dataset.warnings(command.dataset))
    fmt::print(stderr, "warning: {}: {}\n", command.data, warning);
  const std::optional<LoraAdapter> adapter = load_adapter_option(command.adapter, weights.config);
  const LossSum loss = evaluate(weights, adapter ? &*adapter : nullptr, dataset.examples, command.batch_size);
  fmt::print("{} examples, {} target tokens{}\nloss {:.6f}\nperplexity {:.4f}\n", dataset.examples.size(), loss.targets,
             adapter ? fmt::format(", adapter {}", command.adapter) : ", base model", loss.mean(),
             std::exp(loss.mean()));
}

}  // namespace

void register_eval(CLI::App& app) {
  auto command = std::make_shared<EvalCommand>();
  CLI::App* sub = app.add_subcommand(
      "eval",
      "Mean loss (cross-entropy per target token, as Hugging Face) and perplexity of the model, with or without an "
      "adapter, on a JSONL dataset in any form `train` reads; compare the base model with an adapter");
  sub->add_option("--model", command->model, "Base model directory")->required();
  add_adapter_option(*sub, command->adapter);
  sub->add_option("--data", command->data, "Data (JSONL)")->required();
  command->dataset.max_seq_len = 2048;
  sub->add_option("--max-seq-len", command->dataset.max_seq_len, "Truncate examples to this many tokens")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  sub->add_flag("--train-on-prompt", command->dataset.train_on_prompt,
                "Count prompt tokens too (prompt/completion data)");
  sub->add_flag("--skip-bad-lines", command->dataset.skip_bad_lines, "Skip and count malformed lines");
  sub->add_option("--batch-size", command->batch_size, "Examples per forward pass")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  sub->add_option("--threads", command->threads, "CPU threads (default: all)");
  sub->callback([command] { run_eval(*command); });
}

}  // namespace dt
