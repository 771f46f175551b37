#pragma once
// Element types of safetensors files and the exact conversions between the float formats we
// compute with (F32) and store (BF16, F16).
#include <bit>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string_view>

namespace dt {

enum class DType {
  BOOL, U8, I8, F8_E5M2, F8_E4M3, F8_E8M0, F8_E4M3FNUZ, F8_E5M2FNUZ,
  I16, U16, F16, BF16,
  I32, U32, F32,
  I64, U64, F64, C64,
  F4, F6_E2M3, F6_E3M2,
};

// The safetensors name ("BF16") of a dtype, and back. parse_dtype returns nullopt for unknown names.
std::string_view dtype_name(DType dtype);
std::optional<DType> parse_dtype(std::string_view name);

// Size in bits of one element (4 and 6 for the sub-byte float formats).
int dtype_bits(DType dtype);

// Byte length of `numel` elements, or nullopt when sub-byte elements do not fill whole bytes
// or the length overflows.
std::optional<uint64_t> dtype_byte_length(DType dtype, uint64_t numel);

// Float formats we can compute with.
inline bool is_float_storage(DType dtype) {
  return dtype == DType::F32 || dtype == DType::BF16 || dtype == DType::F16;
}

// The dtypes a model or adapter can be stored in, parsed from a CLI string ("bf16", "f16", "f32").
DType parse_storage_dtype(std::string_view name);

inline float bf16_to_f32(uint16_t bits) { return std::bit_cast<float>(uint32_t(bits) << 16); }

// Round to nearest, ties to even; NaN stays NaN (quiet), infinities stay infinite.
inline uint16_t f32_to_bf16(float value) {
  uint32_t bits = std::bit_cast<uint32_t>(value);
  if ((bits & 0x7fffffffu) > 0x7f800000u) return uint16_t((bits >> 16) | 0x0040u);
  uint32_t rounding = 0x7fffu + ((bits >> 16) & 1u);
  return uint16_t((bits + rounding) >> 16);
}

float f16_to_f32(uint16_t bits);
// Round to nearest, ties to even, with subnormals, overflow to infinity and NaN preserved.
uint16_t f32_to_f16(float value);

// Converts `count` elements stored as `dtype` (F32, BF16 or F16) to f32, and back.
void convert_to_f32(DType dtype, const void* source, float* destination, size_t count);
void convert_from_f32(DType dtype, const float* source, void* destination, size_t count);

}  // namespace dt
