#pragma once
// Elementwise activations and gates of the Qwen3.5 forward pass (spec §3), in f32.
#include <cmath>
#include <cstdint>

namespace dt {

inline float sigmoid(float x) { return 1.0f / (1.0f + std::exp(-x)); }
inline float silu(float x) { return x * sigmoid(x); }

// torch.nn.functional.softplus with its default threshold 20: above it the input is returned as is.
inline float softplus(float x) { return x > 20.0f ? x : std::log1p(std::exp(x)); }

// out[i] = silu(gate[i]) * up[i] (the SwiGLU MLP's inner product); out may alias gate or up.
void swiglu(const float* gate, const float* up, float* out, int64_t count);
// values[i] *= sigmoid(gate[i]) (the attention output gate).
void multiply_by_sigmoid(float* values, const float* gate, int64_t count);


// ---- Backward ----

// d silu(x) / dx = sigmoid(x) (1 + x (1 - sigmoid(x))).
inline float silu_derivative(float x) {
  const float s = sigmoid(x);
  return s * (1.0f + x * (1.0f - s));
}
// d softplus(x) / dx with the same threshold: 1 above 20, sigmoid(x) below.
inline float softplus_derivative(float x) { return x > 20.0f ? 1.0f : sigmoid(x); }

// dx[i] = dy[i] * silu'(x[i]); dx may alias dy.
void silu_backward(const float* x, const float* dy, float* dx, int64_t count);
// Of out = silu(gate) * up: dgate and dup (either may alias dout, not both).
void swiglu_backward(const float* gate, const float* up, const float* dout, float* dgate, float* dup,
                     int64_t count);
// Of out = values * sigmoid(gate), from the values BEFORE the gate was applied: dvalues (may alias
// dout) and dgate.
void multiply_by_sigmoid_backward(const float* values, const float* gate, const float* dout, float* dvalues,
                                  float* dgate, int64_t count);

}  // namespace dt
