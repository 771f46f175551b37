#include <unistd.h>

#include <cstdlib>

#include "cli/cli.h"

namespace {

// Sets `name` to `value` unless the user chose a value; returns whether it set it.
bool set_default(const char* name, const char* value) {
  if (std::getenv(name) != nullptr) return false;
  ::setenv(name, value, 1);
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  // Our OpenMP kernels alternate with OpenBLAS's own pthreads, so whichever pool is idle must get
  // off the cores quickly:
  // - with libgomp's default (active) wait policy, idle OpenMP threads spin on the cores OpenBLAS
  //   needs, which slowed decode by orders of magnitude on 2 cores;
  // - idle OpenBLAS threads spin and sched_yield for 2^28 cycles by default; after 2^12 they sleep,
  //   which took a 0.8B forward+backward at T=512 from 21.4 to 19.8 s (5 alternating runs each).
  // Both libraries read these before main runs, so set them and re-execute once; a user's explicit
  // choice is respected.
  const bool wait_policy_set = set_default("OMP_WAIT_POLICY", "PASSIVE");
  const bool blas_timeout_set = set_default("OPENBLAS_THREAD_TIMEOUT", "12");
  if (wait_policy_set || blas_timeout_set) {
    ::execv("/proc/self/exe", argv);
    // If re-execution is impossible, carry on with the libraries' defaults.
  }
  return dt::run_cli(argc, argv);
}
