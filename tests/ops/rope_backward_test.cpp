// Backward of partial rotate-half RoPE: the inverse rotation, checked against finite differences
// and as an exact inverse of the forward; the lanes past the rotary dimension pass through.
#include <gtest/gtest.h>

#include "ops/gradcheck.h"
#include "ops/numeric_test_util.h"
#include "ops/rope.h"

namespace dt {
namespace {

using test::GradParameter;
using test::random_vector;

TEST(RopeBackward, MatchesFiniteDifferences) {
  const int64_t tokens = 5, heads = 2, head_dim = 12, rotary_dim = 8, first_position = 7;
  auto x = random_vector(tokens * heads * head_dim, 1);
  const auto probe = random_vector(x.size(), 2);
  std::vector<float> dx = probe, y;
  apply_rope_backward(dx.data(), tokens, heads, head_dim, rotary_dim, 1e4, first_position);
  auto loss = [&] {
    y = x;
    apply_rope(y.data(), tokens, heads, head_dim, rotary_dim, 1e4, first_position);
    return test::weighted_sum<float, float>(y, probe);
  };
  test::GradcheckOptions options;
  options.random_entries = 40;
  EXPECT_TRUE(test::gradients_match(test::gradcheck<float>(loss, {GradParameter<float>{"x", x, dx}}, options), 1e-2));
  for (int64_t row = 0; row < tokens * heads; ++row)
    for (int64_t lane = rotary_dim; lane < head_dim; ++lane)
      EXPECT_EQ(dx[size_t(row * head_dim + lane)], probe[size_t(row * head_dim + lane)]);
}

TEST(RopeBackward, UndoesTheForwardRotation) {
  const int64_t tokens = 9, heads = 3, head_dim = 16, rotary_dim = 16;
  const auto x = random_vector(tokens * heads * head_dim, 3);
  auto y = x;
  apply_rope(y.data(), tokens, heads, head_dim, rotary_dim, 1e7, 100);
  apply_rope_backward(y.data(), tokens, heads, head_dim, rotary_dim, 1e7, 100);
  EXPECT_TRUE(test::all_close(y, x, 1e-6));
}

}  // namespace
}  // namespace dt
