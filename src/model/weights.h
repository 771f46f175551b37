#pragma once
// A loaded model: config plus every weight. Large matrices stay in their stored dtype as
// zero-copy views of the mapped checkpoint; small per-channel tensors are converted to F32.
#include <filesystem>
#include <vector>

#include "core/tensor.h"
#include "io/safetensors.h"
#include "model/config.h"
#include "model/shapes.h"

namespace dt {

struct AttentionWeights {
  Tensor q_proj, k_proj, v_proj, o_proj;  // [out, in], stored dtype
  Tensor q_norm, k_norm;                  // [hd] F32, zero-centred
};

struct DeltaNetWeights {
  Tensor in_proj_qkv, in_proj_z, in_proj_b, in_proj_a, out_proj;  // [out, in], stored dtype
  Tensor conv1d;                                                  // [conv_dim, Kc] F32
  Tensor A_log, dt_bias;                                          // [nv] F32
  Tensor norm;                                                    // [dv] F32, plain weight
};

struct MlpWeights {
  Tensor gate_proj, up_proj, down_proj;  // stored dtype
};

struct LayerWeights {
  LayerType type;
  Tensor input_layernorm, post_attention_layernorm;  // [H] F32, zero-centred
  AttentionWeights attention;                        // set for full-attention layers
  DeltaNetWeights deltanet;                          // set for linear-attention layers
  MlpWeights mlp;

  // The weight of one of the twelve linear modules (fails when the layer lacks it).
  const Tensor& linear(LinearKind kind) const;
  Tensor& linear(LinearKind kind);
};

struct ModelWeights {
  ModelConfig config;
  StackPrefix prefix = StackPrefix::Multimodal;
  bool lm_head_stored = false;     // false: tied to embed_tokens
  Tensor embed_tokens;             // [Vocab, H], stored dtype
  Tensor final_norm;               // [H] F32
  Tensor lm_head;                  // [Vocab, H]; the embedding itself when tied
  std::vector<LayerWeights> layers;
};

// Loads config.json and the checkpoint from `model_dir`, checking every expected tensor by name,
// shape and dtype (F32/BF16/F16), naming any missing one or any mismatch.
ModelWeights load_model(const std::filesystem::path& model_dir);
// Same from an already-open checkpoint and parsed config (`source` names the directory).
ModelWeights load_model(const ModelConfig& config, const Checkpoint& checkpoint, const std::string& source);

}  // namespace dt
