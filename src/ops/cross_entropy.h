#pragma once
// Softmax cross-entropy of the LM head over vocabulary slices (spec §3.7): the loss and the
// gradient w.r.t. the final hidden states without ever holding [tokens, vocab] logits.
#include <cstdint>

#include "core/tensor.h"

namespace dt {

inline constexpr int64_t kIgnoreIndex = -100;

struct CrossEntropyResult {
  double loss_sum = 0;  // sum over counted tokens of -log softmax(logits)[label]
  int64_t counted = 0;  // tokens whose label is not the ignore index
};

// logits = hidden [tokens, dim] head^T, head [vocab, dim] (F32, BF16 or F16). labels [tokens]: the
// target of each row (already shifted), or ignore_index. One pass over slices of `slice` vocabulary
// rows keeps each row's running maximum and exp-sum and, for the gradient, the exp-weighted sum of
// head rows (rescaled as the maximum grows), giving d_hidden = gradient_scale * (softmax - onehot)
// head (ignored rows get zero) from two GEMMs per slice.
// d_hidden [tokens, dim] overwritten; null computes the loss only. Fails on a label outside
// [0, vocab) that is not the ignore index. Must not be called inside an OpenMP parallel region.
CrossEntropyResult sliced_cross_entropy(const float* hidden, int64_t tokens, int64_t dim, const Tensor& head,
                                        const int32_t* labels, float gradient_scale, float* d_hidden,
                                        int64_t slice = 4096, int64_t ignore_index = kIgnoreIndex);

// Full logits in double; the reference for sliced_cross_entropy.
CrossEntropyResult cross_entropy_reference(const float* hidden, int64_t tokens, int64_t dim, const Tensor& head,
                                           const int32_t* labels, float gradient_scale, float* d_hidden,
                                           int64_t ignore_index = kIgnoreIndex);

}  // namespace dt
