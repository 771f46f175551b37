// Sliced softmax cross-entropy: loss and d_hidden against the full-logits reference for slices
// that divide the vocabulary, do not, are one row wide or cover it all, with ignored rows and a
// BF16 head; d_hidden against finite differences of the loss; bad labels fail.
#include <gtest/gtest.h>

#include <cmath>

#include "core/error.h"
#include "core/tensor.h"
#include "ops/cross_entropy.h"
#include "ops/gradcheck.h"
#include "ops/numeric_test_util.h"

namespace dt {
namespace {

using test::GradParameter;
using test::random_vector;

TEST(CrossEntropy, SlicedMatchesReference) {
  const int64_t tokens = 6, dim = 16, vocab = 50;
  const std::vector<int32_t> labels = {3, -100, 49, 0, 17, -100};
  for (DType dtype : {DType::F32, DType::BF16}) {
    const Tensor head = Tensor::from_f32(dtype, {vocab, dim}, random_vector(vocab * dim, 1, 0.8f));
    const auto hidden = random_vector(tokens * dim, 2, 1.5f);
    std::vector<float> expected(hidden.size());
    const CrossEntropyResult reference =
        cross_entropy_reference(hidden.data(), tokens, dim, head, labels.data(), 0.25f, expected.data());
    EXPECT_EQ(reference.counted, 4);
    for (int64_t slice : {1, 7, 10, 50, 4096}) {
      SCOPED_TRACE(std::string(dtype_name(dtype)) + ", slice " + std::to_string(slice));
      std::vector<float> actual(hidden.size(), 9.0f);
      const CrossEntropyResult result =
          sliced_cross_entropy(hidden.data(), tokens, dim, head, labels.data(), 0.25f, actual.data(), slice);
      EXPECT_EQ(result.counted, reference.counted);
      EXPECT_NEAR(result.loss_sum, reference.loss_sum, 1e-5 * std::abs(reference.loss_sum));
      EXPECT_TRUE(test::all_close(actual, expected, 1e-5));
      for (int64_t i = 0; i < dim; ++i) EXPECT_EQ(actual[size_t(1 * dim + i)], 0.0f);  // ignored row
      const CrossEntropyResult loss_only =
          sliced_cross_entropy(hidden.data(), tokens, dim, head, labels.data(), 0.25f, nullptr, slice);
      EXPECT_EQ(loss_only.loss_sum, result.loss_sum);
    }
  }
}

TEST(CrossEntropy, GradientMatchesFiniteDifferences) {
  const int64_t tokens = 4, dim = 8, vocab = 30;
  const std::vector<int32_t> labels = {5, 29, -100, 0};
  const Tensor head = Tensor::from_f32(DType::F32, {vocab, dim}, random_vector(vocab * dim, 11));
  auto hidden = random_vector(tokens * dim, 12);
  std::vector<float> d_hidden(hidden.size());
  const CrossEntropyResult result =
      sliced_cross_entropy(hidden.data(), tokens, dim, head, labels.data(), 1.0f / 3.0f, d_hidden.data(), 7);
  auto loss = [&] {  // the mean over counted rows, as the gradient scale says
    return sliced_cross_entropy(hidden.data(), tokens, dim, head, labels.data(), 0.0f, nullptr, 7).loss_sum / 3.0;
  };
  ASSERT_EQ(result.counted, 3);
  EXPECT_TRUE(test::gradients_match(test::gradcheck<float>(loss, {GradParameter<float>{"hidden", hidden, d_hidden}}),
                                    1e-2));
}

TEST(CrossEntropy, StableForLargeLogits) {
  const int64_t dim = 4, vocab = 6;
  const Tensor head = Tensor::from_f32(DType::F32, {vocab, dim}, random_vector(vocab * dim, 21, 100.0f));
  const auto hidden = random_vector(dim, 22, 10.0f);
  const int32_t label = 2;
  std::vector<float> actual(static_cast<size_t>(dim)), expected(static_cast<size_t>(dim));
  const auto result = sliced_cross_entropy(hidden.data(), 1, dim, head, &label, 1.0f, actual.data(), 2);
  const auto reference = cross_entropy_reference(hidden.data(), 1, dim, head, &label, 1.0f, expected.data());
  EXPECT_TRUE(std::isfinite(result.loss_sum));
  EXPECT_NEAR(result.loss_sum, reference.loss_sum, 1e-4 * std::max(1.0, reference.loss_sum));
  EXPECT_TRUE(test::all_close(actual, expected, 1e-4));
}

TEST(CrossEntropy, RejectsLabelsOutsideTheVocabulary) {
  const Tensor head = Tensor::from_f32(DType::F32, {5, 2}, random_vector(10, 31));
  const auto hidden = random_vector(2, 32);
  for (int32_t label : {5, -1, -99}) EXPECT_THROW(sliced_cross_entropy(hidden.data(), 1, 2, head, &label, 1.0f, nullptr), Error);
}

}  // namespace
}  // namespace dt
