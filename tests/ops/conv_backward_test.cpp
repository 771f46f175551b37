// Backward of the causal depthwise conv + SiLU against finite differences, from a zero start and
// from a carried conv state (whose gradient is checked too), with fewer tokens than the kernel.
#include <gtest/gtest.h>

#include "ops/conv.h"
#include "ops/gradcheck.h"
#include "ops/numeric_test_util.h"

namespace dt {
namespace {

using test::GradParameter;
using test::random_vector;

void check_conv(int64_t tokens, bool with_state, uint32_t seed) {
  SCOPED_TRACE("tokens " + std::to_string(tokens) + (with_state ? ", initial state" : ", zero start"));
  const int64_t channels = 6, kernel = 4, history = kernel - 1;
  auto input = random_vector(tokens * channels, seed), weight = random_vector(channels * kernel, seed + 1, 0.7f);
  auto state = random_vector(history * channels, seed + 2);
  if (!with_state) std::fill(state.begin(), state.end(), 0.0f);
  const auto probe = random_vector(tokens * channels, seed + 3);
  std::vector<float> d_input(input.size()), d_weight(weight.size(), 0.0f), d_state(state.size());
  causal_conv_silu_backward(input.data(), tokens, channels, weight.data(), kernel, with_state ? state.data() : nullptr,
                            probe.data(), d_input.data(), d_weight.data(), with_state ? d_state.data() : nullptr);
  std::vector<float> out(input.size()), scratch_state;
  auto loss = [&] {
    scratch_state = state;
    causal_conv_silu(input.data(), tokens, channels, weight.data(), kernel, scratch_state.data(), out.data());
    return test::weighted_sum<float, float>(out, probe);
  };
  std::vector<GradParameter<float>> parameters = {{"input", input, d_input}, {"weight", weight, d_weight}};
  if (with_state) parameters.push_back({"initial_state", state, d_state});
  EXPECT_TRUE(test::gradients_match(test::gradcheck<float>(loss, parameters), 1e-2));
}

TEST(ConvBackward, MatchesFiniteDifferences) {
  uint32_t seed = 1;
  for (int64_t tokens : {1, 2, 9})
    for (bool with_state : {false, true}) check_conv(tokens, with_state, seed += 10);
}

}  // namespace
}  // namespace dt
