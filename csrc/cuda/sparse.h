// CUDA kernels for structured pruning and 2:4 sparsity: channel norms, the 2:4 mask, the
// compressed 2:4 format (values + 2-bit positions) and a matmul on it for small batches.
// Formats and arithmetic: src/greenai/ops/sparse_reference.py and csrc/cpu/sparse.h, which
// these kernels follow exactly (mask, compress and decompress bit for bit).
//
// Plain C++ (no CUDA headers), so bindings.cpp includes it in every build; CMake compiles
// csrc/cuda/sparse.cu (nvcc) or csrc/cuda/sparse_fallback.cpp (CPU-only: every function
// throws). Conventions as in cuda/quant.h: device pointers and the cudaStream_t as
// std::uintptr_t, launches on `stream` without synchronizing, a failed launch throws
// std::runtime_error; dtype codes 0 float32, 1 float16, 2 bfloat16; contiguous row-major
// tensors whose shapes the caller validated.
#pragma once

#include <cstdint>

namespace greenai::cuda {

// out (channels,) float32 = the p-norm (p 1 or 2) of each channel of w viewed as
// (outer, channels, inner); float64 accumulation.
void channel_norms(std::uintptr_t w, int dtype, std::int64_t outer, std::int64_t channels, std::int64_t inner,
                   int p, std::uintptr_t out, std::uintptr_t stream);

// mask (n, k) bool of the 2:4 pattern of w (n, k), k % 4 == 0.
void mask_2to4(std::uintptr_t w, int dtype, std::int64_t n, std::int64_t k, std::uintptr_t mask,
               std::uintptr_t stream);

// values (n, k / 2) of w's dtype and meta uint8 (n, (k + 7) / 8) of w (n, k).
void compress_2to4(std::uintptr_t w, int dtype, std::int64_t n, std::int64_t k, std::uintptr_t values,
                   std::uintptr_t meta, std::uintptr_t stream);

// out (n, k) of dtype from values and meta.
void decompress_2to4(std::uintptr_t values, std::uintptr_t meta, int dtype, std::int64_t n, std::int64_t k,
                     std::uintptr_t out, std::uintptr_t stream);

// y (m, n) = x (m, k) W^T + bias, W = (values, meta) of x's dtype, float32 accumulation,
// bias float32 (n,) or 0. One warp per output element: meant for small m.
void linear_2to4(std::uintptr_t x, int dtype, std::int64_t m, std::int64_t k, std::uintptr_t values,
                 std::uintptr_t meta, std::uintptr_t bias, std::int64_t n, std::uintptr_t y,
                 std::uintptr_t stream);

}  // namespace greenai::cuda
