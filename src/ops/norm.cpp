#include "ops/norm.h"

#include <cmath>
#include <vector>

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


// ---- Backward (spec §5.5) ----

namespace {

double inverse_rms(const float* x, int64_t dim, float eps) {
  return 1.0 / std::sqrt(sum_of_squares(x, dim) / double(dim) + double(eps));
}

// dx = rho gy - (rho^3 / n) (gy . x) x for y = x rho (...), given gy = dy * dy/d(x rho) per lane.
void rms_input_gradient(const float* x, const float* gy, int64_t dim, double rho, float* dx) {
  double projection = 0;
  for (int64_t i = 0; i < dim; ++i) projection += double(gy[i]) * double(x[i]);
  const double correction = rho * rho * rho / double(dim) * projection;
  for (int64_t i = 0; i < dim; ++i) dx[i] = float(rho * double(gy[i]) - correction * double(x[i]));
}

// dweight += sum over rows of dy * (x rho) [* silu(z) when the norm is gated]: the gradient of the
// norm's per-lane weight, in double.
void accumulate_weight_gradient(const float* x, const float* z, const float* dy, int64_t rows, int64_t dim, float eps,
                                float* dweight) {
  std::vector<double> weight_gradient(static_cast<size_t>(dim), 0.0);
  for (int64_t row = 0; row < rows; ++row) {
    const float* in = x + row * dim;
    const double rho = inverse_rms(in, dim, eps);
    for (int64_t i = 0; i < dim; ++i) {
      const double gate = z ? double(silu(z[row * dim + i])) : 1.0;
      weight_gradient[size_t(i)] += double(dy[row * dim + i]) * double(in[i]) * rho * gate;
    }
  }
  for (int64_t i = 0; i < dim; ++i) dweight[i] += float(weight_gradient[size_t(i)]);
}

}  // namespace

void rms_norm_zero_centred_backward(const float* x, const float* dy, int64_t rows, int64_t dim,
                                    const float* weight, float eps, float* dx, float* dweight) {
  if (dweight) accumulate_weight_gradient(x, nullptr, dy, rows, dim, eps, dweight);
#pragma omp parallel for schedule(static) if (rows * dim > 65536)
  for (int64_t row = 0; row < rows; ++row) {
    thread_local std::vector<float> gy;
    gy.resize(size_t(dim));
    const float* in = x + row * dim;
    for (int64_t i = 0; i < dim; ++i) gy[size_t(i)] = dy[row * dim + i] * (1.0f + weight[i]);
    rms_input_gradient(in, gy.data(), dim, inverse_rms(in, dim, eps), dx + row * dim);
  }
}

void gated_rms_norm_backward(const float* x, const float* z, const float* dy, int64_t rows, int64_t dim,
                             const float* weight, float eps, float* dx, float* dz, float* dweight) {
  if (dweight) accumulate_weight_gradient(x, z, dy, rows, dim, eps, dweight);
#pragma omp parallel for schedule(static) if (rows * dim > 65536)
  for (int64_t row = 0; row < rows; ++row) {
    thread_local std::vector<float> gy;
    gy.resize(size_t(dim));
    const float* in = x + row * dim;
    const float* gate = z + row * dim;
    const double rho = inverse_rms(in, dim, eps);
    for (int64_t i = 0; i < dim; ++i) gy[size_t(i)] = dy[row * dim + i] * weight[i] * silu(gate[i]);
    for (int64_t i = 0; i < dim; ++i)
      dz[row * dim + i] = dy[row * dim + i] * weight[i] * float(double(in[i]) * rho) * silu_derivative(gate[i]);
    rms_input_gradient(in, gy.data(), dim, rho, dx + row * dim);
  }
}

void l2_normalize_backward(const float* x, const float* dy, int64_t rows, int64_t dim, float eps, float* dx) {
#pragma omp parallel for schedule(static) if (rows * dim > 65536)
  for (int64_t row = 0; row < rows; ++row) {
    const float* in = x + row * dim;
    const float* gradient = dy + row * dim;
    const double rho = 1.0 / std::sqrt(sum_of_squares(in, dim) + double(eps));
    double projection = 0;  // dy . y
    for (int64_t i = 0; i < dim; ++i) projection += double(gradient[i]) * double(in[i]) * rho;
    for (int64_t i = 0; i < dim; ++i)
      dx[row * dim + i] = float(rho * (double(gradient[i]) - projection * double(in[i]) * rho));
  }
}

}  // namespace dt
