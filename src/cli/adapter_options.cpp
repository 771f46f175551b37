#include "cli/adapter_options.h"

namespace dt {

void add_adapter_shape_options(CLI::App& command, AdapterInitOptions& adapter, AdapterShapeText& text,
                               bool required) {
  CLI::Option* rank = command.add_option("--rank", adapter.rank, "LoRA rank r")->check(CLI::PositiveNumber);
  CLI::Option* alpha =
      command.add_option("--alpha", adapter.alpha, "lora_alpha (scaling alpha/r, or alpha/sqrt(r) with --rslora)")
          ->check(CLI::PositiveNumber);
  for (CLI::Option* option : {rank, alpha}) {
    if (required)
      option->required();
    else
      option->capture_default_str();
  }
  command
      .add_option("--targets", text.targets,
                  "all-linear, or comma-separated leaf names: q_proj,k_proj,v_proj,o_proj, in_proj_qkv,in_proj_z,"
                  "in_proj_b,in_proj_a,out_proj, gate_proj,up_proj,down_proj")
      ->capture_default_str();
  command.add_option("--layers", text.layers, "Layers to adapt, e.g. 0,2,4-7 (default: all)");
  command.add_flag("--rslora", adapter.use_rslora, "Rank-stabilised scaling alpha/sqrt(r)");
}

void resolve_adapter_shape(const AdapterShapeText& text, int64_t layer_count, AdapterInitOptions& adapter) {
  adapter.kinds = parse_target_kinds(text.targets);
  if (!text.layers.empty()) adapter.layers = parse_layer_list(text.layers, int(layer_count));
}

}  // namespace dt
