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
  tiled_rows = m / 4 * 4;
  tiled_columns = n / 16 * 16;
  const __m256 scale = _mm256_set1_ps(alpha);
  for (int64_t i = 0; i < tiled_rows; i += 4) {
    const float* a0 = A + i * lda;
    const float* a1 = a0 + lda;
    const float* a2 = a1 + lda;
    const float* a3 = a2 + lda;
    for (int64_t j = 0; j < tiled_columns; j += 16) {
      __m256 c00 = _mm256_setzero_ps(), c01 = _mm256_setzero_ps(), c10 = _mm256_setzero_ps(),
             c11 = _mm256_setzero_ps(), c20 = _mm256_setzero_ps(), c21 = _mm256_setzero_ps(),
             c30 = _mm256_setzero_ps(), c31 = _mm256_setzero_ps();
      for (int64_t p = 0; p < k; ++p) {
        const __m256 b0 = _mm256_loadu_ps(B + p * ldb + j), b1 = _mm256_loadu_ps(B + p * ldb + j + 8);
        __m256 a = _mm256_broadcast_ss(a0 + p);
        c00 = _mm256_fmadd_ps(a, b0, c00);
        c01 = _mm256_fmadd_ps(a, b1, c01);
        a = _mm256_broadcast_ss(a1 + p);
        c10 = _mm256_fmadd_ps(a, b0, c10);
        c11 = _mm256_fmadd_ps(a, b1, c11);
        a = _mm256_broadcast_ss(a2 + p);
        c20 = _mm256_fmadd_ps(a, b0, c20);
        c21 = _mm256_fmadd_ps(a, b1, c21);
        a = _mm256_broadcast_ss(a3 + p);
        c30 = _mm256_fmadd_ps(a, b0, c30);
        c31 = _mm256_fmadd_ps(a, b1, c31);
      }
      const __m256 tile[4][2] = {{c00, c01}, {c10, c11}, {c20, c21}, {c30, c31}};
      for (int r = 0; r < 4; ++r) {
        float* c = C + (i + r) * ldc + j;
        _mm256_storeu_ps(c, _mm256_fmadd_ps(scale, tile[r][0], _mm256_loadu_ps(c)));
        _mm256_storeu_ps(c + 8, _mm256_fmadd_ps(scale, tile[r][1], _mm256_loadu_ps(c + 8)));
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
