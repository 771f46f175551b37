#include "core/dtype.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "core/error.h"

namespace dt {
namespace {

uint32_t bits_of(float value) { return std::bit_cast<uint32_t>(value); }
float float_of(uint32_t bits) { return std::bit_cast<float>(bits); }
bool is_f16_nan(uint16_t bits) { return (bits & 0x7c00u) == 0x7c00u && (bits & 0x3ffu) != 0; }
bool is_bf16_nan(uint16_t bits) { return (bits & 0x7f80u) == 0x7f80u && (bits & 0x7fu) != 0; }

// The compiler's IEEE binary16 type is the reference for F16 conversions.
uint16_t compiler_f32_to_f16(float value) { return std::bit_cast<uint16_t>(static_cast<_Float16>(value)); }
float compiler_f16_to_f32(uint16_t bits) { return static_cast<float>(std::bit_cast<_Float16>(bits)); }

// Slow BF16 reference: of the two bf16 neighbours of a finite value, the nearer one (in exact double
// arithmetic), the even one on a tie.
uint16_t reference_f32_to_bf16(float value) {
  const uint32_t bits = bits_of(value);
  const uint16_t below = uint16_t(bits >> 16);
  if ((bits & 0xffffu) == 0) return below;
  const uint16_t above = uint16_t(below + 1);  // the next bf16 away from zero (may be infinity)
  const double exact = value;
  const double low = bf16_to_f32(below);
  // The value one bf16 step past `below`, without overflowing to infinity in float arithmetic.
  const double high = low + std::ldexp(std::copysign(1.0, exact), std::max(int((bits >> 23) & 0xffu), 1) - 127 - 7);
  const double to_low = std::fabs(exact - low), to_high = std::fabs(high - exact);
  if (to_low < to_high) return below;
  if (to_high < to_low) return above;
  return (below & 1u) ? above : below;
}

std::vector<float> random_floats(size_t count, uint32_t seed) {
  std::mt19937 generator(seed);
  std::vector<float> values(count);
  for (float& value : values) value = float_of(uint32_t(generator()));
  return values;
}

TEST(DTypeNames, EverySafetensorsNameRoundTrips) {
  const std::vector<std::pair<std::string, int>> names_and_bits = {
      {"BOOL", 8},   {"U8", 8},    {"I8", 8},   {"F8_E5M2", 8}, {"F8_E4M3", 8},  {"F8_E8M0", 8},
      {"F8_E4M3FNUZ", 8},          {"F8_E5M2FNUZ", 8},          {"I16", 16},     {"U16", 16},
      {"F16", 16},   {"BF16", 16}, {"I32", 32}, {"U32", 32},    {"F32", 32},     {"I64", 64},
      {"U64", 64},   {"F64", 64},  {"C64", 64}, {"F4", 4},      {"F6_E2M3", 6},  {"F6_E3M2", 6}};
  for (const auto& [name, bits] : names_and_bits) {
    const auto dtype = parse_dtype(name);
    ASSERT_TRUE(dtype.has_value()) << name;
    EXPECT_EQ(dtype_name(*dtype), name);
    EXPECT_EQ(dtype_bits(*dtype), bits) << name;
  }
  for (const char* unknown : {"f32", "F33", "", "float32", "BF16 ", "F8"}) EXPECT_FALSE(parse_dtype(unknown)) << unknown;
}

TEST(DTypeNames, ByteLengthsOfSubByteTypesAndOverflow) {
  EXPECT_EQ(dtype_byte_length(DType::F32, 3), 12u);
  EXPECT_EQ(dtype_byte_length(DType::F4, 4), 2u);
  EXPECT_FALSE(dtype_byte_length(DType::F4, 3));
  EXPECT_EQ(dtype_byte_length(DType::F6_E2M3, 4), 3u);
  EXPECT_FALSE(dtype_byte_length(DType::F6_E3M2, 2));
  EXPECT_EQ(dtype_byte_length(DType::BOOL, 0), 0u);
  EXPECT_FALSE(dtype_byte_length(DType::F64, std::numeric_limits<uint64_t>::max() / 4));
}

TEST(DTypeNames, StorageDtypeFromCli) {
  EXPECT_EQ(parse_storage_dtype("bf16"), DType::BF16);
  EXPECT_EQ(parse_storage_dtype("float16"), DType::F16);
  EXPECT_EQ(parse_storage_dtype("F32"), DType::F32);
  EXPECT_THROW(parse_storage_dtype("i8"), Error);
}

TEST(F16, EveryBitPatternMatchesCompilerAndRoundTrips) {
  for (uint32_t bits = 0; bits <= 0xffffu; ++bits) {
    const auto half = uint16_t(bits);
    const float value = f16_to_f32(half);
    if (is_f16_nan(half)) {
      EXPECT_TRUE(std::isnan(value)) << std::hex << bits;
      EXPECT_TRUE(is_f16_nan(f32_to_f16(value))) << std::hex << bits;
      continue;
    }
    ASSERT_EQ(bits_of(value), bits_of(compiler_f16_to_f32(half))) << std::hex << bits;
    ASSERT_EQ(f32_to_f16(value), half) << std::hex << bits;
  }
}

TEST(F16, RoundingSubnormalsAndOverflow) {
  const struct {
    float value;
    uint16_t expected;
  } cases[] = {
      {1.0f, 0x3c00},
      {1.0f + 0x1p-11f, 0x3c00},          // tie between 1 and 1+2^-10: even (down)
      {1.0f + 3 * 0x1p-11f, 0x3c02},      // tie between 1+2^-10 and 1+2^-9: even (up)
      {1.0f + 0x1p-11f + 0x1p-20f, 0x3c01},
      {65504.0f, 0x7bff},                 // largest finite half
      {65519.99f, 0x7bff},
      {65520.0f, 0x7c00},                 // tie between 65504 and 65536: rounds to infinity
      {1e6f, 0x7c00},
      {-1e6f, 0xfc00},
      {0x1p-14f, 0x0400},                 // smallest normal
      {0x1p-14f - 0x1p-25f, 0x0400},      // rounds up into the normals
      {0x1p-24f, 0x0001},                 // smallest subnormal
      {0x1p-25f, 0x0000},                 // tie between 0 and 2^-24: even (zero)
      {0x1p-25f * 1.000001f, 0x0001},
      {3 * 0x1p-25f, 0x0002},             // tie between 1 and 2 subnormal steps: even
      {5 * 0x1p-25f, 0x0002},             // tie between 2 and 3: even
      {0x1p-26f, 0x0000},
      {-0x1p-24f, 0x8001},
      {-0.0f, 0x8000},
      {std::numeric_limits<float>::denorm_min(), 0x0000},
      {std::numeric_limits<float>::infinity(), 0x7c00},
      {-std::numeric_limits<float>::infinity(), 0xfc00},
  };
  for (const auto& [value, expected] : cases) {
    EXPECT_EQ(f32_to_f16(value), expected) << value;
    EXPECT_EQ(compiler_f32_to_f16(value), expected) << value;  // the table itself is right
  }
  EXPECT_TRUE(is_f16_nan(f32_to_f16(std::numeric_limits<float>::quiet_NaN())));
  EXPECT_TRUE(is_f16_nan(f32_to_f16(float_of(0x7f800001u))));  // signalling NaN, payload below f16 bits
  EXPECT_TRUE(is_f16_nan(f32_to_f16(float_of(0xff800001u))));
}

TEST(F16, RandomFloatsMatchCompiler) {
  for (float value : random_floats(1 << 21, 7)) {
    const uint16_t ours = f32_to_f16(value);
    if (std::isnan(value)) {
      ASSERT_TRUE(is_f16_nan(ours)) << std::hex << bits_of(value);
      continue;
    }
    ASSERT_EQ(ours, compiler_f32_to_f16(value)) << std::hex << bits_of(value);
  }
  // Floats within 2 ulp of every midpoint between finite halves (the overflow one is a case above).
  for (uint32_t half = 0; half < 0x7bffu; ++half) {
    const uint32_t midpoint = bits_of((f16_to_f32(uint16_t(half)) + f16_to_f32(uint16_t(half + 1))) / 2);
    for (uint32_t bits = midpoint - 2; bits <= midpoint + 2; ++bits)
      ASSERT_EQ(f32_to_f16(float_of(bits)), compiler_f32_to_f16(float_of(bits))) << std::hex << bits;
  }
}

TEST(BF16, ToF32IsExactForEveryBitPattern) {
  for (uint32_t bits = 0; bits <= 0xffffu; ++bits) {
    const float value = bf16_to_f32(uint16_t(bits));
    ASSERT_EQ(bits_of(value), bits << 16);
    if (!is_bf16_nan(uint16_t(bits))) {
      ASSERT_EQ(f32_to_bf16(value), bits) << std::hex << bits;
    }
  }
}

TEST(BF16, RoundsToNearestTiesToEven) {
  const struct {
    uint32_t f32_bits;
    uint16_t expected;
  } cases[] = {
      {0x3f808000u, 0x3f80},  // exact tie, even below
      {0x3f818000u, 0x3f82},  // exact tie, even above
      {0x3f808001u, 0x3f81},  // just above the tie
      {0x3f807fffu, 0x3f80},  // just below the tie
      {0xbf808000u, 0xbf80},  // negative tie
      {0xbf818000u, 0xbf82},
      {0x7f7fffffu, 0x7f80},  // FLT_MAX rounds to infinity
      {0x7f7f7fffu, 0x7f7f},
      {0x00008000u, 0x0000},  // subnormal tie to zero
      {0x00018000u, 0x0002},
      {0x7f800000u, 0x7f80},  // infinity
      {0x80000000u, 0x8000},  // -0
  };
  for (const auto& [f32_bits, expected] : cases) {
    EXPECT_EQ(f32_to_bf16(float_of(f32_bits)), expected) << std::hex << f32_bits;
    EXPECT_EQ(reference_f32_to_bf16(float_of(f32_bits)), expected) << std::hex << f32_bits;
  }
  for (uint32_t nan_bits : {0x7f800001u, 0x7fc00000u, 0xff800001u, 0x7fffffffu})
    EXPECT_TRUE(is_bf16_nan(f32_to_bf16(float_of(nan_bits)))) << std::hex << nan_bits;
}

TEST(BF16, RandomFloatsMatchSlowReference) {
  for (float value : random_floats(1 << 20, 11)) {
    if (std::isnan(value)) continue;
    ASSERT_EQ(f32_to_bf16(value), reference_f32_to_bf16(value)) << std::hex << bits_of(value);
  }
}

TEST(Convert, BulkConversionsMatchScalarOnes) {
  const std::vector<float> values = random_floats(1000, 3);
  std::vector<uint16_t> halves(values.size()), brains(values.size());
  convert_from_f32(DType::F16, values.data(), halves.data(), values.size());
  convert_from_f32(DType::BF16, values.data(), brains.data(), values.size());
  std::vector<float> from_halves(values.size()), from_brains(values.size());
  convert_to_f32(DType::F16, halves.data(), from_halves.data(), values.size());
  convert_to_f32(DType::BF16, brains.data(), from_brains.data(), values.size());
  for (size_t i = 0; i < values.size(); ++i) {
    EXPECT_EQ(halves[i], f32_to_f16(values[i]));
    EXPECT_EQ(brains[i], f32_to_bf16(values[i]));
    EXPECT_EQ(bits_of(from_halves[i]), bits_of(f16_to_f32(halves[i])));
    EXPECT_EQ(bits_of(from_brains[i]), bits_of(bf16_to_f32(brains[i])));
  }
  int64_t integers[2] = {1, 2};
  float out[2];
  EXPECT_THROW(convert_to_f32(DType::I64, integers, out, 2), Error);
  EXPECT_THROW(convert_from_f32(DType::I64, out, integers, 2), Error);
}

}  // namespace
}  // namespace dt
