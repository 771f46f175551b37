#include "ops/conv.h"

#include <algorithm>
#include <vector>

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


// ---- Backward (spec §5.5) ----

void causal_conv_silu_backward(const float* input, int64_t tokens, int64_t channels, const float* weight,
                               int64_t kernel, const float* initial_state, const float* d_out,
                               float* d_input, float* d_weight, float* d_initial_state) {
  const int64_t history = kernel - 1;
  // dc = d_out * silu'(c), c recomputed from the input and the initial state.
  std::vector<float> dc(static_cast<size_t>(tokens * channels));
  auto value_at = [&](int64_t tau, int64_t c) {
    if (tau >= 0) return input[tau * channels + c];
    return initial_state ? initial_state[(history + tau) * channels + c] : 0.0f;
  };
#pragma omp parallel for schedule(static) if (tokens * channels * kernel > 65536)
  for (int64_t t = 0; t < tokens; ++t)
    for (int64_t c = 0; c < channels; ++c) {
      float pre = 0;
      for (int64_t j = 0; j < kernel; ++j) pre += weight[c * kernel + j] * value_at(t - history + j, c);
      dc[size_t(t * channels + c)] = d_out[t * channels + c] * silu_derivative(pre);
    }
  // d_input[tau] = sum_j dc[tau + history - j] W_j (outputs that read tau).
#pragma omp parallel for schedule(static) if (tokens * channels * kernel > 65536)
  for (int64_t tau = -history; tau < tokens; ++tau) {
    if (tau < 0 && !d_initial_state) continue;
    float* destination = tau < 0 ? d_initial_state + (history + tau) * channels : d_input + tau * channels;
    for (int64_t c = 0; c < channels; ++c) {
      float sum = 0;
      for (int64_t j = 0; j < kernel; ++j) {
        const int64_t t = tau + history - j;
        if (t >= 0 && t < tokens) sum += dc[size_t(t * channels + c)] * weight[c * kernel + j];
      }
      destination[c] = sum;
    }
  }
  // d_weight[c, j] = sum_t dc[t] p[t - history + j]
  if (!d_weight) return;
#pragma omp parallel for schedule(static) if (tokens * channels * kernel > 65536)
  for (int64_t c = 0; c < channels; ++c)
    for (int64_t j = 0; j < kernel; ++j) {
      double sum = 0;
      for (int64_t t = 0; t < tokens; ++t) sum += double(dc[size_t(t * channels + c)]) * double(value_at(t - history + j, c));
      d_weight[c * kernel + j] += float(sum);
    }
}

}  // namespace dt
