// deltatune validate-adapter: checks a PEFT LoRA adapter against a model and summarises it, or
// lists every problem found.
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <map>
#include <memory>
#include <set>

#include "cli/cli.h"
#include "core/error.h"
#include "lora/adapter_io.h"
#include "model/weights.h"

namespace dt {

namespace {

struct KindSummary {
  std::vector<int> layers;
  std::set<int64_t> ranks;
  std::set<double> scalings;
  int64_t parameters = 0;
};

void run_validate_adapter(const std::string& model_dir, const std::string& adapter_dir) {
  const ModelWeights weights = load_model(model_dir);
  AdapterCheck check = check_adapter(adapter_dir, weights.config);
  if (!check.adapter)
    fail("invalid adapter {} ({} error{}):\n{}", adapter_dir, check.errors.size(), check.errors.size() == 1 ? "" : "s",
         fmt::join(check.errors, "\n"));
  const LoraAdapter& adapter = *check.adapter;
  const LoraSettings& settings = adapter.settings();
  std::map<int, KindSummary> kinds;  // by LinearKind, in kind order
  std::set<int> layers;
  for (const LoraModule* module : adapter.modules()) {
    KindSummary& summary = kinds[int(module->kind)];
    summary.layers.push_back(module->layer);
    summary.ranks.insert(module->rank);
    summary.scalings.insert(module->scaling);
    summary.parameters += module->parameter_count();
    layers.insert(module->layer);
  }
  fmt::print("adapter:    {} (valid for {})\n", adapter_dir, model_dir);
  fmt::print("keys:       base_model.model.{}layers.N. (base checkpoint prefix {})\n",
             stack_prefix_string(*check.key_namespace), stack_prefix_string(weights.prefix));
  fmt::print("settings:   r {}, lora_alpha {}, {} scaling, lora_dropout {}\n", settings.r, settings.lora_alpha,
             settings.use_rslora ? "rsLoRA alpha/sqrt(r)" : "alpha/r", settings.lora_dropout);
  fmt::print("modules:    {} in {} of {} layers\n", adapter.module_count(), layers.size(), adapter.layer_count());
  for (const auto& [kind, summary] : kinds)
    fmt::print("  {:<24} {:>3} modules, layers [{}], rank {}, scaling {}, {} parameters\n",
               linear_module_path(LinearKind(kind)), summary.layers.size(), fmt::join(summary.layers, ","),
               fmt::join(summary.ranks, "/"), fmt::join(summary.scalings, "/"), summary.parameters);
  fmt::print("parameters: {}\n", adapter.parameter_count());
}

}  // namespace

void register_validate_adapter(CLI::App& app) {
  auto model = std::make_shared<std::string>();
  auto adapter = std::make_shared<std::string>();
  CLI::App* command = app.add_subcommand(
      "validate-adapter",
      "Check a PEFT LoRA adapter against a model: print a summary (modules per kind, ranks, scalings, parameter "
      "count) and exit 0, or print every error found and exit 1");
  command->add_option("--model", *model, "Base model directory")->required();
  command->add_option("--adapter", *adapter, "Adapter directory (adapter_config.json + adapter_model.safetensors)")
      ->required();
  command->callback([model, adapter] { run_validate_adapter(*model, *adapter); });
}

}  // namespace dt
