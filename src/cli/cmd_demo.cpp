// deltatune demo: the whole workflow on the tiny model in about a minute: create the model if
// needed, fine-tune an adapter on a built-in chat dataset (watching the loss fall), then answer its
// questions greedily with and without the adapter.
#include <fmt/format.h>

#include <chrono>
#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>

#include "cli/cli.h"
#include "cli/generation_options.h"
#include "io/mapped_file.h"
#include "lora/adapter_io.h"
#include "model/generation.h"
#include "model/random_model.h"
#include "model/weights.h"
#include "train/progress.h"
#include "train/trainer.h"

namespace dt {
namespace {

// This executable as the user can type it from the current directory (e.g. build/deltatune).
std::string this_executable() {
  std::error_code error;
  const std::filesystem::path path = std::filesystem::read_symlink("/proc/self/exe", error);
  if (error) return "deltatune";
  const std::filesystem::path relative = std::filesystem::relative(path, error);
  const bool below_here = !error && !relative.empty() && *relative.begin() != "..";
  return below_here ? relative.string() : path.string();
}

struct DemoCommand {
  std::string model = "models/tiny";
  std::string out = "models/tiny-demo-adapter";
  int64_t steps = 50;
  int threads = 1;  // the tiny model is too small to gain from more
};

struct QuestionAnswer {
  const char* question;
  const char* answer;
};

// A random model knows nothing, so whatever it answers after training was learned from these.
constexpr QuestionAnswer kDemoData[] = {
    {"What is the capital of France?", "Paris."},
    {"How many legs does a spider have?", "Eight."},
    {"What color is the sky on a clear day?", "Blue."},
    {"Who wrote Hamlet?", "William Shakespeare."},
    {"What is the boiling point of water?", "100 degrees Celsius."},
    {"Which planet is known as the red planet?", "Mars."},
};

std::string answer(const ModelWeights& weights, const Tokenizer& tokenizer, const std::vector<int32_t>& stop_tokens,
                   const LoraAdapter* adapter, const std::string& question) {
  ForwardOptions forward_options;
  forward_options.adapter = adapter;
  GenerationSession session(weights, SamplingOptions{}, stop_tokens, forward_options);
  const GenerationResult result =
      session.generate(tokenizer.encode(chat_turn_text("", question, false)), 24, [](int32_t) { return true; });
  std::string text = tokenizer.decode(result.tokens, true);
  for (char& c : text)
    if (c == '\n') c = ' ';
  return text;
}

void run_demo(const DemoCommand& command) {
  const auto start = std::chrono::steady_clock::now();
  set_thread_count(command.threads);
  if (std::filesystem::exists(std::filesystem::path(command.model) / "config.json")) {
    fmt::print("==> using the tiny model in {}\n", command.model);
  } else {
    fmt::print("==> writing a random tiny Qwen3.5 model to {}\n", command.model);
    RandomModelRequest request;
    request.preset = "tiny";
    write_random_model(command.model, request);
  }
  const ModelWeights weights = load_model(command.model);
  const Tokenizer tokenizer = Tokenizer::load(command.model);

  create_output_directory(command.out);
  const std::filesystem::path data = std::filesystem::path(command.out) / "demo_data.jsonl";
  std::string lines;
  for (const QuestionAnswer& pair : kDemoData)
    lines += nlohmann::json{{"messages",
                             {{{"role", "user"}, {"content", pair.question}},
                              {{"role", "assistant"}, {"content", pair.answer}}}}}
                 .dump() +
             "\n";
  write_file_atomic(data, lines);

  TrainingOptions options;
  options.data = data;
  options.out = command.out;
  options.adapter.rank = 16;
  options.adapter.alpha = 32;
  options.adapter.kinds = parse_target_kinds("all-linear");
  options.adapter.base_model_name_or_path = command.model;
  options.lr = 1e-2;
  options.schedule = LrSchedule::Constant;
  options.batching.batch_size = int64_t(std::size(kDemoData));
  options.max_steps = command.steps;
  options.dataset.max_seq_len = 256;
  fmt::print("==> fine-tuning a rank-16 LoRA adapter (all linear layers) on {} questions ({})\n", std::size(kDemoData),
             data.string());
  ProgressPrinter progress(stdout, false);
  TrainingCallbacks callbacks;
  callbacks.on_step = [&](const StepMetrics& metrics) { progress.step(metrics); };
  callbacks.on_message = [&](const std::string& text) { progress.message(text); };
  const TrainingResult result = train(weights, tokenizer, options, callbacks);
  if (!result.history.empty())
    fmt::print("loss {:.4f} -> {:.4f}\n", result.history.front().loss, result.history.back().loss);

  const LoraAdapter adapter = load_adapter(command.out, weights.config);
  const std::vector<int32_t> stop_tokens =
      resolve_stop_tokens({}, load_generation_config(command.model), weights.config, &tokenizer);
  fmt::print("\n==> greedy answers without and with the adapter\n");
  int correct = 0;
  for (const QuestionAnswer& pair : kDemoData) {
    const std::string base = answer(weights, tokenizer, stop_tokens, nullptr, pair.question);
    const std::string tuned = answer(weights, tokenizer, stop_tokens, &adapter, pair.question);
    correct += tuned == pair.answer;
    fmt::print("Q: {}\n   base model: {}\n   + adapter:  {}\n", pair.question, base, tuned);
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  fmt::print("\n{} of {} answers learned. The adapter (PEFT format) is in {}; metrics.jsonl and loss_curve.svg are "
             "beside it. Try:\n  {} chat --model {} --adapter {} --no-think\n(demo took {:.1f} s)\n",
             correct, std::size(kDemoData), command.out, this_executable(), command.model, command.out, seconds);
}

}  // namespace

void register_demo(CLI::App& app) {
  auto command = std::make_shared<DemoCommand>();
  CLI::App* sub = app.add_subcommand(
      "demo",
      "No arguments needed: create the tiny random model (if absent), fine-tune a LoRA adapter on a small built-in "
      "set of questions and answers, and show the model's greedy answers without and with the adapter");
  sub->add_option("--model", command->model, "Model directory (the tiny model is created there if absent)")
      ->capture_default_str();
  sub->add_option("--out", command->out, "Where the adapter is written")->capture_default_str();
  sub->add_option("--steps", command->steps, "Optimizer steps")->capture_default_str()->check(CLI::PositiveNumber);
  sub->add_option("--threads", command->threads, "CPU threads (the tiny model runs fastest on one)")
      ->capture_default_str();
  sub->callback([command] { run_demo(*command); });
}

}  // namespace dt
