// deltatune chat: an interactive multi-turn conversation on stdin/stdout. The caches persist across
// turns, so each turn prefills only its own new tokens.
#include <fmt/core.h>

#include <cstdio>
#include <iostream>
#include <string>

#include "cli/cli.h"
#include "cli/generation_options.h"
#include "model/generation.h"
#include "model/weights.h"
#include "tokenizer/tokenizer.h"

namespace dt {
namespace {

struct ChatCommandOptions {
  std::string model;
  GenerationFlags flags;
};

std::string trim(const std::string& text) {
  const size_t begin = text.find_first_not_of(" \t\r\n");
  if (begin == std::string::npos) return {};
  return text.substr(begin, text.find_last_not_of(" \t\r\n") - begin + 1);
}

void run_chat(const ChatCommandOptions& options) {
  const ModelWeights weights = load_model(options.model);
  const GenerationConfig generation_config = load_generation_config(options.model);
  const Tokenizer tokenizer = Tokenizer::load(options.model);
  const int32_t im_end = tokenizer.require_token_id("<|im_end|>");
  const std::optional<LoraAdapter> adapter = load_adapter_option(options.flags.adapter, weights.config);
  ForwardOptions forward_options;
  forward_options.adapter = adapter ? &*adapter : nullptr;
  GenerationSession session(weights, resolve_sampling(options.flags, generation_config),
                            resolve_stop_tokens(options.flags, generation_config, weights.config, &tokenizer),
                            forward_options);
  fmt::print(stderr, "chat with {} (/reset clears the conversation, /exit or end of input quits)\n", options.model);

  bool conversation_started = false;
  bool reply_closed = false;  // the last reply ended with <|im_end|> (it is fed with the next turn)
  std::string line;
  while (true) {
    fmt::print(stderr, "> ");
    std::fflush(stderr);
    if (!std::getline(std::cin, line)) break;
    const std::string message = trim(line);
    if (message == "/exit") break;
    if (message == "/reset") {
      session.reset();
      conversation_started = false;
      fmt::print(stderr, "(conversation cleared)\n");
      continue;
    }
    if (message.empty()) continue;

    // The caches hold everything up to the end of the last reply; add only what follows it.
    std::string text;
    if (conversation_started) text = reply_closed ? "\n" : "<|im_end|>\n";
    text += chat_turn_text(conversation_started ? std::string() : options.flags.system, message, !options.flags.no_think);
    const std::vector<int32_t> tokens = tokenizer.encode(text);

    TextStreamer streamer(tokenizer, options.flags.stop);
    const GenerationResult result = generate_streaming(session, tokens, options.flags.max_tokens, &streamer);
    report_speed(result);
    conversation_started = true;
    reply_closed = !result.tokens.empty() && result.tokens.back() == im_end;
  }
}

}  // namespace

void register_chat(CLI::App& app) {
  auto options = std::make_shared<ChatCommandOptions>();
  auto* command = app.add_subcommand(
      "chat",
      "Interactive chat on stdin/stdout: each input line is a user turn, rendered with the ChatML template; "
      "the reply streams to stdout. /reset clears the conversation, /exit or end of input quits. The caches "
      "persist between turns, so each turn prefills only its new tokens. Sampling defaults as for generate.");
  command->add_option("--model", options->model, "Model directory (config.json, safetensors, tokenizer.json)")
      ->required();
  add_generation_flags(*command, options->flags);
  command->callback([options] { run_chat(*options); });
}

}  // namespace dt
