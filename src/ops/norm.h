#pragma once
// Normalisations of the Qwen3.5 forward pass (spec §3.2, §3.3, §3.6 step 6). Each works on `rows`
// independent vectors of length `dim` stored contiguously; output may alias input.
#include <cstdint>

namespace dt {

// Zero-centred RMSNorm: y = x * (mean(x^2) + eps)^(-1/2) * (1 + w). Layer, final, q and k norms.
void rms_norm_zero_centred(const float* x, int64_t rows, int64_t dim, const float* weight, float eps,
                           float* y);

// Gated RMSNorm of the DeltaNet output: y = w * (x * (mean(x^2) + eps)^(-1/2)) * silu(z), with the
// plain weight w (not 1 + w) shared by all rows.
void gated_rms_norm(const float* x, const float* z, int64_t rows, int64_t dim, const float* weight,
                    float eps, float* y);

// In place: x <- x * (sum(x^2) + eps)^(-1/2) (eps inside the square root, as FLA's l2norm).
void l2_normalize(float* x, int64_t rows, int64_t dim, float eps);

}  // namespace dt
