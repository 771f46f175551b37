#include "tokenizer/byte_level.h"

#include <utf8proc.h>

#include "tokenizer/unicode_text.h"

namespace dt {
namespace {

bool maps_to_itself(int byte) {
  return (byte >= 0x21 && byte <= 0x7E) || (byte >= 0xA1 && byte <= 0xAC) || (byte >= 0xAE && byte <= 0xFF);
}

struct ByteLevelTables {
  std::array<std::string, 256> symbols;
  std::array<uint8_t, 256> order{};
  std::array<int, 0x144> byte_of_code_point{};  // every symbol is below U+0144; -1 = not a symbol

  ByteLevelTables() {
    byte_of_code_point.fill(-1);
    int next_remapped = 0x100, position = 0;
    for (int byte = 0; byte < 256; ++byte)
      if (maps_to_itself(byte)) order[position++] = static_cast<uint8_t>(byte);
    for (int byte = 0; byte < 256; ++byte)
      if (!maps_to_itself(byte)) order[position++] = static_cast<uint8_t>(byte);
    for (int byte = 0; byte < 256; ++byte) {
      const char32_t code_point = maps_to_itself(byte) ? static_cast<char32_t>(byte) : static_cast<char32_t>(next_remapped++);
      append_utf8(symbols[byte], code_point);
      byte_of_code_point[code_point] = byte;
    }
  }
};

const ByteLevelTables& tables() {
  static const ByteLevelTables instance;
  return instance;
}

}  // namespace

const std::array<std::string, 256>& byte_level_symbols() { return tables().symbols; }
const std::array<uint8_t, 256>& byte_level_order() { return tables().order; }

std::string bytes_to_byte_level(std::string_view bytes) {
  const auto& symbols = tables().symbols;
  std::string out;
  out.reserve(bytes.size() * 2);
  for (char byte : bytes) out += symbols[static_cast<unsigned char>(byte)];
  return out;
}

std::optional<std::string> byte_level_to_bytes(std::string_view token) {
  const auto& byte_of = tables().byte_of_code_point;
  std::string out;
  out.reserve(token.size());
  auto pos = reinterpret_cast<const utf8proc_uint8_t*>(token.data());
  utf8proc_ssize_t left = static_cast<utf8proc_ssize_t>(token.size());
  while (left > 0) {
    utf8proc_int32_t code_point = 0;
    const utf8proc_ssize_t length = utf8proc_iterate(pos, left, &code_point);
    if (length <= 0 || code_point < 0 || code_point >= static_cast<utf8proc_int32_t>(byte_of.size()) ||
        byte_of[code_point] < 0)
      return std::nullopt;
    out.push_back(static_cast<char>(byte_of[code_point]));
    pos += length;
    left -= length;
  }
  return out;
}

}  // namespace dt
