#pragma once
// What a training run shows while it runs: on a terminal one progress line redrawn in place
// (step/total, loss, learning rate, tokens/s, ETA); otherwise plain lines, about twenty per run
// plus every evaluation.
#include <cstdio>
#include <string>

#include "train/trainer.h"

namespace dt {

class ProgressPrinter {
 public:
  // `terminal`: redraw one line (a TTY) instead of printing plain lines.
  ProgressPrinter(std::FILE* stream, bool terminal);
  // For `stream`: whether it is a terminal.
  static bool is_terminal(std::FILE* stream);

  void step(const StepMetrics& metrics);
  // A message on its own line (the bar is redrawn below it at the next step).
  void message(const std::string& text);
  // Ends the bar's line.
  void finish();

 private:
  std::FILE* stream_;
  bool terminal_;
  bool bar_drawn_ = false;
};

// "1:02:03", "4:05".
std::string format_duration(double seconds);

}  // namespace dt
