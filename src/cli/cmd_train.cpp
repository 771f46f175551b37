// deltatune train: fine-tunes a LoRA adapter on a JSONL dataset (src/train/trainer.h).
#include <fmt/format.h>

#include <cstdio>
#include <memory>
#include <nlohmann/json.hpp>

#include "cli/adapter_options.h"
#include "cli/cli.h"
#include "core/error.h"
#include "io/mapped_file.h"
#include "model/weights.h"
#include "train/progress.h"
#include "train/trainer.h"

namespace dt {
namespace {

// --config FILE.json: a JSON object whose keys are the long option names ("lr", "max-seq-len" or
// "max_seq_len"). CLI11 2.1 reads config files for the main app only, so the values are applied
// here, after parsing, to each option the command line did not give.
void apply_json_config(CLI::App& command, const std::string& path) {
  const nlohmann::json object = read_json_file(path);
  if (!object.is_object()) fail("--config {}: expected a JSON object of option names and values", path);
  for (const auto& [key, value] : object.items()) {
    std::string name = key;
    for (char& c : name)
      if (c == '_') c = '-';
    CLI::Option* option = command.get_option_no_throw("--" + name);
    if (option == nullptr || name == "config" || name == "help")
      fail("--config {}: \"{}\" is not an option of `{}`", path, key, command.get_name());
    if (option->count() > 0) continue;  // the command line wins
    const auto text = [&](const nlohmann::json& entry) -> std::string {
      if (entry.is_string()) return entry.get<std::string>();
      if (entry.is_boolean() || entry.is_number()) return entry.dump();
      fail("--config {}: \"{}\" must be a string, number or boolean, got {}", path, key, entry.dump());
    };
    try {
      option->add_result(text(value));
      option->run_callback();
    } catch (const CLI::Error& error) {
      fail("--config {}: \"{}\": {}", path, key, error.what());
    }
  }
}

struct TrainCommand {
  std::string model;
  TrainingOptions training;
  AdapterShapeText adapter_shape;
  std::string schedule = "linear";
  std::string config;
  int threads = 0;
  bool recompute_activations = false;
};

void run_train(TrainCommand& command) {
  if (command.threads > 0) set_thread_count(command.threads);
  const ModelWeights weights = load_model(command.model);
  const Tokenizer tokenizer = Tokenizer::load(command.model);
  TrainingOptions& options = command.training;
  resolve_adapter_shape(command.adapter_shape, weights.config.num_hidden_layers, options.adapter);
  options.adapter.base_model_name_or_path = command.model;
  options.schedule = parse_lr_schedule(command.schedule);
  options.backward.recompute_activations = command.recompute_activations;

  ProgressPrinter progress(stdout, ProgressPrinter::is_terminal(stdout));
  TrainingCallbacks callbacks;
  callbacks.on_step = [&](const StepMetrics& metrics) { progress.step(metrics); };
  callbacks.on_message = [&](const std::string& text) { progress.message(text); };
  const InterruptGuard interrupt_guard;
  const TrainingResult result = train(weights, tokenizer, options, callbacks);
  progress.finish();
  if (result.interrupted) {
    fmt::print("interrupted at step {}/{}; saved {} (continue with --resume {})\n", result.steps_done,
               result.total_steps, result.last_checkpoint.string(), options.out.string());
    return;
  }
  if (!result.history.empty()) {
    const StepMetrics& last = result.history.back();
    fmt::print("done: {} steps, final loss {:.4f}{}, {}\n", result.steps_done, last.loss,
               last.eval_loss ? fmt::format(", eval loss {:.4f}", *last.eval_loss) : "",
               format_duration(last.elapsed_seconds));
  }
  fmt::print("adapter written to {} (metrics.jsonl, loss_curve.svg, checkpoint {})\n", options.out.string(),
             result.last_checkpoint.filename().string());
}

}  // namespace

void register_train(CLI::App& app) {
  auto command = std::make_shared<TrainCommand>();
  TrainingOptions& o = command->training;
  CLI::App* sub = app.add_subcommand(
      "train",
      "Fine-tune a LoRA adapter on a JSONL dataset and write it in PEFT format.\n"
      "Each line is one example: {\"text\"}, {\"prompt\",\"completion\"} (loss on the completion), "
      "{\"messages\":[{\"role\",\"content\"},...]} (chat template, loss on assistant turns) or pre-tokenised "
      "{\"input_ids\",\"labels\"}. --out receives the adapter, metrics.jsonl, loss_curve.svg and "
      "checkpoint-<step>/ directories; Ctrl-C saves a checkpoint, and --resume continues with bitwise the same "
      "losses. Options can also come from --config FILE.json (same names; the command line wins).");
  sub->add_option("--config", command->config,
                  "JSON file of option values, e.g. {\"lr\": 1e-4, \"max_seq_len\": 512}; the command line wins");

  sub->add_option("--model", command->model, "Base model directory")->required();
  sub->add_option("--data", o.data, "Training data (JSONL)")->required();
  sub->add_option("--out", o.out, "Output directory")->required();
  sub->add_option("--eval-data", o.eval_data, "Evaluation data (JSONL)");
  sub->add_option("--eval-split", o.eval_split, "Hold out this fraction of --data for evaluation (e.g. 0.1)");
  sub->add_option("--eval-every", o.eval_every, "Evaluate every N steps (and at the end)")->capture_default_str();

  add_adapter_shape_options(*sub, o.adapter, command->adapter_shape, /*required=*/false);
  sub->add_option("--init-adapter", o.init_adapter, "Start from this PEFT adapter instead of a new one");

  sub->add_option("--lr", o.lr, "Peak learning rate")->capture_default_str();
  sub->add_option("--lr-schedule", command->schedule, "constant, linear or cosine (decay to 0 after the warmup)")
      ->capture_default_str();
  sub->add_option("--warmup-steps", o.warmup_steps, "Linear warmup steps")->capture_default_str();
  sub->add_option("--warmup-ratio", o.warmup_ratio, "Warmup as a fraction of the steps (when --warmup-steps is 0)")
      ->capture_default_str();
  sub->add_option("--weight-decay", o.adamw.weight_decay, "AdamW decoupled weight decay")->capture_default_str();
  sub->add_option("--max-grad-norm", o.max_grad_norm, "Clip the global gradient norm to this (0: off)")
      ->capture_default_str();
  sub->add_option("--batch-size", o.batching.batch_size, "Examples (sequences with --packing) per micro-batch")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  sub->add_option("--grad-accum", o.batching.grad_accum, "Micro-batches per optimizer step")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  sub->add_option("--epochs", o.epochs, "Passes over the data")->capture_default_str();
  sub->add_option("--max-steps", o.max_steps, "Optimizer steps (overrides --epochs; cycles through the data)")
      ->capture_default_str();
  o.dataset.max_seq_len = 2048;
  sub->add_option("--max-seq-len", o.dataset.max_seq_len, "Truncate examples to this many tokens; the --packing budget")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  sub->add_flag("--packing", o.batching.packing,
                "Pack several examples into each sequence of up to --max-seq-len tokens (no leakage: the state "
                "restarts at every example)");
  sub->add_flag("--train-on-prompt", o.dataset.train_on_prompt, "Take the loss on prompts too (prompt/completion data)");
  sub->add_flag("--skip-bad-lines", o.dataset.skip_bad_lines, "Skip and count malformed lines instead of failing");
  sub->add_option("--seed", o.seed, "Seed of the data order (and of a new adapter's init)")->capture_default_str();

  sub->add_option("--save-every", o.save_every, "Write a checkpoint every N steps (and at the end)")
      ->capture_default_str();
  sub->add_option("--keep-checkpoints", o.keep_checkpoints, "Keep only the newest K checkpoints (0: all)")
      ->capture_default_str();
  sub->add_option("--resume", o.resume, "Continue from a checkpoint directory, or the newest one in this directory");
  sub->add_option("--threads", command->threads, "CPU threads (default: all)");
  sub->add_flag("--recompute-activations", command->recompute_activations,
                "Activation checkpointing: keep only each layer's input and recompute during the backward");
  sub->callback([command, sub] {
    if (!command->config.empty()) apply_json_config(*sub, command->config);
    command->training.adapter.seed = command->training.seed;
    run_train(*command);
  });
}

}  // namespace dt
