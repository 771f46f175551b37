#include "model/sampler.h"

#include <algorithm>
#include <cmath>
#include <unordered_set>

#include "core/error.h"

namespace dt {

void validate_sampling_options(const SamplingOptions& options) {
  if (!(options.temperature >= 0.0) || !std::isfinite(options.temperature))
    fail("--temperature must be a finite number >= 0, got {}", options.temperature);
  if (options.top_k < 0) fail("--top-k must be >= 0 (0 disables it), got {}", options.top_k);
  if (!(options.top_p > 0.0 && options.top_p <= 1.0))
    fail("--top-p must be in (0, 1] (1 disables it), got {}", options.top_p);
  if (!(options.min_p >= 0.0 && options.min_p <= 1.0))
    fail("--min-p must be in [0, 1] (0 disables it), got {}", options.min_p);
  if (!(options.repetition_penalty > 0.0) || !std::isfinite(options.repetition_penalty))
    fail("--repetition-penalty must be a finite number > 0 (1 disables it), got {}", options.repetition_penalty);
}

void apply_repetition_penalty(std::span<float> logits, std::span<const int32_t> history, double penalty) {
  if (penalty == 1.0) return;
  std::unordered_set<int32_t> seen;
  for (int32_t token : history) {
    if (token < 0 || size_t(token) >= logits.size())
      fail("repetition penalty: token id {} is outside the vocabulary of {} logits", token, logits.size());
    if (!seen.insert(token).second) continue;
    float& logit = logits[size_t(token)];
    logit = logit > 0 ? float(logit / penalty) : float(logit * penalty);
  }
}

int32_t argmax(std::span<const float> logits) {
  if (logits.empty()) fail("cannot choose a token from an empty logits row");
  size_t best = 0;
  for (size_t i = 0; i < logits.size(); ++i) {
    if (std::isnan(logits[i])) fail("logit {} is NaN: the forward pass produced a non-finite value", i);
    if (logits[i] > logits[best]) best = i;
  }
  return int32_t(best);
}

std::vector<Candidate> sampling_candidates(std::span<const float> logits, const SamplingOptions& options) {
  if (options.temperature <= 0.0) fail("sampling_candidates needs a temperature > 0 (0 is greedy)");
  std::vector<Candidate> candidates;
  candidates.reserve(logits.size());
  for (size_t i = 0; i < logits.size(); ++i) {
    if (std::isnan(logits[i])) fail("logit {} is NaN: the forward pass produced a non-finite value", i);
    candidates.push_back({int32_t(i), double(logits[i]) / options.temperature});  // scaled logit for now
  }
  if (candidates.empty()) fail("cannot choose a token from an empty logits row");
  auto more_probable = [](const Candidate& a, const Candidate& b) {
    return a.probability > b.probability || (a.probability == b.probability && a.token < b.token);
  };

  // top-k keeps every candidate at least as large as the k-th largest (HF keeps ties).
  if (options.top_k > 0 && size_t(options.top_k) < candidates.size()) {
    auto kth = candidates.begin() + (options.top_k - 1);
    std::nth_element(candidates.begin(), kth, candidates.end(), more_probable);
    const double threshold = kth->probability;
    std::erase_if(candidates, [&](const Candidate& c) { return c.probability < threshold; });
  }

  // Softmax over what is left.
  double max_scaled = -INFINITY;
  for (const auto& c : candidates) max_scaled = std::max(max_scaled, c.probability);
  if (!std::isfinite(max_scaled)) fail("every logit is -inf or +inf: cannot sample");
  double total = 0.0;
  for (auto& c : candidates) total += (c.probability = std::exp(c.probability - max_scaled));
  for (auto& c : candidates) c.probability /= total;

  // top-p keeps the most probable candidates until their mass reaches p (the crossing one
  // included). Sorting a growing prefix avoids sorting the whole vocabulary.
  if (options.top_p < 1.0) {
    size_t sorted = std::min<size_t>(256, candidates.size());
    while (true) {
      std::partial_sort(candidates.begin(), candidates.begin() + sorted, candidates.end(), more_probable);
      double mass = 0.0;
      size_t keep = 0;
      while (keep < sorted && mass < options.top_p) mass += candidates[keep++].probability;
      if (mass >= options.top_p || sorted == candidates.size()) {
        candidates.resize(std::max<size_t>(keep, 1));
        break;
      }
      sorted = std::min(sorted * 8, candidates.size());
    }
  }

  // min-p drops candidates less probable than min_p times the most probable one.
  if (options.min_p > 0.0) {
    double top = 0.0;
    for (const auto& c : candidates) top = std::max(top, c.probability);
    std::erase_if(candidates, [&](const Candidate& c) { return c.probability < options.min_p * top; });
  }

  total = 0.0;
  for (const auto& c : candidates) total += c.probability;
  for (auto& c : candidates) c.probability /= total;
  return candidates;
}

Sampler::Sampler(const SamplingOptions& options) : options_(options), rng_(options.seed) {
  validate_sampling_options(options_);
}

int32_t Sampler::next(std::span<float> logits, std::span<const int32_t> history) {
  apply_repetition_penalty(logits, history, options_.repetition_penalty);
  if (options_.temperature == 0.0) return argmax(logits);
  const auto candidates = sampling_candidates(logits, options_);
  const double draw = std::uniform_real_distribution<double>(0.0, 1.0)(rng_);
  double cumulative = 0.0;
  for (const auto& c : candidates) {
    cumulative += c.probability;
    if (draw < cumulative) return c.token;
  }
  return candidates.back().token;  // rounding left the draw just above the summed mass
}

}  // namespace dt
