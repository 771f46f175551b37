#include "ops/linear.h"

#include <cblas.h>
#include <immintrin.h>

#include <algorithm>
#include <vector>

#include "core/error.h"

namespace dt {
namespace {

void check_weight(const Tensor& weight) {
  if (weight.rank() != 2)
    fail("linear: weight has shape {}, expected [out, in]", shape_string(weight.shape()));
  if (!is_float_storage(weight.dtype()))
    fail("linear: weight is {}, expected F32, BF16 or F16", dtype_name(weight.dtype()));
}

const uint16_t* half_rows(const Tensor& weight) { return static_cast<const uint16_t*>(weight.data()); }

// One row of 16-bit floats to f32.
void half_row_to_f32(DType dtype, const uint16_t* source, float* destination, int64_t count) {
  int64_t i = 0;
#ifdef __AVX2__
  if (dtype == DType::BF16) {
    for (; i + 8 <= count; i += 8) {
      const __m128i bits = _mm_loadu_si128(reinterpret_cast<const __m128i*>(source + i));
      const __m256i widened = _mm256_slli_epi32(_mm256_cvtepu16_epi32(bits), 16);
      _mm256_storeu_ps(destination + i, _mm256_castsi256_ps(widened));
    }
  }
#endif
#ifdef __F16C__
  if (dtype == DType::F16) {
    for (; i + 8 <= count; i += 8) {
      const __m128i bits = _mm_loadu_si128(reinterpret_cast<const __m128i*>(source + i));
      _mm256_storeu_ps(destination + i, _mm256_cvtph_ps(bits));
    }
  }
#endif
  convert_to_f32(dtype, source + i, destination + i, size_t(count - i));
}

#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
template <DType kDType>
inline __m256 load8_as_f32(const uint16_t* source) {
  const __m128i bits = _mm_loadu_si128(reinterpret_cast<const __m128i*>(source));
  if constexpr (kDType == DType::F16) return _mm256_cvtph_ps(bits);
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(bits), 16));
}

inline float horizontal_sum(__m256 values) {
  const __m128 folded = _mm_add_ps(_mm256_castps256_ps128(values), _mm256_extractf128_ps(values, 1));
  const __m128 pairs = _mm_add_ps(folded, _mm_movehl_ps(folded, folded));
  return _mm_cvtss_f32(_mm_add_ss(pairs, _mm_shuffle_ps(pairs, pairs, 1)));
}
#endif

// Dot product of a 16-bit float row with an f32 vector (the dtype is a template parameter so the
// inner loop has no branch).
template <DType kDType>
float half_row_dot(const uint16_t* row, const float* x, int64_t count) {
  int64_t i = 0;
  float sum = 0;
#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
  __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
  __m256 acc2 = _mm256_setzero_ps(), acc3 = _mm256_setzero_ps();
  for (; i + 32 <= count; i += 32) {
    acc0 = _mm256_fmadd_ps(load8_as_f32<kDType>(row + i), _mm256_loadu_ps(x + i), acc0);
    acc1 = _mm256_fmadd_ps(load8_as_f32<kDType>(row + i + 8), _mm256_loadu_ps(x + i + 8), acc1);
    acc2 = _mm256_fmadd_ps(load8_as_f32<kDType>(row + i + 16), _mm256_loadu_ps(x + i + 16), acc2);
    acc3 = _mm256_fmadd_ps(load8_as_f32<kDType>(row + i + 24), _mm256_loadu_ps(x + i + 24), acc3);
  }
  for (; i + 8 <= count; i += 8)
    acc0 = _mm256_fmadd_ps(load8_as_f32<kDType>(row + i), _mm256_loadu_ps(x + i), acc0);
  sum = horizontal_sum(_mm256_add_ps(_mm256_add_ps(acc0, acc1), _mm256_add_ps(acc2, acc3)));
#endif
  for (; i < count; ++i) sum += (kDType == DType::BF16 ? bf16_to_f32(row[i]) : f16_to_f32(row[i])) * x[i];
  return sum;
}

// y = W x for a 16-bit W [out, in], rows split across threads.
template <DType kDType>
void half_gemv(const uint16_t* weight, int64_t out, int64_t in, const float* x, float* y) {
#pragma omp parallel for schedule(static) if (out * in > 32768)
  for (int64_t o = 0; o < out; ++o) y[o] = half_row_dot<kDType>(weight + o * in, x, in);
}

// Rows of weight converted per block, so the f32 copy stays cache-sized instead of model-sized.
constexpr int64_t kConvertBlockBytes = 4 << 20;

// Calls use(first_row, count, rows_f32) for consecutive blocks of a BF16/F16 weight's rows
// converted to f32.
template <typename UseBlock>
void for_each_f32_block(const Tensor& weight, UseBlock use) {
  const int64_t out = weight.dim(0), in = weight.dim(1);
  const int64_t block_rows = std::clamp<int64_t>(kConvertBlockBytes / (in * 4), 16, out);
  thread_local std::vector<float> block;
  block.resize(size_t(block_rows * in));
  for (int64_t first = 0; first < out; first += block_rows) {
    const int64_t count = std::min(block_rows, out - first);
    weight_rows_to_f32(weight, first, count, block.data());
    use(first, count, block.data());
  }
}

}  // namespace

void weight_rows_to_f32(const Tensor& weight, int64_t first_row, int64_t count, float* destination) {
  check_weight(weight);
  const int64_t in = weight.dim(1);
  if (weight.dtype() == DType::F32) {
    std::copy_n(weight.f32() + first_row * in, count * in, destination);
    return;
  }
#pragma omp parallel for schedule(static) if (count * in > 65536)
  for (int64_t r = 0; r < count; ++r)
    half_row_to_f32(weight.dtype(), half_rows(weight) + (first_row + r) * in, destination + r * in, in);
}

void linear(const float* x, int64_t rows, const Tensor& weight, float* y) {
  check_weight(weight);
  const int64_t out = weight.dim(0), in = weight.dim(1);
  if (rows == 0 || out == 0) return;
  if (weight.dtype() == DType::F32) {
    if (rows == 1)
      cblas_sgemv(CblasRowMajor, CblasNoTrans, int(out), int(in), 1.0f, weight.f32(), int(in), x, 1,
                  0.0f, y, 1);
    else
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, int(rows), int(out), int(in), 1.0f, x,
                  int(in), weight.f32(), int(in), 0.0f, y, int(out));
    return;
  }
  if (rows == 1) {
    if (weight.dtype() == DType::BF16)
      half_gemv<DType::BF16>(half_rows(weight), out, in, x, y);
    else
      half_gemv<DType::F16>(half_rows(weight), out, in, x, y);
    return;
  }
  for_each_f32_block(weight, [&](int64_t first, int64_t count, const float* block) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, int(rows), int(count), int(in), 1.0f, x, int(in), block,
                int(in), 0.0f, y + first, int(out));
  });
}

void linear_reference(const float* x, int64_t rows, const Tensor& weight, float* y) {
  check_weight(weight);
  const int64_t out = weight.dim(0), in = weight.dim(1);
  std::vector<float> row(static_cast<size_t>(in));
  for (int64_t o = 0; o < out; ++o) {
    convert_to_f32(weight.dtype(), static_cast<const char*>(weight.data()) + o * in * dtype_bits(weight.dtype()) / 8,
                   row.data(), size_t(in));
    for (int64_t t = 0; t < rows; ++t) {
      double sum = 0;
      for (int64_t i = 0; i < in; ++i) sum += double(x[t * in + i]) * double(row[i]);
      y[t * out + o] = float(sum);
    }
  }
}


// ---- Backward and LoRA (spec §5.5) ----

void linear_backward_input(const float* dy, int64_t rows, const Tensor& weight, float* dx, bool accumulate) {
  check_weight(weight);
  const int64_t out = weight.dim(0), in = weight.dim(1);
  if (rows == 0) return;
  if (out == 0) {
    if (!accumulate) std::fill_n(dx, rows * in, 0.0f);
    return;
  }
  if (weight.dtype() == DType::F32) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, int(rows), int(in), int(out), 1.0f, dy, int(out),
                weight.f32(), int(in), accumulate ? 1.0f : 0.0f, dx, int(in));
    return;
  }
  for_each_f32_block(weight, [&](int64_t first, int64_t count, const float* block) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, int(rows), int(in), int(count), 1.0f, dy + first,
                int(out), block, int(in), (accumulate || first > 0) ? 1.0f : 0.0f, dx, int(in));
  });
}

namespace {

void check_lora(const Tensor& weight, const LoraFactors& lora) {
  check_weight(weight);
  if (lora.rank <= 0 || !lora.a || !lora.b)
    fail("lora linear: rank {} with factors {} / {}, expected a positive rank and both factors", lora.rank,
         lora.a ? "A" : "no A", lora.b ? "B" : "no B");
}

}  // namespace

void lora_linear(const float* x, int64_t rows, const Tensor& weight, const LoraFactors& lora, float* y) {
  check_lora(weight, lora);
  const int64_t out = weight.dim(0), in = weight.dim(1), r = lora.rank;
  linear(x, rows, weight, y);
  if (rows == 0) return;
  std::vector<float> xa(static_cast<size_t>(rows * r));
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, int(rows), int(r), int(in), 1.0f, x, int(in), lora.a,
              int(in), 0.0f, xa.data(), int(r));
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, int(rows), int(out), int(r), lora.scale, xa.data(), int(r),
              lora.b, int(r), 1.0f, y, int(out));
}

void lora_linear_backward(const float* x, const float* dy, int64_t rows, const Tensor& weight,
                          const LoraFactors& lora, float* dx, float* dA, float* dB) {
  check_lora(weight, lora);
  const int64_t out = weight.dim(0), in = weight.dim(1), r = lora.rank;
  if (rows == 0) return;
  std::vector<float> xa(static_cast<size_t>(rows * r)), dyB(static_cast<size_t>(rows * r));
  // dB += s dy^T (x A^T)
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, int(rows), int(r), int(in), 1.0f, x, int(in), lora.a,
              int(in), 0.0f, xa.data(), int(r));
  cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, int(out), int(r), int(rows), lora.scale, dy, int(out),
              xa.data(), int(r), 1.0f, dB, int(r));
  // dA += s (dy B)^T x
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, int(rows), int(r), int(out), 1.0f, dy, int(out), lora.b,
              int(r), 0.0f, dyB.data(), int(r));
  cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, int(r), int(in), int(rows), lora.scale, dyB.data(), int(r),
              x, int(in), 1.0f, dA, int(in));
  // dx = dy W + s (dy B) A
  if (!dx) return;
  linear_backward_input(dy, rows, weight, dx);
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, int(rows), int(in), int(r), lora.scale, dyB.data(), int(r),
              lora.a, int(in), 1.0f, dx, int(in));
}

void lora_linear_backward_reference(const float* x, const float* dy, int64_t rows, const Tensor& weight,
                                    const LoraFactors& lora, float* dx, float* dA, float* dB) {
  check_lora(weight, lora);
  const int64_t out = weight.dim(0), in = weight.dim(1), r = lora.rank;
  const std::vector<float> w = weight.to_f32_vector();
  std::vector<double> xa(static_cast<size_t>(rows * r), 0.0), dyB(static_cast<size_t>(rows * r), 0.0);
  for (int64_t t = 0; t < rows; ++t)
    for (int64_t k = 0; k < r; ++k) {
      for (int64_t i = 0; i < in; ++i) xa[size_t(t * r + k)] += double(x[t * in + i]) * double(lora.a[k * in + i]);
      for (int64_t o = 0; o < out; ++o) dyB[size_t(t * r + k)] += double(dy[t * out + o]) * double(lora.b[o * r + k]);
    }
  for (int64_t o = 0; o < out; ++o)
    for (int64_t k = 0; k < r; ++k) {
      double sum = 0;
      for (int64_t t = 0; t < rows; ++t) sum += double(dy[t * out + o]) * xa[size_t(t * r + k)];
      dB[o * r + k] += float(double(lora.scale) * sum);
    }
  for (int64_t k = 0; k < r; ++k)
    for (int64_t i = 0; i < in; ++i) {
      double sum = 0;
      for (int64_t t = 0; t < rows; ++t) sum += dyB[size_t(t * r + k)] * double(x[t * in + i]);
      dA[k * in + i] += float(double(lora.scale) * sum);
    }
  if (!dx) return;
  for (int64_t t = 0; t < rows; ++t)
    for (int64_t i = 0; i < in; ++i) {
      double sum = 0;
      for (int64_t o = 0; o < out; ++o) sum += double(dy[t * out + o]) * double(w[size_t(o * in + i)]);
      for (int64_t k = 0; k < r; ++k) sum += double(lora.scale) * dyB[size_t(t * r + k)] * double(lora.a[k * in + i]);
      dx[t * in + i] = float(sum);
    }
}

}  // namespace dt
