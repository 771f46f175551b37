// deltatune init-adapter: writes a freshly initialised PEFT LoRA adapter for a model directory.
#include <fmt/format.h>

#include <memory>

#include "cli/cli.h"
#include "lora/adapter_io.h"
#include "lora/init.h"
#include "model/weights.h"

namespace dt {

namespace {

struct InitAdapterOptions {
  std::string model;
  std::string out;
  int64_t rank = 8;
  double alpha = 16;
  std::string targets = "all-linear";
  std::string layers;
  bool rslora = false;
  std::string init = "peft";
  uint64_t seed = 0;
  std::string dtype = "f32";
};

void run_init_adapter(const InitAdapterOptions& options) {
  const ModelWeights weights = load_model(options.model);
  AdapterInitOptions init;
  init.rank = options.rank;
  init.alpha = options.alpha;
  init.use_rslora = options.rslora;
  init.kinds = parse_target_kinds(options.targets);
  if (!options.layers.empty()) init.layers = parse_layer_list(options.layers, int(weights.config.num_hidden_layers));
  init.init = parse_lora_init(options.init);
  init.seed = options.seed;
  init.base_model_name_or_path = options.model;
  const LoraAdapter adapter = init_adapter(weights.config, init);
  save_adapter(adapter, options.out, weights.prefix, parse_storage_dtype(options.dtype));
  fmt::print("wrote {}: {} LoRA modules, rank {}, alpha {}{}, {} parameters, {} init, seed {}, {}\n", options.out,
             adapter.module_count(), options.rank, options.alpha, options.rslora ? " (rsLoRA)" : "",
             adapter.parameter_count(), options.init, options.seed, options.dtype);
}

}  // namespace

void register_init_adapter(CLI::App& app) {
  auto options = std::make_shared<InitAdapterOptions>();
  CLI::App* command = app.add_subcommand(
      "init-adapter", "Write a new PEFT LoRA adapter (adapter_config.json + adapter_model.safetensors) for a model");
  command->add_option("--model", options->model, "Base model directory")->required();
  command->add_option("--out", options->out, "Output adapter directory")->required();
  command->add_option("--rank", options->rank, "LoRA rank r")->required()->check(CLI::PositiveNumber);
  command->add_option("--alpha", options->alpha, "lora_alpha (scaling alpha/r, or alpha/sqrt(r) with --rslora)")
      ->required()
      ->check(CLI::PositiveNumber);
  command->add_option("--targets", options->targets,
                      "all-linear, or comma-separated leaf names: q_proj,k_proj,v_proj,o_proj, in_proj_qkv,in_proj_z,"
                      "in_proj_b,in_proj_a,out_proj, gate_proj,up_proj,down_proj")
      ->capture_default_str();
  command->add_option("--layers", options->layers, "Layers to adapt, e.g. 0,2,4-7 (default: all)");
  command->add_flag("--rslora", options->rslora, "Rank-stabilised scaling alpha/sqrt(r)");
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
