// Kernels with planted bugs (and their correct twins) that show what the simulator catches;
// tests/ops/test_cuda_sim.py runs them through greenai_cuda_sim.selftest(name).
#include "cuda_sim/selftest.h"

#include <cuda_runtime.h>

#include <stdexcept>
#include <string>
#include <vector>

#include "cuda/launch.cuh"

namespace greenai::cuda_sim {
namespace {

// out[t] = the value thread t + 1 wrote, read after a barrier (or, planted bug, without one).
template <bool kSync>
__global__ void neighbour_kernel(int* out) {
    int* s = greenai::cuda::dynamic_shared<int>();
    const int t = static_cast<int>(threadIdx.x);
    s[t] = t + 1;
    if (kSync) {
        __syncthreads();
    }
    out[t] = s[(t + 1) % static_cast<int>(blockDim.x)];
}

// Per warp: the sum of the lane ids by a xor butterfly and by a shift-down tree, and lane
// (l + 1) % 32's id broadcast by __shfl_sync.
__global__ void reduce_kernel(int* out) {
    const int t = static_cast<int>(threadIdx.x);
    int a = t & 31;
    int b = t & 31;
    for (int o = 16; o > 0; o >>= 1) {
        a += __shfl_xor_sync(0xffffffffu, a, o);
        b += __shfl_down_sync(0xffffffffu, b, static_cast<unsigned>(o));
    }
    const int c = __shfl_sync(0xffffffffu, t & 31, (t + 1) & 31);
    out[3 * t] = a;
    out[3 * t + 1] = b;
    out[3 * t + 2] = c;
}

__global__ void shuffle_after_exit_kernel(int* out) {
    const int t = static_cast<int>(threadIdx.x);
    if (t == 5) {
        return;
    }
    out[t] = __shfl_xor_sync(0xffffffffu, t, 1);
}

__global__ void divergent_barrier_kernel(int* out) {
    const int t = static_cast<int>(threadIdx.x);
    if (t < 16) {
        __syncthreads();
    }
    out[t] = t;
}

__global__ void misaligned_load_kernel(const unsigned char* p, unsigned* out) {
    const uint4 v = __ldg(reinterpret_cast<const uint4*>(p + 4));
    out[threadIdx.x] = v.x;
}

__global__ void misaligned_store_kernel(unsigned char* p) {
    *reinterpret_cast<uint4*>(p + 4) = make_uint4(1u, 2u, 3u, 4u);  // UBSan: misaligned store
}

__global__ void shared_overflow_kernel(int* out) {
    float* s = greenai::cuda::dynamic_shared<float>();
    s[threadIdx.x + 1024] = 1.0f;  // the launch asked for 4 KiB: 1024 floats
    out[threadIdx.x] = 0;
}

void check(const char* what) {
    const cudaError_t err = cudaGetLastError();
    if (err != cudaSuccess) {
        throw std::runtime_error(std::string(what) + ": " + cudaGetErrorName(err));
    }
}

}  // namespace

std::vector<int> selftest(const std::string& name) {
    using greenai::cuda::launch_kernel;
    std::vector<int> out(3 * 64, -1);
    if (name == "neighbour" || name == "neighbour_unsynced") {
        out.resize(64);
        auto* kernel = name == "neighbour" ? neighbour_kernel<true> : neighbour_kernel<false>;
        launch_kernel(kernel, dim3(1), dim3(64), 64 * sizeof(int), nullptr, out.data());
    } else if (name == "reduce") {
        launch_kernel(reduce_kernel, dim3(1), dim3(64), 0, nullptr, out.data());
    } else if (name == "shuffle_after_exit") {
        launch_kernel(shuffle_after_exit_kernel, dim3(1), dim3(32), 0, nullptr, out.data());
    } else if (name == "partial_warp_shuffle") {
        launch_kernel(reduce_kernel, dim3(1), dim3(40), 0, nullptr, out.data());
    } else if (name == "divergent_barrier") {
        launch_kernel(divergent_barrier_kernel, dim3(1), dim3(32), 0, nullptr, out.data());
    } else if (name == "misaligned_load") {
        alignas(16) unsigned char bytes[32] = {};
        std::vector<unsigned> words(1);
        launch_kernel(misaligned_load_kernel, dim3(1), dim3(1), 0, nullptr, bytes, words.data());
    } else if (name == "misaligned_store") {
        alignas(16) unsigned char bytes[32] = {};
        launch_kernel(misaligned_store_kernel, dim3(1), dim3(1), 0, nullptr, bytes);
    } else if (name == "too_many_threads") {
        launch_kernel(reduce_kernel, dim3(1), dim3(1056), 0, nullptr, out.data());
    } else if (name == "shared_overflow") {
        launch_kernel(shared_overflow_kernel, dim3(1), dim3(1), 4096, nullptr, out.data());
    } else {
        throw std::invalid_argument("no self-test named '" + name + "'");
    }
    check(name.c_str());
    return out;
}

}  // namespace greenai::cuda_sim
