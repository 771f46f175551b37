// The data order and grouping: seeded shuffles, micro-batches, packing budgets, accumulation.
#include <gtest/gtest.h>

#include <algorithm>

#include "core/error.h"
#include "train/batching.h"

namespace dt {
namespace {

std::vector<TokenExample> examples_of_lengths(const std::vector<int>& lengths) {
  std::vector<TokenExample> examples;
  for (int length : lengths) {
    TokenExample example;
    for (int i = 0; i < length; ++i) example.input_ids.push_back(i + 1);
    example.labels = example.input_ids;
    examples.push_back(example);
  }
  return examples;
}

std::vector<size_t> flatten(const std::vector<StepPlan>& steps) {
  std::vector<size_t> all;
  for (const auto& step : steps)
    for (const auto& micro_batch : step.micro_batches) all.insert(all.end(), micro_batch.begin(), micro_batch.end());
  return all;
}

TEST(Batching, ShuffleIsASeededPermutation) {
  const auto order = shuffled_order(50, 11);
  EXPECT_EQ(order, shuffled_order(50, 11));
  EXPECT_NE(order, shuffled_order(50, 12));
  auto sorted = order;
  std::sort(sorted.begin(), sorted.end());
  for (size_t i = 0; i < sorted.size(); ++i) EXPECT_EQ(sorted[i], i);
}

TEST(Batching, EpochsVisitEveryExampleOnceInTheirOwnOrder) {
  const auto examples = examples_of_lengths({3, 4, 5, 6, 7, 8, 9});
  const BatchPlanOptions options{.batch_size = 2, .grad_accum = 2};
  const auto epoch0 = plan_epoch(examples, options, 5, 0);
  const auto epoch1 = plan_epoch(examples, options, 5, 1);
  // 7 examples: micro-batches of 2, 2, 2, 1; steps of two micro-batches.
  ASSERT_EQ(epoch0.size(), 2u);
  EXPECT_EQ(epoch0[0].micro_batches.size(), 2u);
  EXPECT_EQ(epoch0[1].micro_batches.size(), 2u);
  EXPECT_EQ(epoch0[1].micro_batches[1].size(), 1u);
  auto all0 = flatten(epoch0), all1 = flatten(epoch1);
  EXPECT_NE(all0, all1);
  EXPECT_EQ(all0, flatten(plan_epoch(examples, options, 5, 0)));
  std::sort(all0.begin(), all0.end());
  std::sort(all1.begin(), all1.end());
  EXPECT_EQ(all0, (std::vector<size_t>{0, 1, 2, 3, 4, 5, 6}));
  EXPECT_EQ(all1, all0);
  // Targets: every label but the first of each example.
  int64_t targets = 0;
  for (const auto& step : epoch0) targets += step.target_count;
  EXPECT_EQ(targets, 2 + 3 + 4 + 5 + 6 + 7 + 8);
}

TEST(Batching, PackingFillsSequencesUpToTheBudget) {
  const auto examples = examples_of_lengths({5, 5, 5, 9, 2, 8});
  const BatchPlanOptions options{.batch_size = 1, .grad_accum = 1, .packing = true, .max_seq_len = 10, .shuffle = false};
  const auto steps = plan_epoch(examples, options, 0, 0);
  std::vector<std::vector<size_t>> sequences;
  for (const auto& step : steps) sequences.push_back(step.micro_batches.at(0));
  EXPECT_EQ(sequences, (std::vector<std::vector<size_t>>{{0, 1}, {2}, {3}, {4, 5}}));
  const BatchPlanOptions two_per_batch{.batch_size = 2, .grad_accum = 1, .packing = true, .max_seq_len = 10,
                                       .shuffle = false};
  EXPECT_EQ(plan_epoch(examples, two_per_batch, 0, 0).at(0).micro_batches.at(0), (std::vector<size_t>{0, 1, 2}));
  EXPECT_THROW(plan_epoch(examples, {.packing = true}, 0, 0), Error);
}

}  // namespace
}  // namespace dt
