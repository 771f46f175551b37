#include "ops/conv.h"

#include <algorithm>

#include "ops/activation.h"

namespace dt {

void causal_conv_silu(const float* input, int64_t tokens, int64_t channels, const float* weight,
                      int64_t kernel, float* state, float* out) {
  const int64_t history = kernel - 1;
  // Row of all channels at time tau; negative tau reads the state.
  auto row_at = [&](int64_t tau) {
    return tau < 0 ? state + (history + tau) * channels : input + tau * channels;
  };
#pragma omp parallel for schedule(static) if (tokens * channels * kernel > 65536)
  for (int64_t t = 0; t < tokens; ++t) {
    float* result = out + t * channels;
    std::fill_n(result, channels, 0.0f);
    for (int64_t j = 0; j < kernel; ++j) {
      const float* source = row_at(t - history + j);
      for (int64_t c = 0; c < channels; ++c) result[c] += weight[c * kernel + j] * source[c];
    }
    for (int64_t c = 0; c < channels; ++c) result[c] = silu(result[c]);
  }
  // New state: the last kernel-1 rows of [state ‖ input]. Kept rows move towards the front, so
  // copying in increasing order never overwrites a row still to be read.
  for (int64_t s = 0; s < history; ++s) {
    const int64_t tau = tokens - history + s;
    if (tau < 0)
      std::copy_n(state + (history + tau) * channels, channels, state + s * channels);
    else
      std::copy_n(input + tau * channels, channels, state + s * channels);
  }
}

}  // namespace dt
