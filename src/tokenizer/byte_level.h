#pragma once
// GPT-2 byte-level alphabet (`bytes_to_unicode`): every byte maps to one printable code point so
// BPE symbols are valid strings. Bytes 0x21-0x7E, 0xA1-0xAC and 0xAE-0xFF map to themselves; the
// other 68 bytes map, in increasing order, to U+0100, U+0101, ...
#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace dt {

// The UTF-8 text of the symbol for each byte.
const std::array<std::string, 256>& byte_level_symbols();

// The 256 bytes in GPT-2 vocabulary order: the self-mapped ranges first, then the remapped bytes.
// A trained vocabulary gives byte_level_order()[i] the id i.
const std::array<uint8_t, 256>& byte_level_order();

// Maps raw bytes to their byte-level symbols.
std::string bytes_to_byte_level(std::string_view bytes);

// Maps a byte-level token back to bytes; nullopt when some character is not a byte-level symbol.
std::optional<std::string> byte_level_to_bytes(std::string_view token);

}  // namespace dt
