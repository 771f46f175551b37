// deltatune init-adapter: writes a freshly initialised PEFT LoRA adapter for a model directory.
#include <fmt/format.h>

#include <memory>

#include "cli/adapter_options.h"
#include "cli/cli.h"
#include "lora/adapter_io.h"
#include "lora/init.h"
#include "model/weights.h"

namespace dt {

namespace {

struct InitAdapterOptions {
  std::string model;
  std::string out;
  AdapterInitOptions adapter;
  AdapterShapeText shape;
  std::string init = "peft";
  uint64_t seed = 0;
  std::string dtype = "f32";
};

void run_init_adapter(const InitAdapterOptions& options) {
  const ModelWeights weights = load_model(options.model);
  AdapterInitOptions init = options.adapter;
  resolve_adapter_shape(options.shape, weights.config.num_hidden_layers, init);
  init.init = parse_lora_init(options.init);
  init.seed = options.seed;
  init.base_model_name_or_path = options.model;
  const LoraAdapter adapter = init_adapter(weights.config, init);
  save_adapter(adapter, options.out, weights.prefix, parse_storage_dtype(options.dtype));
  fmt::print("wrote {}: {} LoRA modules, rank {}, alpha {}{}, {} parameters, {} init, seed {}, {}\n", options.out,
             adapter.module_count(), init.rank, init.alpha, init.use_rslora ? " (rsLoRA)" : "",
             adapter.parameter_count(), options.init, options.seed, options.dtype);
}

}  // namespace

void register_init_adapter(CLI::App& app) {
  auto options = std::make_shared<InitAdapterOptions>();
  CLI::App* command = app.add_subcommand(
      "init-adapter", "Write a new PEFT LoRA adapter (adapter_config.json + adapter_model.safetensors) for a model");
  command->add_option("--model", options->model, "Base model directory")->required();
  command->add_option("--out", options->out, "Output adapter directory")->required();
  add_adapter_shape_options(*command, options->adapter, options->shape, /*required=*/true);
  command->add_option("--init", options->init,
                      "peft: A kaiming-uniform, B zero (PEFT default); gaussian: A ~ N(0, (1/r)^2), B zero; "
                      "random: A and B both random (for tests: the adapter is not a no-op)")
      ->capture_default_str();
  command->add_option("--seed", options->seed, "Random seed; each module's draws depend only on the seed and its name")
      ->capture_default_str();
  command->add_option("--dtype", options->dtype, "Storage dtype of the factors: f32, bf16 or f16")->capture_default_str();
  command->callback([options] { run_init_adapter(*options); });
}

}  // namespace dt
