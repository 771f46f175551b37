#pragma once
// The token generation loop shared by `deltatune generate` and `deltatune chat`: prefill the new
// tokens into the caches, then sample and feed one token at a time until an end-of-sequence id,
// the token limit, or the caller says stop. Also reads a model's generation_config.json.
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "model/forward.h"
#include "model/sampler.h"
#include "model/weights.h"
#include "tokenizer/tokenizer.h"

namespace dt {

// The fields of generation_config.json we use; absent fields stay empty.
struct GenerationConfig {
  std::vector<int32_t> eos_token_ids;  // eos_token_id: an int or a list
  std::optional<bool> do_sample;
  std::optional<double> temperature, top_p, min_p, repetition_penalty;
  std::optional<int64_t> top_k;
};
// Reads `model_dir`/generation_config.json; a missing file gives an empty config. Fails naming the
// file and key on malformed content.
GenerationConfig load_generation_config(const std::filesystem::path& model_dir);
// Sampling defaults as Hugging Face applies them: greedy unless do_sample is true, then the file's
// temperature / top_k / top_p / min_p (HF's own defaults 1.0 / 50 / 1.0 / off when absent);
// the repetition penalty whenever given.
SamplingOptions default_sampling_options(const GenerationConfig& config);

// "1,2,3" -> {1, 2, 3}; fails naming `option` on anything that is not a comma list of ids.
std::vector<int32_t> parse_token_ids(const std::string& text, const std::string& option);

enum class StopReason { EndOfSequence, TokenLimit, Caller };

struct GenerationResult {
  std::vector<int32_t> tokens;  // generated, including a final end-of-sequence id
  StopReason reason = StopReason::TokenLimit;
  int64_t prefill_tokens = 0;
  double prefill_seconds = 0.0;
  int64_t decode_steps = 0;  // single-token forward passes
  double decode_seconds = 0.0;
};

// Called with each generated token (end-of-sequence ids included); returning false stops.
using TokenCallback = std::function<bool(int32_t token)>;

// One sequence with its caches, kept across calls (a chat keeps talking to the same session).
class GenerationSession {
 public:
  GenerationSession(const ModelWeights& weights, const SamplingOptions& sampling,
                    std::vector<int32_t> end_of_sequence_ids, ForwardOptions forward_options = {});

  // Appends `tokens` after everything so far (the last sampled token of the previous call is fed
  // first) and generates at most `max_tokens` tokens. The input (with that pending token) must
  // not be empty.
  GenerationResult generate(std::span<const int32_t> tokens, int64_t max_tokens, const TokenCallback& on_token);

  // Every token of the sequence: those in the caches plus the pending last sampled token.
  std::vector<int32_t> sequence() const;
  // Clears the caches and the sequence; the sampler's random stream continues.
  void reset();

 private:
  const ModelWeights& weights_;
  Sampler sampler_;
  std::vector<int32_t> end_of_sequence_ids_;
  ForwardOptions forward_options_;
  InferenceState state_;
  std::vector<int32_t> cached_;               // tokens the caches hold
  std::optional<int32_t> pending_;            // sampled but not yet fed
};

// Turns generated tokens into text as they arrive: releases only text that can no longer change
// (a UTF-8 character split across tokens is held back until complete) and cuts the output at the
// first stop string (text that could still become a stop string is held back too).
class TextStreamer {
 public:
  TextStreamer(const Tokenizer& tokenizer, std::vector<std::string> stop_strings);

  // Adds a token; returns the newly released text. Special tokens print nothing.
  std::string add(int32_t token);
  // Everything still held back (call when generation ends without a stop string).
  std::string finish();
  bool stopped() const { return stopped_; }  // a stop string was seen
  // The text released so far (and the held-back part after finish()).
  const std::string& text() const { return released_; }

 private:
  const Tokenizer& tokenizer_;
  std::vector<std::string> stop_strings_;
  std::vector<int32_t> tokens_;
  std::string released_;
  bool stopped_ = false;
};

}  // namespace dt
