// How the .cu files launch kernels and reach dynamic shared memory. Under nvcc these are a
// plain `<<<>>>` launch and an `extern __shared__` array; with GREENAI_CUDA_SIM the same
// sources compile as C++ for the test-only greenai_cuda_sim, whose cuda_runtime.h
// (testing/cuda_sim/include/) supplies both from the simulator.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <utility>

#ifndef GREENAI_CUDA_SIM
namespace greenai::cuda {

// kernel<<<grid, block, smem, stream>>>(args...); the caller checks cudaGetLastError().
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

}  // namespace greenai::cuda
#endif
