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


// ---- Backward (spec §5.5) ----
// Each takes the PRE-norm input x (the normalised output is not enough), overwrites dx (which may
// alias dy) and accumulates the weight gradient into dweight (+=, summed over rows; null: the weight
// is frozen and its gradient is not computed).

void rms_norm_zero_centred_backward(const float* x, const float* dy, int64_t rows, int64_t dim,
                                    const float* weight, float eps, float* dx, float* dweight);

// dz overwritten (may alias dy only if dx does not).
void gated_rms_norm_backward(const float* x, const float* z, const float* dy, int64_t rows, int64_t dim,
                             const float* weight, float eps, float* dx, float* dz, float* dweight);

// dx = rho (dy - (dy . y) y) with y = x rho, rho = (sum(x^2) + eps)^(-1/2), the exact square root.
void l2_normalize_backward(const float* x, const float* dy, int64_t rows, int64_t dim, float eps, float* dx);

}  // namespace dt
