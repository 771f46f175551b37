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


// ---- Backward and LoRA (spec §5.5) ----

// dx [rows, in] = dy [rows, out] W, the input gradient of linear (W itself is frozen): F32 through
// sgemm, BF16/F16 converted per block of rows like the forward. accumulate: dx += instead of =.
void linear_backward_input(const float* dy, int64_t rows, const Tensor& weight, float* dx, bool accumulate = false);

// A LoRA pair on a linear of weight [out, in]: A [rank, in], B [out, rank], delta W = scale B A.
struct LoraFactors {
  const float* a = nullptr;
  const float* b = nullptr;
  int64_t rank = 0;
  float scale = 1.0f;
};

// y = x W^T + scale (x A^T) B^T.
void lora_linear(const float* x, int64_t rows, const Tensor& weight, const LoraFactors& lora, float* y);

// Backward of lora_linear: dx [rows, in] overwritten (null: not wanted); dA [rank, in] and
// dB [out, rank] accumulated (+=). All products through sgemm.
void lora_linear_backward(const float* x, const float* dy, int64_t rows, const Tensor& weight,
                          const LoraFactors& lora, float* dx, float* dA, float* dB);

// Naive loops with double accumulation; the reference for lora_linear_backward.
void lora_linear_backward_reference(const float* x, const float* dy, int64_t rows, const Tensor& weight,
                                    const LoraFactors& lora, float* dx, float* dA, float* dB);

}  // namespace dt
