#pragma once
// The loss curve written at the end of training: a self-contained SVG line chart of the training
// loss per step, with the evaluation loss as points.
#include <cstdint>
#include <string>
#include <vector>

namespace dt {

struct LossPoint {
  int64_t step = 0;
  double loss = 0;
};

std::string loss_curve_svg(const std::vector<LossPoint>& train, const std::vector<LossPoint>& eval);

}  // namespace dt
