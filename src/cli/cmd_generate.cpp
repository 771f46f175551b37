// deltatune generate: one completion of a prompt, streamed to stdout as tokens are produced.
#include <fmt/core.h>

#include <cstdio>
#include <fstream>
#include <sstream>

#include "cli/cli.h"
#include "cli/generation_options.h"
#include "core/error.h"
#include "model/generation.h"
#include "model/weights.h"
#include "tokenizer/tokenizer.h"

namespace dt {
namespace {

struct GenerateOptions {
  std::string model, prompt, prompt_file, tokens;
  bool chat = false;
  bool print_ids = false;
  GenerationFlags flags;
};

std::string read_text_file(const std::string& path) {
  std::ifstream stream(path, std::ios::binary);
  if (!stream) fail("--prompt-file: cannot open {}", path);
  std::ostringstream contents;
  contents << stream.rdbuf();
  return contents.str();
}

void run_generate(const GenerateOptions& options) {
  const ModelWeights weights = load_model(options.model);
  const GenerationConfig generation_config = load_generation_config(options.model);
  // The tokenizer is needed for text in or out; --tokens with --print-ids works without one.
  const bool needs_tokenizer = options.tokens.empty() || !options.print_ids;
  std::optional<Tokenizer> tokenizer;
  if (needs_tokenizer) tokenizer = Tokenizer::load(options.model);

  std::vector<int32_t> prompt_tokens;
  if (!options.tokens.empty()) {
    prompt_tokens = parse_token_ids(options.tokens, "--tokens");
  } else {
    const std::string text = options.prompt_file.empty() ? options.prompt : read_text_file(options.prompt_file);
    prompt_tokens = options.chat ? tokenizer->encode(chat_turn_text(options.flags.system, text, !options.flags.no_think))
                                 : tokenizer->encode(text);
  }

  const std::optional<LoraAdapter> adapter = load_adapter_option(options.flags.adapter, weights.config);
  ForwardOptions forward_options;
  forward_options.adapter = adapter ? &*adapter : nullptr;
  GenerationSession session(weights, resolve_sampling(options.flags, generation_config),
                            resolve_stop_tokens(options.flags, generation_config, weights.config,
                                                tokenizer ? &*tokenizer : nullptr),
                            forward_options);
  std::optional<TextStreamer> streamer;
  if (!options.print_ids) streamer.emplace(*tokenizer, options.flags.stop);
  const GenerationResult result =
      generate_streaming(session, prompt_tokens, options.flags.max_tokens, streamer ? &*streamer : nullptr);
  if (!streamer) {
    std::string ids;
    for (int32_t token : result.tokens) ids += (ids.empty() ? "" : ",") + std::to_string(token);
    fmt::print("{}\n", ids);
  }
  report_speed(result);
}

}  // namespace

void register_generate(CLI::App& app) {
  auto options = std::make_shared<GenerateOptions>();
  auto* command = app.add_subcommand(
      "generate",
      "Generate a completion of a prompt, streaming text to stdout; prefill and decode speed go to stderr.\n"
      "Sampling defaults come from the model's generation_config.json as Hugging Face applies them (greedy "
      "unless do_sample is true); each option below overrides its field. Generation stops at the config's "
      "eos_token_id(s), a --stop string, or --max-tokens.");
  command->add_option("--model", options->model, "Model directory (config.json, safetensors, tokenizer.json)")
      ->required();
  auto* prompt = command->add_option("--prompt", options->prompt, "Prompt text");
  auto* prompt_file = command->add_option("--prompt-file", options->prompt_file, "File holding the prompt text");
  auto* tokens = command->add_option("--tokens", options->tokens, "Prompt as comma-separated token ids");
  prompt->excludes(prompt_file)->excludes(tokens);
  prompt_file->excludes(tokens);
  command->add_flag("--chat", options->chat,
                    "Wrap the prompt in the chat template as one user turn (with --system) and an assistant "
                    "generation prompt");
  command->add_flag("--print-ids", options->print_ids,
                    "Print the generated token ids (comma-separated, one line) instead of text");
  add_generation_flags(*command, options->flags);
  command->callback([options] {
    if (options->prompt.empty() && options->prompt_file.empty() && options->tokens.empty())
      fail("generate: give the prompt with --prompt, --prompt-file or --tokens");
    if (options->chat && !options->tokens.empty()) fail("generate: --chat needs a text prompt, not --tokens");
    run_generate(*options);
  });
}

}  // namespace dt
