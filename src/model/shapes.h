#pragma once
// The one shape authority: every weight name and shape of a Qwen3.5 text model derives from the
// config here. The loader, init-model, the adapter validator and the trainer all use it.
#include <optional>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "model/config.h"

namespace dt {

// The twelve linear modules LoRA can target (spec §7.2).
enum class LinearKind {
  AttnQ, AttnK, AttnV, AttnO,
  GdnQkv, GdnZ, GdnB, GdnA, GdnOut,
  MlpGate, MlpUp, MlpDown,
};
inline constexpr int kLinearKindCount = 12;
// Module path below the layer, e.g. "self_attn.q_proj", "linear_attn.in_proj_b", "mlp.down_proj".
std::string_view linear_module_path(LinearKind kind);
// Leaf name, e.g. "q_proj", "in_proj_b".
std::string_view linear_leaf_name(LinearKind kind);
std::optional<LinearKind> parse_linear_leaf(std::string_view leaf);
// Whether a layer of this type has the module.
bool layer_has_linear(LayerType type, LinearKind kind);

struct LinearShape {
  int64_t out = 0;
  int64_t in = 0;
};
LinearShape linear_shape(const ModelConfig& config, LinearKind kind);

// Where the text stack lives in a checkpoint.
enum class StackPrefix { Multimodal, TextOnly };  // "model.language_model." / "model."
std::string_view stack_prefix_string(StackPrefix prefix);

enum class WeightRole {
  Embedding, LmHead, FinalNorm,
  InputNorm, PostAttentionNorm,
  Linear,                  // one of the LinearKind modules
  QNorm, KNorm,            // zero-centred, [hd]
  Conv, ALog, DtBias, GatedNorm,
};

struct WeightSpec {
  std::string name;  // full checkpoint name, e.g. "model.language_model.layers.3.self_attn.q_proj.weight"
  Shape shape;
  WeightRole role;
  int layer = -1;                     // -1 for embedding, final norm, head
  std::optional<LinearKind> linear;   // set when role == Linear
};

// Every tensor of the text model in checkpoint order. `include_lm_head` adds lm_head.weight
// (absent when tied and not stored).
std::vector<WeightSpec> weight_specs(const ModelConfig& config, StackPrefix prefix, bool include_lm_head);

// Names the checkpoint may hold that we deliberately ignore (model.visual.*, mtp.*).
bool is_ignored_checkpoint_tensor(const std::string& name);

}  // namespace dt
