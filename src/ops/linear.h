#pragma once
// y[T, out] = x[T, in] W^T for a weight W [out, in] stored as F32, BF16 or F16 (nn.Linear layout).
#include <cstdint>

#include "core/tensor.h"

namespace dt {

// Fast path: F32 goes to OpenBLAS (sgemv for one row, sgemm otherwise); BF16/F16 use an AVX2
// GEMV that converts on the fly for one row, and blockwise conversion plus sgemm for more.
// Must not be called from inside an OpenMP parallel region (it parallelises itself).
void linear(const float* x, int64_t rows, const Tensor& weight, float* y);

// Naive loop with double accumulation; the reference the fast path is tested against.
void linear_reference(const float* x, int64_t rows, const Tensor& weight, float* y);

// Converts rows [first_row, first_row + count) of a 2-D F32/BF16/F16 weight to f32.
void weight_rows_to_f32(const Tensor& weight, int64_t first_row, int64_t count, float* destination);

}  // namespace dt
