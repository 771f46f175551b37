// Backward of the elementwise activations and gates against finite differences, and the gradient
// checker itself: it must fail on a wrong gradient and on NaN, and check each array on its own.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "ops/activation.h"
#include "ops/delta_rule.h"
#include "ops/gradcheck.h"
#include "ops/numeric_test_util.h"

namespace dt {
namespace {

using test::GradParameter;
using test::random_vector;

constexpr double kFloatTolerance = 1e-2;

TEST(Gradcheck, PassesACorrectGradientAndFailsAWrongOne) {
  std::vector<double> x = {0.3, -1.2, 2.0}, y = {0.5, 0.25};
  auto loss = [&] { return x[0] * x[1] + std::sin(x[2]) + y[0] * y[0] * x[0] + 3 * y[1]; };
  std::vector<double> dx = {x[1] + y[0] * y[0], x[0], std::cos(x[2])}, dy = {2 * y[0] * x[0], 3};
  EXPECT_TRUE(test::gradients_match(
      test::gradcheck<double>(loss, {GradParameter<double>{"x", x, dx}, GradParameter<double>{"y", y, dy}}), 1e-6));
  // One wrong entry in the second array fails it even though the first array is right.
  std::vector<double> wrong_dy = {2 * y[0] * x[0], 3.01};
  const auto reports =
      test::gradcheck<double>(loss, {GradParameter<double>{"x", x, dx}, GradParameter<double>{"y", y, wrong_dy}});
  ASSERT_EQ(reports.size(), 2u);
  EXPECT_LT(reports[0].worst_relative_error, 1e-6);
  EXPECT_GT(reports[1].worst_relative_error, 1e-3);
  EXPECT_FALSE(test::gradients_match(reports, 1e-6));
}

TEST(Gradcheck, FailsOnNaN) {
  std::vector<double> x = {1.0, 2.0};
  std::vector<double> dx = {1.0, std::numeric_limits<double>::quiet_NaN()};
  auto loss = [&] { return x[0] + x[1]; };
  EXPECT_FALSE(test::gradients_match(test::gradcheck<double>(loss, {GradParameter<double>{"x", x, dx}}), 1e-3));
  std::vector<double> good = {1.0, 1.0};
  auto nan_loss = [&] { return x[0] + (x[1] > 2.0 ? std::nan("") : x[1]); };
  EXPECT_FALSE(test::gradients_match(test::gradcheck<double>(nan_loss, {GradParameter<double>{"x", x, good}}), 1e-3));
}

TEST(ActivationBackward, SiluSwigluAndSigmoidGateMatchFiniteDifferences) {
  const int64_t count = 40;
  auto x = random_vector(count, 1, 3.0f), up = random_vector(count, 2), gate = random_vector(count, 3, 3.0f);
  const auto probe = random_vector(count, 4);
  std::vector<float> out(static_cast<size_t>(count)), dx(static_cast<size_t>(count)), dgate(static_cast<size_t>(count)), dup(static_cast<size_t>(count));
  silu_backward(x.data(), probe.data(), dx.data(), count);
  auto silu_loss = [&] {
    for (int64_t i = 0; i < count; ++i) out[size_t(i)] = silu(x[size_t(i)]);
    return test::weighted_sum<float, float>(out, probe);
  };
  EXPECT_TRUE(test::gradients_match(test::gradcheck<float>(silu_loss, {GradParameter<float>{"x", x, dx}}), kFloatTolerance));

  swiglu_backward(x.data(), up.data(), probe.data(), dgate.data(), dup.data(), count);
  auto swiglu_loss = [&] {
    swiglu(x.data(), up.data(), out.data(), count);
    return test::weighted_sum<float, float>(out, probe);
  };
  EXPECT_TRUE(test::gradients_match(
      test::gradcheck<float>(swiglu_loss, {GradParameter<float>{"gate", x, dgate}, GradParameter<float>{"up", up, dup}}),
      kFloatTolerance));

  std::vector<float> dvalues(static_cast<size_t>(count));
  multiply_by_sigmoid_backward(up.data(), gate.data(), probe.data(), dvalues.data(), dgate.data(), count);
  auto gate_loss = [&] {
    out = up;
    multiply_by_sigmoid(out.data(), gate.data(), count);
    return test::weighted_sum<float, float>(out, probe);
  };
  EXPECT_TRUE(test::gradients_match(test::gradcheck<float>(gate_loss, {GradParameter<float>{"values", up, dvalues},
                                                                       GradParameter<float>{"gate", gate, dgate}}),
                                    kFloatTolerance));
}

// Gates per value head with nv = 3: db, da per (token, head), dA_log and ddt_bias summed over tokens.
// a + dt_bias spans the softplus threshold 20 on both sides.
TEST(GatesBackward, MatchFiniteDifferencesAcrossTheSoftplusThreshold) {
  const int64_t tokens = 7, heads = 3;
  auto b = random_vector(tokens * heads, 11, 2.0f), a = random_vector(tokens * heads, 12, 2.0f);
  auto A_log = test::uniform_vector(heads, 13, -1.0f, 1.0f);
  std::vector<float> dt_bias = {0.5f, -1.0f, 21.0f};  // the last head sits above the threshold
  a[size_t(2)] = -3.0f;                               // one lane just below it: 18
  const auto dbeta = random_vector(tokens * heads, 14), dg = random_vector(tokens * heads, 15);
  std::vector<float> db(b.size()), da(a.size()), dA_log(size_t(heads), 0.0f), ddt_bias(size_t(heads), 0.0f);
  gated_delta_gates_backward(b.data(), a.data(), tokens, heads, A_log.data(), dt_bias.data(), dbeta.data(), dg.data(),
                             db.data(), da.data(), dA_log.data(), ddt_bias.data());
  std::vector<float> beta(b.size()), g(b.size());
  auto loss = [&] {
    gated_delta_gates(b.data(), a.data(), tokens, heads, A_log.data(), dt_bias.data(), beta.data(), g.data());
    return test::weighted_sum<float, float>(beta, dbeta) + test::weighted_sum<float, float>(g, dg);
  };
  test::GradcheckOptions options;
  options.steps = {1e-2, 3e-3, 1e-3};  // relative to max(1, |x|): stays on one side of 20
  EXPECT_TRUE(test::gradients_match(
      test::gradcheck<float>(loss, {GradParameter<float>{"b", b, db}, GradParameter<float>{"a", a, da},
                                    GradParameter<float>{"A_log", A_log, dA_log},
                                    GradParameter<float>{"dt_bias", dt_bias, ddt_bias}},
                             options),
      kFloatTolerance));
}

TEST(GatesBackward, FiniteWhereSoftplusUnderflowsAndExpOverflows) {
  // exp(A_log) = inf with softplus(a + dt_bias) = 0: g is assigned 0 and its gradient must be 0,
  // not inf * 0 = NaN.
  const float b = 0.0f, a = -200.0f, A_log = 100.0f, dt_bias = 0.0f, dbeta = 1.0f, dg = 1.0f;
  float db = 0, da = 0, dA_log = 0, ddt_bias = 0;
  gated_delta_gates_backward(&b, &a, 1, 1, &A_log, &dt_bias, &dbeta, &dg, &db, &da, &dA_log, &ddt_bias);
  EXPECT_EQ(da, 0.0f);
  EXPECT_EQ(dA_log, 0.0f);
  EXPECT_EQ(ddt_bias, 0.0f);
  EXPECT_FLOAT_EQ(db, 0.25f);
}

}  // namespace
}  // namespace dt
