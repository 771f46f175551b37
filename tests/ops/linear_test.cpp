#include "ops/linear.h"

#include <gtest/gtest.h>

#include "core/error.h"
#include "ops/numeric_test_util.h"

namespace dt {
namespace {

using test::all_close;
using test::random_vector;

struct LinearCase {
  DType dtype;
  int64_t rows;
};

class LinearTest : public ::testing::TestWithParam<LinearCase> {};

// Fast path against the double-accumulating reference; in = 300 leaves a tail after the vector lanes.
TEST_P(LinearTest, FastMatchesReference) {
  const auto [dtype, rows] = GetParam();
  const int64_t out = 70, in = 300;
  const Tensor weight = Tensor::from_f32(dtype, {out, in}, random_vector(size_t(out * in), 1, 0.05f));
  const std::vector<float> x = random_vector(size_t(rows * in), 2);
  std::vector<float> fast(size_t(rows * out)), reference(size_t(rows * out));
  linear(x.data(), rows, weight, fast.data());
  linear_reference(x.data(), rows, weight, reference.data());
  EXPECT_TRUE(all_close(fast, reference, 1e-5));
}

INSTANTIATE_TEST_SUITE_P(
    DTypesAndRows, LinearTest,
    ::testing::Values(LinearCase{DType::F32, 1}, LinearCase{DType::F32, 3}, LinearCase{DType::F32, 64},
                      LinearCase{DType::BF16, 1}, LinearCase{DType::BF16, 3}, LinearCase{DType::BF16, 64},
                      LinearCase{DType::F16, 1}, LinearCase{DType::F16, 3}, LinearCase{DType::F16, 64}),
    [](const auto& info) {
      return std::string(dtype_name(info.param.dtype)) + "_T" + std::to_string(info.param.rows);
    });

TEST(Linear, ReferenceComputesXTimesWTransposed) {
  // W = [[1, 2], [3, 4], [5, 6]], x = [1, -1]: y = [-1, -1, -1].
  const Tensor weight = Tensor::from_f32(DType::BF16, {3, 2}, std::vector<float>{1, 2, 3, 4, 5, 6});
  const std::vector<float> x = {1, -1};
  std::vector<float> y(3);
  linear_reference(x.data(), 1, weight, y.data());
  EXPECT_EQ(y, (std::vector<float>{-1, -1, -1}));
  linear(x.data(), 1, weight, y.data());
  EXPECT_EQ(y, (std::vector<float>{-1, -1, -1}));
}

TEST(Linear, RejectsNonMatrixWeights) {
  const Tensor weight = Tensor::zeros(DType::F32, {4});
  std::vector<float> x(4), y(4);
  EXPECT_THROW(linear(x.data(), 1, weight, y.data()), Error);
}

}  // namespace
}  // namespace dt
