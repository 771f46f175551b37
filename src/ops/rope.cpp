#include "ops/rope.h"

#include <cmath>

#include "core/error.h"

namespace dt {
namespace {

// Rotates by +angle (direction 1, the forward) or -angle (direction -1, its transpose and inverse).
void rotate(float* x, int64_t tokens, int64_t heads, int64_t head_dim, int64_t rotary_dim, double theta,
            int64_t first_position, float direction) {
  if (rotary_dim <= 0 || rotary_dim % 2 != 0 || rotary_dim > head_dim)
    fail("rope: rotary dimension {} must be even, positive and at most head_dim {}", rotary_dim,
         head_dim);
  const int64_t half = rotary_dim / 2;
#pragma omp parallel for schedule(static) if (tokens * heads * rotary_dim > 65536)
  for (int64_t t = 0; t < tokens; ++t) {
    const float position = float(first_position + t);
    for (int64_t j = 0; j < half; ++j) {
      // f32 inverse frequency and f32 angle, as the reference computes them; recomputed rather
      // than tabulated so that decoding allocates nothing.
      const float inv_freq = float(1.0 / std::pow(theta, double(2 * j) / double(rotary_dim)));
      const float angle = position * inv_freq;
      const float cos_angle = std::cos(angle), sin_angle = direction * std::sin(angle);
      for (int64_t h = 0; h < heads; ++h) {
        float* lane = x + (t * heads + h) * head_dim;
        const float first = lane[j], second = lane[j + half];
        lane[j] = first * cos_angle - second * sin_angle;
        lane[j + half] = second * cos_angle + first * sin_angle;
      }
    }
  }
}

}  // namespace

void apply_rope(float* x, int64_t tokens, int64_t heads, int64_t head_dim, int64_t rotary_dim,
                double theta, int64_t first_position) {
  rotate(x, tokens, heads, head_dim, rotary_dim, theta, first_position, 1.0f);
}

// ---- Backward ----

void apply_rope_backward(float* dx, int64_t tokens, int64_t heads, int64_t head_dim, int64_t rotary_dim,
                         double theta, int64_t first_position) {
  rotate(dx, tokens, heads, head_dim, rotary_dim, theta, first_position, -1.0f);
}

}  // namespace dt
