#pragma once
// A small row-major tensor: a dtype, a shape and a byte buffer that is either owned (64-byte
// aligned) or a zero-copy view into memory kept alive by a shared owner (a mapped file).
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "core/dtype.h"

namespace dt {

using Shape = std::vector<int64_t>;

std::string shape_string(const Shape& shape);  // "[3, 4]"
// Product of the dims (0 when any dim is 0); fails on negative dims or more than INT64_MAX elements.
uint64_t shape_numel(const Shape& shape);

class Tensor {
 public:
  Tensor() = default;

  // Owned, zero-filled storage.
  static Tensor zeros(DType dtype, Shape shape);
  // Owned copy of f32 values converted to `dtype`.
  static Tensor from_f32(DType dtype, Shape shape, std::span<const float> values);
  // Non-owning view of `data`; `owner` keeps the memory alive for as long as the view exists.
  static Tensor view(DType dtype, Shape shape, const void* data, std::shared_ptr<const void> owner);

  bool empty() const { return !storage_ && data_ == nullptr; }
  DType dtype() const { return dtype_; }
  const Shape& shape() const { return shape_; }
  int rank() const { return int(shape_.size()); }
  int64_t dim(int index) const { return shape_.at(size_t(index < 0 ? index + rank() : index)); }
  int64_t numel() const { return numel_; }
  size_t nbytes() const { return nbytes_; }
  bool owns_data() const { return owned_; }

  const void* data() const { return data_; }
  // Writable bytes; fails for views of read-only memory.
  void* mutable_data();

  // Typed access to F32 data; fails when the dtype is not F32.
  const float* f32() const;
  float* f32();
  std::span<const float> f32_span() const { return {f32(), size_t(numel_)}; }

  // Values as f32 (a copy; any float storage dtype).
  std::vector<float> to_f32_vector() const;
  // A copy converted to `dtype` (F32, BF16 or F16).
  Tensor to(DType dtype) const;

 private:
  DType dtype_ = DType::F32;
  Shape shape_;
  int64_t numel_ = 0;
  size_t nbytes_ = 0;
  bool owned_ = false;
  std::shared_ptr<const void> storage_;
  const void* data_ = nullptr;
};

}  // namespace dt
