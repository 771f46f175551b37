// deltatune logits: runs the forward pass over a token sequence (ids or tokenized text) and writes every position's logits
// (F32 [T, vocab], tensor "logits") to a safetensors file, for parity checks against a reference.
#include <fmt/core.h>

#include <algorithm>

#include "cli/cli.h"
#include "cli/generation_options.h"
#include "core/error.h"
#include "io/safetensors.h"
#include "model/forward.h"
#include "model/generation.h"
#include "model/weights.h"
#include "tokenizer/tokenizer.h"

namespace dt {

void register_logits(CLI::App& app) {
  struct Options {
    std::string model, tokens, text, out, pieces, adapter;
    bool recurrent = false;
  };
  auto options = std::make_shared<Options>();
  auto* command = app.add_subcommand("logits", "Write the logits of every position of a token sequence to a safetensors file");
  command->add_option("--model", options->model, "Model directory (config.json + safetensors)")->required();
  auto* tokens = command->add_option("--tokens", options->tokens, "Comma-separated token ids, e.g. 1,2,3");
  auto* text = command->add_option("--text", options->text, "Text, tokenized with the model's tokenizer.json");
  tokens->excludes(text);
  command->add_option("--out", options->out, "Output .safetensors file (tensor \"logits\", F32 [T, vocab])")->required();
  command->add_flag("--recurrent", options->recurrent, "Evaluate the delta rule token by token instead of chunked");
  command->add_option("--pieces", options->pieces,
                      "Feed the tokens in pieces of these sizes (comma-separated, summing to T), each continuing "
                      "from the caches of the previous ones, e.g. 70,65,1,1 (default: one piece)");
  add_adapter_option(*command, options->adapter);
  command->callback([options] {
    if (options->tokens.empty() == options->text.empty()) fail("logits: give exactly one of --tokens and --text");
    const auto tokens = options->text.empty() ? parse_token_ids(options->tokens, "--tokens")
                                              : Tokenizer::load(options->model).encode(options->text);
    if (tokens.empty()) fail("logits: --text \"{}\" has no tokens", options->text);
    const ModelWeights weights = load_model(options->model);
    InferenceState state = new_inference_state(weights.config);
    const std::optional<LoraAdapter> adapter = load_adapter_option(options->adapter, weights.config);
    ForwardOptions forward_options;
    forward_options.delta_rule = options->recurrent ? DeltaRuleMode::Recurrent : DeltaRuleMode::Chunked;
    forward_options.adapter = adapter ? &*adapter : nullptr;
    for (int32_t token : tokens)
      if (token >= weights.config.vocab_size)
        fail("--tokens: id {} is outside the model's vocabulary [0, {})", token, weights.config.vocab_size);
    std::vector<int32_t> pieces = {int32_t(tokens.size())};
    if (!options->pieces.empty()) pieces = parse_token_ids(options->pieces, "--pieces");
    int64_t total = 0;
    for (int32_t size : pieces) {
      if (size == 0) fail("--pieces: sizes must be positive, got \"{}\"", options->pieces);
      total += size;
    }
    if (total != int64_t(tokens.size()))
      fail("--pieces: sizes sum to {}, but there are {} tokens", total, tokens.size());
    const int64_t vocab = weights.config.vocab_size;
    Tensor logits = Tensor::zeros(DType::F32, {total, vocab});
    size_t begin = 0;
    for (int32_t size : pieces) {
      const Tensor piece = forward(weights, std::span(tokens).subspan(begin, size_t(size)), state, forward_options);
      std::copy(piece.f32(), piece.f32() + piece.numel(), logits.f32() + begin * size_t(vocab));
      begin += size_t(size);
    }
    write_safetensors(options->out, {{"logits", std::move(logits)}});
  });
}

}  // namespace dt
