#pragma once
// Partial rotary position embedding with the rotate-half (NeoX) pairing (spec §3.5).
#include <cstdint>

namespace dt {

// In place on x [tokens, heads, head_dim]; token t has position first_position + t. The first
// rotary_dim lanes of each head rotate, lane j pairing with j + rotary_dim/2 at inverse frequency
// theta^(-2j/rotary_dim); the remaining lanes pass through. Fails on an odd, zero or too-wide
// rotary_dim.
void apply_rope(float* x, int64_t tokens, int64_t heads, int64_t head_dim, int64_t rotary_dim,
                double theta, int64_t first_position);


// ---- Backward ----

// In place on the gradient w.r.t. the rotated x: turns it into the gradient w.r.t. x before
// apply_rope (the inverse rotation, since a rotation's transpose is its inverse).
void apply_rope_backward(float* dx, int64_t tokens, int64_t heads, int64_t head_dim, int64_t rotary_dim,
                         double theta, int64_t first_position);

}  // namespace dt
