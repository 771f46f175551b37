// Backward of the gated delta rule: the chunked backward against the per-token reference, and both
// against central finite differences of the double-precision recurrence, over sequence lengths
// around the chunk size, strong and weak decay, beta near 0 and 1, and a nonzero initial state,
// with grouped value heads (nv = 2 nk) so the dq/dk sums over value heads are exercised.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <string>

#include "ops/delta_rule.h"
#include "ops/gradcheck.h"
#include "ops/norm.h"
#include "ops/numeric_test_util.h"
#include "test_util.h"

namespace dt {
namespace {

using test::all_close;
using test::GradParameter;

enum class Regime { Typical, StrongDecay, WeakDecay, BetaNearZero, BetaNearOne };

std::string regime_name(Regime regime) {
  switch (regime) {
    case Regime::Typical: return "typical";
    case Regime::StrongDecay: return "strong decay";
    case Regime::WeakDecay: return "weak decay";
    case Regime::BetaNearZero: return "beta near 0";
    case Regime::BetaNearOne: return "beta near 1";
  }
  return "";
}

// Inputs in double (q, k, v contiguous per token; q and k l2-normalised per head) plus the probe
// weights of the loss sum(out * d_out) + <d_final_state, final_state>.
struct Case {
  int64_t tokens, nk = 2, nv = 4, dk = 16, dv = 8;
  std::vector<double> q, k, v, beta, g, initial_state, d_out, d_final_state;

  template <typename T>
  BasicDeltaRuleProblem<T> problem(const std::vector<T>& q_, const std::vector<T>& k_, const std::vector<T>& v_,
                                   const std::vector<T>& beta_, const std::vector<T>& g_) const {
    BasicDeltaRuleProblem<T> p;
    p.tokens = tokens;
    p.key_heads = nk;
    p.value_heads = nv;
    p.key_dim = dk;
    p.value_dim = dv;
    p.q = q_.data();
    p.k = k_.data();
    p.v = v_.data();
    p.q_stride = p.k_stride = nk * dk;
    p.v_stride = nv * dv;
    p.beta = beta_.data();
    p.g = g_.data();
    p.scale = T(1.0 / std::sqrt(double(dk)));
    return p;
  }
  size_t state_size() const { return size_t(nv * dk * dv); }
};

std::vector<double> to_double(const std::vector<float>& values) { return {values.begin(), values.end()}; }
std::vector<float> to_float(const std::vector<double>& values) { return {values.begin(), values.end()}; }

void l2_normalize_rows(std::vector<double>& x, int64_t dim) {
  for (size_t row = 0; row < x.size() / size_t(dim); ++row) {
    double sum = 0;
    for (int64_t i = 0; i < dim; ++i) sum += x[row * size_t(dim) + size_t(i)] * x[row * size_t(dim) + size_t(i)];
    for (int64_t i = 0; i < dim; ++i) x[row * size_t(dim) + size_t(i)] /= std::sqrt(sum + 1e-6);
  }
}

Case make_case(int64_t tokens, Regime regime, uint32_t seed) {
  Case c;
  c.tokens = tokens;
  const size_t keys = size_t(tokens * c.nk * c.dk), values = size_t(tokens * c.nv * c.dv), gates = size_t(tokens * c.nv);
  c.q = to_double(test::random_vector(keys, seed));
  c.k = to_double(test::random_vector(keys, seed + 1));
  l2_normalize_rows(c.q, c.dk);
  l2_normalize_rows(c.k, c.dk);
  c.v = to_double(test::random_vector(values, seed + 2));
  float beta_low = 0.1f, beta_high = 0.9f, g_low = -1.0f, g_high = -0.01f;
  if (regime == Regime::StrongDecay) g_low = -20.0f, g_high = -5.0f;
  if (regime == Regime::WeakDecay) g_low = -1e-3f, g_high = 0.0f;
  if (regime == Regime::BetaNearZero) beta_low = 0.0f, beta_high = 1e-3f;
  if (regime == Regime::BetaNearOne) beta_low = 0.999f, beta_high = 1.0f;
  c.beta = to_double(test::uniform_vector(gates, seed + 3, beta_low, beta_high));
  c.g = to_double(test::uniform_vector(gates, seed + 4, g_low, g_high));
  c.initial_state = to_double(test::random_vector(c.state_size(), seed + 5, 0.5f));
  c.d_out = to_double(test::random_vector(values, seed + 6));
  c.d_final_state = to_double(test::random_vector(c.state_size(), seed + 7));
  return c;
}

template <typename T>
struct Gradients {
  std::vector<T> dq, dk, dv, dbeta, dg, d_initial_state;
  explicit Gradients(const Case& c)
      : dq(c.q.size()), dk(c.k.size()), dv(c.v.size()), dbeta(c.beta.size()), dg(c.g.size()),
        d_initial_state(c.state_size()) {}
  DeltaRuleGradients<T> view() {
    return {dq.data(), dk.data(), dv.data(), dbeta.data(), dg.data(), d_initial_state.data()};
  }
};

Gradients<double> recurrent_gradients_double(const Case& c) {
  Gradients<double> d(c);
  delta_rule_recurrent_backward(c.problem(c.q, c.k, c.v, c.beta, c.g), c.initial_state.data(), c.d_out.data(),
                                c.d_final_state.data(), d.view());
  return d;
}

Gradients<float> chunked_gradients(const Case& c, int64_t chunk) {
  const auto q = to_float(c.q), k = to_float(c.k), v = to_float(c.v), beta = to_float(c.beta), g = to_float(c.g);
  const auto initial_state = to_float(c.initial_state), d_out = to_float(c.d_out);
  const auto d_final_state = to_float(c.d_final_state);
  const BasicDeltaRuleProblem<float> basic = c.problem(q, k, v, beta, g);
  DeltaRuleProblem p;
  p.tokens = basic.tokens;
  p.key_heads = basic.key_heads;
  p.value_heads = basic.value_heads;
  p.key_dim = basic.key_dim;
  p.value_dim = basic.value_dim;
  p.q = basic.q;
  p.q_stride = basic.q_stride;
  p.k = basic.k;
  p.k_stride = basic.k_stride;
  p.v = basic.v;
  p.v_stride = basic.v_stride;
  p.beta = basic.beta;
  p.g = basic.g;
  p.scale = basic.scale;
  Gradients<float> d(c);
  delta_rule_chunked_backward(p, initial_state.data(), d_out.data(), d_final_state.data(), d.view(), chunk);
  return d;
}

// The gradient check of `analytic` (any precision) against the double recurrence.
::testing::AssertionResult matches_finite_differences(Case c, const Gradients<double>& analytic, double tolerance,
                                                      const test::GradcheckOptions& options) {
  auto loss = [&c] {
    std::vector<double> state = c.initial_state, out(c.v.size());
    delta_rule_recurrent_reference(c.problem(c.q, c.k, c.v, c.beta, c.g), state.data(), out.data());
    return test::weighted_sum<double, double>(out, c.d_out) + test::weighted_sum<double, double>(state, c.d_final_state);
  };
  std::vector<GradParameter<double>> parameters = {
      {"q", c.q, analytic.dq},          {"k", c.k, analytic.dk},
      {"v", c.v, analytic.dv},          {"beta", c.beta, analytic.dbeta},
      {"g", c.g, analytic.dg},          {"initial_state", c.initial_state, analytic.d_initial_state}};
  return test::gradients_match(test::gradcheck<double>(loss, parameters, options), tolerance);
}

Gradients<double> widen(const Gradients<float>& d, const Case& c) {
  Gradients<double> wide(c);
  wide.dq = to_double(d.dq);
  wide.dk = to_double(d.dk);
  wide.dv = to_double(d.dv);
  wide.dbeta = to_double(d.dbeta);
  wide.dg = to_double(d.dg);
  wide.d_initial_state = to_double(d.d_initial_state);
  return wide;
}

// Double differentiates cleanly down to small steps (g near -20 needs them: exp has curvature).
// Under strong decay whole arrays (d_initial_state) are ~1e-10, below the loss's round-off over a
// step (~1e-16 * |loss| / 1e-6), hence the absolute floor.
test::GradcheckOptions double_options() {
  test::GradcheckOptions options;
  options.steps = {1e-3, 1e-4, 1e-5, 1e-6};
  options.absolute_floor = 1e-7;
  return options;
}

// The chunked gradients are float: an entry that is a difference of O(1) terms (dg under strong
// decay) carries ~1e-7 absolute rounding however small it is.
test::GradcheckOptions float_options() {
  test::GradcheckOptions options = double_options();
  options.absolute_floor = 1e-3;
  return options;
}

const int64_t kLengths[] = {1, 63, 64, 65, 70, 130};
const Regime kRegimes[] = {Regime::Typical, Regime::StrongDecay, Regime::WeakDecay, Regime::BetaNearZero,
                           Regime::BetaNearOne};

// Finite differences cost thousands of forward passes per case: every length in the typical
// regime, every regime at the lengths just past one and two chunks.
std::vector<std::pair<int64_t, Regime>> finite_difference_cases() {
  std::vector<std::pair<int64_t, Regime>> cases;
  for (int64_t tokens : kLengths) cases.push_back({tokens, Regime::Typical});
  for (Regime regime : kRegimes)
    if (regime != Regime::Typical)
      for (int64_t tokens : {65, 130}) cases.push_back({tokens, regime});
  return cases;
}

TEST(DeltaRuleBackward, RecurrentMatchesFiniteDifferencesInDouble) {
  uint32_t seed = 100;
  for (const auto& [tokens, regime] : finite_difference_cases()) {
    SCOPED_TRACE("T = " + std::to_string(tokens) + ", " + regime_name(regime));
    const Case c = make_case(tokens, regime, seed += 10);
    EXPECT_TRUE(matches_finite_differences(c, recurrent_gradients_double(c), 1e-5, double_options()));
  }
}

TEST(DeltaRuleBackward, ChunkedMatchesRecurrent) {
  uint32_t seed = 500;
  for (int64_t tokens : kLengths)
    for (Regime regime : kRegimes)
      for (int64_t chunk : {int64_t{64}, int64_t{16}}) {
        SCOPED_TRACE("T = " + std::to_string(tokens) + ", " + regime_name(regime) + ", chunk " + std::to_string(chunk));
        const Case c = make_case(tokens, regime, seed += 10);
        const Gradients<double> expected = recurrent_gradients_double(c);
        const Gradients<float> actual = chunked_gradients(c, chunk);
        const double tolerance = 1e-5;
        EXPECT_TRUE(all_close(actual.dq, to_float(expected.dq), tolerance)) << "dq";
        EXPECT_TRUE(all_close(actual.dk, to_float(expected.dk), tolerance)) << "dk";
        EXPECT_TRUE(all_close(actual.dv, to_float(expected.dv), tolerance)) << "dv";
        EXPECT_TRUE(all_close(actual.dbeta, to_float(expected.dbeta), tolerance)) << "dbeta";
        // dg_t is a difference of O(1) terms (q.dq - k.dk) that nearly cancel under strong decay; in
        // float it is exact to ~1e-7 absolute, so it is judged on an absolute floor of 0.1.
        EXPECT_TRUE(all_close(actual.dg, to_float(expected.dg), tolerance, 0.1)) << "dg";
        EXPECT_TRUE(all_close(actual.d_initial_state, to_float(expected.d_initial_state), tolerance)) << "d_initial_state";
      }
}

TEST(DeltaRuleBackward, ChunkedMatchesFiniteDifferences) {
  uint32_t seed = 900;
  for (const auto& [tokens, regime] : finite_difference_cases()) {
    SCOPED_TRACE("T = " + std::to_string(tokens) + ", " + regime_name(regime));
    const Case c = make_case(tokens, regime, seed += 10);
    EXPECT_TRUE(matches_finite_differences(c, widen(chunked_gradients(c, 64), c), 1e-3, float_options()));
  }
}

TEST(DeltaRuleBackward, RecurrentFloatMatchesDouble) {
  const Case c = make_case(70, Regime::Typical, 1300);
  Gradients<float> actual(c);
  const auto q = to_float(c.q), k = to_float(c.k), v = to_float(c.v), beta = to_float(c.beta), g = to_float(c.g);
  const auto initial_state = to_float(c.initial_state), d_out = to_float(c.d_out);
  delta_rule_recurrent_backward(c.problem(q, k, v, beta, g), initial_state.data(), d_out.data(), static_cast<const float*>(nullptr), actual.view());
  Case without_final = c;
  std::fill(without_final.d_final_state.begin(), without_final.d_final_state.end(), 0.0);
  const Gradients<double> expected = recurrent_gradients_double(without_final);
  EXPECT_TRUE(all_close(actual.dk, to_float(expected.dk), 1e-5));
  EXPECT_TRUE(all_close(actual.dg, to_float(expected.dg), 1e-5));
  EXPECT_TRUE(all_close(actual.d_initial_state, to_float(expected.d_initial_state), 1e-5));
}

// The layer's chain on the model's layout: raw q, k, v interleaved per token as the conv output
// [q (nk*dk) | k (nk*dk) | v (nv*dv)], l2-normalised q and k, the chunked rule from a nonzero state,
// and l2_normalize_backward on dq and dk; against finite differences of the float forward.
TEST(DeltaRuleBackward, ChunkedWithL2NormOnTheConvLayoutMatchesFiniteDifferences) {
  const int64_t tokens = 70, nk = 2, nv = 4, dk = 8, dv = 4, row = 2 * nk * dk + nv * dv;
  auto qkv = test::random_vector(size_t(tokens * row), 2000);
  auto beta = test::uniform_vector(size_t(tokens * nv), 2001, 0.1f, 0.9f);
  auto g = test::uniform_vector(size_t(tokens * nv), 2002, -2.0f, -0.01f);
  auto initial_state = test::random_vector(size_t(nv * dk * dv), 2003, 0.5f);
  const auto d_out = test::random_vector(size_t(tokens * nv * dv), 2004);
  const auto d_final_state = test::random_vector(initial_state.size(), 2005);
  std::vector<float> normalised;
  auto problem = [&] { return conv_layout_problem(normalised.data(), tokens, nk, nv, dk, dv, beta.data(), g.data()); };
  auto normalise = [&] {
    normalised = qkv;
    for (int64_t t = 0; t < tokens; ++t) l2_normalize(normalised.data() + t * row, 2 * nk, dk, 1e-6f);
  };
  normalise();
  std::vector<float> dqkv(qkv.size(), 0.0f), dbeta(beta.size()), dg(g.size()), d_initial_state(initial_state.size());
  const DeltaRuleGradients<float> gradients{dqkv.data(), dqkv.data() + nk * dk, dqkv.data() + 2 * nk * dk,
                                            dbeta.data(), dg.data(), d_initial_state.data()};
  delta_rule_chunked_backward(problem(), initial_state.data(), d_out.data(), d_final_state.data(), gradients, 16);
  for (int64_t t = 0; t < tokens; ++t)
    l2_normalize_backward(qkv.data() + t * row, dqkv.data() + t * row, 2 * nk, dk, 1e-6f, dqkv.data() + t * row);
  auto loss = [&] {
    normalise();
    std::vector<float> state = initial_state, out(d_out.size());
    delta_rule_recurrent(problem(), state.data(), out.data());
    return test::weighted_sum<float, float>(out, d_out) + test::weighted_sum<float, float>(state, d_final_state);
  };
  test::GradcheckOptions options;
  options.random_entries = 30;
  EXPECT_TRUE(test::gradients_match(
      test::gradcheck<float>(loss, {GradParameter<float>{"qkv", qkv, dqkv}, GradParameter<float>{"beta", beta, dbeta},
                                    GradParameter<float>{"g", g, dg},
                                    GradParameter<float>{"initial_state", initial_state, d_initial_state}},
                             options),
      1e-2));
}

void write_f32(const std::filesystem::path& path, const std::vector<float>& values) {
  std::ofstream file(path, std::ios::binary);
  file.write(reinterpret_cast<const char*>(values.data()), std::streamsize(values.size() * sizeof(float)));
}

std::vector<float> read_f64(const std::filesystem::path& path, size_t count) {
  std::ifstream file(path, std::ios::binary);
  std::vector<double> values(count);
  file.read(reinterpret_cast<char*>(values.data()), std::streamsize(count * sizeof(double)));
  EXPECT_EQ(size_t(file.gcount()), count * sizeof(double)) << path;
  return {values.begin(), values.end()};
}

// The whole GDN core (l2norm and scale, GVA with nv = 3 nk, per-value-head gates, the chunked rule
// from an initial state) against an independent PyTorch float64 autograd of the per-token
// recurrence, so a layout assumption shared by our forward and backward (head mapping, gate heads)
// cannot hide.
TEST(DeltaRuleBackward, GdnCoreMatchesPyTorchAutograd) {
  const int64_t tokens = 70, nk = 2, nv = 6, dk = 8, dv = 4, row = 2 * nk * dk + nv * dv;
  auto qkv = test::random_vector(size_t(tokens * row), 3000);
  const auto b = test::random_vector(size_t(tokens * nv), 3001), a = test::random_vector(size_t(tokens * nv), 3002);
  const auto A_log = test::uniform_vector(size_t(nv), 3003, -1.0f, 1.5f);
  const auto dt_bias = test::uniform_vector(size_t(nv), 3004, -1.0f, 1.0f);
  const auto initial_state = test::random_vector(size_t(nv * dk * dv), 3005, 0.5f);
  const auto d_out = test::random_vector(size_t(tokens * nv * dv), 3006);
  const auto d_final_state = test::random_vector(initial_state.size(), 3007);

  const std::filesystem::path folder = test::temp_dir("gdn_torch");
  for (const auto& [name, values] : {std::pair<const char*, const std::vector<float>*>{"qkv", &qkv}, {"b", &b},
                                     {"a", &a}, {"A_log", &A_log}, {"dt_bias", &dt_bias},
                                     {"initial_state", &initial_state}, {"d_out", &d_out},
                                     {"d_final_state", &d_final_state}})
    write_f32(folder / (std::string(name) + ".f32"), *values);
  const test::CommandResult run = test::run_command(
      "/usr/bin/python3 " + (test::source_dir() / "tests/ops/delta_rule_backward_reference.py").string() + " " +
      folder.string() + " " + std::to_string(tokens) + " " + std::to_string(nk) + " " + std::to_string(nv) + " " +
      std::to_string(dk) + " " + std::to_string(dv));
  ASSERT_EQ(run.exit_code, 0) << run.err;

  // Ours: gates, l2norm, chunked backward, then the gate and l2norm backward.
  std::vector<float> beta(b.size()), g(b.size()), normalised = qkv;
  gated_delta_gates(b.data(), a.data(), tokens, nv, A_log.data(), dt_bias.data(), beta.data(), g.data());
  for (int64_t t = 0; t < tokens; ++t) l2_normalize(normalised.data() + t * row, 2 * nk, dk, 1e-6f);
  const DeltaRuleProblem p = conv_layout_problem(normalised.data(), tokens, nk, nv, dk, dv, beta.data(), g.data());
  std::vector<float> dqkv(qkv.size()), dbeta(beta.size()), dg(g.size()), d_initial_state(initial_state.size());
  delta_rule_chunked_backward(p, initial_state.data(), d_out.data(), d_final_state.data(),
                              {dqkv.data(), dqkv.data() + nk * dk, dqkv.data() + 2 * nk * dk, dbeta.data(), dg.data(),
                               d_initial_state.data()},
                              16);
  for (int64_t t = 0; t < tokens; ++t)
    l2_normalize_backward(qkv.data() + t * row, dqkv.data() + t * row, 2 * nk, dk, 1e-6f, dqkv.data() + t * row);
  std::vector<float> db(b.size()), da(a.size()), dA_log(size_t(nv), 0.0f), ddt_bias(size_t(nv), 0.0f);
  gated_delta_gates_backward(b.data(), a.data(), tokens, nv, A_log.data(), dt_bias.data(), dbeta.data(), dg.data(),
                             db.data(), da.data(), dA_log.data(), ddt_bias.data());

  EXPECT_TRUE(all_close(dqkv, read_f64(folder / "grad_qkv.f64", qkv.size()), 1e-4)) << "qkv";
  EXPECT_TRUE(all_close(db, read_f64(folder / "grad_b.f64", b.size()), 1e-4)) << "b";
  EXPECT_TRUE(all_close(da, read_f64(folder / "grad_a.f64", a.size()), 1e-4)) << "a";
  EXPECT_TRUE(all_close(dA_log, read_f64(folder / "grad_A_log.f64", A_log.size()), 1e-4)) << "A_log";
  EXPECT_TRUE(all_close(ddt_bias, read_f64(folder / "grad_dt_bias.f64", dt_bias.size()), 1e-4)) << "dt_bias";
  EXPECT_TRUE(all_close(d_initial_state, read_f64(folder / "grad_initial_state.f64", initial_state.size()), 1e-4))
      << "initial_state";
}

}  // namespace
}  // namespace dt
