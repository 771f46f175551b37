#pragma once
// Random Qwen3.5 models for tests and demos (spec §6): named presets, `key=value` config
// overrides, deterministic parallel weight initialisation, and a complete Hugging Face model
// directory (config, weights, generation config, trained tokenizer) written atomically.
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "io/safetensors.h"
#include "model/config.h"
#include "model/shapes.h"

namespace dt {

// tiny, small, qwen3.5-0.8b.
const std::vector<std::string>& model_preset_names();
// The preset's config. tiny and small size the embedding to the tokenizer (rounded up to a
// multiple of 64); qwen3.5-0.8b keeps the real 248320 rows. Fails naming the presets if unknown.
ModelConfig model_preset(const std::string& name, int64_t tokenizer_vocab_size);
// Applies text-config overrides given as "key=value" (ints, floats, bools, comma lists for
// layer_types / mrope_section / eos_token_id) and re-validates. Changing num_hidden_layers or
// full_attention_interval without layer_types rebuilds the pattern from the interval.
ModelConfig apply_config_overrides(const ModelConfig& config, const std::vector<std::string>& assignments);

struct RandomInitOptions {
  uint64_t seed = 0;
  DType dtype = DType::BF16;
  bool randomize_norms = false;  // norms N(0, 0.1) (gated norm 1 + N(0, 0.1)) instead of HF's constants
};

// Every tensor of the model in weight_specs order (lm_head only when untied), initialised per
// spec §6. Each tensor is drawn in fixed-size chunks seeded from (seed, tensor name, chunk), so
// the result does not depend on the thread count or the standard library.
std::vector<NamedTensor> random_weights(const ModelConfig& config, StackPrefix prefix, const RandomInitOptions& init);

struct RandomModelRequest {
  std::string preset = "tiny";
  std::vector<std::string> overrides;       // "key=value"
  RandomInitOptions init;
  bool text_only = false;                   // qwen3_5_text config and "model." prefix
  int shards = 1;
  std::filesystem::path tokenizer_corpus;   // empty: the built-in corpus
  int64_t tokenizer_vocab_size = 1024;
  bool force = false;                       // replace a non-empty output directory
};

struct RandomModelSummary {
  ModelConfig config;
  int64_t tokenizer_vocab_size = 0;
  uint64_t parameters = 0;
};

// Writes config.json, the safetensors checkpoint, generation_config.json, tokenizer.json and
// tokenizer_config.json into `out` (built in a temporary sibling directory, then renamed).
RandomModelSummary write_random_model(const std::filesystem::path& out, const RandomModelRequest& request);

}  // namespace dt
