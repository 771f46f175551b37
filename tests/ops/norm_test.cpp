#include "ops/norm.h"

#include <gtest/gtest.h>

#include <cmath>

#include "ops/activation.h"
#include "ops/numeric_test_util.h"

namespace dt {
namespace {

TEST(RmsNormZeroCentred, ScalesByOnePlusWeight) {
  // x = [3, 4]: mean(x^2) = 12.5.
  const std::vector<float> x = {3, 4}, weight = {0.5f, -1.0f};
  std::vector<float> y(2);
  rms_norm_zero_centred(x.data(), 1, 2, weight.data(), 0.0f, y.data());
  const float rstd = 1.0f / std::sqrt(12.5f);
  EXPECT_FLOAT_EQ(y[0], 3 * rstd * 1.5f);
  EXPECT_FLOAT_EQ(y[1], 0.0f);
}

TEST(RmsNormZeroCentred, EpsilonIsInsideTheMean) {
  const std::vector<float> x = {0.001f}, weight = {0.0f};
  std::vector<float> y(1);
  rms_norm_zero_centred(x.data(), 1, 1, weight.data(), 1e-6f, y.data());
  EXPECT_NEAR(y[0], 0.001 / std::sqrt(1e-6 + 1e-6), 1e-6);
}

TEST(GatedRmsNorm, NormalisesThenGatesWithPlainWeight) {
  const std::vector<float> x = {3, 4}, z = {1.0f, -2.0f}, weight = {2.0f, 0.5f};
  std::vector<float> y(2);
  gated_rms_norm(x.data(), z.data(), 1, 2, weight.data(), 0.0f, y.data());
  const float rstd = 1.0f / std::sqrt(12.5f);
  EXPECT_FLOAT_EQ(y[0], 2.0f * 3 * rstd * silu(1.0f));
  EXPECT_FLOAT_EQ(y[1], 0.5f * 4 * rstd * silu(-2.0f));
}

TEST(L2Normalize, EpsilonIsInsideTheSquareRoot) {
  std::vector<float> x = {3, 4, 0, 0};
  l2_normalize(x.data(), 2, 2, 1e-6f);
  EXPECT_NEAR(x[0], 3 / std::sqrt(25 + 1e-6), 1e-7);
  EXPECT_NEAR(x[1], 4 / std::sqrt(25 + 1e-6), 1e-7);
  EXPECT_EQ(x[2], 0.0f);  // a zero row stays zero instead of becoming NaN
}

TEST(Activations, SoftplusPassesLargeInputsThrough) {
  EXPECT_EQ(softplus(25.0f), 25.0f);
  EXPECT_NEAR(softplus(0.0f), std::log(2.0f), 1e-7);
  EXPECT_NEAR(softplus(-5.0f), std::log1p(std::exp(-5.0f)), 1e-9);
  EXPECT_FLOAT_EQ(silu(2.0f), 2.0f / (1.0f + std::exp(-2.0f)));
}

}  // namespace
}  // namespace dt
