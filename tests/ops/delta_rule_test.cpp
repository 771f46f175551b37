#include "ops/delta_rule.h"

#include <gtest/gtest.h>

#include <cmath>

#include "ops/activation.h"
#include "ops/norm.h"
#include "ops/numeric_test_util.h"

namespace dt {
namespace {

using test::all_close;
using test::random_vector;
using test::uniform_vector;

// Inputs of one delta-rule call laid out like the model's conv output: per token
// [q (nk*dk) | k (nk*dk) | v (nv*dv)], q and k l2-normalised per head.
struct Fixture {
  int64_t tokens, nk, nv, dk, dv;
  std::vector<float> qkv, beta, g, initial_state;

  int64_t row() const { return 2 * nk * dk + nv * dv; }

  DeltaRuleProblem problem() const {
    return conv_layout_problem(qkv.data(), tokens, nk, nv, dk, dv, beta.data(), g.data());
  }
};

enum class Regime { Typical, StrongDecay, WeakDecay, BetaNearZero, BetaNearOne };

Fixture make_fixture(int64_t tokens, Regime regime, bool initial_state, uint32_t seed,
                     int64_t nk = 2, int64_t nv = 4, int64_t dk = 16, int64_t dv = 8) {
  Fixture f{tokens, nk, nv, dk, dv, {}, {}, {}, {}};
  f.qkv = random_vector(size_t(tokens * f.row()), seed);
  for (int64_t t = 0; t < tokens; ++t) l2_normalize(f.qkv.data() + t * f.row(), 2 * nk, dk, 1e-6f);
  auto b = random_vector(size_t(tokens * nv), seed + 1);
  auto a = random_vector(size_t(tokens * nv), seed + 2);
  auto A_log = uniform_vector(size_t(nv), seed + 3, std::log(0.01f), std::log(16.0f));
  std::vector<float> dt_bias(size_t(nv), 1.0f);
  switch (regime) {
    case Regime::Typical:
      break;
    case Regime::StrongDecay:
      A_log.assign(size_t(nv), std::log(16.0f));
      for (float& value : a) value = 6.0f + 4.0f * value;  // g around -16 * 7 per token
      break;
    case Regime::WeakDecay:
      A_log.assign(size_t(nv), std::log(0.01f));
      for (float& value : a) value = -6.0f + value;  // g around -2.5e-5
      break;
    case Regime::BetaNearZero:
      for (float& value : b) value = -12.0f + value;
      break;
    case Regime::BetaNearOne:
      for (float& value : b) value = 12.0f + value;
      break;
  }
  f.beta.resize(b.size());
  f.g.resize(b.size());
  gated_delta_gates(b.data(), a.data(), tokens, nv, A_log.data(), dt_bias.data(), f.beta.data(), f.g.data());
  f.initial_state = initial_state ? random_vector(size_t(nv * dk * dv), seed + 4, 0.5f)
                                  : std::vector<float>(size_t(nv * dk * dv), 0.0f);
  return f;
}

struct Result {
  std::vector<float> out, state;
};

Result run_recurrent(const Fixture& f) {
  Result r{std::vector<float>(size_t(f.tokens * f.nv * f.dv)), f.initial_state};
  delta_rule_recurrent(f.problem(), r.state.data(), r.out.data());
  return r;
}

Result run_chunked(const Fixture& f, int64_t chunk = 64) {
  Result r{std::vector<float>(size_t(f.tokens * f.nv * f.dv)), f.initial_state};
  delta_rule_chunked(f.problem(), r.state.data(), r.out.data(), chunk);
  return r;
}

struct ChunkCase {
  int64_t tokens;
  Regime regime;
  bool initial_state;
};

class ChunkedVsRecurrent : public ::testing::TestWithParam<ChunkCase> {};

TEST_P(ChunkedVsRecurrent, AgreeOnOutputsAndFinalState) {
  const auto [tokens, regime, initial_state] = GetParam();
  const Fixture f = make_fixture(tokens, regime, initial_state, uint32_t(tokens) * 7 + uint32_t(regime));
  const Result recurrent = run_recurrent(f), chunked = run_chunked(f);
  EXPECT_TRUE(all_close(chunked.out, recurrent.out, 1e-5));
  EXPECT_TRUE(all_close(chunked.state, recurrent.state, 1e-5));
}

std::vector<ChunkCase> chunk_cases() {
  std::vector<ChunkCase> cases;
  for (int64_t tokens : {1, 63, 64, 65, 130})
    for (bool initial_state : {false, true}) cases.push_back({tokens, Regime::Typical, initial_state});
  for (Regime regime : {Regime::StrongDecay, Regime::WeakDecay, Regime::BetaNearZero, Regime::BetaNearOne})
    for (int64_t tokens : {65, 130}) cases.push_back({tokens, regime, true});
  return cases;
}

std::string chunk_case_name(const ::testing::TestParamInfo<ChunkCase>& info) {
  static const char* const regime_names[] = {"Typical", "StrongDecay", "WeakDecay", "BetaNearZero",
                                             "BetaNearOne"};
  return std::string(regime_names[int(info.param.regime)]) + "_T" + std::to_string(info.param.tokens) +
         (info.param.initial_state ? "_state" : "_zero");
}

INSTANTIATE_TEST_SUITE_P(Cases, ChunkedVsRecurrent, ::testing::ValuesIn(chunk_cases()), chunk_case_name);

// The real model's head sizes with a short chunk, so several chunks run.
TEST(DeltaRule, ChunkedMatchesRecurrentAtModelHeadSizes) {
  const Fixture f = make_fixture(40, Regime::Typical, true, 11, 1, 2, 128, 128);
  const Result recurrent = run_recurrent(f), chunked = run_chunked(f, 16);
  EXPECT_TRUE(all_close(chunked.out, recurrent.out, 1e-5));
  EXPECT_TRUE(all_close(chunked.state, recurrent.state, 1e-5));
}

// Splitting a sequence into pieces that carry the state equals one call.
TEST(DeltaRule, StateCarriesAcrossCalls) {
  const Fixture f = make_fixture(130, Regime::Typical, true, 21);
  const Result whole = run_chunked(f);
  std::vector<float> state = f.initial_state, out(whole.out.size());
  int64_t done = 0;
  for (int64_t count : {50, 1, 79}) {
    DeltaRuleProblem p = f.problem();
    p.tokens = count;
    p.q += done * f.row();
    p.k += done * f.row();
    p.v += done * f.row();
    p.beta += done * f.nv;
    p.g += done * f.nv;
    float* destination = out.data() + done * f.nv * f.dv;
    if (count == 1)
      delta_rule_recurrent(p, state.data(), destination);
    else
      delta_rule_chunked(p, state.data(), destination);
    done += count;
  }
  EXPECT_TRUE(all_close(out, whole.out, 1e-5));
  EXPECT_TRUE(all_close(state, whole.state, 1e-5));
}

// One step by hand: dk = dv = 1, S0 = 2, g = ln 0.5, beta = 0.5, k = q = 1, v = 3, scale 1:
// S <- 1; u = 0.5 (3 - 1) = 1; S <- 2; o = 2.
TEST(DeltaRule, RecurrenceMatchesHandComputedStep) {
  const std::vector<float> qkv = {1, 1, 3}, beta = {0.5f}, g = {std::log(0.5f)};
  DeltaRuleProblem p;
  p.tokens = p.key_heads = p.value_heads = p.key_dim = p.value_dim = 1;
  p.q = qkv.data();
  p.k = qkv.data() + 1;
  p.v = qkv.data() + 2;
  p.q_stride = p.k_stride = p.v_stride = 3;
  p.beta = beta.data();
  p.g = g.data();
  for (bool chunked : {false, true}) {
    std::vector<float> state = {2.0f}, out(1);
    if (chunked)
      delta_rule_chunked(p, state.data(), out.data());
    else
      delta_rule_recurrent(p, state.data(), out.data());
    EXPECT_NEAR(state[0], 2.0f, 1e-6);
    EXPECT_NEAR(out[0], 2.0f, 1e-6);
  }
}

// nk = 2, nv = 6: value head 4 must read key head 4 / 3 = 1. Only head 4 has nonzero values; its
// output equals a single-head run on key head 1, and every other head stays zero.
TEST(DeltaRule, ValueHeadReadsKeyHeadOfItsGroup) {
  Fixture f = make_fixture(70, Regime::Typical, false, 31, 2, 6, 8, 4);
  for (int64_t t = 0; t < f.tokens; ++t)
    for (int64_t h = 0; h < f.nv; ++h)
      if (h != 4)
        for (int64_t j = 0; j < f.dv; ++j) f.qkv[size_t(t * f.row() + 2 * f.nk * f.dk + h * f.dv + j)] = 0.0f;
  Fixture single{f.tokens, 1, 1, f.dk, f.dv, {}, {}, {}, std::vector<float>(size_t(f.dk * f.dv), 0.0f)};
  for (int64_t t = 0; t < f.tokens; ++t) {
    const float* row = f.qkv.data() + t * f.row();
    single.qkv.insert(single.qkv.end(), row + 1 * f.dk, row + 2 * f.dk);                      // q head 1
    single.qkv.insert(single.qkv.end(), row + f.nk * f.dk + 1 * f.dk, row + f.nk * f.dk + 2 * f.dk);  // k head 1
    single.qkv.insert(single.qkv.end(), row + 2 * f.nk * f.dk + 4 * f.dv, row + 2 * f.nk * f.dk + 5 * f.dv);
    single.beta.push_back(f.beta[size_t(t * f.nv + 4)]);
    single.g.push_back(f.g[size_t(t * f.nv + 4)]);
  }
  const Result expected = run_recurrent(single);
  for (bool chunked : {false, true}) {
    const Result r = chunked ? run_chunked(f) : run_recurrent(f);
    std::vector<float> head4;
    for (int64_t t = 0; t < f.tokens; ++t)
      for (int64_t h = 0; h < f.nv; ++h)
        for (int64_t j = 0; j < f.dv; ++j) {
          const float value = r.out[size_t((t * f.nv + h) * f.dv + j)];
          if (h == 4)
            head4.push_back(value);
          else
            ASSERT_EQ(value, 0.0f) << "head " << h;
        }
    EXPECT_TRUE(all_close(head4, expected.out, 1e-5)) << (chunked ? "chunked" : "recurrent");
  }
}

TEST(GatedDeltaGates, MatchTheFormula) {
  const std::vector<float> b = {0.3f, -2.0f}, a = {0.5f, 30.0f}, A_log = {0.7f, -0.2f}, dt_bias = {1.0f, -5.0f};
  std::vector<float> beta(2), g(2);
  gated_delta_gates(b.data(), a.data(), 1, 2, A_log.data(), dt_bias.data(), beta.data(), g.data());
  EXPECT_FLOAT_EQ(beta[0], 1.0f / (1.0f + std::exp(-0.3f)));
  EXPECT_FLOAT_EQ(beta[1], 1.0f / (1.0f + std::exp(2.0f)));
  EXPECT_FLOAT_EQ(g[0], -std::exp(0.7f) * std::log1p(std::exp(1.5f)));
  EXPECT_FLOAT_EQ(g[1], -std::exp(-0.2f) * 25.0f);  // softplus threshold: 25 passes through
}

// A_log = 30 with a = -100, and exp(A_log) overflowing to inf against softplus 0 or not: every gate
// stays finite and so does everything downstream.
TEST(GatedDeltaGates, ExtremeInputsStayFinite) {
  const int64_t tokens = 70, nv = 4;
  std::vector<float> b(size_t(tokens * nv), 0.0f), a(size_t(tokens * nv));
  for (int64_t t = 0; t < tokens; ++t) {
    a[size_t(t * nv + 0)] = -100.0f;
    a[size_t(t * nv + 1)] = -200.0f;  // softplus underflows to exactly 0
    a[size_t(t * nv + 2)] = 0.0f;
    a[size_t(t * nv + 3)] = t % 2 ? -200.0f : 50.0f;
  }
  const std::vector<float> A_log = {30.0f, 100.0f, 100.0f, 100.0f}, dt_bias(size_t(nv), 0.0f);
  Fixture f = make_fixture(tokens, Regime::Typical, true, 41, 2, nv, 8, 4);
  gated_delta_gates(b.data(), a.data(), tokens, nv, A_log.data(), dt_bias.data(), f.beta.data(), f.g.data());
  ASSERT_TRUE(test::all_finite(f.g));
  EXPECT_EQ(f.g[1], 0.0f);
  EXPECT_EQ(f.g[2], kMinLogDecay);
  const Result recurrent = run_recurrent(f), chunked = run_chunked(f);
  ASSERT_TRUE(test::all_finite(recurrent.out));
  ASSERT_TRUE(test::all_finite(recurrent.state));
  EXPECT_TRUE(all_close(chunked.out, recurrent.out, 1e-5));
  EXPECT_TRUE(all_close(chunked.state, recurrent.state, 1e-5));
}

}  // namespace
}  // namespace dt
