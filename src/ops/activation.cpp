#include "ops/activation.h"

namespace dt {

void swiglu(const float* gate, const float* up, float* out, int64_t count) {
#pragma omp parallel for schedule(static) if (count > 65536)
  for (int64_t i = 0; i < count; ++i) out[i] = silu(gate[i]) * up[i];
}

void multiply_by_sigmoid(float* values, const float* gate, int64_t count) {
#pragma omp parallel for schedule(static) if (count > 65536)
  for (int64_t i = 0; i < count; ++i) values[i] *= sigmoid(gate[i]);
}


// ---- Backward ----

void silu_backward(const float* x, const float* dy, float* dx, int64_t count) {
#pragma omp parallel for schedule(static) if (count > 65536)
  for (int64_t i = 0; i < count; ++i) dx[i] = dy[i] * silu_derivative(x[i]);
}

void swiglu_backward(const float* gate, const float* up, const float* dout, float* dgate, float* dup,
                     int64_t count) {
#pragma omp parallel for schedule(static) if (count > 65536)
  for (int64_t i = 0; i < count; ++i) {
    const float g = gate[i], u = up[i], d = dout[i];
    dup[i] = d * silu(g);
    dgate[i] = d * u * silu_derivative(g);
  }
}

void multiply_by_sigmoid_backward(const float* values, const float* gate, const float* dout, float* dvalues,
                                  float* dgate, int64_t count) {
#pragma omp parallel for schedule(static) if (count > 65536)
  for (int64_t i = 0; i < count; ++i) {
    const float s = sigmoid(gate[i]), d = dout[i];
    dgate[i] = d * values[i] * s * (1.0f - s);
    dvalues[i] = d * s;
  }
}

}  // namespace dt
