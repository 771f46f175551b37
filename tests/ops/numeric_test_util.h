#pragma once
// Helpers for numeric tests of the ops and the forward pass: seeded random fills and a NaN-aware
// closeness check (a max() fold silently drops NaN; this one fails on any non-finite value).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <random>
#include <span>
#include <vector>

namespace dt::test {

inline std::vector<float> random_vector(size_t count, uint32_t seed, float scale = 1.0f,
                                        float offset = 0.0f) {
  std::mt19937 engine(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> values(count);
  for (float& value : values) value = offset + scale * normal(engine);
  return values;
}

inline std::vector<float> uniform_vector(size_t count, uint32_t seed, float low, float high) {
  std::mt19937 engine(seed);
  std::uniform_real_distribution<float> uniform(low, high);
  std::vector<float> values(count);
  for (float& value : values) value = uniform(engine);
  return values;
}

// Passes when both have the same size, every value is finite, and
// max|actual - expected| <= tolerance * max(max|expected|, floor).
inline ::testing::AssertionResult all_close(std::span<const float> actual,
                                            std::span<const float> expected, double tolerance,
                                            double floor = 1e-30) {
  if (actual.size() != expected.size())
    return ::testing::AssertionFailure() << "sizes differ: " << actual.size() << " vs " << expected.size();
  double max_difference = 0, max_expected = 0;
  size_t worst = 0;
  for (size_t i = 0; i < actual.size(); ++i) {
    if (!std::isfinite(actual[i]) || !std::isfinite(expected[i]))
      return ::testing::AssertionFailure() << "non-finite value at " << i << ": actual " << actual[i]
                                           << ", expected " << expected[i];
    const double difference = std::abs(double(actual[i]) - double(expected[i]));
    if (difference > max_difference) {
      max_difference = difference;
      worst = i;
    }
    max_expected = std::max(max_expected, std::abs(double(expected[i])));
  }
  const double bound = tolerance * std::max(max_expected, floor);
  if (max_difference > bound)
    return ::testing::AssertionFailure()
           << "max difference " << max_difference << " at " << worst << " (actual " << actual[worst]
           << ", expected " << expected[worst] << ") exceeds " << bound << " = " << tolerance
           << " * max|expected| " << max_expected;
  return ::testing::AssertionSuccess();
}

inline bool all_finite(std::span<const float> values) {
  for (float value : values)
    if (!std::isfinite(value)) return false;
  return true;
}

}  // namespace dt::test
