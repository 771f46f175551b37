#include "core/tensor.h"

#include <gtest/gtest.h>

#include <limits>

#include "core/error.h"

namespace dt {
namespace {

TEST(Shape, NumelAndString) {
  EXPECT_EQ(shape_numel({}), 1u);
  EXPECT_EQ(shape_numel({3, 4}), 12u);
  EXPECT_EQ(shape_numel({3, 0, 4}), 0u);
  // A zero dim empties the tensor even when the other dims alone would overflow.
  EXPECT_EQ(shape_numel({int64_t(1) << 40, int64_t(1) << 40, 0}), 0u);
  EXPECT_THROW(shape_numel({int64_t(1) << 40, int64_t(1) << 40}), Error);
  EXPECT_THROW(shape_numel({std::numeric_limits<int64_t>::max(), 2}), Error);
  EXPECT_THROW(shape_numel({2, -1}), Error);
  EXPECT_EQ(shape_string({3, 4}), "[3, 4]");
  EXPECT_EQ(shape_string({}), "[]");
}

TEST(Tensor, ZerosAreOwnedAlignedAndZero) {
  Tensor tensor = Tensor::zeros(DType::BF16, {3, 5});
  EXPECT_TRUE(tensor.owns_data());
  EXPECT_FALSE(tensor.empty());
  EXPECT_EQ(tensor.numel(), 15);
  EXPECT_EQ(tensor.nbytes(), 30u);
  EXPECT_EQ(tensor.rank(), 2);
  EXPECT_EQ(tensor.dim(-1), 5);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(tensor.data()) % 64, 0u);
  for (float value : tensor.to_f32_vector()) EXPECT_EQ(value, 0.0f);
  EXPECT_THROW(tensor.f32(), Error);  // not F32
}

TEST(Tensor, ScalarAndEmptyShapes) {
  Tensor scalar = Tensor::from_f32(DType::F32, {}, std::vector<float>{2.5f});
  EXPECT_EQ(scalar.rank(), 0);
  EXPECT_EQ(scalar.numel(), 1);
  EXPECT_EQ(scalar.f32()[0], 2.5f);
  Tensor empty = Tensor::zeros(DType::F16, {4, 0});
  EXPECT_EQ(empty.numel(), 0);
  EXPECT_EQ(empty.nbytes(), 0u);
  EXPECT_FALSE(empty.empty());  // has a dtype and storage, just no elements
  EXPECT_TRUE(Tensor().empty());
}

TEST(Tensor, ConversionsRoundAsTheScalarFunctions) {
  const std::vector<float> values = {1.0f, 1.00390625f, -3.14159f, 65520.0f, 1e-8f};
  Tensor f32 = Tensor::from_f32(DType::F32, {5}, values);
  Tensor bf16 = f32.to(DType::BF16);
  Tensor f16 = f32.to(DType::F16);
  const auto* bf16_bits = static_cast<const uint16_t*>(bf16.data());
  const auto* f16_bits = static_cast<const uint16_t*>(f16.data());
  const std::vector<float> from_bf16 = bf16.to_f32_vector(), from_f16 = f16.to_f32_vector();
  for (size_t i = 0; i < values.size(); ++i) {
    EXPECT_EQ(bf16_bits[i], f32_to_bf16(values[i]));
    EXPECT_EQ(f16_bits[i], f32_to_f16(values[i]));
    EXPECT_EQ(from_bf16[i], bf16_to_f32(bf16_bits[i]));
    EXPECT_EQ(from_f16[i], f16_to_f32(f16_bits[i]));
  }
  Tensor copy = f32.to(DType::F32);
  EXPECT_NE(copy.data(), f32.data());
  EXPECT_EQ(copy.to_f32_vector(), values);
  EXPECT_THROW(Tensor::from_f32(DType::F32, {4}, values), Error);
}

TEST(Tensor, ViewsShareMemoryAndAreReadOnly) {
  auto owner = std::make_shared<std::vector<float>>(std::vector<float>{1, 2, 3, 4, 5, 6});
  Tensor view = Tensor::view(DType::F32, {2, 3}, owner->data(), owner);
  EXPECT_FALSE(view.owns_data());
  EXPECT_EQ(view.data(), owner->data());
  EXPECT_EQ(static_cast<const Tensor&>(view).f32()[5], 6.0f);
  EXPECT_THROW(view.mutable_data(), Error);
  owner.reset();  // the view keeps the memory alive
  EXPECT_EQ(view.to_f32_vector()[4], 5.0f);
  EXPECT_THROW(Tensor::view(DType::F4, {3}, view.data(), nullptr), Error);  // half a byte
}

}  // namespace
}  // namespace dt
