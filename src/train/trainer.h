#pragma once
// The LoRA training loop behind `deltatune train`: data, adapter, AdamW with clipping, gradient
// accumulation and a schedule, periodic evaluation, metrics.jsonl, atomic checkpoints that resume
// with bitwise the same losses, and Ctrl-C handling.
//
// --out holds the final PEFT adapter (adapter_config.json, adapter_model.safetensors),
// metrics.jsonl, loss_curve.svg and checkpoint-<step>/ directories, each with the adapter,
// optimizer.safetensors and trainer_state.json.
#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "lora/init.h"
#include "model/backward.h"
#include "model/weights.h"
#include "tokenizer/tokenizer.h"
#include "train/batching.h"
#include "train/dataset.h"
#include "train/optimizer.h"

namespace dt {

struct TrainingOptions {
  std::filesystem::path data;
  std::filesystem::path eval_data;  // empty: none (or eval_split)
  double eval_split = 0;            // fraction of `data` held out for evaluation
  std::filesystem::path out;
  std::filesystem::path resume;        // a checkpoint directory or an --out holding checkpoints
  std::filesystem::path init_adapter;  // start from this PEFT adapter instead of a new one

  DatasetOptions dataset;
  AdapterInitOptions adapter;  // rank, alpha, targets, layers, rsLoRA, seed of a new adapter

  double lr = 2e-4;
  LrSchedule schedule = LrSchedule::Linear;
  int64_t warmup_steps = 0;
  double warmup_ratio = 0;  // used when warmup_steps is 0
  AdamWOptions adamw;
  double max_grad_norm = 1.0;
  BatchPlanOptions batching;
  int64_t epochs = 1;
  int64_t max_steps = 0;  // > 0: this many optimizer steps, cycling through epochs
  uint64_t seed = 0;

  int64_t eval_every = 0;  // steps; 0: only at the end when there is eval data
  int64_t save_every = 0;  // steps; 0: only at the end
  int64_t keep_checkpoints = 0;  // keep the newest K checkpoints; 0: all
  BackwardOptions backward;
};

struct StepMetrics {
  int64_t step = 0;  // optimizer steps done
  int64_t total_steps = 0;
  double loss = 0;
  double lr = 0;
  double grad_norm = 0;
  double tokens_per_second = 0;
  double elapsed_seconds = 0;  // since this run (or resume) started
  std::optional<double> eval_loss;
};

struct TrainingCallbacks {
  std::function<void(const StepMetrics&)> on_step;
  std::function<void(const std::string&)> on_message;  // setup summaries and warnings
};

struct TrainingResult {
  int64_t steps_done = 0;
  int64_t total_steps = 0;
  bool interrupted = false;  // stopped by Ctrl-C after saving a checkpoint
  std::filesystem::path last_checkpoint;
  std::vector<StepMetrics> history;  // the steps run by this call
};

TrainingResult train(const ModelWeights& weights, const Tokenizer& tokenizer, const TrainingOptions& options,
                     const TrainingCallbacks& callbacks = {});

// Mean loss over `examples` in micro-batches of `batch_size` examples (with or without an adapter).
LossSum evaluate(const ModelWeights& weights, const LoraAdapter* adapter, const std::vector<TokenExample>& examples,
                 int64_t batch_size, const BackwardOptions& options = {});

// --threads: OpenMP and OpenBLAS threads (results are bitwise reproducible for a given count).
void set_thread_count(int threads);

// The checkpoint directory `path` names: itself when it holds trainer_state.json, else its
// checkpoint-<step> subdirectory with the largest step (unfinished temporary ones are ignored).
std::filesystem::path find_checkpoint(const std::filesystem::path& path);

// SIGINT asks the loop to save a checkpoint and stop after the current step (a second Ctrl-C
// kills as usual). Installed for the lifetime of the guard.
class InterruptGuard {
 public:
  InterruptGuard();
  ~InterruptGuard();
  InterruptGuard(const InterruptGuard&) = delete;
  InterruptGuard& operator=(const InterruptGuard&) = delete;
};
bool interrupt_requested();
void request_interrupt();  // what SIGINT does (tests call it directly)

}  // namespace dt
