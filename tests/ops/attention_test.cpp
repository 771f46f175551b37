#include "ops/attention.h"

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "ops/numeric_test_util.h"

namespace dt {
namespace {

using test::all_close;
using test::random_vector;

struct AttentionCase {
  int64_t tokens, past;
};

class AttentionTest : public ::testing::TestWithParam<AttentionCase> {};

TEST_P(AttentionTest, FastMatchesReference) {
  const auto [tokens, past] = GetParam();
  AttentionProblem p;
  p.tokens = tokens;
  p.past = past;
  p.q_heads = 6;
  p.kv_heads = 2;
  p.head_dim = 16;
  p.kv_capacity = past + tokens + 3;
  p.scale = 0.25f;
  const auto q = random_vector(size_t(tokens * p.q_heads * p.head_dim), 1);
  const auto keys = random_vector(size_t(p.kv_heads * p.kv_capacity * p.head_dim), 2);
  const auto values = random_vector(size_t(p.kv_heads * p.kv_capacity * p.head_dim), 3);
  p.q = q.data();
  p.keys = keys.data();
  p.values = values.data();
  std::vector<float> fast(size_t(tokens * p.q_heads * p.head_dim)), reference(fast.size());
  causal_attention(p, fast.data());
  causal_attention_reference(p, reference.data());
  EXPECT_TRUE(all_close(fast, reference, 1e-5));
}

// One and three tokens take the row kernel; 70 and 300 (two query blocks) the sgemm kernel.
INSTANTIATE_TEST_SUITE_P(Shapes, AttentionTest,
                         ::testing::Values(AttentionCase{1, 0}, AttentionCase{1, 9}, AttentionCase{3, 5},
                                           AttentionCase{70, 0}, AttentionCase{70, 11},
                                           AttentionCase{300, 2}),
                         [](const auto& info) {
                           return fmt::format("T{}_past{}", info.param.tokens, info.param.past);
                         });

// Every value of kv head j equals j + 1, so each query head's output is the id + 1 of the kv head
// it reads: heads 0..2 read kv head 0 and heads 3..5 kv head 1 (h / (nq / nkv), not h % nkv).
TEST(Attention, GroupedQueryHeadsReadConsecutiveKvHead) {
  for (int64_t tokens : {1, 8}) {
    AttentionProblem p;
    p.tokens = tokens;
    p.q_heads = 6;
    p.kv_heads = 2;
    p.head_dim = 4;
    p.kv_capacity = tokens;
    const auto q = random_vector(size_t(tokens * 6 * 4), 4);
    const auto keys = random_vector(size_t(2 * tokens * 4), 5);
    std::vector<float> values(size_t(2 * tokens * 4));
    for (size_t i = 0; i < values.size(); ++i) values[i] = float(i / size_t(tokens * 4) + 1);
    p.q = q.data();
    p.keys = keys.data();
    p.values = values.data();
    std::vector<float> out(size_t(tokens * 6 * 4));
    causal_attention(p, out.data());
    for (int64_t t = 0; t < tokens; ++t)
      for (int64_t h = 0; h < 6; ++h)
        EXPECT_NEAR(out[size_t((t * 6 + h) * 4)], h < 3 ? 1.0f : 2.0f, 1e-5) << "token " << t << " head " << h;
  }
}

TEST(Attention, FirstQueryOnlySeesItself) {
  AttentionProblem p;
  p.tokens = 5;
  p.q_heads = p.kv_heads = 1;
  p.head_dim = 2;
  p.kv_capacity = 5;
  const std::vector<float> q(10, 1.0f), keys(10, 0.5f);
  std::vector<float> values(10);
  for (size_t i = 0; i < values.size(); ++i) values[i] = float(i);
  p.q = q.data();
  p.keys = keys.data();
  p.values = values.data();
  std::vector<float> out(10);
  causal_attention(p, out.data());
  EXPECT_FLOAT_EQ(out[0], 0.0f);
  EXPECT_FLOAT_EQ(out[1], 1.0f);
  EXPECT_FLOAT_EQ(out[2], 1.0f);  // equal scores: mean of rows 0 and 1
}

}  // namespace
}  // namespace dt
