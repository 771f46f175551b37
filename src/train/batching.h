#pragma once
// How examples become optimizer steps: a seeded shuffle per epoch, micro-batches of --batch-size
// examples (or, with --packing, of --batch-size sequences each packing whole examples up to
// --max-seq-len tokens), and --grad-accum micro-batches per optimizer step. The plan depends only
// on the examples' lengths, the options, the seed and the epoch, so a resumed run replays it.
#include <cstdint>
#include <vector>

#include "model/backward.h"
#include "train/dataset.h"

namespace dt {

// A permutation of 0 .. count-1 by Fisher-Yates over mt19937_64 (the same on every platform).
std::vector<size_t> shuffled_order(size_t count, uint64_t seed);

struct BatchPlanOptions {
  int64_t batch_size = 1;
  int64_t grad_accum = 1;
  bool packing = false;
  int64_t max_seq_len = 0;  // the packing budget; must be positive with packing
  bool shuffle = true;
};

using MicroBatch = std::vector<size_t>;  // example indexes, laid end to end in one PackedBatch

struct StepPlan {
  std::vector<MicroBatch> micro_batches;  // grad_accum of them, fewer at the end of an epoch
  int64_t target_count = 0;               // non-ignored labels over all micro-batches
};

// The optimizer steps of one epoch (every example once).
std::vector<StepPlan> plan_epoch(const std::vector<TokenExample>& examples, const BatchPlanOptions& options,
                                 uint64_t seed, int64_t epoch);

// The examples of a micro-batch as one PackedBatch (each restarts the sequence state).
PackedBatch pack_examples(const std::vector<TokenExample>& examples, const MicroBatch& micro_batch);

}  // namespace dt
