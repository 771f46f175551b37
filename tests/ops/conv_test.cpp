#include "ops/conv.h"

#include <gtest/gtest.h>

#include "ops/activation.h"
#include "ops/numeric_test_util.h"

namespace dt {
namespace {

TEST(CausalConv, LastTapMultipliesTheCurrentToken) {
  // One channel, kernel 3, taps [1, 10, 100], empty state: out_t = silu(p_{t-2} + 10 p_{t-1} + 100 p_t).
  const std::vector<float> weight = {1, 10, 100}, input = {0.01f, 0.02f, 0.03f};
  std::vector<float> state(2, 0.0f), out(3);
  causal_conv_silu(input.data(), 3, 1, weight.data(), 3, state.data(), out.data());
  EXPECT_FLOAT_EQ(out[0], silu(1.0f));
  EXPECT_FLOAT_EQ(out[1], silu(0.1f + 2.0f));
  EXPECT_FLOAT_EQ(out[2], silu(0.01f + 0.2f + 3.0f));
  EXPECT_EQ(state, (std::vector<float>{0.02f, 0.03f}));
}

// Running [first | second] in two calls through the state equals one call, including a piece
// shorter than the kernel history.
TEST(CausalConv, StateCarriesAcrossCalls) {
  const int64_t channels = 5, kernel = 4, tokens = 9;
  const auto weight = test::random_vector(size_t(channels * kernel), 1);
  const auto input = test::random_vector(size_t(tokens * channels), 2);
  std::vector<float> state_full(size_t((kernel - 1) * channels), 0.0f), full(size_t(tokens * channels));
  causal_conv_silu(input.data(), tokens, channels, weight.data(), kernel, state_full.data(), full.data());
  std::vector<float> state(size_t((kernel - 1) * channels), 0.0f), pieces(full.size());
  int64_t done = 0;
  for (int64_t piece : {4, 1, 2, 2}) {
    causal_conv_silu(input.data() + done * channels, piece, channels, weight.data(), kernel, state.data(),
                     pieces.data() + done * channels);
    done += piece;
  }
  EXPECT_TRUE(test::all_close(pieces, full, 1e-6));
  EXPECT_EQ(state, state_full);
}

}  // namespace
}  // namespace dt
