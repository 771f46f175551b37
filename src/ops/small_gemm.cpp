#include "ops/small_gemm.h"

#include <immintrin.h>

namespace dt {
namespace {

// Rows [first_row, m) and columns [first_column, n) of the product, by axpy over rows of B.
void gemm_edge(int64_t first_row, int64_t m, int64_t first_column, int64_t n, int64_t k, float alpha,
               const float* A, int64_t lda, const float* B, int64_t ldb, float* C, int64_t ldc) {
  for (int64_t i = first_row; i < m; ++i)
    for (int64_t p = 0; p < k; ++p) {
      const float a = alpha * A[i * lda + p];
      const float* b = B + p * ldb;
      float* c = C + i * ldc;
#pragma omp simd
      for (int64_t j = first_column; j < n; ++j) c[j] += a * b[j];
    }
}

}  // namespace

void small_gemm(int64_t m, int64_t n, int64_t k, float alpha, const float* A, int64_t lda, const float* B,
                int64_t ldb, float* C, int64_t ldc) {
  int64_t tiled_rows = 0, tiled_columns = 0;
#if defined(__AVX2__) && defined(__FMA__)
  // 6 x 16 tiles: 12 accumulators, 2 loads of B and 6 broadcasts of A per 12 FMAs.
  constexpr int64_t kRows = 6;
  tiled_rows = m / kRows * kRows;
  tiled_columns = n / 16 * 16;
  const __m256 scale = _mm256_set1_ps(alpha);
  for (int64_t i = 0; i < tiled_rows; i += kRows) {
    const float* a = A + i * lda;
    for (int64_t j = 0; j < tiled_columns; j += 16) {
      __m256 left[kRows], right[kRows];
      for (int64_t r = 0; r < kRows; ++r) left[r] = right[r] = _mm256_setzero_ps();
      for (int64_t p = 0; p < k; ++p) {
        const __m256 b0 = _mm256_loadu_ps(B + p * ldb + j), b1 = _mm256_loadu_ps(B + p * ldb + j + 8);
        for (int64_t r = 0; r < kRows; ++r) {
          const __m256 broadcast = _mm256_broadcast_ss(a + r * lda + p);
          left[r] = _mm256_fmadd_ps(broadcast, b0, left[r]);
          right[r] = _mm256_fmadd_ps(broadcast, b1, right[r]);
        }
      }
      for (int64_t r = 0; r < kRows; ++r) {
        float* c = C + (i + r) * ldc + j;
        _mm256_storeu_ps(c, _mm256_fmadd_ps(scale, left[r], _mm256_loadu_ps(c)));
        _mm256_storeu_ps(c + 8, _mm256_fmadd_ps(scale, right[r], _mm256_loadu_ps(c + 8)));
      }
    }
  }
#endif
  // The right strip of the tiled rows, then the remaining rows in full.
  gemm_edge(0, tiled_rows, tiled_columns, n, k, alpha, A, lda, B, ldb, C, ldc);
  gemm_edge(tiled_rows, m, 0, n, k, alpha, A, lda, B, ldb, C, ldc);
}

void small_gemm_reference(int64_t m, int64_t n, int64_t k, float alpha, const float* A, int64_t lda,
                          const float* B, int64_t ldb, float* C, int64_t ldc) {
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < n; ++j) {
      double sum = 0;
      for (int64_t p = 0; p < k; ++p) sum += double(A[i * lda + p]) * double(B[p * ldb + j]);
      C[i * ldc + j] += float(double(alpha) * sum);
    }
}

}  // namespace dt
