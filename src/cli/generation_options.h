#pragma once
// Options shared by `deltatune generate` and `deltatune chat`: sampling overrides on top of the
// model's generation_config.json, stop conditions, and the speed report.
#include <CLI/CLI.hpp>

#include <optional>
#include <span>
#include <string>
#include <vector>

#include "model/config.h"
#include "model/generation.h"
#include "model/lora_adapter.h"
#include "tokenizer/tokenizer.h"

namespace dt {

struct GenerationFlags {
  std::optional<double> temperature, top_p, min_p, repetition_penalty;
  std::optional<int64_t> top_k;
  uint64_t seed = 0;
  int64_t max_tokens = 512;
  std::vector<std::string> stop;
  bool ignore_eos = false;
  bool no_think = false;
  std::string system;
  std::string adapter;  // --adapter: a PEFT LoRA adapter directory
};

void add_generation_flags(CLI::App& command, GenerationFlags& flags);

// --adapter DIR (logits, generate, chat).
void add_adapter_option(CLI::App& command, std::string& adapter_dir);
// The adapter in `adapter_dir` validated against the model (failing with every problem found);
// nothing when no directory was given.
std::optional<LoraAdapter> load_adapter_option(const std::string& adapter_dir, const ModelConfig& config);

// generation_config.json defaults with the given flags on top.
SamplingOptions resolve_sampling(const GenerationFlags& flags, const GenerationConfig& generation_config);

// End-of-sequence ids: generation_config.json's eos_token_id, else config.json's, else the
// tokenizer's <|im_end|> and <|endoftext|>; none with --ignore-eos.
std::vector<int32_t> resolve_stop_tokens(const GenerationFlags& flags, const GenerationConfig& generation_config,
                                         const ModelConfig& model_config, const Tokenizer* tokenizer);

// The chat-template text one chat turn adds: an optional system message, the user message, and
// the assistant generation prompt (an empty think block when thinking is off).
std::string chat_turn_text(const std::string& system, const std::string& user, bool enable_thinking);

// Generates from `prompt`, streaming the text of each new token through `streamer` to stdout and,
// at the end, the held-back rest and a newline (null streamer: prints nothing).
GenerationResult generate_streaming(GenerationSession& session, std::span<const int32_t> prompt, int64_t max_tokens,
                                    TextStreamer* streamer);

// "prefill: N tokens, X s, Y tok/s; decode: ..." on stderr.
void report_speed(const GenerationResult& result);

}  // namespace dt
