#include <unistd.h>

#include <cstdlib>

#include "cli/cli.h"

int main(int argc, char** argv) {
  // Our OpenMP kernels alternate with OpenBLAS's own pthreads. With libgomp's default (active)
  // wait policy, idle OpenMP threads spin on the cores OpenBLAS needs, which slowed decode by
  // orders of magnitude on 2 cores. libgomp reads the policy before main runs, so set it and
  // re-execute once; a user's explicit choice is respected.
  if (std::getenv("OMP_WAIT_POLICY") == nullptr) {
    ::setenv("OMP_WAIT_POLICY", "PASSIVE", 1);
    ::execv("/proc/self/exe", argv);
    // If re-execution is impossible, carry on with the default policy.
  }
  return dt::run_cli(argc, argv);
}
