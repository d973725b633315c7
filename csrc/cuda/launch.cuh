// How the .cu files launch kernels, size their grids and report failed launches and bad
// arguments. Under nvcc the launch is a plain `<<<>>>` and dynamic shared memory an
// `extern __shared__` array; with GREENAI_CUDA_SIM the same sources compile as C++ for the
// test-only greenai_cuda_sim, whose cuda_runtime.h (testing/cuda_sim/include/) supplies
// launch_kernel and dynamic_shared from the simulator.
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <cstddef>
#include <stdexcept>
#include <string>
#include <utility>

namespace greenai::cuda {

using i64 = long long;

#ifndef GREENAI_CUDA_SIM
// kernel<<<grid, block, smem, stream>>>(args...); the caller checks with check_launch().
template <class... Params, class... Args>
inline void launch_kernel(void (*kernel)(Params...), dim3 grid, dim3 block, std::size_t smem,
                          cudaStream_t stream, Args&&... args) {
    kernel<<<grid, block, smem, stream>>>(std::forward<Args>(args)...);
}

// The block's dynamic shared memory (the launch's smem bytes, 16-byte aligned).
template <class T>
__device__ __forceinline__ T* dynamic_shared() {
    extern __shared__ float4 greenai_dynamic_shared[];
    return reinterpret_cast<T*>(greenai_dynamic_shared);
}
#endif

// The most blocks grid_for() gives a launch. Every kernel sized by it walks its work with a
// grid-stride loop, so the cap never leaves work undone; it only bounds the grid. 2^20 blocks
// are still hundreds of full waves on any current GPU (an H100 keeps at most 132 SMs x 32 =
// 4,224 blocks resident), so a larger grid would add block scheduling, not parallelism, and
// the cap keeps gridDim.x far below its 2^31 - 1 limit whatever the tensor.
constexpr i64 kMaxGridBlocks = i64(1) << 20;

inline i64 ceil_div(i64 a, i64 b) { return (a + b - 1) / b; }

// Blocks for `work` items at `per_block` items per block: at least 1, at most kMaxGridBlocks.
inline unsigned grid_for(i64 work, i64 per_block) {
    return static_cast<unsigned>(std::max<i64>(1, std::min(ceil_div(work, per_block), kMaxGridBlocks)));
}

// std::runtime_error naming greenai.cuda.<fn> and the CUDA error, if the last launch failed.
inline void check_launch(const char* fn) {
    const cudaError_t err = cudaGetLastError();
    if (err != cudaSuccess) {
        throw std::runtime_error(std::string("greenai.cuda.") + fn + ": kernel launch failed: " +
                                 cudaGetErrorName(err) + ": " + cudaGetErrorString(err));
    }
}

// std::invalid_argument naming greenai.cuda.<fn> (pybind11 raises it as ValueError).
[[noreturn]] inline void bad_arg(const char* fn, const std::string& what) {
    throw std::invalid_argument(std::string("greenai.cuda.") + fn + ": " + what);
}

}  // namespace greenai::cuda
