#define PCRE2_CODE_UNIT_WIDTH 8
#include "lora/regex.h"

#include <pcre2.h>

#include "core/error.h"

namespace dt {

namespace {

std::string pcre2_message(int code) {
  PCRE2_UCHAR message[256];
  pcre2_get_error_message(code, message, sizeof message);
  return reinterpret_cast<const char*>(message);
}

}  // namespace

Regex::Regex(const std::string& pattern, const std::string& source) {
  int error_code = 0;
  PCRE2_SIZE error_offset = 0;
  pcre2_code* code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(), PCRE2_UTF,
                                   &error_code, &error_offset, nullptr);
  if (code == nullptr)
    fail("{}: invalid regular expression \"{}\" at offset {}: {}", source, pattern, error_offset,
         pcre2_message(error_code));
  code_ = std::shared_ptr<void>(code, [](void* pointer) { pcre2_code_free(static_cast<pcre2_code*>(pointer)); });
}

int Regex::run(std::string_view text, uint32_t options, std::vector<size_t>* ovector) const {
  auto* code = static_cast<const pcre2_code*>(code_.get());
  std::unique_ptr<pcre2_match_data, decltype(&pcre2_match_data_free)> data(
      pcre2_match_data_create_from_pattern(code, nullptr), &pcre2_match_data_free);
  const int result = pcre2_match(code, reinterpret_cast<PCRE2_SPTR>(text.data()), text.size(), 0, options,
                                 data.get(), nullptr);
  if (result == PCRE2_ERROR_NOMATCH) return 0;
  if (result < 0) fail("regular expression match failed on \"{}\": {}", text, pcre2_message(result));
  if (ovector) {
    const PCRE2_SIZE* pairs = pcre2_get_ovector_pointer(data.get());
    ovector->assign(pairs, pairs + 2 * size_t(result));
  }
  return result;
}

bool Regex::full_match(std::string_view text) const {
  return run(text, PCRE2_ANCHORED | PCRE2_ENDANCHORED, nullptr) > 0;
}

bool Regex::prefix_match(std::string_view text) const { return run(text, PCRE2_ANCHORED, nullptr) > 0; }

std::optional<std::string> Regex::prefix_match_group(std::string_view text, int group) const {
  std::vector<size_t> ovector;
  const int pairs = run(text, PCRE2_ANCHORED, &ovector);
  if (group >= pairs || ovector[2 * size_t(group)] == PCRE2_UNSET) return std::nullopt;
  const size_t begin = ovector[2 * size_t(group)];
  return std::string(text.substr(begin, ovector[2 * size_t(group) + 1] - begin));
}

Regex peft_pattern_regex(const std::string& key, const std::string& source) {
  return Regex("(.*\\.)?(" + key + ")$", source);
}

}  // namespace dt
