#include "model/random_model.h"

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <random>
#include <sstream>

#include "core/error.h"
#include "io/mapped_file.h"
#include "tokenizer/bpe_trainer.h"

namespace dt {

using nlohmann::json;

namespace {

std::vector<LayerType> interval_pattern(int64_t layers, int64_t interval) {
  std::vector<LayerType> types;
  for (int64_t i = 0; i < layers; ++i)
    types.push_back((i + 1) % interval == 0 ? LayerType::FullAttention : LayerType::LinearAttention);
  return types;
}

int64_t round_up(int64_t value, int64_t multiple) { return (value + multiple - 1) / multiple * multiple; }

}  // namespace

const std::vector<std::string>& model_preset_names() {
  static const std::vector<std::string> names = {"tiny", "small", "qwen3.5-0.8b"};
  return names;
}

ModelConfig model_preset(const std::string& name, int64_t tokenizer_vocab_size) {
  ModelConfig c;
  c.multimodal_wrapper = true;
  c.rms_norm_eps = 1e-6;
  c.rope_theta = 1e7;
  c.partial_rotary_factor = 0.25;
  c.mrope_interleaved = true;
  c.attn_output_gate = true;
  c.initializer_range = 0.02;
  c.linear_conv_kernel_dim = 4;
  if (name == "tiny") {
    // Every head count and head dim differs so that mix-ups (nk vs nv, dk vs dv) change shapes.
    c.vocab_size = round_up(tokenizer_vocab_size, 64);
    c.hidden_size = 64;
    c.intermediate_size = 128;
    c.num_hidden_layers = 4;
    c.num_attention_heads = 4;
    c.num_key_value_heads = 2;
    c.head_dim = 32;
    c.linear_num_key_heads = 2;
    c.linear_num_value_heads = 4;
    c.linear_key_head_dim = 16;
    c.linear_value_head_dim = 24;
    c.mrope_section = {2, 1, 1};
    c.tie_word_embeddings = false;
    c.max_position_embeddings = 4096;
  } else if (name == "small") {
    c.vocab_size = round_up(tokenizer_vocab_size, 64);
    c.hidden_size = 384;
    c.intermediate_size = 1152;
    c.num_hidden_layers = 8;
    c.num_attention_heads = 6;
    c.num_key_value_heads = 2;
    c.head_dim = 64;
    c.linear_num_key_heads = 4;
    c.linear_num_value_heads = 8;
    c.linear_key_head_dim = 32;
    c.linear_value_head_dim = 48;
    c.mrope_section = {3, 3, 2};
    c.tie_word_embeddings = true;
    c.max_position_embeddings = 32768;
  } else if (name == "qwen3.5-0.8b") {
    // The real Qwen3.5-0.8B text model (its config.json); the tokenizer is still a small trained one.
    c.vocab_size = 248320;
    c.hidden_size = 1024;
    c.intermediate_size = 3584;
    c.num_hidden_layers = 24;
    c.num_attention_heads = 8;
    c.num_key_value_heads = 2;
    c.head_dim = 256;
    c.linear_num_key_heads = 16;
    c.linear_num_value_heads = 16;
    c.linear_key_head_dim = 128;
    c.linear_value_head_dim = 128;
    c.mrope_section = {11, 11, 10};
    c.tie_word_embeddings = true;
    c.max_position_embeddings = 262144;
  } else {
    fail("unknown preset '{}': expected one of {}", name, fmt::join(model_preset_names(), ", "));
  }
  c.layer_types = interval_pattern(c.num_hidden_layers, 4);
  validate_config(c, "preset " + name);
  return c;
}

namespace {

std::vector<std::string> split_list(const std::string& text) {
  std::vector<std::string> items;
  std::stringstream stream(text);
  for (std::string item; std::getline(stream, item, ',');) {
    const auto first = item.find_first_not_of(" \t"), last = item.find_last_not_of(" \t");
    items.push_back(first == std::string::npos ? "" : item.substr(first, last - first + 1));
  }
  return items;
}

int64_t parse_integer(const std::string& assignment, const std::string& text) {
  int64_t value = 0;
  const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (error != std::errc() || end != text.data() + text.size() || text.empty())
    fail("--set {}: '{}' is not an integer", assignment, text);
  return value;
}

double parse_number(const std::string& assignment, const std::string& text) {
  char* end = nullptr;
  const double value = std::strtod(text.c_str(), &end);
  if (text.empty() || end != text.c_str() + text.size() || !std::isfinite(value))
    fail("--set {}: '{}' is not a number", assignment, text);
  return value;
}

// Converts the override's text to the JSON type the key already has in the config.
json override_value(const std::string& assignment, const std::string& key, const std::string& text, const json& current) {
  if (key == "layer_types") return split_list(text);
  if (key == "mrope_section" || key == "eos_token_id") {
    json values = json::array();
    for (const std::string& item : split_list(text)) values.push_back(parse_integer(assignment, item));
    return values;
  }
  if (current.is_boolean()) {
    if (text == "true" || text == "1") return true;
    if (text == "false" || text == "0") return false;
    fail("--set {}: '{}' is not a boolean: expected true or false", assignment, text);
  }
  if (current.is_number_integer()) return parse_integer(assignment, text);
  if (current.is_number_float()) return parse_number(assignment, text);
  fail("--set {}: '{}' cannot be overridden", assignment, key);
}

}  // namespace

ModelConfig apply_config_overrides(const ModelConfig& config, const std::vector<std::string>& assignments) {
  if (assignments.empty()) return config;
  ModelConfig text_form = config;
  text_form.multimodal_wrapper = false;
  json text = config_to_json(text_form);
  json& rope = text["rope_parameters"];
  static const std::vector<std::string> rope_keys = {"rope_theta", "partial_rotary_factor", "mrope_section",
                                                     "mrope_interleaved"};
  static const std::vector<std::string> fixed_keys = {"model_type", "architectures", "rope_parameters"};
  bool layer_types_given = false, pattern_inputs_changed = false;
  for (const std::string& assignment : assignments) {
    const auto equals = assignment.find('=');
    if (equals == std::string::npos || equals == 0) fail("--set {}: expected key=value", assignment);
    const std::string key = assignment.substr(0, equals), value = assignment.substr(equals + 1);
    const bool is_rope = std::find(rope_keys.begin(), rope_keys.end(), key) != rope_keys.end();
    json& target = is_rope ? rope : text;
    const bool known = target.contains(key) || key == "full_attention_interval" || key == "eos_token_id" ||
                       key == "mrope_section";
    if (!known || std::find(fixed_keys.begin(), fixed_keys.end(), key) != fixed_keys.end()) {
      std::vector<std::string> settable;
      for (const auto& [name, unused] : text.items())
        if (std::find(fixed_keys.begin(), fixed_keys.end(), name) == fixed_keys.end()) settable.push_back(name);
      settable.insert(settable.end(), rope_keys.begin(), rope_keys.end());
      settable.push_back("full_attention_interval");
      if (!text.contains("eos_token_id")) settable.push_back("eos_token_id");
      fail("--set {}: unknown config key '{}'; settable keys: {}", assignment, key, fmt::join(settable, ", "));
    }
    const json current = key == "full_attention_interval" ? json(int64_t(4)) : target.value(key, json());
    target[key] = override_value(assignment, key, value, current);
    layer_types_given |= key == "layer_types";
    pattern_inputs_changed |= key == "num_hidden_layers" || key == "full_attention_interval";
  }
  if (pattern_inputs_changed && !layer_types_given) text.erase("layer_types");
  ModelConfig result = parse_config(text, "--set overrides");
  result.multimodal_wrapper = config.multimodal_wrapper;
  return result;
}

namespace {

uint64_t splitmix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

uint64_t fnv1a(std::string_view text) {
  uint64_t hash = 0xcbf29ce484222325ull;
  for (unsigned char c : text) hash = (hash ^ c) * 0x100000001b3ull;
  return hash;
}

// Marsaglia-Tsang ziggurat tables in Doornik's ZIGNOR form: 128 strips of equal area under the
// normal density; edges[0] is the base strip's pseudo-width, edges[1] = R, edges[128] = 0.
struct ZigguratTables {
  static constexpr int kStrips = 128;
  static constexpr double kTailStart = 3.442619855899;       // R
  static constexpr double kStripArea = 9.91256303526217e-3;  // V
  double edges[kStrips + 1];
  double inner_ratio[kStrips];  // edges[i+1] / edges[i]: below it a draw is inside the rectangle

  ZigguratTables() {
    double density = std::exp(-0.5 * kTailStart * kTailStart);
    edges[0] = kStripArea / density;
    edges[1] = kTailStart;
    edges[kStrips] = 0.0;
    for (int i = 2; i < kStrips; ++i) {
      edges[i] = std::sqrt(-2.0 * std::log(kStripArea / edges[i - 1] + density));
      density = std::exp(-0.5 * edges[i] * edges[i]);
    }
    for (int i = 0; i < kStrips; ++i) inner_ratio[i] = edges[i + 1] / edges[i];
  }
};

// mt19937_64's output sequence is fixed by the C++ standard; the distributions are not, so the
// uniform and normal transforms are our own.
class RandomStream {
 public:
  explicit RandomStream(uint64_t seed) : engine_(seed) {}

  double uniform() { return double(engine_() >> 11) * 0x1.0p-53; }  // [0, 1)

  // Ziggurat: one engine draw and a multiply for ~99% of samples (a log or exp per sample made
  // the 0.8B preset take many seconds).
  double normal() {
    static const ZigguratTables tables;
    for (;;) {
      const uint64_t bits = engine_();
      const double u = double(bits >> 11) * 0x1.0p-52 - 1.0;  // [-1, 1)
      const int strip = int(bits & (ZigguratTables::kStrips - 1));
      if (std::fabs(u) < tables.inner_ratio[strip]) return u * tables.edges[strip];
      if (strip == 0) return tail(u < 0);
      const double x = u * tables.edges[strip];
      const double outer = std::exp(-0.5 * (tables.edges[strip] * tables.edges[strip] - x * x));
      const double inner = std::exp(-0.5 * (tables.edges[strip + 1] * tables.edges[strip + 1] - x * x));
      if (inner + uniform() * (outer - inner) < 1.0) return x;
    }
  }

 private:
  // Marsaglia's exact sampler for |z| > R.
  double tail(bool negative) {
    double x, y;
    do {
      x = std::log(1.0 - uniform()) / ZigguratTables::kTailStart;
      y = std::log(1.0 - uniform());
    } while (-2.0 * y < x * x);
    return negative ? x - ZigguratTables::kTailStart : ZigguratTables::kTailStart - x;
  }

  std::mt19937_64 engine_;
};

enum class InitRule { Normal, Zeros, Ones, NormNoise, OnePlusNormNoise, LogUniformDecay };

InitRule init_rule(WeightRole role, bool randomize_norms) {
  switch (role) {
    case WeightRole::Embedding:
    case WeightRole::LmHead:
    case WeightRole::Linear:
    case WeightRole::Conv: return InitRule::Normal;
    case WeightRole::FinalNorm:
    case WeightRole::InputNorm:
    case WeightRole::PostAttentionNorm:
    case WeightRole::QNorm:
    case WeightRole::KNorm: return randomize_norms ? InitRule::NormNoise : InitRule::Zeros;
    case WeightRole::GatedNorm: return randomize_norms ? InitRule::OnePlusNormNoise : InitRule::Ones;
    case WeightRole::DtBias: return InitRule::Ones;
    case WeightRole::ALog: return InitRule::LogUniformDecay;
  }
  fail("internal error: unknown weight role {}", int(role));
}

void fill_chunk(InitRule rule, double initializer_range, uint64_t seed, float* values, size_t count) {
  constexpr double kNormNoise = 0.1;
  RandomStream random(seed);
  switch (rule) {
    case InitRule::Normal:
      for (size_t i = 0; i < count; ++i) values[i] = float(initializer_range * random.normal());
      break;
    case InitRule::Zeros: std::fill(values, values + count, 0.0f); break;
    case InitRule::Ones: std::fill(values, values + count, 1.0f); break;
    case InitRule::NormNoise:
      for (size_t i = 0; i < count; ++i) values[i] = float(kNormNoise * random.normal());
      break;
    case InitRule::OnePlusNormNoise:
      for (size_t i = 0; i < count; ++i) values[i] = float(1.0 + kNormNoise * random.normal());
      break;
    case InitRule::LogUniformDecay:
      for (size_t i = 0; i < count; ++i) values[i] = float(std::log(0.01 + (16.0 - 0.01) * random.uniform()));
      break;
  }
}

constexpr size_t kChunkElements = size_t(1) << 18;

}  // namespace

std::vector<NamedTensor> random_weights(const ModelConfig& config, StackPrefix prefix, const RandomInitOptions& init) {
  const auto specs = weight_specs(config, prefix, !config.tie_word_embeddings);
  std::vector<NamedTensor> tensors;
  struct Chunk {
    size_t tensor;
    size_t begin, count;
  };
  std::vector<Chunk> chunks;
  std::vector<std::byte*> storage;
  for (const WeightSpec& spec : specs) {
    tensors.push_back({spec.name, Tensor::zeros(init.dtype, spec.shape)});
    storage.push_back(static_cast<std::byte*>(tensors.back().tensor.mutable_data()));
    const size_t numel = size_t(tensors.back().tensor.numel());
    for (size_t begin = 0; begin < numel; begin += kChunkElements)
      chunks.push_back({tensors.size() - 1, begin, std::min(kChunkElements, numel - begin)});
  }
  const size_t element_bytes = size_t(dtype_bits(init.dtype) / 8);
#pragma omp parallel
  {
    std::vector<float> values(kChunkElements);
#pragma omp for schedule(dynamic)
    for (size_t i = 0; i < chunks.size(); ++i) {
      const Chunk& chunk = chunks[i];
      const WeightSpec& spec = specs[chunk.tensor];
      const uint64_t seed = splitmix64(splitmix64(init.seed ^ fnv1a(spec.name)) + chunk.begin / kChunkElements);
      fill_chunk(init_rule(spec.role, init.randomize_norms), config.initializer_range, seed, values.data(), chunk.count);
      convert_from_f32(init.dtype, values.data(), storage[chunk.tensor] + chunk.begin * element_bytes, chunk.count);
    }
  }
  return tensors;
}

namespace {

std::string torch_dtype_name(DType dtype) {
  switch (dtype) {
    case DType::F32: return "float32";
    case DType::BF16: return "bfloat16";
    case DType::F16: return "float16";
    default: fail("model weights must be F32, BF16 or F16, not {}", dtype_name(dtype));
  }
}

bool is_non_empty(const std::filesystem::path& path) {
  if (!std::filesystem::exists(path)) return false;
  return !std::filesystem::is_directory(path) || !std::filesystem::is_empty(path);
}

void write_model_files(const std::filesystem::path& dir, const ModelConfig& config, const TrainedTokenizer& tokenizer,
                       const RandomModelRequest& request) {
  const StackPrefix prefix = config.multimodal_wrapper ? StackPrefix::Multimodal : StackPrefix::TextOnly;
  write_checkpoint(dir, random_weights(config, prefix, request.init), request.shards);

  json config_json = config_to_json(config);
  json& text = config.multimodal_wrapper ? config_json["text_config"] : config_json;
  text["dtype"] = torch_dtype_name(request.init.dtype);
  write_file_atomic(dir / "config.json", config_json.dump(2) + "\n");

  const json generation = {
      {"do_sample", false},
      {"eos_token_id", {tokenizer.eos_token_id, tokenizer.endoftext_token_id}},
      {"pad_token_id", tokenizer.endoftext_token_id},
      {"transformers_version", "4.57.0"},
  };
  write_file_atomic(dir / "generation_config.json", generation.dump(2) + "\n");
  write_file_atomic(dir / "tokenizer.json", tokenizer.tokenizer_json.dump(2) + "\n");
  write_file_atomic(dir / "tokenizer_config.json", tokenizer.tokenizer_config_json.dump(2) + "\n");
}

}  // namespace

RandomModelSummary write_random_model(const std::filesystem::path& out, const RandomModelRequest& request) {
  if (request.shards < 1) fail("--shards must be at least 1, found {}", request.shards);
  if (is_non_empty(out) && !request.force)
    fail("{}: output exists and is not empty; pass --force to replace it", out.string());

  const std::string corpus =
      request.tokenizer_corpus.empty() ? builtin_tokenizer_corpus() : read_text_file(request.tokenizer_corpus);
  const TrainedTokenizer tokenizer = train_bpe_tokenizer(corpus, request.tokenizer_vocab_size);

  ModelConfig config = model_preset(request.preset, tokenizer.vocab_size);
  config.eos_token_ids = {tokenizer.endoftext_token_id};
  config = apply_config_overrides(config, request.overrides);
  config.multimodal_wrapper = !request.text_only;
  if (config.vocab_size < tokenizer.vocab_size)
    fail("vocab_size {} is smaller than the tokenizer's {} ids", config.vocab_size, tokenizer.vocab_size);

  const auto absolute = std::filesystem::absolute(out);
  const auto parent = absolute.parent_path();
  create_output_directory(parent);
  const auto staging = parent / fmt::format(".{}.partial-{}", absolute.filename().string(), getpid());
  const auto previous = parent / fmt::format(".{}.previous-{}", absolute.filename().string(), getpid());
  std::filesystem::remove_all(staging);
  try {
    create_output_directory(staging);
    write_model_files(staging, config, tokenizer, request);
    if (std::filesystem::exists(absolute)) std::filesystem::rename(absolute, previous);
    std::filesystem::rename(staging, absolute);
    std::filesystem::remove_all(previous);
  } catch (...) {
    std::error_code ignored;
    std::filesystem::remove_all(staging, ignored);
    if (!std::filesystem::exists(absolute) && std::filesystem::exists(previous))
      std::filesystem::rename(previous, absolute, ignored);
    throw;
  }

  RandomModelSummary summary{config, tokenizer.vocab_size, 0};
  for (const WeightSpec& spec : weight_specs(config, StackPrefix::TextOnly, !config.tie_word_embeddings))
    summary.parameters += shape_numel(spec.shape);
  return summary;
}

}  // namespace dt
