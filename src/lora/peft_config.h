#pragma once
// adapter_config.json (PEFT LoraConfig): parsing with every unsupported or invalid setting
// reported, PEFT's module-selection rules (target_modules, exclude_modules, layers_to_transform,
// layers_pattern) and per-module rank / alpha resolution (rank_pattern, alpha_pattern), and
// writing the file the way PEFT does.
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "lora/regex.h"
#include "model/lora_adapter.h"

namespace dt {

inline constexpr const char* kAdapterConfigFile = "adapter_config.json";

// target_modules / exclude_modules: a list of names (a module matches when its full name equals
// an entry or ends with "." + entry), a regex string (re.fullmatch on the full name), or
// "all-linear" (target_modules only: every linear of the stack, here the twelve kinds).
struct ModuleSelector {
  enum class Form { List, Regex, AllLinear };
  Form form = Form::List;
  std::vector<std::string> names;  // Form::List
  std::string pattern;             // Form::Regex
};

struct PeftLoraConfig {
  LoraSettings settings;
  std::optional<ModuleSelector> target_modules;
  std::optional<ModuleSelector> exclude_modules;
  std::optional<std::vector<int64_t>> layers_to_transform;
  std::vector<std::string> layers_pattern;
  std::vector<std::pair<std::string, int64_t>> rank_pattern;  // in file order: the first match wins
  std::vector<std::pair<std::string, double>> alpha_pattern;
};

// Parses adapter_config.json text. Appends every problem (naming `source` and the key) to
// `errors` and returns what could be read; the result is usable only when no error was added.
PeftLoraConfig parse_peft_config(const std::string& text, const std::string& source, std::vector<std::string>& errors);

// The selection and resolution rules of one parsed config, with its regexes compiled.
class PeftModuleRules {
 public:
  // Fails naming `source` when a regex does not compile.
  PeftModuleRules(const PeftLoraConfig& config, const std::string& source);

  // PEFT's check_target_module_exists for a full module name (e.g. "model.layers.3.self_attn.q_proj").
  bool targets(const std::string& module_name) const;
  // rank_pattern / alpha_pattern: the first key k with re.match(rf"(.*\.)?({k})$", name), else r / lora_alpha.
  int64_t rank_for(const std::string& module_name) const;
  double alpha_for(const std::string& module_name) const;
  // A readable statement of the targeting rules, for error messages.
  std::string describe_targets() const;

 private:
  bool layer_selected(const std::string& module_name) const;

  PeftLoraConfig config_;
  std::optional<Regex> target_regex_, exclude_regex_;
  std::vector<std::string> target_names_;
  std::vector<Regex> layer_index_regexes_;
  std::vector<std::pair<Regex, int64_t>> rank_regexes_;
  std::vector<std::pair<Regex, double>> alpha_regexes_;
};

// adapter_config.json for `adapter` as PEFT writes it (indent 2, sorted keys): target_modules lists
// exactly the kinds present, rank_pattern / alpha_pattern name the modules (in `prefix`'s
// namespace) whose rank / alpha differ from r / lora_alpha, layers_to_transform lists the adapted
// layers when not all are.
std::string peft_config_text(const LoraAdapter& adapter, StackPrefix prefix);

}  // namespace dt
