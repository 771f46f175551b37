// Measures the two machine limits the benchmark compares against: sustained memory read bandwidth
// (streaming a buffer much larger than the caches) and fp32 FMA peak, both on `threads` threads.
// Prints "read_bandwidth_gbs <value>" and "fp32_peak_gflops <value>".
#include <immintrin.h>
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <vector>

namespace {

double seconds_now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// Best of several passes summing a 1 GiB buffer with AVX loads (the reduction keeps the loads live).
double read_bandwidth_gbs(int threads) {
  const size_t count = (size_t(1) << 30) / sizeof(float);
  std::vector<float> buffer(count);
#pragma omp parallel for num_threads(threads)
  for (size_t i = 0; i < count; ++i) buffer[i] = float(i & 1023);
  double best = 0.0;
  volatile float sink = 0.0f;
  for (int pass = 0; pass < 5; ++pass) {
    const double start = seconds_now();
    float total = 0.0f;
#pragma omp parallel for num_threads(threads) reduction(+ : total)
    for (size_t block = 0; block < count / 64; ++block) {
      const float* p = buffer.data() + block * 64;
      __m256 a = _mm256_loadu_ps(p), b = _mm256_loadu_ps(p + 8), c = _mm256_loadu_ps(p + 16), d = _mm256_loadu_ps(p + 24);
      a = _mm256_add_ps(a, _mm256_loadu_ps(p + 32));
      b = _mm256_add_ps(b, _mm256_loadu_ps(p + 40));
      c = _mm256_add_ps(c, _mm256_loadu_ps(p + 48));
      d = _mm256_add_ps(d, _mm256_loadu_ps(p + 56));
      __m256 s = _mm256_add_ps(_mm256_add_ps(a, b), _mm256_add_ps(c, d));
      alignas(32) float lanes[8];
      _mm256_store_ps(lanes, s);
      total += lanes[0] + lanes[7];
    }
    const double elapsed = seconds_now() - start;
    sink = sink + total;
    best = std::max(best, double(count * sizeof(float)) / elapsed / 1e9);
  }
  return best;
}

// Ten independent FMA chains of 8 lanes per thread hide the FMA latency.
double fp32_peak_gflops(int threads) {
  const long iterations = 200'000'000 / 10;
  double best = 0.0;
  for (int pass = 0; pass < 3; ++pass) {
    const double start = seconds_now();
    float total = 0.0f;
#pragma omp parallel num_threads(threads) reduction(+ : total)
    {
      __m256 acc[10];
      for (int i = 0; i < 10; ++i) acc[i] = _mm256_set1_ps(float(i + omp_get_thread_num()) * 1e-3f);
      const __m256 mul = _mm256_set1_ps(0.999999f), add = _mm256_set1_ps(1e-7f);
      for (long it = 0; it < iterations; ++it)
        for (int i = 0; i < 10; ++i) acc[i] = _mm256_fmadd_ps(acc[i], mul, add);
      __m256 s = acc[0];
      for (int i = 1; i < 10; ++i) s = _mm256_add_ps(s, acc[i]);
      alignas(32) float lanes[8];
      _mm256_store_ps(lanes, s);
      total += lanes[0];
    }
    const double elapsed = seconds_now() - start;
    if (total == 12345.0f) std::puts("");  // keeps the chains live
    best = std::max(best, double(threads) * iterations * 10 * 8 * 2 / elapsed / 1e9);
  }
  return best;
}

}  // namespace

int main(int argc, char** argv) {
  const int threads = argc > 1 ? std::atoi(argv[1]) : 2;
  std::printf("read_bandwidth_gbs %.2f\n", read_bandwidth_gbs(threads));
  std::printf("fp32_peak_gflops %.1f\n", fp32_peak_gflops(threads));
  return 0;
}
