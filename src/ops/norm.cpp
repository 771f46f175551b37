#include "ops/norm.h"

#include <cmath>

#include "ops/activation.h"

namespace dt {
namespace {

double sum_of_squares(const float* x, int64_t dim) {
  double sum = 0;
#pragma omp simd reduction(+ : sum)
  for (int64_t i = 0; i < dim; ++i) sum += double(x[i]) * double(x[i]);
  return sum;
}

}  // namespace

void rms_norm_zero_centred(const float* x, int64_t rows, int64_t dim, const float* weight, float eps,
                           float* y) {
#pragma omp parallel for schedule(static) if (rows * dim > 65536)
  for (int64_t row = 0; row < rows; ++row) {
    const float* in = x + row * dim;
    float* out = y + row * dim;
    const float rstd = float(1.0 / std::sqrt(sum_of_squares(in, dim) / double(dim) + double(eps)));
    for (int64_t i = 0; i < dim; ++i) out[i] = in[i] * rstd * (1.0f + weight[i]);
  }
}

void gated_rms_norm(const float* x, const float* z, int64_t rows, int64_t dim, const float* weight,
                    float eps, float* y) {
#pragma omp parallel for schedule(static) if (rows * dim > 65536)
  for (int64_t row = 0; row < rows; ++row) {
    const float* in = x + row * dim;
    const float* gate = z + row * dim;
    float* out = y + row * dim;
    const float rstd = float(1.0 / std::sqrt(sum_of_squares(in, dim) / double(dim) + double(eps)));
    for (int64_t i = 0; i < dim; ++i) out[i] = weight[i] * (in[i] * rstd) * silu(gate[i]);
  }
}

void l2_normalize(float* x, int64_t rows, int64_t dim, float eps) {
  for (int64_t row = 0; row < rows; ++row) {
    float* values = x + row * dim;
    const float rstd = float(1.0 / std::sqrt(sum_of_squares(values, dim) + double(eps)));
    for (int64_t i = 0; i < dim; ++i) values[i] *= rstd;
  }
}

}  // namespace dt
