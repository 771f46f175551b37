#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>

#include "core/error.h"
#include "io/mapped_file.h"
#include "model/random_model.h"
#include "model/weights.h"
#include "test_util.h"

namespace dt {
namespace {

ModelConfig tiny_config(bool tied = false) {
  ModelConfig config = model_preset("tiny", 256);
  config.tie_word_embeddings = tied;
  return config;
}

std::vector<NamedTensor> tiny_tensors(const ModelConfig& config, StackPrefix prefix = StackPrefix::Multimodal,
                                      RandomInitOptions init = {}) {
  return random_weights(config, prefix, init);
}

void write_model(const std::filesystem::path& dir, const ModelConfig& config, const std::vector<NamedTensor>& tensors,
                 int shards = 1) {
  write_checkpoint(dir, tensors, shards);
  write_file_atomic(dir / "config.json", config_to_json(config).dump(2));
}

// The loader's error message, or "" when it loads.
std::string load_error(const std::filesystem::path& dir) {
  try {
    load_model(dir);
  } catch (const Error& error) {
    return error.what();
  }
  return "";
}

NamedTensor& find_tensor(std::vector<NamedTensor>& tensors, const std::string& name) {
  auto it = std::find_if(tensors.begin(), tensors.end(), [&](const NamedTensor& t) { return t.name == name; });
  if (it == tensors.end()) throw std::runtime_error("test bug: no tensor " + name);
  return *it;
}

void erase_tensor(std::vector<NamedTensor>& tensors, const std::string& name) {
  find_tensor(tensors, name);
  std::erase_if(tensors, [&](const NamedTensor& t) { return t.name == name; });
}

const std::string kStack = "model.language_model.";

TEST(Load, LoadsEveryTensorWithItsShape) {
  const auto dir = test::temp_dir();
  const ModelConfig config = tiny_config();
  write_model(dir, config, tiny_tensors(config));
  const ModelWeights w = load_model(dir);
  EXPECT_EQ(w.config, config);
  EXPECT_EQ(w.prefix, StackPrefix::Multimodal);
  EXPECT_TRUE(w.lm_head_stored);
  EXPECT_EQ(w.embed_tokens.shape(), (Shape{config.vocab_size, 64}));
  EXPECT_EQ(w.lm_head.shape(), (Shape{config.vocab_size, 64}));
  EXPECT_NE(w.lm_head.data(), w.embed_tokens.data());
  EXPECT_EQ(w.final_norm.shape(), (Shape{64}));
  EXPECT_EQ(w.final_norm.dtype(), DType::F32);
  ASSERT_EQ(w.layers.size(), 4u);
  for (size_t i = 0; i < 4; ++i) {
    const LayerWeights& layer = w.layers[i];
    EXPECT_EQ(layer.type, config.layer_types[i]);
    EXPECT_EQ(layer.input_layernorm.dtype(), DType::F32);
    EXPECT_EQ(layer.post_attention_layernorm.shape(), (Shape{64}));
    for (int k = 0; k < kLinearKindCount; ++k) {
      const auto kind = LinearKind(k);
      if (!layer_has_linear(layer.type, kind)) {
        EXPECT_THROW(layer.linear(kind), Error);
        continue;
      }
      const LinearShape shape = linear_shape(config, kind);
      EXPECT_EQ(layer.linear(kind).shape(), (Shape{shape.out, shape.in})) << i << " " << linear_module_path(kind);
      // Big matrices stay zero-copy views in the stored dtype.
      EXPECT_FALSE(layer.linear(kind).owns_data());
      EXPECT_EQ(layer.linear(kind).dtype(), DType::BF16);
    }
    if (layer.type == LayerType::FullAttention) {
      EXPECT_EQ(layer.attention.q_norm.shape(), (Shape{32}));
      EXPECT_EQ(layer.attention.k_norm.dtype(), DType::F32);
    } else {
      EXPECT_EQ(layer.deltanet.conv1d.shape(), (Shape{config.conv_dim(), 4}));
      EXPECT_EQ(layer.deltanet.conv1d.dtype(), DType::F32);
      EXPECT_EQ(layer.deltanet.A_log.shape(), (Shape{4}));
      EXPECT_EQ(layer.deltanet.dt_bias.shape(), (Shape{4}));
      EXPECT_EQ(layer.deltanet.norm.shape(), (Shape{24}));
      // Spec §6 initialisation.
      for (float v : layer.deltanet.A_log.f32_span()) {
        EXPECT_GE(v, std::log(0.01f) - 1e-2f);
        EXPECT_LE(v, std::log(16.0f) + 1e-2f);
      }
      for (float v : layer.deltanet.dt_bias.f32_span()) EXPECT_EQ(v, 1.0f);
      for (float v : layer.deltanet.norm.f32_span()) EXPECT_EQ(v, 1.0f);
    }
    for (float v : layer.input_layernorm.f32_span()) EXPECT_EQ(v, 0.0f);
  }
  EXPECT_FALSE(w.embed_tokens.owns_data());
}

TEST(Load, TiedHeadIsTheEmbeddingAndTextOnlyPrefixIsDetected) {
  const auto dir = test::temp_dir();
  ModelConfig config = tiny_config(true);
  config.multimodal_wrapper = false;
  const auto tensors = tiny_tensors(config, StackPrefix::TextOnly);
  EXPECT_EQ(std::count_if(tensors.begin(), tensors.end(), [](const NamedTensor& t) { return t.name == "lm_head.weight"; }), 0);
  write_model(dir, config, tensors, 3);
  const ModelWeights w = load_model(dir);
  EXPECT_EQ(w.prefix, StackPrefix::TextOnly);
  EXPECT_FALSE(w.lm_head_stored);
  EXPECT_EQ(w.lm_head.data(), w.embed_tokens.data());
}

TEST(Load, TiedConfigUsesTheEmbeddingEvenWhenAHeadIsStored) {
  const auto dir = test::temp_dir();
  const ModelConfig untied = tiny_config(false);
  ModelConfig tied = untied;
  tied.tie_word_embeddings = true;
  write_model(dir, tied, tiny_tensors(untied));  // lm_head.weight stored, config says tied (as HF ties)
  const ModelWeights w = load_model(dir);
  EXPECT_FALSE(w.lm_head_stored);
  EXPECT_EQ(w.lm_head.data(), w.embed_tokens.data());
}

TEST(Load, UntiedConfigWithoutHeadFails) {
  const auto dir = test::temp_dir();
  const ModelConfig config = tiny_config(false);
  auto tensors = tiny_tensors(config);
  erase_tensor(tensors, "lm_head.weight");
  write_model(dir, config, tensors);
  EXPECT_NE(load_error(dir).find("lm_head.weight is missing and config.json has tie_word_embeddings false"),
            std::string::npos)
      << load_error(dir);
}

TEST(Load, ListsEveryMissingTensor) {
  const auto dir = test::temp_dir();
  const ModelConfig config = tiny_config();
  auto tensors = tiny_tensors(config);
  erase_tensor(tensors, kStack + "layers.0.linear_attn.A_log");
  erase_tensor(tensors, kStack + "layers.3.self_attn.k_norm.weight");
  write_model(dir, config, tensors);
  const std::string error = load_error(dir);
  EXPECT_NE(error.find(dir.string()), std::string::npos) << error;
  EXPECT_NE(error.find("2 missing tensor(s)"), std::string::npos) << error;
  EXPECT_NE(error.find(kStack + "layers.0.linear_attn.A_log"), std::string::npos) << error;
  EXPECT_NE(error.find(kStack + "layers.3.self_attn.k_norm.weight"), std::string::npos) << error;

  // Many missing tensors: the first few by name, then a count.
  const ModelConfig tied = tiny_config(true);
  auto few = tiny_tensors(tied);
  few.resize(3);
  write_model(dir, tied, few);
  const std::string many = load_error(dir);
  EXPECT_NE(many.find("more"), std::string::npos) << many;
}

TEST(Load, WrongShapeNamesTensorFileAndBothShapes) {
  const auto dir = test::temp_dir();
  const ModelConfig config = tiny_config();
  auto tensors = tiny_tensors(config);
  // in_proj_b sized by key heads instead of value heads: the classic nk/nv mix-up.
  find_tensor(tensors, kStack + "layers.1.linear_attn.in_proj_b.weight").tensor = Tensor::zeros(DType::BF16, {2, 64});
  write_model(dir, config, tensors);
  const std::string error = load_error(dir);
  EXPECT_NE(error.find(kStack + "layers.1.linear_attn.in_proj_b.weight in model.safetensors: expected shape [4, 64], found [2, 64]"),
            std::string::npos)
      << error;
}

TEST(Load, UnsupportedDtypeIsNamed) {
  const auto dir = test::temp_dir();
  const ModelConfig config = tiny_config();
  auto tensors = tiny_tensors(config);
  find_tensor(tensors, kStack + "layers.2.linear_attn.dt_bias").tensor = Tensor::zeros(DType::I32, {4});
  write_model(dir, config, tensors);
  const std::string error = load_error(dir);
  EXPECT_NE(error.find(kStack + "layers.2.linear_attn.dt_bias in model.safetensors: dtype I32 is not supported"),
            std::string::npos)
      << error;
}

TEST(Load, MixedFloatDtypesPerTensorAreAccepted) {
  const auto dir = test::temp_dir();
  const ModelConfig config = tiny_config();
  auto tensors = tiny_tensors(config);
  auto& a_log = find_tensor(tensors, kStack + "layers.0.linear_attn.A_log").tensor;
  a_log = a_log.to(DType::F32);
  auto& q_proj = find_tensor(tensors, kStack + "layers.3.self_attn.q_proj.weight").tensor;
  q_proj = q_proj.to(DType::F16);
  write_model(dir, config, tensors);
  const ModelWeights w = load_model(dir);
  EXPECT_EQ(w.layers[3].attention.q_proj.dtype(), DType::F16);
  EXPECT_EQ(w.layers[0].deltanet.A_log.to_f32_vector(), a_log.to_f32_vector());
}

TEST(Load, UnexpectedTensorsAreRejectedButVisualAndMtpIgnored) {
  const auto dir = test::temp_dir();
  const ModelConfig config = tiny_config();
  auto tensors = tiny_tensors(config);
  tensors.push_back({"model.visual.blocks.0.norm1.weight", Tensor::zeros(DType::BF16, {8})});
  tensors.push_back({"mtp.fc.weight", Tensor::zeros(DType::BF16, {8, 8})});
  write_model(dir, config, tensors);
  EXPECT_EQ(load_error(dir), "");

  tensors.push_back({kStack + "layers.4.mlp.up_proj.weight", Tensor::zeros(DType::BF16, {128, 64})});
  write_model(dir, config, tensors);
  const std::string error = load_error(dir);
  EXPECT_NE(error.find("1 unexpected tensor(s)"), std::string::npos) << error;
  EXPECT_NE(error.find(kStack + "layers.4.mlp.up_proj.weight"), std::string::npos) << error;
}

TEST(Load, CheckpointOfAnotherModelIsRejected) {
  const auto dir = test::temp_dir();
  write_model(dir, tiny_config(), {{"transformer.wte.weight", Tensor::zeros(DType::BF16, {8, 8})}});
  EXPECT_NE(load_error(dir).find("no embed_tokens.weight under model.language_model. or model."), std::string::npos);
}

TEST(RandomWeights, DeterministicPerSeedAndFollowsDtype) {
  const ModelConfig config = tiny_config();
  RandomInitOptions init;
  init.seed = 7;
  const auto a = random_weights(config, StackPrefix::Multimodal, init);
  const auto b = random_weights(config, StackPrefix::Multimodal, init);
  init.seed = 8;
  const auto c = random_weights(config, StackPrefix::Multimodal, init);
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].tensor.to_f32_vector(), b[i].tensor.to_f32_vector()) << a[i].name;
    EXPECT_EQ(a[i].tensor.dtype(), DType::BF16);
  }
  EXPECT_NE(a.front().tensor.to_f32_vector(), c.front().tensor.to_f32_vector());

  init.dtype = DType::F32;
  const auto f32 = random_weights(config, StackPrefix::Multimodal, init);
  const auto embedding = f32.front().tensor.to_f32_vector();
  double sum = 0, sum_squares = 0;
  for (float v : embedding) {
    sum += v;
    sum_squares += double(v) * v;
  }
  const double mean = sum / double(embedding.size());
  const double deviation = std::sqrt(sum_squares / double(embedding.size()) - mean * mean);
  EXPECT_NEAR(mean, 0.0, 0.002);
  EXPECT_NEAR(deviation, 0.02, 0.001);
  // The tails are Gaussian too: P(|z| > 2) = 0.0455, P(|z| > 3) = 0.0027.
  const auto beyond = [&](double sigmas) {
    return double(std::count_if(embedding.begin(), embedding.end(), [&](float v) { return std::fabs(v) > sigmas * 0.02; })) /
           double(embedding.size());
  };
  EXPECT_NEAR(beyond(2.0), 0.0455, 0.006);
  EXPECT_NEAR(beyond(3.0), 0.0027, 0.0012);
  EXPECT_EQ(beyond(8.0), 0.0);
}

TEST(RandomWeights, RandomizedNormsMoveAwayFromConstants) {
  const ModelConfig config = tiny_config();
  RandomInitOptions init;
  init.randomize_norms = true;
  init.dtype = DType::F32;
  auto tensors = random_weights(config, StackPrefix::Multimodal, init);
  const auto final_norm = find_tensor(tensors, kStack + "norm.weight").tensor.to_f32_vector();
  EXPECT_TRUE(std::any_of(final_norm.begin(), final_norm.end(), [](float v) { return v != 0.0f; }));
  const auto gated = find_tensor(tensors, kStack + "layers.0.linear_attn.norm.weight").tensor.to_f32_vector();
  for (float v : gated) EXPECT_NEAR(v, 1.0f, 0.6f);
  EXPECT_TRUE(std::any_of(gated.begin(), gated.end(), [](float v) { return v != 1.0f; }));
}

TEST(ConfigOverrides, SetsFieldsAndRevalidates) {
  const ModelConfig base = tiny_config();
  ModelConfig c = apply_config_overrides(base, {"hidden_size=96", "rope_theta=1e6", "attn_output_gate=false",
                                                "rms_norm_eps=1e-5"});
  EXPECT_EQ(c.hidden_size, 96);
  EXPECT_DOUBLE_EQ(c.rope_theta, 1e6);
  EXPECT_FALSE(c.attn_output_gate);
  EXPECT_DOUBLE_EQ(c.rms_norm_eps, 1e-5);
  EXPECT_EQ(c.multimodal_wrapper, base.multimodal_wrapper);

  c = apply_config_overrides(base, {"num_hidden_layers=8"});
  EXPECT_EQ(layer_pattern_string(c.layer_types), "LLLF LLLF");
  c = apply_config_overrides(base, {"num_hidden_layers=3", "full_attention_interval=3"});
  EXPECT_EQ(layer_pattern_string(c.layer_types), "LLF");
  c = apply_config_overrides(base, {"num_hidden_layers=2", "layer_types=full_attention,linear_attention"});
  EXPECT_EQ(layer_pattern_string(c.layer_types), "FL");
  c = apply_config_overrides(base, {"eos_token_id=3,5", "mrope_section=1,1,2"});
  EXPECT_EQ(c.eos_token_ids, (std::vector<int64_t>{3, 5}));
  EXPECT_EQ(c.mrope_section, (std::vector<int64_t>{1, 1, 2}));

  auto error_of = [&](const std::string& assignment) -> std::string {
    try {
      apply_config_overrides(base, {assignment});
    } catch (const Error& error) {
      return error.what();
    }
    return "";
  };
  EXPECT_NE(error_of("hidden_sise=3").find("unknown config key 'hidden_sise'"), std::string::npos);
  EXPECT_NE(error_of("hidden_size=big").find("'big' is not an integer"), std::string::npos);
  EXPECT_NE(error_of("rope_theta=x").find("'x' is not a number"), std::string::npos);
  EXPECT_NE(error_of("attn_output_gate=maybe").find("not a boolean"), std::string::npos);
  EXPECT_NE(error_of("linear_num_value_heads=3").find("must be a multiple of linear_num_key_heads"), std::string::npos);
  EXPECT_NE(error_of("model_type=llama").find("unknown config key 'model_type'"), std::string::npos);
  EXPECT_NE(error_of("novalue").find("expected key=value"), std::string::npos);
}

TEST(Presets, UnknownPresetIsNamed) {
  try {
    model_preset("huge", 256);
    FAIL();
  } catch (const Error& error) {
    EXPECT_NE(std::string(error.what()).find("unknown preset 'huge': expected one of tiny, small, qwen3.5-0.8b"),
              std::string::npos);
  }
}

TEST(Presets, RealPresetMatchesTheRealConfig) {
  ModelConfig real = parse_config(
      nlohmann::json::parse(read_text_file(test::source_dir() / "tests/model/data/qwen3.5-0.8b-config.json")), "fixture");
  ModelConfig preset = model_preset("qwen3.5-0.8b", 1000);
  real.eos_token_ids.clear();
  real.initializer_range = preset.initializer_range;
  EXPECT_EQ(preset, real);
}

}  // namespace
}  // namespace dt
