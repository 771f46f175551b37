#pragma once
// Causal depthwise 1-D convolution plus SiLU of the DeltaNet input (spec §3.6 step 2, §4).
#include <cstdint>

namespace dt {

// input [tokens, channels]; weight [channels, kernel] (tap kernel-1 multiplies the current token);
// state [kernel-1, channels] holds the previous kernel-1 inputs, oldest first (zeros at sequence
// start) and is advanced past the new tokens. out [tokens, channels] = silu(conv); no bias.
void causal_conv_silu(const float* input, int64_t tokens, int64_t channels, const float* weight,
                      int64_t kernel, float* state, float* out);


// ---- Backward (spec §5.5) ----

// Backward of causal_conv_silu from the same input and the state it started from (initial_state
// null means zeros, as at sequence start). d_input [tokens, channels] overwritten; d_weight
// [channels, kernel] accumulated (+=; null: frozen, not computed); d_initial_state [kernel-1, channels] overwritten if not null.
void causal_conv_silu_backward(const float* input, int64_t tokens, int64_t channels, const float* weight,
                               int64_t kernel, const float* initial_state, const float* d_out,
                               float* d_input, float* d_weight, float* d_initial_state);

}  // namespace dt
