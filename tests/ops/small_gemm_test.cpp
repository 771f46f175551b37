#include "ops/small_gemm.h"

#include <gtest/gtest.h>

#include "ops/numeric_test_util.h"

namespace dt {
namespace {

// Tiled interior plus both edges (m, n not multiples of 4 and 16), leading dimensions wider than
// the operands, and accumulation into a nonzero C.
TEST(SmallGemm, MatchesReference) {
  struct Case {
    int64_t m, n, k;
  };
  for (const Case c : {Case{64, 128, 128}, Case{7, 21, 5}, Case{3, 8, 9}, Case{1, 1, 1}, Case{13, 48, 64}}) {
    const int64_t lda = c.k + 3, ldb = c.n + 5, ldc = c.n + 2;
    const auto A = test::random_vector(size_t(c.m * lda), 1);
    const auto B = test::random_vector(size_t(c.k * ldb), 2);
    auto fast = test::random_vector(size_t(c.m * ldc), 3);
    auto reference = fast;
    small_gemm(c.m, c.n, c.k, -0.75f, A.data(), lda, B.data(), ldb, fast.data(), ldc);
    small_gemm_reference(c.m, c.n, c.k, -0.75f, A.data(), lda, B.data(), ldb, reference.data(), ldc);
    EXPECT_TRUE(test::all_close(fast, reference, 1e-5)) << c.m << "x" << c.n << "x" << c.k;
  }
}

}  // namespace
}  // namespace dt
