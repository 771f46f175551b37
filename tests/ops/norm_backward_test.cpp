// Backward of the normalisations against central finite differences of the float forward (loss
// accumulated in double), with weights away from their init so that (1 + w) and w matter.
#include <gtest/gtest.h>

#include "ops/gradcheck.h"
#include "ops/norm.h"
#include "ops/numeric_test_util.h"

namespace dt {
namespace {

using test::GradParameter;
using test::random_vector;

constexpr double kFloatTolerance = 1e-2;

TEST(NormBackward, ZeroCentredRmsNormMatchesFiniteDifferences) {
  const int64_t rows = 5, dim = 24;
  auto x = random_vector(rows * dim, 1, 2.0f, 0.3f), weight = random_vector(dim, 2, 0.5f);
  const auto probe = random_vector(rows * dim, 3);
  std::vector<float> dx(x.size()), dweight(size_t(dim), 0.0f), y(x.size());
  rms_norm_zero_centred_backward(x.data(), probe.data(), rows, dim, weight.data(), 1e-6f, dx.data(), dweight.data());
  auto loss = [&] {
    rms_norm_zero_centred(x.data(), rows, dim, weight.data(), 1e-6f, y.data());
    return test::weighted_sum<float, float>(y, probe);
  };
  EXPECT_TRUE(test::gradients_match(
      test::gradcheck<float>(loss, {GradParameter<float>{"x", x, dx}, GradParameter<float>{"weight", weight, dweight}}),
      kFloatTolerance));
}

TEST(NormBackward, PerHeadQkNormSumsTheWeightGradientOverHeads) {
  // q/k norm: rows = tokens * heads, one weight [head_dim] shared by all of them.
  const int64_t tokens = 3, heads = 4, head_dim = 8, rows = tokens * heads;
  auto x = random_vector(rows * head_dim, 11), weight = random_vector(head_dim, 12, 0.3f);
  const auto probe = random_vector(rows * head_dim, 13);
  std::vector<float> dx(x.size()), dweight(size_t(head_dim), 0.0f), y(x.size());
  rms_norm_zero_centred_backward(x.data(), probe.data(), rows, head_dim, weight.data(), 1e-6f, dx.data(),
                                 dweight.data());
  auto loss = [&] {
    rms_norm_zero_centred(x.data(), rows, head_dim, weight.data(), 1e-6f, y.data());
    return test::weighted_sum<float, float>(y, probe);
  };
  EXPECT_TRUE(test::gradients_match(
      test::gradcheck<float>(loss, {GradParameter<float>{"x", x, dx}, GradParameter<float>{"weight", weight, dweight}}),
      kFloatTolerance));
}

TEST(NormBackward, GatedRmsNormMatchesFiniteDifferences) {
  const int64_t rows = 6, dim = 16;
  auto x = random_vector(rows * dim, 21, 1.5f), z = random_vector(rows * dim, 22, 2.0f);
  auto weight = random_vector(dim, 23, 0.5f, 1.0f);
  const auto probe = random_vector(rows * dim, 24);
  std::vector<float> dx(x.size()), dz(z.size()), dweight(size_t(dim), 0.0f), y(x.size());
  gated_rms_norm_backward(x.data(), z.data(), probe.data(), rows, dim, weight.data(), 1e-6f, dx.data(), dz.data(),
                          dweight.data());
  auto loss = [&] {
    gated_rms_norm(x.data(), z.data(), rows, dim, weight.data(), 1e-6f, y.data());
    return test::weighted_sum<float, float>(y, probe);
  };
  EXPECT_TRUE(test::gradients_match(test::gradcheck<float>(loss, {GradParameter<float>{"x", x, dx},
                                                                  GradParameter<float>{"z", z, dz},
                                                                  GradParameter<float>{"weight", weight, dweight}}),
                                    kFloatTolerance));
}

TEST(NormBackward, WeightGradientAccumulates) {
  const int64_t rows = 2, dim = 8;
  const auto x = random_vector(rows * dim, 31), weight = random_vector(dim, 32), probe = random_vector(rows * dim, 33);
  std::vector<float> dx(x.size()), once(size_t(dim), 0.0f), twice(size_t(dim), 0.0f);
  rms_norm_zero_centred_backward(x.data(), probe.data(), rows, dim, weight.data(), 1e-6f, dx.data(), once.data());
  for (int i = 0; i < 2; ++i)
    rms_norm_zero_centred_backward(x.data(), probe.data(), rows, dim, weight.data(), 1e-6f, dx.data(), twice.data());
  for (float& value : once) value *= 2;
  EXPECT_TRUE(test::all_close(twice, once, 1e-6));
}

TEST(NormBackward, L2NormalizeMatchesFiniteDifferencesIncludingNearZeroRows) {
  // Row 0 is tiny (|x|^2 ~ eps): a clamped norm would be far off there; the exact sqrt(|x|^2 + eps)
  // is not.
  const int64_t rows = 4, dim = 16;
  auto x = random_vector(rows * dim, 41, 1.5f);
  for (int64_t i = 0; i < dim; ++i) x[size_t(i)] *= 3e-4f;
  const auto probe = random_vector(rows * dim, 42);
  std::vector<float> dx(x.size()), y(x.size());
  l2_normalize_backward(x.data(), probe.data(), rows, dim, 1e-6f, dx.data());
  auto loss = [&] {
    y = x;
    l2_normalize(y.data(), rows, dim, 1e-6f);
    return test::weighted_sum<float, float>(y, probe);
  };
  test::GradcheckOptions options;
  options.steps = {1e-3, 3e-4, 1e-4, 3e-5};  // the tiny row varies on a scale of 1e-3
  EXPECT_TRUE(test::gradients_match(test::gradcheck<float>(loss, {GradParameter<float>{"x", x, dx}}, options),
                                    kFloatTolerance));
}

}  // namespace
}  // namespace dt
