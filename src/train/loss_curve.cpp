#include "train/loss_curve.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>

namespace dt {

std::string loss_curve_svg(const std::vector<LossPoint>& train, const std::vector<LossPoint>& eval) {
  constexpr double kWidth = 640, kHeight = 400, kLeft = 60, kRight = 20, kTop = 30, kBottom = 45;
  int64_t first = 0, last = 1;
  double low = 0, high = 1;
  bool any = false;
  for (const auto* series : {&train, &eval}) {
    for (const LossPoint& point : *series) {
      if (!std::isfinite(point.loss)) continue;
      if (!any) {
        first = last = point.step;
        low = high = point.loss;
        any = true;
      }
      first = std::min(first, point.step);
      last = std::max(last, point.step);
      low = std::min(low, point.loss);
      high = std::max(high, point.loss);
    }
  }
  if (last == first) last = first + 1;
  if (high - low < 1e-9) high = low + 1;
  const double plot_width = kWidth - kLeft - kRight, plot_height = kHeight - kTop - kBottom;
  const auto x = [&](int64_t step) { return kLeft + plot_width * double(step - first) / double(last - first); };
  const auto y = [&](double loss) { return kTop + plot_height * (high - loss) / (high - low); };

  std::string svg = fmt::format(
      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{0}\" height=\"{1}\" viewBox=\"0 0 {0} {1}\" "
      "font-family=\"sans-serif\" font-size=\"12\">\n"
      "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
      "<text x=\"{2}\" y=\"18\" font-size=\"14\">Training loss</text>\n"
      "<line x1=\"{2}\" y1=\"{3}\" x2=\"{2}\" y2=\"{4}\" stroke=\"black\"/>\n"
      "<line x1=\"{2}\" y1=\"{4}\" x2=\"{5}\" y2=\"{4}\" stroke=\"black\"/>\n",
      kWidth, kHeight, kLeft, kTop, kTop + plot_height, kLeft + plot_width);
  for (int tick = 0; tick <= 4; ++tick) {
    const double loss = low + (high - low) * tick / 4.0;
    svg += fmt::format("<text x=\"{:.1f}\" y=\"{:.1f}\" text-anchor=\"end\">{:.3g}</text>\n", kLeft - 6, y(loss) + 4,
                       loss);
    const int64_t step = first + (last - first) * tick / 4;
    svg += fmt::format("<text x=\"{:.1f}\" y=\"{:.1f}\" text-anchor=\"middle\">{}</text>\n", x(step),
                       kTop + plot_height + 18, step);
  }
  svg += fmt::format("<text x=\"{:.1f}\" y=\"{:.1f}\" text-anchor=\"middle\">step</text>\n", kLeft + plot_width / 2,
                     kHeight - 6);
  std::string points;
  for (const LossPoint& point : train)
    if (std::isfinite(point.loss)) points += fmt::format("{:.1f},{:.1f} ", x(point.step), y(point.loss));
  svg += fmt::format("<polyline fill=\"none\" stroke=\"#1f77b4\" stroke-width=\"1.5\" points=\"{}\"/>\n", points);
  for (const LossPoint& point : eval)
    if (std::isfinite(point.loss))
      svg += fmt::format("<circle cx=\"{:.1f}\" cy=\"{:.1f}\" r=\"3.5\" fill=\"#d62728\"/>\n", x(point.step),
                         y(point.loss));
  svg += fmt::format(
      "<line x1=\"{0}\" y1=\"40\" x2=\"{1}\" y2=\"40\" stroke=\"#1f77b4\" stroke-width=\"2\"/>"
      "<text x=\"{2}\" y=\"44\">train</text>\n",
      kWidth - 140, kWidth - 120, kWidth - 115);
  if (!eval.empty())
    svg += fmt::format("<circle cx=\"{0}\" cy=\"58\" r=\"3.5\" fill=\"#d62728\"/><text x=\"{1}\" y=\"62\">eval</text>\n",
                       kWidth - 130, kWidth - 115);
  svg += "</svg>\n";
  return svg;
}

}  // namespace dt
