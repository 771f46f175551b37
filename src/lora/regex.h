#pragma once
// Python-`re`-compatible matching for the regexes PEFT configs hold (target_modules as a string,
// rank_pattern / alpha_pattern keys), on PCRE2, whose syntax and semantics are close to Python's.
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace dt {

class Regex {
 public:
  // Compiles `pattern`; fails naming `source` (the config key that holds it) when it is invalid.
  Regex(const std::string& pattern, const std::string& source);

  // Python re.fullmatch(pattern, text).
  bool full_match(std::string_view text) const;
  // Python re.match(pattern, text): anchored at the start only.
  bool prefix_match(std::string_view text) const;
  // With re.match, the text of capture group `group` (nullopt when there is no match or the
  // group did not take part).
  std::optional<std::string> prefix_match_group(std::string_view text, int group) const;

 private:
  // Number of capture pairs set (0: no match); `ovector` receives them when given.
  int run(std::string_view text, uint32_t options, std::vector<size_t>* ovector) const;
  std::shared_ptr<void> code_;  // pcre2_code_8, freed by its deleter
};

// PEFT's get_pattern_key test for one rank_pattern / alpha_pattern key: the regex
// (.*\.)?(key)$ which, tried with prefix_match (re.match) on a module name, accepts names whose
// whole or dot-separated suffix matches the key.
Regex peft_pattern_regex(const std::string& key, const std::string& source);

}  // namespace dt
