#include "train/progress.h"

#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>

namespace dt {

ProgressPrinter::ProgressPrinter(std::FILE* stream, bool terminal) : stream_(stream), terminal_(terminal) {}

bool ProgressPrinter::is_terminal(std::FILE* stream) { return isatty(fileno(stream)) == 1; }

std::string format_duration(double seconds) {
  const auto total = int64_t(std::max(0.0, std::round(seconds)));
  const int64_t hours = total / 3600, minutes = total / 60 % 60, rest = total % 60;
  return hours > 0 ? fmt::format("{}:{:02}:{:02}", hours, minutes, rest) : fmt::format("{}:{:02}", minutes, rest);
}

void ProgressPrinter::step(const StepMetrics& metrics) {
  const std::string eval = metrics.eval_loss ? fmt::format("  eval_loss {:.4f} (ppl {:.2f})", *metrics.eval_loss,
                                                           std::exp(*metrics.eval_loss))
                                             : "";
  if (terminal_) {
    constexpr int kWidth = 24;
    const double fraction = double(metrics.step) / double(std::max<int64_t>(1, metrics.total_steps));
    const int filled = int(fraction * kWidth);
    const double eta =
        metrics.step > 0 ? metrics.elapsed_seconds / double(metrics.step) * double(metrics.total_steps - metrics.step) : 0;
    if (metrics.eval_loss) {
      message(fmt::format("step {}/{}{}", metrics.step, metrics.total_steps, eval));
    }
    fmt::print(stream_, "\r\033[K[{}{}] {}/{}  loss {:.4f}  lr {:.2e}  {:.0f} tok/s  ETA {}", std::string(filled, '#'),
               std::string(kWidth - filled, '.'), metrics.step, metrics.total_steps, metrics.loss, metrics.lr,
               metrics.tokens_per_second, format_duration(eta));
    bar_drawn_ = true;
  } else {
    const int64_t every = std::max<int64_t>(1, metrics.total_steps / 20);
    if (metrics.step == 1 || metrics.step % every == 0 || metrics.step == metrics.total_steps || metrics.eval_loss)
      fmt::print(stream_, "step {}/{}  loss {:.4f}  lr {:.2e}  grad_norm {:.3f}  {:.0f} tok/s{}\n", metrics.step,
                 metrics.total_steps, metrics.loss, metrics.lr, metrics.grad_norm, metrics.tokens_per_second, eval);
  }
  std::fflush(stream_);
}

void ProgressPrinter::message(const std::string& text) {
  if (bar_drawn_) fmt::print(stream_, "\r\033[K");
  fmt::print(stream_, "{}\n", text);
  bar_drawn_ = false;
  std::fflush(stream_);
}

void ProgressPrinter::finish() {
  if (bar_drawn_) fmt::print(stream_, "\n");
  bar_drawn_ = false;
  std::fflush(stream_);
}

}  // namespace dt
