#include "model/backward.h"

#include <algorithm>
#include <optional>

#include "core/error.h"
#include "model/train_layers.h"
#include "ops/cross_entropy.h"
#include "ops/norm.h"

namespace dt {

int64_t PackedBatch::target_count() const {
  return std::count_if(targets.begin(), targets.end(), [](int32_t target) { return target != kIgnoreIndex; });
}

void PackedBatch::append(std::span<const int32_t> input_ids, std::span<const int32_t> labels) {
  if (input_ids.empty()) fail("packed batch: an example needs at least one token");
  if (labels.size() != input_ids.size())
    fail("packed batch: the example has {} input_ids but {} labels", input_ids.size(), labels.size());
  for (size_t t = 0; t < labels.size(); ++t)
    if (labels[t] < 0 && labels[t] != kIgnoreIndex)
      fail("packed batch: label {} at position {} is neither a token id nor {}", labels[t], t, kIgnoreIndex);
  example_starts.push_back(size());
  tokens.insert(tokens.end(), input_ids.begin(), input_ids.end());
  for (size_t t = 0; t + 1 < labels.size(); ++t) targets.push_back(labels[t + 1]);
  targets.push_back(int32_t(kIgnoreIndex));
}

namespace {

// A batch the model can run: consistent sizes, examples that start at 0 and increase, every token
// id and target inside the vocabulary.
void check_batch(const ModelConfig& config, const PackedBatch& batch, const char* context) {
  const int64_t T = batch.size(), vocab = config.vocab_size;
  if (T == 0) fail("{}: the batch has no tokens", context);
  if (int64_t(batch.targets.size()) != T)
    fail("{}: the batch has {} tokens but {} targets", context, T, batch.targets.size());
  if (batch.example_starts.empty() || batch.example_starts.front() != 0)
    fail("{}: the batch's first example must start at position 0", context);
  for (size_t i = 1; i < batch.example_starts.size(); ++i)
    if (batch.example_starts[i] <= batch.example_starts[i - 1] || batch.example_starts[i] >= T)
      fail("{}: example {} starts at {} after example {} at {}; starts must increase and stay below the {} tokens",
           context, i, batch.example_starts[i], i - 1, batch.example_starts[i - 1], T);
  for (int64_t t = 0; t < T; ++t) {
    const int32_t token = batch.tokens[size_t(t)], target = batch.targets[size_t(t)];
    if (token < 0 || token >= vocab)
      fail("{}: token id {} at position {} is outside the vocabulary [0, {})", context, token, t, vocab);
    if (target != kIgnoreIndex && (target < 0 || target >= vocab))
      fail("{}: target {} at position {} is outside the vocabulary [0, {}) and not {}", context, target, t, vocab,
           kIgnoreIndex);
  }
}

void add_into(float* target, const float* addend, int64_t count) {
  for (int64_t i = 0; i < count; ++i) target[i] += addend[i];
}

// What one layer's backward needs besides its input: the residual stream after the mixer (the
// pre-norm input of post_attention_layernorm) and the blocks' tapes.
struct LayerActivations {
  std::vector<float> middle;  // [T, H]
  MixerTape mixer;
  MlpTape mlp;
};

// Buffers shared by every layer of one call, [T, H] each.
struct Scratch {
  std::vector<float> normed, block_out, d_normed, d_input;

  Scratch(int64_t tokens, int64_t hidden)
      : normed(size_t(tokens * hidden)),
        block_out(size_t(tokens * hidden)),
        d_normed(size_t(tokens * hidden)),
        d_input(size_t(tokens * hidden)) {}
};

// One training run over a batch: the forward keeps the residual stream entering every layer (all
// layers' activations too unless recomputing); the backward walks the layers top down.
class ModelRun {
 public:
  ModelRun(const ModelWeights& weights, const LoraAdapter* adapter, LoraGradients* gradients, const PackedBatch& batch,
           const BackwardOptions& options, bool keep_states)
      : weights_(weights),
        config_(weights.config),
        adapter_(adapter),
        gradients_(gradients),
        batch_(batch),
        options_(options),
        tokens_(batch.size()),
        hidden_(config_.hidden_size),
        eps_(float(config_.rms_norm_eps)),
        keep_states_(keep_states),
        scratch_(tokens_, hidden_) {
    const size_t layers = weights.layers.size();
    // Without a backward only two residual states are live at a time.
    states_.assign(keep_states ? layers + 1 : 2, std::vector<float>(size_t(tokens_ * hidden_)));
    activations_.resize(keep_states && !options.recompute_activations ? layers : 1);
  }

  // Runs every layer, then the final norm and the head through the sliced cross-entropy. With
  // gradient_scale set, leaves gradient_scale * d(loss sum)/d(final hidden state) in d_hidden_.
  LossSum forward(std::optional<float> gradient_scale, const char* context) {
    embed_tokens(weights_, batch_.tokens, state(0), context);
    for (int layer = 0; layer < int(weights_.layers.size()); ++layer)
      layer_forward(layer, state(layer), state(layer + 1), activations(layer));

    const float* top = state(int(weights_.layers.size()));
    renorm(top, weights_.final_norm);
    const Tensor& head = weights_.lm_head.empty() ? weights_.embed_tokens : weights_.lm_head;
    const CrossEntropyResult loss =
        sliced_cross_entropy(scratch_.normed.data(), tokens_, hidden_, head, batch_.targets.data(),
                             gradient_scale.value_or(0.0f), gradient_scale ? scratch_.d_normed.data() : nullptr);
    if (gradient_scale) {
      d_hidden_.assign(size_t(tokens_ * hidden_), 0.0f);
      add_norm_backward(top, weights_.final_norm);
    }
    return {loss.loss_sum, loss.counted};
  }

  // From the gradient the forward left at the top down to every LoRA factor.
  void backward() {
    for (int layer = int(weights_.layers.size()) - 1; layer >= 0; --layer) {
      // The layer's output state is no longer needed (its gradient is in d_hidden_), so the
      // recomputation may overwrite it (with the same values).
      if (options_.recompute_activations) layer_forward(layer, state(layer), state(layer + 1), activations(layer));
      layer_backward(layer, state(layer), activations(layer));
    }
  }

 private:
  float* state(int layer) { return states_[size_t(keep_states_ ? layer : layer % 2)].data(); }
  LayerActivations& activations(int layer) { return activations_[activations_.size() == 1 ? 0 : size_t(layer)]; }

  LayerPass pass(int layer) const {
    return {config_,  weights_.layers[size_t(layer)], layer, adapter_, gradients_, tokens_, batch_.example_starts,
            options_.delta_rule};
  }

  // output = middle + mlp(norm(middle)), middle = input + mixer(norm(input)).
  void layer_forward(int layer, const float* input, float* output, LayerActivations& saved) {
    const LayerPass layer_pass = pass(layer);
    const LayerWeights& w = weights_.layers[size_t(layer)];
    const int64_t count = tokens_ * hidden_;
    saved.middle.resize(size_t(count));
    float* middle = saved.middle.data();
    renorm(input, w.input_layernorm);
    mixer_forward(layer_pass, scratch_.normed.data(), scratch_.block_out.data(), saved.mixer);
    for (int64_t i = 0; i < count; ++i) middle[i] = input[i] + scratch_.block_out[size_t(i)];
    renorm(middle, w.post_attention_layernorm);
    mlp_forward(layer_pass, scratch_.normed.data(), scratch_.block_out.data(), saved.mlp);
    for (int64_t i = 0; i < count; ++i) output[i] = middle[i] + scratch_.block_out[size_t(i)];
  }

  // d_hidden_: the gradient of the layer's output in, of its input out. Each block's input is
  // renormed from its saved pre-norm state (the same values the forward produced).
  void layer_backward(int layer, const float* input, const LayerActivations& saved) {
    const LayerPass layer_pass = pass(layer);
    const LayerWeights& w = weights_.layers[size_t(layer)];
    renorm(saved.middle.data(), w.post_attention_layernorm);
    mlp_backward(layer_pass, scratch_.normed.data(), saved.mlp, d_hidden_.data(), scratch_.d_normed.data());
    add_norm_backward(saved.middle.data(), w.post_attention_layernorm);
    renorm(input, w.input_layernorm);
    mixer_backward(layer_pass, scratch_.normed.data(), saved.mixer, d_hidden_.data(), scratch_.d_normed.data());
    add_norm_backward(input, w.input_layernorm);
  }

  void renorm(const float* pre_norm, const Tensor& norm) {
    rms_norm_zero_centred(pre_norm, tokens_, hidden_, norm.f32(), eps_, scratch_.normed.data());
  }

  // The residual passes d_hidden_ straight through; the path through the norm (whose output's
  // gradient is in d_normed) adds to it.
  void add_norm_backward(const float* pre_norm, const Tensor& norm) {
    rms_norm_zero_centred_backward(pre_norm, scratch_.d_normed.data(), tokens_, hidden_, norm.f32(), eps_,
                                   scratch_.d_input.data(), nullptr);
    add_into(d_hidden_.data(), scratch_.d_input.data(), tokens_ * hidden_);
  }

  const ModelWeights& weights_;
  const ModelConfig& config_;
  const LoraAdapter* adapter_;
  LoraGradients* gradients_;
  const PackedBatch& batch_;
  BackwardOptions options_;
  int64_t tokens_, hidden_;
  float eps_;
  bool keep_states_;
  Scratch scratch_;
  std::vector<std::vector<float>> states_;  // residual stream entering each layer, then the top
  std::vector<LayerActivations> activations_;
  std::vector<float> d_hidden_;  // gradient of the residual stream at the current layer boundary
};

// The gradients must have been made for this adapter (the blocks write them unchecked).
void check_gradients_fit(const LoraAdapter& adapter, const LoraGradients& gradients) {
  const std::vector<const LoraModule*> modules = adapter.modules();
  const auto& slots = gradients.modules();
  bool fits = slots.size() == modules.size();
  for (size_t i = 0; fits && i < modules.size(); ++i)
    fits = slots[i].a.size() == modules[i]->a.size() && slots[i].b.size() == modules[i]->b.size() &&
           gradients.find(modules[i]->layer, modules[i]->kind) == &slots[i];
  if (!fits) fail("accumulate_lora_gradients: the gradients were made for another adapter");
}

}  // namespace

LossSum accumulate_lora_gradients(const ModelWeights& weights, const LoraAdapter& adapter, const PackedBatch& batch,
                                  float gradient_scale, LoraGradients& gradients, const BackwardOptions& options) {
  const char* context = "accumulate_lora_gradients";
  check_adapter_fits(weights.config, adapter, context);
  check_gradients_fit(adapter, gradients);
  check_batch(weights.config, batch, context);
  ModelRun run(weights, &adapter, &gradients, batch, options, /*keep_states=*/true);
  const LossSum loss = run.forward(gradient_scale, context);
  run.backward();
  return loss;
}

LossSum batch_loss(const ModelWeights& weights, const LoraAdapter* adapter, const PackedBatch& batch,
                   const BackwardOptions& options) {
  const char* context = "batch_loss";
  if (adapter) check_adapter_fits(weights.config, *adapter, context);
  check_batch(weights.config, batch, context);
  ModelRun run(weights, adapter, nullptr, batch, options, /*keep_states=*/false);
  return run.forward(std::nullopt, context);
}

}  // namespace dt
