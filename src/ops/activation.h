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

}  // namespace dt
