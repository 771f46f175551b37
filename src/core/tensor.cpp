#include "core/tensor.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <cstdlib>
#include <limits>

#include "core/error.h"

namespace dt {

std::string shape_string(const Shape& shape) { return fmt::format("[{}]", fmt::join(shape, ", ")); }

uint64_t shape_numel(const Shape& shape) {
  for (int64_t dim : shape)
    if (dim < 0) fail("negative dimension in shape {}", shape_string(shape));
  // A zero dim makes the tensor empty however large the other dims are.
  if (std::find(shape.begin(), shape.end(), 0) != shape.end()) return 0;
  uint64_t numel = 1;
  for (int64_t dim : shape) {
    if (numel > uint64_t(std::numeric_limits<int64_t>::max()) / uint64_t(dim))
      fail("shape {} has too many elements", shape_string(shape));
    numel *= uint64_t(dim);
  }
  return numel;
}

namespace {

size_t byte_length(DType dtype, const Shape& shape) {
  auto bytes = dtype_byte_length(dtype, shape_numel(shape));
  if (!bytes) fail("shape {} of {} does not fill whole bytes", shape_string(shape), dtype_name(dtype));
  return size_t(*bytes);
}

}  // namespace

Tensor Tensor::zeros(DType dtype, Shape shape) {
  Tensor tensor;
  tensor.dtype_ = dtype;
  tensor.numel_ = int64_t(shape_numel(shape));
  tensor.nbytes_ = byte_length(dtype, shape);
  tensor.shape_ = std::move(shape);
  const size_t allocation = (tensor.nbytes_ + 63) / 64 * 64 + 64;
  void* memory = std::aligned_alloc(64, allocation);
  if (!memory) fail("out of memory allocating {} bytes for a tensor", allocation);
  std::memset(memory, 0, allocation);
  tensor.storage_ = std::shared_ptr<void>(memory, std::free);
  tensor.data_ = memory;
  tensor.owned_ = true;
  return tensor;
}

Tensor Tensor::from_f32(DType dtype, Shape shape, std::span<const float> values) {
  Tensor tensor = zeros(dtype, std::move(shape));
  if (values.size() != size_t(tensor.numel_))
    fail("internal error: {} values for a tensor of shape {}", values.size(), shape_string(tensor.shape_));
  convert_from_f32(dtype, values.data(), tensor.mutable_data(), values.size());
  return tensor;
}

Tensor Tensor::view(DType dtype, Shape shape, const void* data, std::shared_ptr<const void> owner) {
  Tensor tensor;
  tensor.dtype_ = dtype;
  tensor.numel_ = int64_t(shape_numel(shape));
  tensor.nbytes_ = byte_length(dtype, shape);
  tensor.shape_ = std::move(shape);
  tensor.storage_ = std::move(owner);
  tensor.data_ = data;
  tensor.owned_ = false;
  return tensor;
}

void* Tensor::mutable_data() {
  if (!owned_) fail("internal error: writing to a read-only tensor view");
  return const_cast<void*>(data_);
}

const float* Tensor::f32() const {
  if (dtype_ != DType::F32) fail("internal error: tensor is {}, expected F32", dtype_name(dtype_));
  return static_cast<const float*>(data_);
}

float* Tensor::f32() {
  if (dtype_ != DType::F32) fail("internal error: tensor is {}, expected F32", dtype_name(dtype_));
  return static_cast<float*>(mutable_data());
}

std::vector<float> Tensor::to_f32_vector() const {
  std::vector<float> values(static_cast<size_t>(numel_));
  convert_to_f32(dtype_, data_, values.data(), values.size());
  return values;
}

Tensor Tensor::to(DType dtype) const {
  if (dtype == dtype_) {
    Tensor copy = zeros(dtype_, shape_);
    std::memcpy(copy.mutable_data(), data_, nbytes_);
    return copy;
  }
  return from_f32(dtype, shape_, to_f32_vector());
}

}  // namespace dt
