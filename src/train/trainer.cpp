#include "train/trainer.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <cblas.h>
#include <omp.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <csignal>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>

#include "core/error.h"
#include "io/mapped_file.h"
#include "lora/adapter_io.h"
#include "train/loss_curve.h"

namespace dt {
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

constexpr const char* kTrainerStateFile = "trainer_state.json";
constexpr const char* kOptimizerFile = "optimizer.safetensors";
constexpr const char* kMetricsFile = "metrics.jsonl";
constexpr const char* kLossCurveFile = "loss_curve.svg";
constexpr const char* kCheckpointPrefix = "checkpoint-";

std::atomic<bool> g_interrupt{false};

extern "C" void handle_interrupt(int) {
  g_interrupt = true;
  std::signal(SIGINT, SIG_DFL);  // a second Ctrl-C stops at once
}

// The step of a finished checkpoint directory name ("checkpoint-12"), or -1.
int64_t checkpoint_step(const fs::path& directory) {
  const std::string name = directory.filename().string();
  if (name.rfind(kCheckpointPrefix, 0) != 0) return -1;
  const std::string digits = name.substr(std::char_traits<char>::length(kCheckpointPrefix));
  if (digits.empty() || digits.find_first_not_of("0123456789") != std::string::npos) return -1;
  return std::stoll(digits);
}

std::map<int64_t, fs::path> finished_checkpoints(const fs::path& out) {
  std::map<int64_t, fs::path> found;
  if (!fs::is_directory(out)) return found;
  for (const auto& entry : fs::directory_iterator(out)) {
    const int64_t step = checkpoint_step(entry.path());
    if (step >= 0 && fs::exists(entry.path() / kTrainerStateFile)) found[step] = entry.path();
  }
  return found;
}

// FNV-1a over every token and label, so a resume can tell that the data changed.
uint64_t dataset_fingerprint(const std::vector<TokenExample>& examples) {
  uint64_t hash = 1469598103934665603ull;
  const auto mix = [&](int64_t value) {
    for (int byte = 0; byte < 8; ++byte) {
      hash ^= uint64_t(value >> (8 * byte)) & 0xFF;
      hash *= 1099511628211ull;
    }
  };
  for (const auto& example : examples) {
    mix(int64_t(example.input_ids.size()));
    for (size_t i = 0; i < example.input_ids.size(); ++i) {
      mix(example.input_ids[i]);
      mix(example.labels[i]);
    }
  }
  return hash;
}

// The settings a resumed run must share with the run it continues for the losses to be the same.
json run_settings(const TrainingOptions& options, int64_t total_steps, int64_t warmup_steps,
                  const std::vector<TokenExample>& examples) {
  return json{{"lr", options.lr},
              {"lr_schedule", std::string(lr_schedule_name(options.schedule))},
              {"warmup_steps", warmup_steps},
              {"total_steps", total_steps},
              {"weight_decay", options.adamw.weight_decay},
              {"max_grad_norm", options.max_grad_norm},
              {"batch_size", options.batching.batch_size},
              {"grad_accum", options.batching.grad_accum},
              {"packing", options.batching.packing},
              {"max_seq_len", options.dataset.max_seq_len},
              {"seed", options.seed},
              {"examples", examples.size()},
              {"data_fingerprint", fmt::format("{:016x}", dataset_fingerprint(examples))}};
}

// Epoch plans, made on demand: global step -> (epoch, index within the epoch).
class StepSchedule {
 public:
  StepSchedule(const std::vector<TokenExample>& examples, const BatchPlanOptions& options, uint64_t seed)
      : examples_(examples), options_(options), seed_(seed) {}

  int64_t steps_in_epoch(int64_t epoch) {
    while (int64_t(step_counts_.size()) <= epoch) step_counts_.push_back(int64_t(plan(int64_t(step_counts_.size())).size()));
    return step_counts_[size_t(epoch)];
  }

  // The step after `completed` steps, and its epoch.
  std::pair<const StepPlan*, int64_t> at(int64_t completed) {
    int64_t epoch = 0;
    while (completed >= steps_in_epoch(epoch)) completed -= steps_in_epoch(epoch++);
    return {&plan(epoch)[size_t(completed)], epoch};
  }

 private:
  const std::vector<StepPlan>& plan(int64_t epoch) {
    if (epoch != cached_epoch_) {
      cached_ = plan_epoch(examples_, options_, seed_, epoch);
      cached_epoch_ = epoch;
    }
    return cached_;
  }

  const std::vector<TokenExample>& examples_;
  BatchPlanOptions options_;
  uint64_t seed_;
  std::vector<int64_t> step_counts_;  // per epoch, as far as asked
  int64_t cached_epoch_ = -1;
  std::vector<StepPlan> cached_;
};

void save_checkpoint(const fs::path& out, int64_t step, int64_t epoch, const json& settings, const LoraAdapter& adapter,
                     const AdamW& optimizer, StackPrefix prefix, int64_t keep) {
  const fs::path final_dir = out / fmt::format("{}{}", kCheckpointPrefix, step);
  const fs::path temporary = out / fmt::format("{}{}.tmp", kCheckpointPrefix, step);
  // Temporary directories left by saves that were killed midway.
  std::vector<fs::path> leftovers;
  for (const auto& entry : fs::directory_iterator(out))
    if (entry.path().filename().string().rfind(kCheckpointPrefix, 0) == 0 && entry.path().extension() == ".tmp")
      leftovers.push_back(entry.path());
  for (const fs::path& leftover : leftovers) fs::remove_all(leftover);
  create_output_directory(temporary);
  save_adapter(adapter, temporary, prefix);
  optimizer.save(temporary / kOptimizerFile, adapter, prefix);
  // The data order is a function of (seed, epoch), so the position and RNG state are the step.
  const json state{{"step", step},
                   {"epoch", epoch},
                   {"rng", {{"seed", settings["seed"]}, {"epoch", epoch}}},
                   {"threads", omp_get_max_threads()},
                   {"settings", settings}};
  write_file_atomic(temporary / kTrainerStateFile, state.dump(2) + "\n");
  // An older checkpoint of the same step (from a run this one resumed before) is replaced whole.
  if (fs::exists(final_dir)) {
    const fs::path stale = out / fmt::format("{}{}.old", kCheckpointPrefix, step);
    fs::remove_all(stale);
    fs::rename(final_dir, stale);
    fs::rename(temporary, final_dir);
    fs::remove_all(stale);
  } else {
    fs::rename(temporary, final_dir);
  }
  if (keep > 0) {
    auto checkpoints = finished_checkpoints(out);
    while (int64_t(checkpoints.size()) > keep) {
      fs::remove_all(checkpoints.begin()->second);
      checkpoints.erase(checkpoints.begin());
    }
  }
}

json metrics_line(const StepMetrics& metrics) {
  json line{{"step", metrics.step},
            {"loss", metrics.loss},
            {"lr", metrics.lr},
            {"grad_norm", metrics.grad_norm},
            {"tokens_per_second", metrics.tokens_per_second}};
  if (metrics.eval_loss) {
    line["eval_loss"] = *metrics.eval_loss;
    line["eval_perplexity"] = std::exp(*metrics.eval_loss);
  }
  return line;
}

// metrics.jsonl lines up to `last_step` (a resumed run rewrites what came after its checkpoint).
std::vector<json> kept_metrics(const fs::path& file, int64_t last_step) {
  std::vector<json> kept;
  std::ifstream stream(file);
  std::string text;
  while (std::getline(stream, text)) {
    const json line = json::parse(text, nullptr, false);
    if (line.is_object() && line.contains("step") && line["step"].is_number_integer() &&
        line["step"].get<int64_t>() <= last_step)
      kept.push_back(line);
  }
  return kept;
}

void write_loss_curve(const fs::path& out) {
  std::vector<LossPoint> train, eval;
  for (const json& line : kept_metrics(out / kMetricsFile, INT64_MAX)) {
    const int64_t step = line["step"].get<int64_t>();
    if (line.contains("loss") && line["loss"].is_number()) train.push_back({step, line["loss"].get<double>()});
    if (line.contains("eval_loss") && line["eval_loss"].is_number())
      eval.push_back({step, line["eval_loss"].get<double>()});
  }
  write_file_atomic(out / kLossCurveFile, loss_curve_svg(train, eval));
}

}  // namespace

InterruptGuard::InterruptGuard() {
  g_interrupt = false;
  std::signal(SIGINT, handle_interrupt);
}
InterruptGuard::~InterruptGuard() {
  std::signal(SIGINT, SIG_DFL);
  g_interrupt = false;
}
bool interrupt_requested() { return g_interrupt; }
void request_interrupt() { g_interrupt = true; }

void set_thread_count(int threads) {
  if (threads < 1) fail("--threads must be at least 1, got {}", threads);
  omp_set_num_threads(threads);
  openblas_set_num_threads(threads);
}

fs::path find_checkpoint(const fs::path& path) {
  if (fs::exists(path / kTrainerStateFile)) return path;
  const auto checkpoints = finished_checkpoints(path);
  if (checkpoints.empty()) fail("--resume {}: neither a checkpoint nor a directory holding checkpoint-<step>/", path.string());
  return checkpoints.rbegin()->second;
}

LossSum evaluate(const ModelWeights& weights, const LoraAdapter* adapter, const std::vector<TokenExample>& examples,
                 int64_t batch_size, const BackwardOptions& options) {
  LossSum total;
  BatchPlanOptions plan;
  plan.batch_size = std::max<int64_t>(1, batch_size);
  plan.shuffle = false;
  for (const StepPlan& step : plan_epoch(examples, plan, 0, 0)) {
    for (const MicroBatch& micro_batch : step.micro_batches) {
      const LossSum part = batch_loss(weights, adapter, pack_examples(examples, micro_batch), options);
      total.sum += part.sum;
      total.targets += part.targets;
    }
  }
  return total;
}

TrainingResult train(const ModelWeights& weights, const Tokenizer& tokenizer, const TrainingOptions& options,
                     const TrainingCallbacks& callbacks) {
  const auto say = [&](const std::string& message) {
    if (callbacks.on_message) callbacks.on_message(message);
  };
  if (options.out.empty()) fail("--out is required");
  if (options.epochs < 1 && options.max_steps < 1) fail("--epochs or --max-steps must be positive");

  // Data.
  Dataset dataset = load_dataset(options.data, tokenizer, weights.config.vocab_size, options.dataset);
  for (const std::string& warning : dataset.warnings(options.dataset)) say("warning: " + options.data.string() + ": " + warning);
  std::vector<TokenExample> eval_examples;
  if (!options.eval_data.empty()) {
    if (options.eval_split > 0) fail("give --eval-data or --eval-split, not both");
    Dataset eval = load_dataset(options.eval_data, tokenizer, weights.config.vocab_size, options.dataset);
    for (const std::string& warning : eval.warnings(options.dataset)) say("warning: " + options.eval_data.string() + ": " + warning);
    eval_examples = std::move(eval.examples);
  } else if (options.eval_split > 0) {
    eval_examples = split_off_eval(dataset, options.eval_split, options.seed);
  }
  if (options.eval_every > 0 && eval_examples.empty()) fail("--eval-every needs --eval-data or --eval-split");
  const std::vector<TokenExample>& examples = dataset.examples;

  BatchPlanOptions batching = options.batching;
  batching.max_seq_len = options.dataset.max_seq_len;
  StepSchedule schedule(examples, batching, options.seed);
  int64_t total_steps = options.max_steps;
  if (total_steps <= 0)
    for (int64_t epoch = 0; epoch < options.epochs; ++epoch) total_steps += schedule.steps_in_epoch(epoch);
  const int64_t warmup_steps = options.warmup_steps > 0
                                   ? options.warmup_steps
                                   : int64_t(std::ceil(options.warmup_ratio * double(total_steps)));
  const json settings = run_settings(options, total_steps, warmup_steps, examples);

  // Adapter and optimizer, fresh or from a checkpoint.
  create_output_directory(options.out);
  std::optional<LoraAdapter> adapter;
  int64_t start_step = 0;
  std::optional<AdamW> optimizer;
  fs::path resumed_from;
  if (!options.resume.empty()) {
    const fs::path checkpoint = resumed_from = find_checkpoint(options.resume);
    const json state = read_json_file(checkpoint / kTrainerStateFile);
    if (!state.is_object() || !state.contains("step") || !state["step"].is_number_unsigned() ||
        !state.contains("settings") || !state["settings"].is_object())
      fail("{}: expected an object with \"step\" (a count) and \"settings\"", (checkpoint / kTrainerStateFile).string());
    const json& saved = state["settings"];
    std::vector<std::string> differences;
    for (const auto& [key, value] : settings.items())
      if (!saved.contains(key) || saved[key] != value)
        differences.push_back(fmt::format("{} (checkpoint {}, now {})", key,
                                          saved.contains(key) ? saved[key].dump() : "absent", value.dump()));
    if (!differences.empty())
      fail("--resume {}: the run differs from the checkpoint's, so it would not continue it: {}", checkpoint.string(),
           fmt::join(differences, "; "));
    adapter = load_adapter(checkpoint, weights.config);
    optimizer.emplace(*adapter, options.adamw);
    optimizer->load(checkpoint / kOptimizerFile, *adapter, weights.prefix);
    start_step = state["step"].get<int64_t>();
    say(fmt::format("resuming from {} at step {}", checkpoint.string(), start_step));
    if (state.contains("threads") && state["threads"] != omp_get_max_threads())
      say(fmt::format("warning: the checkpoint was written with {} threads and this run has {}; the losses match the "
                      "uninterrupted run's bitwise only with the same --threads",
                      state["threads"].dump(), omp_get_max_threads()));
  } else {
    adapter = options.init_adapter.empty() ? init_adapter(weights.config, options.adapter)
                                           : load_adapter(options.init_adapter, weights.config);
    optimizer.emplace(*adapter, options.adamw);
  }

  std::vector<json> metrics = start_step > 0 ? kept_metrics(options.out / kMetricsFile, start_step) : std::vector<json>{};
  {
    std::string text;
    for (const json& line : metrics) text += line.dump() + "\n";
    write_file_atomic(options.out / kMetricsFile, text);
  }
  std::ofstream metrics_stream(options.out / kMetricsFile, std::ios::app);

  say(fmt::format("{} training examples ({} tokens){}, {} LoRA modules ({} parameters), {} optimizer steps", examples.size(),
                  dataset.token_count(),
                  eval_examples.empty() ? "" : fmt::format(", {} evaluation examples", eval_examples.size()),
                  adapter->module_count(), adapter->parameter_count(), total_steps));

  TrainingResult result;
  result.total_steps = total_steps;
  result.last_checkpoint = resumed_from;
  LoraGradients gradients(*adapter);
  const auto run_start = std::chrono::steady_clock::now();
  int64_t step = start_step;
  int64_t epoch = 0;
  const auto checkpoint = [&] {
    save_checkpoint(options.out, step, epoch, settings, *adapter, *optimizer, weights.prefix, options.keep_checkpoints);
    result.last_checkpoint = options.out / fmt::format("{}{}", kCheckpointPrefix, step);
  };
  while (step < total_steps) {
    const auto step_start = std::chrono::steady_clock::now();
    const auto [plan, plan_epoch_index] = schedule.at(step);
    epoch = plan_epoch_index;
    gradients.set_zero();
    const float gradient_scale = 1.0f / float(std::max<int64_t>(1, plan->target_count));
    LossSum loss;
    int64_t tokens = 0;
    for (const MicroBatch& micro_batch : plan->micro_batches) {
      const PackedBatch batch = pack_examples(examples, micro_batch);
      const LossSum part = accumulate_lora_gradients(weights, *adapter, batch, gradient_scale, gradients, options.backward);
      loss.sum += part.sum;
      loss.targets += part.targets;
      tokens += batch.size();
    }
    StepMetrics metrics_now;
    metrics_now.step = step + 1;
    metrics_now.total_steps = total_steps;
    metrics_now.loss = loss.mean();
    metrics_now.lr = learning_rate(options.schedule, options.lr, step, warmup_steps, total_steps);
    metrics_now.grad_norm = clip_gradient_norm(gradients, options.max_grad_norm);
    const std::string keep_note =
        result.last_checkpoint.empty() ? "no checkpoint was written by this run"
                                       : "the last good checkpoint is " + result.last_checkpoint.string();
    if (!std::isfinite(metrics_now.loss))
      fail("step {}: the loss is {}; stopping ({}). Try a lower --lr", step + 1, metrics_now.loss, keep_note);
    if (!std::isfinite(metrics_now.grad_norm))
      fail("step {}: the gradient norm is {}; stopping ({}). Try a lower --lr", step + 1, metrics_now.grad_norm,
           keep_note);
    optimizer->step(*adapter, gradients, metrics_now.lr);
    ++step;
    const auto now = std::chrono::steady_clock::now();
    metrics_now.tokens_per_second = double(tokens) / std::max(1e-9, std::chrono::duration<double>(now - step_start).count());
    metrics_now.elapsed_seconds = std::chrono::duration<double>(now - run_start).count();
    const bool last = step == total_steps;
    if (!eval_examples.empty() && ((options.eval_every > 0 && step % options.eval_every == 0) || last))
      metrics_now.eval_loss =
          evaluate(weights, &*adapter, eval_examples, options.batching.batch_size, options.backward).mean();
    metrics_stream << metrics_line(metrics_now).dump() << "\n";
    metrics_stream.flush();
    result.history.push_back(metrics_now);
    if (callbacks.on_step) callbacks.on_step(metrics_now);

    if (last || (options.save_every > 0 && step % options.save_every == 0)) checkpoint();
    if (interrupt_requested() && !last) {
      if (result.last_checkpoint != options.out / fmt::format("{}{}", kCheckpointPrefix, step)) checkpoint();
      result.interrupted = true;
      break;
    }
  }
  result.steps_done = step;
  if (!result.interrupted) {
    save_adapter(*adapter, options.out, weights.prefix);
    metrics_stream.close();
    write_loss_curve(options.out);
  }
  return result;
}

}  // namespace dt
