#pragma once
// The `Split` pre-tokenizer with behaviour "Isolated": every regex match is a piece, and so is every
// unmatched gap between matches. The pattern (from tokenizer.json) is compiled with PCRE2 in UTF +
// UCP mode and JIT-compiled; backtracking, leftmost-first alternation, `(?i:...)` and lookahead
// behave as in Oniguruma, which Hugging Face tokenizers uses.
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace dt {

class SplitRegex {
 public:
  // `where` names the file and key of the pattern for error messages.
  SplitRegex(const std::string& pattern, const std::string& where);
  ~SplitRegex();
  SplitRegex(SplitRegex&&) noexcept;
  SplitRegex& operator=(SplitRegex&&) noexcept;

  // Appends the pieces of `text` (valid UTF-8) to `pieces`, in order; they tile `text` exactly.
  void split(std::string_view text, std::vector<std::string_view>& pieces) const;

  const std::string& pattern() const { return pattern_; }

 private:
  struct Compiled;
  std::string pattern_;
  std::unique_ptr<Compiled> compiled_;
};

// The Qwen3.5 pre-tokenizer pattern (Qwen3's plus \p{M} in the letter classes).
extern const char* const kQwen35SplitPattern;

}  // namespace dt
