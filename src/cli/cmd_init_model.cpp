// deltatune init-model: writes a randomly initialised Qwen3.5 model in Hugging Face layout.
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <chrono>
#include <memory>

#include "cli/cli.h"
#include "model/random_model.h"

namespace dt {

namespace {

struct InitModelOptions {
  RandomModelRequest request;
  std::string out;
  std::string dtype = "bf16";
  std::string corpus;
};

void run_init_model(InitModelOptions& options) {
  options.request.init.dtype = parse_storage_dtype(options.dtype);
  options.request.tokenizer_corpus = options.corpus;
  const auto start = std::chrono::steady_clock::now();
  const RandomModelSummary summary = write_random_model(options.out, options.request);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const ModelConfig& c = summary.config;
  fmt::print("wrote {} ({} preset, {}, {}): {} layers [{}], hidden {}, vocab {} (tokenizer {}), {} parameters, "
             "{} embeddings, seed {}, {:.1f} s\n",
             options.out, options.request.preset, options.dtype,
             c.multimodal_wrapper ? "qwen3_5 wrapper" : "qwen3_5_text", c.num_hidden_layers,
             layer_pattern_string(c.layer_types), c.hidden_size, c.vocab_size, summary.tokenizer_vocab_size,
             summary.parameters, c.tie_word_embeddings ? "tied" : "untied", options.request.init.seed, seconds);
}

}  // namespace

void register_init_model(CLI::App& app) {
  auto options = std::make_shared<InitModelOptions>();
  CLI::App* command = app.add_subcommand(
      "init-model",
      "Write a randomly initialised Qwen3.5 model (config.json, safetensors, generation_config.json, a trained "
      "byte-level BPE tokenizer) in exact Hugging Face layout, for tests and demos");
  command->add_option("--preset", options->request.preset,
                      fmt::format("Model size: {}", fmt::join(model_preset_names(), ", ")))
      ->required();
  command->add_option("--out", options->out, "Output model directory (written atomically)")->required();
  command->add_option("--seed", options->request.init.seed, "Random seed; the same seed gives identical weights")
      ->capture_default_str();
  command->add_option("--set", options->request.overrides,
                      "Override a text-config field, key=value (repeatable): ints, floats, true/false, comma lists "
                      "for layer_types, mrope_section and eos_token_id; e.g. --set num_hidden_layers=8 --set "
                      "rope_theta=1e6. The config is re-validated");
  command->add_option("--dtype", options->dtype, "Storage dtype of the weights: bf16, f16 or f32")
      ->capture_default_str();
  command->add_flag("--text-only", options->request.text_only,
                    "Write the qwen3_5_text form (Qwen3_5ForCausalLM, tensors under model.) instead of the "
                    "multimodal qwen3_5 wrapper (tensors under model.language_model.)");
  command->add_option("--shards", options->request.shards,
                      "Number of safetensors shards; more than 1 also writes model.safetensors.index.json")
      ->capture_default_str();
  command->add_flag("--randomize-norms", options->request.init.randomize_norms,
                    "Draw norm weights from N(0, 0.1) (gated norm 1 + N(0, 0.1)) instead of HF's zeros/ones, so "
                    "the (1 + w) and w paths are exercised");
  command->add_option("--tokenizer-corpus", options->corpus,
                      "Text file to train the tokenizer on (default: a built-in English/code/multilingual corpus)");
  command->add_option("--vocab-size", options->request.tokenizer_vocab_size,
                      "Tokenizer vocabulary size (byte symbols + merges + special tokens); the tiny and small "
                      "presets size the embedding to it, rounded up to a multiple of 64")
      ->capture_default_str();
  command->add_flag("--force", options->request.force, "Replace the output directory if it is not empty");
  command->callback([options] { run_init_model(*options); });
}

}  // namespace dt
