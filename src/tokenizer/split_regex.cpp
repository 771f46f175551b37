#include "tokenizer/split_regex.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "core/error.h"

namespace dt {

const char* const kQwen35SplitPattern =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

namespace {

std::string pcre2_message(int code) {
  PCRE2_UCHAR buffer[256];
  pcre2_get_error_message(code, buffer, sizeof(buffer));
  return reinterpret_cast<const char*>(buffer);
}

// PCRE2's UCP `\s` also matches U+180E (in \h), which left Unicode's White_Space in 6.3; Oniguruma
// and Rust follow White_Space. Rewriting \s / \S as the property keeps the two identical, inside
// and outside character classes.
std::string with_white_space_property(const std::string& pattern) {
  std::string out;
  out.reserve(pattern.size() + 32);
  for (size_t i = 0; i < pattern.size(); ++i) {
    if (pattern[i] == '\\' && i + 1 < pattern.size()) {
      const char escaped = pattern[i + 1];
      if (escaped == 's') out += "\\p{White_Space}";
      else if (escaped == 'S') out += "\\P{White_Space}";
      else out.append(pattern, i, 2);
      ++i;
    } else {
      out += pattern[i];
    }
  }
  return out;
}

}  // namespace

struct SplitRegex::Compiled {
  pcre2_code* code = nullptr;
  ~Compiled() { pcre2_code_free(code); }
};

SplitRegex::SplitRegex(const std::string& pattern, const std::string& where)
    : pattern_(pattern), compiled_(std::make_unique<Compiled>()) {
  const std::string translated = with_white_space_property(pattern);
  int error_code = 0;
  PCRE2_SIZE error_offset = 0;
  compiled_->code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(translated.data()), translated.size(),
                                  PCRE2_UTF | PCRE2_UCP, &error_code, &error_offset, nullptr);
  if (!compiled_->code)
    fail("{}: cannot compile the regex {:?}: {} (at offset {} of the translated pattern {:?})", where, pattern,
         pcre2_message(error_code), error_offset, translated);
  const int jit_status = pcre2_jit_compile(compiled_->code, PCRE2_JIT_COMPLETE);
  if (jit_status != 0 && jit_status != PCRE2_ERROR_JIT_BADOPTION)  // BADOPTION: no JIT on this CPU
    fail("{}: cannot JIT-compile the regex {:?}: {}", where, pattern, pcre2_message(jit_status));
}

SplitRegex::~SplitRegex() = default;
SplitRegex::SplitRegex(SplitRegex&&) noexcept = default;
SplitRegex& SplitRegex::operator=(SplitRegex&&) noexcept = default;

void SplitRegex::split(std::string_view text, std::vector<std::string_view>& pieces) const {
  // Match data and the JIT stack are per call, so one SplitRegex can serve several threads.
  std::unique_ptr<pcre2_match_data, decltype(&pcre2_match_data_free)> match_data(
      pcre2_match_data_create_from_pattern(compiled_->code, nullptr), &pcre2_match_data_free);
  std::unique_ptr<pcre2_match_context, decltype(&pcre2_match_context_free)> context(pcre2_match_context_create(nullptr),
                                                                                   &pcre2_match_context_free);
  std::unique_ptr<pcre2_jit_stack, decltype(&pcre2_jit_stack_free)> jit_stack(
      pcre2_jit_stack_create(32 * 1024, 8 * 1024 * 1024, nullptr), &pcre2_jit_stack_free);
  if (!match_data || !context || !jit_stack) fail("out of memory while matching the pre-tokenizer regex");
  pcre2_jit_stack_assign(context.get(), nullptr, jit_stack.get());

  const auto subject = reinterpret_cast<PCRE2_SPTR>(text.data());
  size_t gap_begin = 0, search_from = 0;
  while (search_from < text.size()) {
    const int status = pcre2_match(compiled_->code, subject, text.size(), search_from, PCRE2_NO_UTF_CHECK,
                                   match_data.get(), context.get());
    if (status == PCRE2_ERROR_NOMATCH) break;
    if (status < 0) fail("matching the pre-tokenizer regex {:?} failed: {}", pattern_, pcre2_message(status));
    const PCRE2_SIZE* ovector = pcre2_get_ovector_pointer(match_data.get());
    const size_t begin = ovector[0], end = ovector[1];
    if (end == begin) {
      // An empty match yields no piece; step over one whole UTF-8 character and search again.
      search_from = begin + 1;
      while (search_from < text.size() && (static_cast<unsigned char>(text[search_from]) & 0xC0) == 0x80) ++search_from;
      continue;
    }
    if (begin > gap_begin) pieces.push_back(text.substr(gap_begin, begin - gap_begin));
    pieces.push_back(text.substr(begin, end - begin));
    gap_begin = search_from = end;
  }
  if (gap_begin < text.size()) pieces.push_back(text.substr(gap_begin));
}

}  // namespace dt
