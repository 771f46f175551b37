#include "model/generation.h"

#include <algorithm>
#include <climits>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "io/mapped_file.h"

namespace dt {
namespace {

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

template <typename T>
std::optional<T> optional_field(const nlohmann::json& document, const char* key, const std::string& source) {
  if (!document.contains(key) || document[key].is_null()) return std::nullopt;
  try {
    return document[key].get<T>();
  } catch (const nlohmann::json::exception&) {
    fail("{}: key \"{}\" has the wrong type: {}", source, key, document[key].dump());
  }
}

}  // namespace

std::vector<int32_t> parse_token_ids(const std::string& text, const std::string& option) {
  std::vector<int32_t> ids;
  size_t begin = 0;
  while (begin <= text.size()) {
    const size_t end = std::min(text.find(',', begin), text.size());
    const std::string item = text.substr(begin, end - begin);
    size_t used = 0;
    long long value = -1;
    try {
      value = std::stoll(item, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used == 0 || used != item.size() || value < 0 || value > INT32_MAX)
      fail("{}: expected comma-separated non-negative token ids, got \"{}\" in \"{}\"", option, item, text);
    ids.push_back(int32_t(value));
    begin = end + 1;
  }
  return ids;
}

GenerationConfig load_generation_config(const std::filesystem::path& model_dir) {
  const auto path = model_dir / "generation_config.json";
  GenerationConfig config;
  if (!std::filesystem::exists(path)) return config;
  const std::string source = path.string();
  const nlohmann::json document = read_json_file(path);
  if (!document.is_object()) fail("{}: expected a JSON object", source);
  if (document.contains("eos_token_id") && !document["eos_token_id"].is_null()) {
    const auto& eos = document["eos_token_id"];
    if (eos.is_number_integer()) {
      config.eos_token_ids.push_back(eos.get<int32_t>());
    } else if (eos.is_array() && std::all_of(eos.begin(), eos.end(), [](const auto& e) { return e.is_number_integer(); })) {
      for (const auto& id : eos) config.eos_token_ids.push_back(id.get<int32_t>());
    } else {
      fail("{}: eos_token_id must be an integer or a list of integers, got {}", source, eos.dump());
    }
  }
  config.do_sample = optional_field<bool>(document, "do_sample", source);
  config.temperature = optional_field<double>(document, "temperature", source);
  config.top_p = optional_field<double>(document, "top_p", source);
  config.min_p = optional_field<double>(document, "min_p", source);
  config.repetition_penalty = optional_field<double>(document, "repetition_penalty", source);
  config.top_k = optional_field<int64_t>(document, "top_k", source);
  return config;
}

SamplingOptions default_sampling_options(const GenerationConfig& config) {
  SamplingOptions options;
  if (config.do_sample.value_or(false)) {
    options.temperature = config.temperature.value_or(1.0);
    options.top_k = config.top_k.value_or(50);
    options.top_p = config.top_p.value_or(1.0);
    options.min_p = config.min_p.value_or(0.0);
  }
  options.repetition_penalty = config.repetition_penalty.value_or(1.0);
  return options;
}

GenerationSession::GenerationSession(const ModelWeights& weights, const SamplingOptions& sampling,
                                     std::vector<int32_t> end_of_sequence_ids, ForwardOptions forward_options)
    : weights_(weights),
      sampler_(sampling),
      end_of_sequence_ids_(std::move(end_of_sequence_ids)),
      forward_options_(forward_options),
      state_(new_inference_state(weights.config)) {
  forward_options_.all_logits = false;
}

std::vector<int32_t> GenerationSession::sequence() const {
  auto tokens = cached_;
  if (pending_) tokens.push_back(*pending_);
  return tokens;
}

void GenerationSession::reset() {
  state_ = new_inference_state(weights_.config);
  cached_.clear();
  pending_.reset();
}

GenerationResult GenerationSession::generate(std::span<const int32_t> tokens, int64_t max_tokens,
                                             const TokenCallback& on_token) {
  if (max_tokens < 0) fail("--max-tokens must be >= 0, got {}", max_tokens);
  std::vector<int32_t> input;
  if (pending_) input.push_back(*pending_);
  input.insert(input.end(), tokens.begin(), tokens.end());
  if (input.empty()) fail("generation needs at least one input token");
  const int64_t vocab = weights_.config.vocab_size;
  for (int32_t token : input)
    if (token < 0 || token >= vocab) fail("token id {} is outside the model's vocabulary [0, {})", token, vocab);

  GenerationResult result;
  result.prefill_tokens = int64_t(input.size());
  auto start = std::chrono::steady_clock::now();
  Tensor logits = forward(weights_, input, state_, forward_options_);
  result.prefill_seconds = seconds_since(start);
  pending_.reset();
  cached_.insert(cached_.end(), input.begin(), input.end());

  start = std::chrono::steady_clock::now();
  while (int64_t(result.tokens.size()) < max_tokens) {
    std::span<float> row(logits.f32() + (logits.numel() - vocab), size_t(vocab));
    const int32_t token = sampler_.next(row, cached_);
    result.tokens.push_back(token);
    const bool end_of_sequence =
        std::find(end_of_sequence_ids_.begin(), end_of_sequence_ids_.end(), token) != end_of_sequence_ids_.end();
    const bool keep_going = on_token(token);
    if (end_of_sequence || !keep_going || int64_t(result.tokens.size()) == max_tokens) {
      pending_ = token;
      result.reason = end_of_sequence ? StopReason::EndOfSequence
                      : !keep_going   ? StopReason::Caller
                                      : StopReason::TokenLimit;
      break;
    }
    const int32_t step[1] = {token};
    logits = forward(weights_, step, state_, forward_options_);
    cached_.push_back(token);
    ++result.decode_steps;
  }
  result.decode_seconds = seconds_since(start);
  return result;
}


TextStreamer::TextStreamer(const Tokenizer& tokenizer, std::vector<std::string> stop_strings)
    : tokenizer_(tokenizer), stop_strings_(std::move(stop_strings)) {
  std::erase_if(stop_strings_, [](const std::string& stop) { return stop.empty(); });
}

std::string TextStreamer::add(int32_t token) {
  if (stopped_) return {};
  tokens_.push_back(token);
  const std::string text = tokenizer_.decode(tokens_, /*skip_special=*/true);
  // The first stop string ends the output there.
  size_t stop_at = std::string::npos;
  // Released text never ends in the start of a stop string, so a stop cannot begin before it.
  for (const auto& stop : stop_strings_) stop_at = std::min(stop_at, text.find(stop, released_.size()));
  size_t releasable = text.size();
  if (stop_at != std::string::npos) {
    stopped_ = true;
    releasable = stop_at;
  } else {
    // An incomplete UTF-8 character at the end decodes to U+FFFD for now: hold it back.
    static constexpr std::string_view replacement = "\xEF\xBF\xBD";
    while (releasable >= replacement.size() &&
           std::string_view(text).substr(releasable - replacement.size(), replacement.size()) == replacement)
      releasable -= replacement.size();
    // Hold back an ending that a later token could extend into a stop string.
    for (const auto& stop : stop_strings_)
      for (size_t length = std::min(stop.size() - 1, releasable); length > 0; --length)
        if (text.compare(releasable - length, length, stop, 0, length) == 0) {
          releasable -= length;
          break;
        }
  }
  if (releasable <= released_.size()) return {};
  std::string fresh = text.substr(released_.size(), releasable - released_.size());
  released_ += fresh;
  return fresh;
}

std::string TextStreamer::finish() {
  if (stopped_) return {};
  const std::string text = tokenizer_.decode(tokens_, /*skip_special=*/true);
  std::string rest = text.size() > released_.size() ? text.substr(released_.size()) : std::string();
  released_ += rest;
  return rest;
}

}  // namespace dt
