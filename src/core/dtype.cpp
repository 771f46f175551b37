#include "core/dtype.h"

#include <array>
#include <limits>
#include <string>
#include <utility>

#include "core/error.h"

namespace dt {
namespace {

struct DTypeInfo {
  DType dtype;
  std::string_view name;
  int bits;
};

constexpr std::array kDTypes = {
    DTypeInfo{DType::BOOL, "BOOL", 8},          DTypeInfo{DType::U8, "U8", 8},
    DTypeInfo{DType::I8, "I8", 8},              DTypeInfo{DType::F8_E5M2, "F8_E5M2", 8},
    DTypeInfo{DType::F8_E4M3, "F8_E4M3", 8},    DTypeInfo{DType::F8_E8M0, "F8_E8M0", 8},
    DTypeInfo{DType::F8_E4M3FNUZ, "F8_E4M3FNUZ", 8},
    DTypeInfo{DType::F8_E5M2FNUZ, "F8_E5M2FNUZ", 8},
    DTypeInfo{DType::I16, "I16", 16},           DTypeInfo{DType::U16, "U16", 16},
    DTypeInfo{DType::F16, "F16", 16},           DTypeInfo{DType::BF16, "BF16", 16},
    DTypeInfo{DType::I32, "I32", 32},           DTypeInfo{DType::U32, "U32", 32},
    DTypeInfo{DType::F32, "F32", 32},           DTypeInfo{DType::I64, "I64", 64},
    DTypeInfo{DType::U64, "U64", 64},           DTypeInfo{DType::F64, "F64", 64},
    DTypeInfo{DType::C64, "C64", 64},           DTypeInfo{DType::F4, "F4", 4},
    DTypeInfo{DType::F6_E2M3, "F6_E2M3", 6},    DTypeInfo{DType::F6_E3M2, "F6_E3M2", 6},
};

const DTypeInfo& info(DType dtype) {
  for (const auto& entry : kDTypes)
    if (entry.dtype == dtype) return entry;
  fail("internal error: dtype {} has no table entry", int(dtype));
}

}  // namespace

std::string_view dtype_name(DType dtype) { return info(dtype).name; }

std::optional<DType> parse_dtype(std::string_view name) {
  for (const auto& entry : kDTypes)
    if (entry.name == name) return entry.dtype;
  return std::nullopt;
}

int dtype_bits(DType dtype) { return info(dtype).bits; }

std::optional<uint64_t> dtype_byte_length(DType dtype, uint64_t numel) {
  const uint64_t bits = uint64_t(dtype_bits(dtype));
  if (numel > std::numeric_limits<uint64_t>::max() / bits) return std::nullopt;
  const uint64_t total_bits = numel * bits;
  if (total_bits % 8 != 0) return std::nullopt;
  return total_bits / 8;
}

DType parse_storage_dtype(std::string_view name) {
  if (name == "f32" || name == "F32" || name == "float32") return DType::F32;
  if (name == "bf16" || name == "BF16" || name == "bfloat16") return DType::BF16;
  if (name == "f16" || name == "F16" || name == "float16") return DType::F16;
  fail("unknown dtype '{}': expected bf16, f16 or f32", name);
}

float f16_to_f32(uint16_t bits) {
  const uint32_t sign = uint32_t(bits & 0x8000u) << 16;
  const uint32_t exponent = (bits >> 10) & 0x1fu;
  uint32_t mantissa = bits & 0x3ffu;
  uint32_t result;
  if (exponent == 0x1f) {
    result = sign | 0x7f800000u | (mantissa << 13);
  } else if (exponent != 0) {
    result = sign | ((exponent + 112) << 23) | (mantissa << 13);
  } else if (mantissa == 0) {
    result = sign;
  } else {
    // Subnormal half: normalise into an f32 normal.
    int shift = 0;
    while ((mantissa & 0x400u) == 0) {
      mantissa <<= 1;
      ++shift;
    }
    mantissa &= 0x3ffu;
    result = sign | (uint32_t(113 - shift) << 23) | (mantissa << 13);
  }
  return std::bit_cast<float>(result);
}

uint16_t f32_to_f16(float value) {
  const uint32_t bits = std::bit_cast<uint32_t>(value);
  const uint16_t sign = uint16_t((bits >> 16) & 0x8000u);
  const uint32_t magnitude = bits & 0x7fffffffu;
  if (magnitude > 0x7f800000u) return uint16_t(sign | 0x7e00u | ((magnitude >> 13) & 0x3ffu));
  if (magnitude >= 0x477ff000u) return uint16_t(sign | 0x7c00u);  // rounds to >= 65520: infinity
  const int exponent = int(magnitude >> 23) - 127;
  if (exponent >= -14) {
    // Normal half: drop 13 mantissa bits with round-to-nearest-even.
    const uint32_t rebased = magnitude - (uint32_t(127 - 15) << 23);
    const uint32_t rounded = rebased + 0xfffu + ((rebased >> 13) & 1u);
    return uint16_t(sign | (rounded >> 13));
  }
  if (exponent < -25) return sign;  // below half the smallest subnormal
  // Subnormal half: value = m * 2^-24 with the implicit bit made explicit.
  const uint32_t full_mantissa = (magnitude & 0x7fffffu) | 0x800000u;
  const int shift = -exponent - 1;  // 14..24 -> bits to drop from a 24-bit mantissa to reach 2^-24
  const uint32_t truncated = full_mantissa >> shift;
  const uint32_t remainder = full_mantissa & ((1u << shift) - 1u);
  const uint32_t halfway = 1u << (shift - 1);
  uint32_t result = truncated;
  if (remainder > halfway || (remainder == halfway && (truncated & 1u))) ++result;
  return uint16_t(sign | result);
}

void convert_to_f32(DType dtype, const void* source, float* destination, size_t count) {
  switch (dtype) {
    case DType::F32:
      std::memcpy(destination, source, count * sizeof(float));
      return;
    case DType::BF16: {
      const auto* bits = static_cast<const uint16_t*>(source);
      for (size_t i = 0; i < count; ++i) destination[i] = bf16_to_f32(bits[i]);
      return;
    }
    case DType::F16: {
      const auto* bits = static_cast<const uint16_t*>(source);
      for (size_t i = 0; i < count; ++i) destination[i] = f16_to_f32(bits[i]);
      return;
    }
    default:
      fail("cannot convert {} to F32: expected F32, BF16 or F16", dtype_name(dtype));
  }
}

void convert_from_f32(DType dtype, const float* source, void* destination, size_t count) {
  switch (dtype) {
    case DType::F32:
      std::memcpy(destination, source, count * sizeof(float));
      return;
    case DType::BF16: {
      auto* bits = static_cast<uint16_t*>(destination);
      for (size_t i = 0; i < count; ++i) bits[i] = f32_to_bf16(source[i]);
      return;
    }
    case DType::F16: {
      auto* bits = static_cast<uint16_t*>(destination);
      for (size_t i = 0; i < count; ++i) bits[i] = f32_to_f16(source[i]);
      return;
    }
    default:
      fail("cannot convert F32 to {}: expected F32, BF16 or F16", dtype_name(dtype));
  }
}

}  // namespace dt
