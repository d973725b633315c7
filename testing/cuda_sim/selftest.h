// Planted-bug kernels for testing the simulator itself (selftest.cpp).
#pragma once

#include <string>
#include <vector>

namespace greenai::cuda_sim {

// Runs the self-test kernel `name` and returns what it wrote; a simulator fault or a launch
// error raises std::runtime_error. Names: neighbour, neighbour_unsynced, reduce,
// shuffle_after_exit, partial_warp_shuffle, divergent_barrier, misaligned_load,
// too_many_threads, and in a child process (they end it) shared_overflow (a fault on the
// guard page) and misaligned_store (UBSan's report, where the module has UBSan).
std::vector<int> selftest(const std::string& name);

}  // namespace greenai::cuda_sim
