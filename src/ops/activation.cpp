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

}  // namespace dt
