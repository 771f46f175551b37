#include "ops/numeric_test_util.h"

#include <limits>

namespace dt::test {
namespace {

TEST(AllClose, FailsOnNaNAndInfinity) {
  const std::vector<float> expected = {1.0f, 2.0f, 3.0f};
  std::vector<float> actual = expected;
  EXPECT_TRUE(all_close(actual, expected, 1e-6));
  actual[1] = std::numeric_limits<float>::quiet_NaN();
  EXPECT_FALSE(all_close(actual, expected, 1e-6));
  EXPECT_FALSE(all_close(expected, actual, 1e-6));
  actual[1] = std::numeric_limits<float>::infinity();
  EXPECT_FALSE(all_close(actual, expected, 1e-6));
}

TEST(AllClose, IsRelativeToTheLargestExpectedValue) {
  const std::vector<float> expected = {100.0f, 0.0f};
  EXPECT_TRUE(all_close(std::vector<float>{100.0f, 0.0005f}, expected, 1e-5));
  EXPECT_FALSE(all_close(std::vector<float>{100.0f, 0.002f}, expected, 1e-5));
}

}  // namespace
}  // namespace dt::test
