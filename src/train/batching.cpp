#include "train/batching.h"

#include <random>

#include "core/error.h"

namespace dt {

std::vector<size_t> shuffled_order(size_t count, uint64_t seed) {
  std::vector<size_t> order(count);
  for (size_t i = 0; i < count; ++i) order[i] = i;
  std::mt19937_64 generator(seed);
  for (size_t i = count; i > 1; --i) {
    // Multiply-shift maps a 64-bit draw onto [0, i) (std::uniform_int_distribution differs between libraries).
    const size_t j = size_t((unsigned __int128)generator() * i >> 64);
    std::swap(order[i - 1], order[j]);
  }
  return order;
}

std::vector<StepPlan> plan_epoch(const std::vector<TokenExample>& examples, const BatchPlanOptions& options,
                                 uint64_t seed, int64_t epoch) {
  if (options.batch_size < 1 || options.grad_accum < 1) fail("--batch-size and --grad-accum must be at least 1");
  if (options.packing && options.max_seq_len < 1) fail("--packing needs a positive --max-seq-len");
  // Each epoch draws its own order from (seed, epoch).
  std::vector<size_t> order;
  if (options.shuffle) {
    order = shuffled_order(examples.size(), seed ^ (0x9E3779B97F4A7C15ull * uint64_t(epoch + 1)));
  } else {
    for (size_t i = 0; i < examples.size(); ++i) order.push_back(i);
  }

  // Sequences: one example each, or with packing as many consecutive examples as fit max_seq_len.
  std::vector<std::vector<size_t>> sequences;
  int64_t sequence_tokens = 0;
  for (size_t index : order) {
    const auto length = int64_t(examples[index].input_ids.size());
    if (sequences.empty() || !options.packing || sequence_tokens + length > options.max_seq_len) {
      sequences.emplace_back();
      sequence_tokens = 0;
    }
    sequences.back().push_back(index);
    sequence_tokens += length;
  }

  std::vector<MicroBatch> micro_batches;
  for (size_t first = 0; first < sequences.size(); first += size_t(options.batch_size)) {
    MicroBatch micro_batch;
    for (size_t s = first; s < std::min(sequences.size(), first + size_t(options.batch_size)); ++s)
      micro_batch.insert(micro_batch.end(), sequences[s].begin(), sequences[s].end());
    micro_batches.push_back(std::move(micro_batch));
  }

  std::vector<StepPlan> steps;
  for (size_t first = 0; first < micro_batches.size(); first += size_t(options.grad_accum)) {
    StepPlan step;
    for (size_t m = first; m < std::min(micro_batches.size(), first + size_t(options.grad_accum)); ++m) {
      for (size_t index : micro_batches[m]) step.target_count += predicted_target_count(examples[index]);
      step.micro_batches.push_back(std::move(micro_batches[m]));
    }
    steps.push_back(std::move(step));
  }
  return steps;
}

PackedBatch pack_examples(const std::vector<TokenExample>& examples, const MicroBatch& micro_batch) {
  PackedBatch batch;
  for (size_t index : micro_batch) batch.append(examples.at(index).input_ids, examples.at(index).labels);
  return batch;
}

}  // namespace dt
