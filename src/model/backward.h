#pragma once
// Loss and LoRA gradients of the whole model (spec §5.5): a training forward that keeps what each
// layer's backward needs (or only each layer's input, recomputing the rest during the backward),
// then the backward from the sliced cross-entropy at the true top of the model down to every LoRA
// factor. The frozen weights get no gradient.
#include <cstdint>
#include <span>
#include <vector>

#include "model/forward.h"
#include "model/lora_adapter.h"
#include "model/lora_gradients.h"
#include "model/weights.h"

namespace dt {

// Examples laid end to end. Per-token work (projections, norms, MLP, head) runs over all tokens
// at once; sequence mixing (conv, delta rule, attention) starts afresh at each example, so an
// example contributes the same loss and gradients whether packed with others or alone.
struct PackedBatch {
  std::vector<int32_t> tokens;          // every example's input_ids, concatenated
  std::vector<int32_t> targets;         // per position: the label it predicts, or -100 (ignored)
  std::vector<int64_t> example_starts;  // where each example begins in tokens: 0, then increasing

  int64_t size() const { return int64_t(tokens.size()); }
  // Non-ignored targets.
  int64_t target_count() const;
  // Appends one example in the Hugging Face convention: labels are not shifted (labels[t] is the
  // label of input_ids[t]); position t predicts labels[t + 1] and the last position predicts
  // nothing; -100 is ignored. Fails unless labels has input_ids' length and input_ids is non-empty.
  void append(std::span<const int32_t> input_ids, std::span<const int32_t> labels);
};

struct BackwardOptions {
  DeltaRuleMode delta_rule = DeltaRuleMode::Chunked;
  // Activation checkpointing: keep only each layer's input during the forward and recompute the
  // layer's activations when its backward runs.
  bool recompute_activations = false;
};

struct LossSum {
  double sum = 0;       // sum of the cross-entropies of every non-ignored target
  int64_t targets = 0;  // how many there were
  double mean() const { return targets ? sum / double(targets) : 0.0; }
};

// Adds gradient_scale * d(loss sum)/d(factor) to `gradients` for every LoRA factor of `adapter`
// (so gradient_scale = 1 / total targets gives the Hugging Face mean loss over several calls) and
// returns the loss sum of this batch. Fails, naming the problem, on an adapter that does not fit
// the model or a token id or target outside the vocabulary.
LossSum accumulate_lora_gradients(const ModelWeights& weights, const LoraAdapter& adapter, const PackedBatch& batch,
                                  float gradient_scale, LoraGradients& gradients, const BackwardOptions& options = {});

// The loss sum alone (evaluation), with or without an adapter, holding one layer's activations at
// a time and never [tokens, vocab] logits.
LossSum batch_loss(const ModelWeights& weights, const LoraAdapter* adapter, const PackedBatch& batch,
                   const BackwardOptions& options = {});

}  // namespace dt
