#include "model/sampler.h"

#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <vector>

#include "core/error.h"

namespace dt {
namespace {

std::map<int32_t, double> as_map(const std::vector<Candidate>& candidates) {
  std::map<int32_t, double> result;
  for (const auto& c : candidates) result[c.token] = c.probability;
  return result;
}

TEST(Sampler, GreedyTakesFirstMaximum) {
  Sampler sampler({});
  std::vector<float> logits = {0.5f, 2.0f, -1.0f, 2.0f};
  EXPECT_EQ(sampler.next(logits, {}), 1);
}

TEST(Sampler, GreedyRejectsNaN) {
  Sampler sampler({});
  std::vector<float> logits = {0.5f, NAN, 3.0f};
  EXPECT_THROW(sampler.next(logits, {}), Error);
}

TEST(Sampler, RepetitionPenaltyOncePerUniqueTokenWithHfSigns) {
  std::vector<float> logits = {4.0f, -2.0f, 1.0f, 3.0f};
  const std::vector<int32_t> history = {0, 1, 0, 0, 1};
  apply_repetition_penalty(logits, history, 2.0);
  EXPECT_FLOAT_EQ(logits[0], 2.0f);   // positive: divided once, not three times
  EXPECT_FLOAT_EQ(logits[1], -4.0f);  // negative: multiplied
  EXPECT_FLOAT_EQ(logits[2], 1.0f);
  EXPECT_FLOAT_EQ(logits[3], 3.0f);
}

TEST(Sampler, RepetitionPenaltyChangesGreedyChoice) {
  Sampler sampler({.repetition_penalty = 2.0});
  std::vector<float> logits = {4.0f, 3.0f};
  const std::vector<int32_t> history = {0};
  EXPECT_EQ(sampler.next(logits, history), 1);
}

TEST(Sampler, RepetitionPenaltyRejectsOutOfVocabularyHistory) {
  std::vector<float> logits = {1.0f, 2.0f};
  const std::vector<int32_t> history = {5};
  EXPECT_THROW(apply_repetition_penalty(logits, history, 1.3), Error);
}

TEST(Sampler, TemperatureSoftmax) {
  const std::vector<float> logits = {0.0f, std::log(3.0f)};
  auto probabilities = as_map(sampling_candidates(logits, {.temperature = 1.0}));
  EXPECT_NEAR(probabilities[0], 0.25, 1e-7);
  EXPECT_NEAR(probabilities[1], 0.75, 1e-7);
  probabilities = as_map(sampling_candidates(logits, {.temperature = 0.5}));  // 1 : 9
  EXPECT_NEAR(probabilities[1], 0.9, 1e-7);
}

TEST(Sampler, TopKKeepsTiesAtTheBoundary) {
  const std::vector<float> logits = {1.0f, 3.0f, 2.0f, 2.0f, 0.0f};
  const auto kept = as_map(sampling_candidates(logits, {.temperature = 1.0, .top_k = 2}));
  EXPECT_EQ(kept.size(), 3u);  // 3.0 and both 2.0
  EXPECT_TRUE(kept.count(1) && kept.count(2) && kept.count(3));
}

TEST(Sampler, TopPIncludesTheCrossingToken) {
  // probabilities 0.5, 0.3, 0.15, 0.05
  const std::vector<float> logits = {std::log(0.15f), std::log(0.5f), std::log(0.05f), std::log(0.3f)};
  auto kept = as_map(sampling_candidates(logits, {.temperature = 1.0, .top_p = 0.7}));
  ASSERT_EQ(kept.size(), 2u);
  EXPECT_NEAR(kept[1], 0.5 / 0.8, 1e-6);
  EXPECT_NEAR(kept[3], 0.3 / 0.8, 1e-6);
  kept = as_map(sampling_candidates(logits, {.temperature = 1.0, .top_p = 0.1}));
  ASSERT_EQ(kept.size(), 1u);
  EXPECT_TRUE(kept.count(1));
}

TEST(Sampler, TopPOverALargeVocabularySortsBeyondTheFirstBlock) {
  std::vector<float> logits(4096, 0.0f);  // uniform 2^-12 (exact sums): top_p 0.5 keeps 2048
  const auto kept = sampling_candidates(logits, {.temperature = 1.0, .top_p = 0.5});
  EXPECT_EQ(kept.size(), 2048u);
}

TEST(Sampler, MinPDropsRelativeToTheMostProbable) {
  const std::vector<float> logits = {std::log(0.6f), std::log(0.3f), std::log(0.1f)};
  const auto kept = as_map(sampling_candidates(logits, {.temperature = 1.0, .min_p = 0.2}));
  ASSERT_EQ(kept.size(), 2u);  // 0.1 < 0.2 * 0.6
  EXPECT_NEAR(kept.at(0), 2.0 / 3.0, 1e-6);
}

TEST(Sampler, SeededDrawsAreReproducibleAndFollowTheDistribution) {
  const std::vector<float> base = {0.0f, std::log(3.0f)};
  auto draw_many = [&](uint64_t seed) {
    Sampler sampler({.temperature = 1.0, .seed = seed});
    std::vector<int32_t> tokens;
    for (int i = 0; i < 4000; ++i) {
      std::vector<float> logits = base;
      tokens.push_back(sampler.next(logits, {}));
    }
    return tokens;
  };
  const auto first = draw_many(7), again = draw_many(7), other = draw_many(8);
  EXPECT_EQ(first, again);
  EXPECT_NE(first, other);
  double ones = 0;
  for (int32_t t : first) ones += t;
  EXPECT_NEAR(ones / double(first.size()), 0.75, 0.03);
}

TEST(Sampler, RejectsInvalidOptions) {
  EXPECT_THROW(Sampler({.temperature = -1.0}), Error);
  EXPECT_THROW(Sampler({.top_k = -2}), Error);
  EXPECT_THROW(Sampler({.top_p = 0.0}), Error);
  EXPECT_THROW(Sampler({.min_p = 1.5}), Error);
  EXPECT_THROW(Sampler({.repetition_penalty = 0.0}), Error);
}

}  // namespace
}  // namespace dt
