#pragma once
// UTF-8 helpers shared by the tokenizer: lossy repair of invalid UTF-8 and NFC normalisation.
#include <string>
#include <string_view>

namespace dt {

// True when `text` is well-formed UTF-8 (no overlongs, surrogates or code points past U+10FFFF).
bool is_valid_utf8(std::string_view text);

// Replaces every maximal invalid subsequence with U+FFFD, exactly like Rust's
// String::from_utf8_lossy and the WHATWG TextDecoder (the Unicode "maximal subpart" practice).
std::string replace_invalid_utf8(std::string_view bytes);

// Unicode NFC of valid UTF-8 (NUL bytes allowed). ASCII text is returned unchanged without a copy
// through utf8proc.
std::string nfc_normalize(std::string_view text);

// Appends the UTF-8 encoding of `code_point` (which must be a valid scalar value).
void append_utf8(std::string& out, char32_t code_point);

}  // namespace dt
