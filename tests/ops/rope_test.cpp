#include "ops/rope.h"

#include <gtest/gtest.h>

#include <cmath>

#include "core/error.h"

namespace dt {
namespace {

// head_dim 8, rotary 4 (lanes 0..3 rotate, 4..7 pass), theta 100: inv_freq = [1, 0.1].
// Rotate-half pairs lane 0 with 2 and lane 1 with 3 (not 0 with 1).
TEST(Rope, PairsLaneWithLanePlusHalfOfRotaryDim) {
  std::vector<float> x = {1, 2, 3, 4, 5, 6, 7, 8};
  apply_rope(x.data(), 1, 1, 8, 4, 100.0, 1);
  const double c0 = std::cos(1.0), s0 = std::sin(1.0), c1 = std::cos(0.1), s1 = std::sin(0.1);
  EXPECT_NEAR(x[0], 1 * c0 - 3 * s0, 1e-6);
  EXPECT_NEAR(x[2], 3 * c0 + 1 * s0, 1e-6);
  EXPECT_NEAR(x[1], 2 * c1 - 4 * s1, 1e-6);
  EXPECT_NEAR(x[3], 4 * c1 + 2 * s1, 1e-6);
  EXPECT_EQ(x[4], 5);
  EXPECT_EQ(x[7], 8);
}

TEST(Rope, PositionsCountFromFirstPositionPerToken) {
  // Two tokens, two heads, starting at position 3: token 1 is at position 4 in both heads.
  std::vector<float> x = {1, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0};
  apply_rope(x.data(), 2, 2, 4, 2, 10.0, 3);
  EXPECT_NEAR(x[0], std::cos(3.0), 1e-6);
  EXPECT_NEAR(x[1], std::sin(3.0), 1e-6);
  EXPECT_NEAR(x[8], std::cos(4.0), 1e-6);
  EXPECT_NEAR(x[9], std::sin(4.0), 1e-6);
  EXPECT_NEAR(x[12], -std::sin(4.0), 1e-6);  // head 1 of token 1 had lane 1 set
  EXPECT_NEAR(x[13], std::cos(4.0), 1e-6);
  EXPECT_EQ(x[14], 0);
}

TEST(Rope, RejectsOddZeroOrTooWideRotaryDim) {
  std::vector<float> x(8);
  EXPECT_THROW(apply_rope(x.data(), 1, 1, 8, 3, 100.0, 0), Error);
  EXPECT_THROW(apply_rope(x.data(), 1, 1, 8, 0, 100.0, 0), Error);
  EXPECT_THROW(apply_rope(x.data(), 1, 1, 8, 10, 100.0, 0), Error);
}

}  // namespace
}  // namespace dt
