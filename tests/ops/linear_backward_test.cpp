// Backward of the LoRA linear y = x W^T + s (x A^T) B^T: finite differences for dx, dA and dB
// (non-zero B, or dA would be trivially zero on both sides), and the sgemm version against the
// naive reference for F32, BF16 and F16 frozen weights, including several conversion blocks.
#include <gtest/gtest.h>

#include "core/tensor.h"
#include "ops/gradcheck.h"
#include "ops/linear.h"
#include "ops/numeric_test_util.h"

namespace dt {
namespace {

using test::GradParameter;
using test::random_vector;

TEST(LoraLinearBackward, MatchesFiniteDifferences) {
  const int64_t rows = 5, in = 10, out = 12, rank = 3;
  const Tensor weight = Tensor::from_f32(DType::F32, {out, in}, random_vector(out * in, 1, 0.3f));
  auto x = random_vector(rows * in, 2), a = random_vector(rank * in, 3, 0.5f), b = random_vector(out * rank, 4, 0.5f);
  const auto probe = random_vector(rows * out, 5);
  const LoraFactors lora{a.data(), b.data(), rank, 2.0f};
  std::vector<float> dx(x.size()), dA(a.size(), 0.0f), dB(b.size(), 0.0f), y(probe.size());
  lora_linear_backward(x.data(), probe.data(), rows, weight, lora, dx.data(), dA.data(), dB.data());
  auto loss = [&] {
    lora_linear(x.data(), rows, weight, lora, y.data());
    return test::weighted_sum<float, float>(y, probe);
  };
  EXPECT_TRUE(test::gradients_match(test::gradcheck<float>(loss, {GradParameter<float>{"x", x, dx},
                                                                  GradParameter<float>{"A", a, dA},
                                                                  GradParameter<float>{"B", b, dB}}),
                                    1e-2));
}

void check_against_reference(DType dtype, int64_t rows, int64_t in, int64_t out, int64_t rank, uint32_t seed) {
  SCOPED_TRACE(std::string(dtype_name(dtype)) + " [" + std::to_string(out) + ", " + std::to_string(in) + "]");
  const Tensor weight = Tensor::from_f32(dtype, {out, in}, random_vector(out * in, seed, 0.1f));
  const auto x = random_vector(rows * in, seed + 1), a = random_vector(rank * in, seed + 2, 0.1f);
  const auto b = random_vector(out * rank, seed + 3, 0.1f), dy = random_vector(rows * out, seed + 4);
  const LoraFactors lora{a.data(), b.data(), rank, 0.5f};
  // Accumulation: both start from the same non-zero dA/dB.
  std::vector<float> dx(x.size()), dA(a.size(), 1.0f), dB(b.size(), 1.0f);
  std::vector<float> dx_ref(x.size()), dA_ref(a.size(), 1.0f), dB_ref(b.size(), 1.0f);
  lora_linear_backward(x.data(), dy.data(), rows, weight, lora, dx.data(), dA.data(), dB.data());
  lora_linear_backward_reference(x.data(), dy.data(), rows, weight, lora, dx_ref.data(), dA_ref.data(), dB_ref.data());
  EXPECT_TRUE(test::all_close(dx, dx_ref, 1e-5)) << "dx";
  EXPECT_TRUE(test::all_close(dA, dA_ref, 1e-5)) << "dA";
  EXPECT_TRUE(test::all_close(dB, dB_ref, 1e-5)) << "dB";
}

TEST(LoraLinearBackward, FastMatchesReferenceForEveryWeightDtype) {
  uint32_t seed = 10;
  for (DType dtype : {DType::F32, DType::BF16, DType::F16}) {
    check_against_reference(dtype, 7, 24, 40, 4, seed += 10);
    check_against_reference(dtype, 3, 1024, 1100, 2, seed += 10);  // > 4 MiB of f32: two blocks
  }
}

TEST(LinearBackwardInput, AccumulatesWhenAsked) {
  const int64_t rows = 4, in = 6, out = 5;
  const Tensor weight = Tensor::from_f32(DType::BF16, {out, in}, random_vector(out * in, 50));
  const auto dy = random_vector(rows * out, 51);
  std::vector<float> once(size_t(rows * in), 0.0f), twice(size_t(rows * in), 0.0f);
  linear_backward_input(dy.data(), rows, weight, once.data());
  linear_backward_input(dy.data(), rows, weight, twice.data());
  linear_backward_input(dy.data(), rows, weight, twice.data(), true);
  for (float& value : once) value *= 2;
  EXPECT_TRUE(test::all_close(twice, once, 1e-6));
}

}  // namespace
}  // namespace dt
