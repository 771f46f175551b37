#pragma once
// C[m, n] += alpha * A[m, k] B[k, n], row-major with leading dimensions, for the small per-head
// products of the chunked delta rule (64 x 128 x 128). Single-threaded, so it is safe inside an
// OpenMP parallel region, where OpenBLAS (with its own threads) must not be called.
#include <cstdint>

namespace dt {

// AVX2/FMA register-blocked kernel (6 x 16 tiles) with a plain fallback.
void small_gemm(int64_t m, int64_t n, int64_t k, float alpha, const float* A, int64_t lda, const float* B,
                int64_t ldb, float* C, int64_t ldc);

// Naive loops with double accumulation; the reference for small_gemm.
void small_gemm_reference(int64_t m, int64_t n, int64_t k, float alpha, const float* A, int64_t lda,
                          const float* B, int64_t ldb, float* C, int64_t ldc);

}  // namespace dt
