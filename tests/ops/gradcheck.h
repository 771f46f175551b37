#pragma once
// Central-finite-difference gradient checker for the backward ops.
//
// The loss is a scalar function of the parameter arrays, evaluated in double (typically
// sum(out * random_weights) plus <d_state, final_state>). Every array is checked on its own: a set
// of random entries plus the entries with the largest analytic gradient, each against central
// differences at several step sizes (the best agreement counts, so neither truncation nor round-off
// at one fixed step decides). NaN on either side fails.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <iostream>
#include <limits>
#include <numeric>
#include <random>
#include <span>
#include <sstream>
#include <string>
#include <vector>

namespace dt::test {

// One parameter array: its values (perturbed in place, restored afterwards) and the analytic
// gradient of the loss with respect to them.
template <typename T>
struct GradParameter {
  std::string name;
  std::span<T> values;
  std::span<const T> analytic;
};

struct GradcheckOptions {
  int random_entries = 12;
  int largest_entries = 6;
  // Steps relative to max(1, |x|).
  std::vector<double> steps = {1e-2, 3e-3, 1e-3, 3e-4};
  // Errors are relative to max(|analytic|, |numeric|, floor * max|analytic of the array|), so
  // entries whose gradient is tiny next to the array's largest are judged on the array's scale.
  double floor = 1e-3;
  // And never below this absolute scale: for float analytic gradients whose entries are differences
  // of O(1) terms (rounding error ~1e-7 in absolute terms however small the result).
  double absolute_floor = 0;
  uint32_t seed = 1234;
};

struct GradcheckReport {
  std::string name;
  int64_t entries_checked = 0;
  double worst_relative_error = 0;
  int64_t worst_index = -1;
  double worst_analytic = 0, worst_numeric = 0;
};

// Relative error of one entry; infinite when either side is not finite.
inline double gradient_error(double analytic, double numeric, double scale) {
  if (!std::isfinite(analytic) || !std::isfinite(numeric)) return std::numeric_limits<double>::infinity();
  const double denominator = std::max({std::abs(analytic), std::abs(numeric), scale, 1e-300});
  return std::abs(analytic - numeric) / denominator;
}

template <typename T>
std::vector<GradcheckReport> gradcheck(const std::function<double()>& loss,
                                       const std::vector<GradParameter<T>>& parameters,
                                       const GradcheckOptions& options = {}) {
  std::vector<GradcheckReport> reports;
  std::mt19937 engine(options.seed);
  for (const GradParameter<T>& parameter : parameters) {
    GradcheckReport report;
    report.name = parameter.name;
    const int64_t size = int64_t(parameter.values.size());
    if (size == 0 || parameter.analytic.size() != parameter.values.size()) {
      report.worst_relative_error = std::numeric_limits<double>::infinity();
      reports.push_back(report);
      continue;
    }
    double max_analytic = 0;
    bool analytic_finite = true;
    for (T value : parameter.analytic) {
      analytic_finite = analytic_finite && std::isfinite(double(value));
      max_analytic = std::max(max_analytic, std::abs(double(value)));
    }
    // Entries: the largest |analytic| ones, then random ones, without repeats.
    std::vector<int64_t> order(size_t(size), 0);
    std::iota(order.begin(), order.end(), int64_t{0});
    const int64_t largest = std::min<int64_t>(options.largest_entries, size);
    std::partial_sort(order.begin(), order.begin() + largest, order.end(), [&](int64_t a, int64_t b) {
      return std::abs(double(parameter.analytic[size_t(a)])) > std::abs(double(parameter.analytic[size_t(b)]));
    });
    std::vector<int64_t> entries(order.begin(), order.begin() + largest);
    std::uniform_int_distribution<int64_t> pick(0, size - 1);
    for (int i = 0; i < options.random_entries && int64_t(entries.size()) < size; ++i) {
      int64_t index;
      do index = pick(engine);
      while (std::find(entries.begin(), entries.end(), index) != entries.end());
      entries.push_back(index);
    }
    for (int64_t index : entries) {
      T& value = parameter.values[size_t(index)];
      const T original = value;
      const double analytic = double(parameter.analytic[size_t(index)]);
      double best = std::numeric_limits<double>::infinity(), best_numeric = std::nan("");
      for (double relative_step : options.steps) {
        const double step = relative_step * std::max(1.0, std::abs(double(original)));
        const T plus = T(double(original) + step), minus = T(double(original) - step);
        value = plus;
        const double loss_plus = loss();
        value = minus;
        const double loss_minus = loss();
        value = original;
        // Divided by the step actually taken after rounding to T.
        const double numeric = (loss_plus - loss_minus) / (double(plus) - double(minus));
        const double error = gradient_error(analytic, numeric, std::max(options.floor * max_analytic, options.absolute_floor));
        if (error < best || std::isnan(best_numeric)) {
          best = error;
          best_numeric = numeric;
        }
      }
      ++report.entries_checked;
      if (report.worst_index < 0 || best > report.worst_relative_error) {
        report.worst_relative_error = best;
        report.worst_index = index;
        report.worst_analytic = analytic;
        report.worst_numeric = best_numeric;
      }
    }
    // A non-finite analytic entry anywhere fails the array, checked or not.
    if (!analytic_finite) report.worst_relative_error = std::numeric_limits<double>::infinity();
    reports.push_back(report);
  }
  return reports;
}

// Passes when every array was checked and each one's worst error is within tolerance; prints one
// line per array either way.
inline ::testing::AssertionResult gradients_match(const std::vector<GradcheckReport>& reports,
                                                  double tolerance) {
  std::ostringstream lines;
  bool pass = !reports.empty();
  for (const GradcheckReport& report : reports) {
    const bool ok = report.entries_checked > 0 && report.worst_relative_error <= tolerance;
    pass = pass && ok;
    lines << "  " << report.name << ": " << report.entries_checked << " entries, worst relative error "
          << report.worst_relative_error << " at " << report.worst_index << " (analytic "
          << report.worst_analytic << ", numeric " << report.worst_numeric << ")"
          << (ok ? "" : "  <-- FAIL") << "\n";
  }
  std::cout << "gradcheck (tolerance " << tolerance << "):\n" << lines.str();
  if (pass) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "gradient check failed:\n" << lines.str();
}

// sum_i values[i] * weights[i] in double: the usual probe loss.
template <typename T, typename W>
double weighted_sum(std::span<const T> values, std::span<const W> weights) {
  double sum = 0;
  for (size_t i = 0; i < values.size(); ++i) sum += double(values[i]) * double(weights[i]);
  return sum;
}

}  // namespace dt::test
