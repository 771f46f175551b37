#pragma once
// Next-token selection from a row of logits, with the HF generation semantics: repetition penalty,
// then temperature, top-k, top-p and min-p, then a seeded draw. Temperature 0 is greedy (argmax).
#include <cstdint>
#include <random>
#include <span>
#include <vector>

namespace dt {

struct SamplingOptions {
  double temperature = 0.0;        // 0: greedy
  int64_t top_k = 0;               // 0: off
  double top_p = 1.0;              // 1: off
  double min_p = 0.0;              // 0: off
  double repetition_penalty = 1.0; // 1: off
  uint64_t seed = 0;
};

// Fails (dt::Error) on out-of-range values, naming the option.
void validate_sampling_options(const SamplingOptions& options);

// HF RepetitionPenaltyLogitsProcessor: each distinct id in `history` once; positive logits are
// divided by the penalty, negative ones multiplied. Ids outside the row fail.
void apply_repetition_penalty(std::span<float> logits, std::span<const int32_t> history, double penalty);

// Index of the largest logit; the first one on ties. NaN logits fail.
int32_t argmax(std::span<const float> logits);

// Candidate token ids with their probabilities (summing to 1) after temperature, top-k, top-p and
// min-p, most probable first. `logits` must already carry the repetition penalty.
struct Candidate {
  int32_t token;
  double probability;
};
std::vector<Candidate> sampling_candidates(std::span<const float> logits, const SamplingOptions& options);

class Sampler {
 public:
  explicit Sampler(const SamplingOptions& options);

  // Chooses the next token from `logits` (one vocabulary row; modified in place by the penalty)
  // given every token of the sequence so far (`history`: prompt and output).
  int32_t next(std::span<float> logits, std::span<const int32_t> history);

  const SamplingOptions& options() const { return options_; }

 private:
  SamplingOptions options_;
  std::mt19937_64 rng_;
};

}  // namespace dt
