#include "cli/generation_options.h"

#include <fmt/core.h>

#include <cstdio>

#include "lora/adapter_io.h"
#include "tokenizer/chat_template.h"

namespace dt {

void add_generation_flags(CLI::App& command, GenerationFlags& flags) {
  command.add_option("--max-tokens", flags.max_tokens, "Most tokens to generate per reply")->capture_default_str();
  command.add_option("--temperature", flags.temperature,
                     "Sampling temperature; 0 is greedy (default: generation_config.json, else greedy)");
  command.add_option("--top-k", flags.top_k, "Keep the k most probable tokens; 0 disables (default: generation_config.json)");
  command.add_option("--top-p", flags.top_p, "Nucleus sampling mass; 1 disables (default: generation_config.json)");
  command.add_option("--min-p", flags.min_p,
                     "Drop tokens less probable than min-p times the top one; 0 disables (default: generation_config.json)");
  command.add_option("--repetition-penalty", flags.repetition_penalty,
                     "HF repetition penalty over prompt and output; 1 disables (default: generation_config.json, else 1)");
  command.add_option("--seed", flags.seed, "Random seed of the sampler")->capture_default_str();
  command.add_option("--stop", flags.stop, "Stop when the output contains this text (repeatable); it is not printed")
      ->allow_extra_args(false);
  command.add_flag("--ignore-eos", flags.ignore_eos, "Do not stop at end-of-sequence tokens");
  command.add_flag("--no-think", flags.no_think,
                   "Chat template: start the reply with an empty <think></think> block (thinking off)");
  command.add_option("--system", flags.system, "Chat template: system message");
  add_adapter_option(command, flags.adapter);
}

void add_adapter_option(CLI::App& command, std::string& adapter_dir) {
  command.add_option("--adapter", adapter_dir,
                     "PEFT LoRA adapter directory (adapter_config.json + adapter_model.safetensors), applied "
                     "unmerged in every forward pass");
}

std::optional<LoraAdapter> load_adapter_option(const std::string& adapter_dir, const ModelConfig& config) {
  if (adapter_dir.empty()) return std::nullopt;
  return load_adapter(adapter_dir, config);
}

SamplingOptions resolve_sampling(const GenerationFlags& flags, const GenerationConfig& generation_config) {
  SamplingOptions options = default_sampling_options(generation_config);
  if (flags.temperature) options.temperature = *flags.temperature;
  if (flags.top_k) options.top_k = *flags.top_k;
  if (flags.top_p) options.top_p = *flags.top_p;
  if (flags.min_p) options.min_p = *flags.min_p;
  if (flags.repetition_penalty) options.repetition_penalty = *flags.repetition_penalty;
  options.seed = flags.seed;
  validate_sampling_options(options);
  return options;
}

std::vector<int32_t> resolve_stop_tokens(const GenerationFlags& flags, const GenerationConfig& generation_config,
                                         const ModelConfig& model_config, const Tokenizer* tokenizer) {
  if (flags.ignore_eos) return {};
  if (!generation_config.eos_token_ids.empty()) return generation_config.eos_token_ids;
  std::vector<int32_t> ids(model_config.eos_token_ids.begin(), model_config.eos_token_ids.end());
  if (ids.empty() && tokenizer)
    for (const char* token : {"<|im_end|>", "<|endoftext|>"})
      if (auto id = tokenizer->token_to_id(token)) ids.push_back(*id);
  return ids;
}

std::string chat_turn_text(const std::string& system, const std::string& user, bool enable_thinking) {
  std::vector<ChatMessage> messages;
  if (!system.empty()) messages.push_back({"system", system, std::nullopt});
  messages.push_back({"user", user, std::nullopt});
  return render_chat(messages, {.add_generation_prompt = true, .enable_thinking = enable_thinking});
}

GenerationResult generate_streaming(GenerationSession& session, std::span<const int32_t> prompt, int64_t max_tokens,
                                    TextStreamer* streamer) {
  const GenerationResult result = session.generate(prompt, max_tokens, [&](int32_t token) {
    if (!streamer) return true;
    fmt::print("{}", streamer->add(token));
    std::fflush(stdout);
    return !streamer->stopped();
  });
  if (streamer) {
    fmt::print("{}\n", streamer->finish());
    std::fflush(stdout);
  }
  return result;
}

void report_speed(const GenerationResult& result) {
  auto rate = [](double count, double seconds) { return seconds > 0 ? count / seconds : 0.0; };
  fmt::print(stderr, "prefill: {} tokens in {:.3f} s ({:.1f} tok/s); decode: {} tokens in {:.3f} s ({:.1f} tok/s)\n",
             result.prefill_tokens, result.prefill_seconds, rate(double(result.prefill_tokens), result.prefill_seconds),
             result.decode_steps, result.decode_seconds, rate(double(result.decode_steps), result.decode_seconds));
}

}  // namespace dt
