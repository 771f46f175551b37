// Backward of causal grouped-query attention: the sgemm version against the naive reference
// (several query blocks, a KV cache prefix, padded kv capacity), and gated attention
// out = attention(q, k, v) * sigmoid(gate) against finite differences, so that dK/dV summed over
// every query that sees a position and over the query heads sharing a kv head are both checked.
#include <gtest/gtest.h>

#include <cmath>

#include "ops/activation.h"
#include "ops/attention.h"
#include "ops/gradcheck.h"
#include "ops/numeric_test_util.h"

namespace dt {
namespace {

using test::GradParameter;
using test::random_vector;

struct AttentionCase {
  AttentionProblem problem;
  std::vector<float> q, keys, values, d_out;
};

AttentionCase make_case(int64_t tokens, int64_t past, int64_t q_heads, int64_t kv_heads, int64_t head_dim,
                        uint32_t seed) {
  AttentionCase c;
  AttentionProblem& p = c.problem;
  p.tokens = tokens;
  p.past = past;
  p.q_heads = q_heads;
  p.kv_heads = kv_heads;
  p.head_dim = head_dim;
  p.kv_capacity = past + tokens + 3;  // unused rows at the end
  p.scale = 1.0f / std::sqrt(float(head_dim));
  c.q = random_vector(size_t(tokens * q_heads * head_dim), seed, 1.5f);
  c.keys = random_vector(size_t(kv_heads * p.kv_capacity * head_dim), seed + 1, 1.5f);
  c.values = random_vector(c.keys.size(), seed + 2);
  c.d_out = random_vector(c.q.size(), seed + 3);
  p.q = c.q.data();
  p.keys = c.keys.data();
  p.values = c.values.data();
  return c;
}

TEST(AttentionBackward, FastMatchesReference) {
  struct Shape { int64_t tokens, past, q_heads, kv_heads, head_dim; };
  uint32_t seed = 1;
  for (const Shape& s : {Shape{1, 0, 2, 1, 8}, Shape{3, 4, 4, 2, 8}, Shape{20, 5, 6, 3, 16}, Shape{300, 0, 4, 2, 8},
                         Shape{260, 40, 2, 2, 8}}) {
    SCOPED_TRACE("tokens " + std::to_string(s.tokens) + ", past " + std::to_string(s.past));
    const AttentionCase c = make_case(s.tokens, s.past, s.q_heads, s.kv_heads, s.head_dim, seed += 10);
    std::vector<float> dq(c.q.size()), dk(c.keys.size(), 7.0f), dv(c.values.size(), 7.0f);
    std::vector<float> dq_ref(c.q.size()), dk_ref(c.keys.size(), 7.0f), dv_ref(c.values.size(), 7.0f);
    causal_attention_backward(c.problem, c.d_out.data(), dq.data(), dk.data(), dv.data());
    causal_attention_backward_reference(c.problem, c.d_out.data(), dq_ref.data(), dk_ref.data(), dv_ref.data());
    EXPECT_TRUE(test::all_close(dq, dq_ref, 1e-4)) << "dq";
    EXPECT_TRUE(test::all_close(dk, dk_ref, 1e-4)) << "dkeys";
    EXPECT_TRUE(test::all_close(dv, dv_ref, 1e-4)) << "dvalues";
    // Rows past past + tokens are not positions: left alone.
    EXPECT_EQ(dk[size_t((s.past + s.tokens) * s.head_dim)], 7.0f);
  }
}

TEST(AttentionBackward, GatedAttentionMatchesFiniteDifferences) {
  for (int64_t past : {0, 3}) {
    SCOPED_TRACE("past " + std::to_string(past));
    AttentionCase c = make_case(7, past, 4, 2, 8, 100 + uint32_t(past));
    auto gate = random_vector(c.q.size(), 200, 2.0f);
    std::vector<float> attended(c.q.size()), d_attended(c.q.size()), dgate(c.q.size());
    causal_attention(c.problem, attended.data());
    multiply_by_sigmoid_backward(attended.data(), gate.data(), c.d_out.data(), d_attended.data(), dgate.data(),
                                 int64_t(c.q.size()));
    std::vector<float> dq(c.q.size()), dk(c.keys.size()), dv(c.values.size());
    causal_attention_backward(c.problem, d_attended.data(), dq.data(), dk.data(), dv.data());
    std::vector<float> out(c.q.size());
    auto loss = [&] {  // the single-threaded reference forward: thousands of calls stay fast
      causal_attention_reference(c.problem, out.data());
      multiply_by_sigmoid(out.data(), gate.data(), int64_t(out.size()));
      return test::weighted_sum<float, float>(out, c.d_out);
    };
    test::GradcheckOptions options;
    options.random_entries = 30;
    EXPECT_TRUE(test::gradients_match(
        test::gradcheck<float>(loss, {GradParameter<float>{"q", c.q, dq}, GradParameter<float>{"keys", c.keys, dk},
                                      GradParameter<float>{"values", c.values, dv},
                                      GradParameter<float>{"gate", gate, dgate}},
                               options),
        1e-2));
  }
}

}  // namespace
}  // namespace dt
