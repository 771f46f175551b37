#include "lora/init.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <numbers>

#include "core/error.h"

namespace dt {

namespace {

// SplitMix64: a tiny, portable generator (std distributions differ between standard libraries).
class SplitMix64 {
 public:
  explicit SplitMix64(uint64_t seed) : state_(seed) {}
  uint64_t next() {
    uint64_t z = (state_ += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }
  // In [0, 1), 53 random bits.
  double uniform() { return double(next() >> 11) * 0x1.0p-53; }
  double uniform(double low, double high) { return low + (high - low) * uniform(); }
  // Box-Muller; one value per call keeps the stream simple.
  double normal() {
    const double u1 = 1.0 - uniform();  // (0, 1]
    const double u2 = uniform();
    return std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * std::numbers::pi * u2);
  }

 private:
  uint64_t state_;
};

uint64_t fnv1a(std::string_view text) {
  uint64_t hash = 0xcbf29ce484222325ull;
  for (unsigned char c : text) hash = (hash ^ c) * 0x100000001b3ull;
  return hash;
}

// A stream per (seed, module, factor).
SplitMix64 factor_stream(uint64_t seed, const LoraModule& module, LoraFactor factor) {
  const std::string identity = fmt::format("layers.{}.{}.{}", module.layer, linear_module_path(module.kind),
                                           factor == LoraFactor::A ? "lora_A" : "lora_B");
  SplitMix64 mixer(seed ^ fnv1a(identity));
  return SplitMix64(mixer.next());
}

void fill_uniform(std::vector<float>& values, SplitMix64 stream, double bound) {
  for (float& value : values) value = float(stream.uniform(-bound, bound));
}

}  // namespace

LoraInit parse_lora_init(std::string_view name) {
  if (name == "peft") return LoraInit::Peft;
  if (name == "gaussian") return LoraInit::Gaussian;
  if (name == "random") return LoraInit::Random;
  fail("unknown LoRA init \"{}\"; expected peft, gaussian or random", name);
}

void initialize_module(LoraModule& module, LoraInit init, uint64_t seed) {
  SplitMix64 a_stream = factor_stream(seed, module, LoraFactor::A);
  if (init == LoraInit::Gaussian) {
    const double deviation = 1.0 / double(module.rank);
    for (float& value : module.a) value = float(deviation * a_stream.normal());
  } else {
    fill_uniform(module.a, a_stream, 1.0 / std::sqrt(double(module.in)));
  }
  if (init == LoraInit::Random)
    fill_uniform(module.b, factor_stream(seed, module, LoraFactor::B), 1.0 / std::sqrt(double(module.rank)));
  else
    std::fill(module.b.begin(), module.b.end(), 0.0f);
}

LoraAdapter init_adapter(const ModelConfig& config, const AdapterInitOptions& options) {
  if (options.kinds.empty()) fail("no target modules given");
  LoraSettings settings;
  settings.r = options.rank;
  settings.lora_alpha = options.alpha;
  settings.use_rslora = options.use_rslora;
  settings.init_lora_weights = options.init == LoraInit::Gaussian ? "gaussian" : "true";
  settings.base_model_name_or_path = options.base_model_name_or_path;
  LoraAdapter adapter(config, settings);
  std::vector<int> layers;
  if (options.layers) {
    layers = *options.layers;
  } else {
    for (int layer = 0; layer < adapter.layer_count(); ++layer) layers.push_back(layer);
  }
  for (int layer : layers) {
    if (layer < 0 || layer >= adapter.layer_count())
      fail("layer {} is out of range (the model has {} layers)", layer, adapter.layer_count());
    for (LinearKind kind : options.kinds) {
      if (!layer_has_linear(config.layer_types.at(size_t(layer)), kind) || adapter.find(layer, kind)) continue;
      initialize_module(adapter.add_module(layer, kind, options.rank, options.alpha), options.init, options.seed);
    }
  }
  if (adapter.module_count() == 0) fail("the target kinds exist in none of the selected layers");
  return adapter;
}

std::vector<LinearKind> parse_target_kinds(std::string_view text) {
  std::vector<LinearKind> kinds;
  if (text == "all-linear") {
    for (int kind = 0; kind < kLinearKindCount; ++kind) kinds.push_back(LinearKind(kind));
    return kinds;
  }
  size_t start = 0;
  while (start <= text.size()) {
    const size_t comma = std::min(text.find(',', start), text.size());
    const std::string_view leaf = text.substr(start, comma - start);
    const auto kind = parse_linear_leaf(leaf);
    if (!kind)
      fail("unknown target module \"{}\"; expected all-linear or leaf names such as q_proj, in_proj_qkv, down_proj",
           leaf);
    if (std::find(kinds.begin(), kinds.end(), *kind) == kinds.end()) kinds.push_back(*kind);
    start = comma + 1;
  }
  return kinds;
}

std::vector<int> parse_layer_list(std::string_view text, int layer_count) {
  auto parse_index = [&](std::string_view item) {
    int value = -1;
    const auto [end, error] = std::from_chars(item.data(), item.data() + item.size(), value);
    if (error != std::errc() || end != item.data() + item.size() || value < 0)
      fail("invalid layer \"{}\" in \"{}\"; expected indexes and ranges such as 0,2,4-7", item, text);
    if (value >= layer_count) fail("layer {} is out of range (the model has {} layers)", value, layer_count);
    return value;
  };
  std::vector<int> layers;
  size_t start = 0;
  while (start <= text.size()) {
    const size_t comma = std::min(text.find(',', start), text.size());
    const std::string_view item = text.substr(start, comma - start);
    const size_t dash = item.find('-');
    const int first = parse_index(item.substr(0, dash));
    const int last = dash == std::string_view::npos ? first : parse_index(item.substr(dash + 1));
    if (last < first) fail("invalid layer range \"{}\": the end is below the start", item);
    for (int layer = first; layer <= last; ++layer)
      if (std::find(layers.begin(), layers.end(), layer) == layers.end()) layers.push_back(layer);
    start = comma + 1;
  }
  std::sort(layers.begin(), layers.end());
  return layers;
}

}  // namespace dt
