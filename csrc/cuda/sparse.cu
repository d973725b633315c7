// CUDA build of csrc/cuda/sparse.h. Formats and arithmetic: src/greenai/ops/sparse_reference.py.
//
// Deliberately plain: one thread per 2:4 group (per meta byte for compress, so no two threads
// share a byte), one block per channel for the norms (float64 partial sums, a shared-memory
// tree), one warp per output element for the matmul. Magnitudes are compared as integer keys
// exactly as the CPU kernels do (the bits without the sign, NaNs clamped to one key above
// Inf), so mask and compress match the reference bit for bit. Every index is 64-bit and every
// grid loops with a grid stride, so any extent the caller validated is covered.
#include "cuda/sparse.h"

#include <cuda_runtime.h>

#include <cstdint>

#include "cuda/elements.cuh"
#include "cuda/launch.cuh"
#include "formats.h"

namespace greenai::cuda {
namespace {

constexpr int kThreads = 256;

cudaStream_t as_stream(std::uintptr_t s) { return reinterpret_cast<cudaStream_t>(s); }

// ---- 2:4 pattern -----------------------------------------------------------------------------

// Bit i set when element i of the group is kept (fewer than two others beat it; j beats i
// with a larger key, or an equal key and j < i).
template <class D>
__device__ unsigned keep4(const typename D::Bits* g) {
    unsigned key[4];
#pragma unroll
    for (int j = 0; j < 4; ++j) {
        key[j] = D::key(g[j]);
    }
    unsigned kept = 0;
#pragma unroll
    for (int i = 0; i < 4; ++i) {
        int beaten = 0;
#pragma unroll
        for (int j = 0; j < 4; ++j) {
            beaten += j < i ? key[j] >= key[i] : (j > i && key[j] > key[i]);
        }
        kept |= static_cast<unsigned>(beaten < 2) << i;
    }
    return kept;
}

// The nibble i0 | i1 << 2 of a kept pattern with two bits set.
__device__ unsigned nibble_of(unsigned kept) {
    const unsigned i0 = __ffs(kept) - 1;
    const unsigned i1 = __ffs(kept & (kept - 1)) - 1;
    return i0 | (i1 << 2);
}

template <class D>
__global__ void mask_kernel(const typename D::Bits* w, i64 groups, bool* mask) {
    for (i64 g = blockIdx.x * i64(blockDim.x) + threadIdx.x; g < groups; g += i64(gridDim.x) * blockDim.x) {
        const unsigned kept = keep4<D>(w + 4 * g);
#pragma unroll
        for (int j = 0; j < 4; ++j) {
            mask[4 * g + j] = (kept >> j) & 1u;
        }
    }
}

// One thread per meta byte: groups 2b and 2b + 1 of a row (the second only if the row has it).
template <class D>
__global__ void compress_kernel(const typename D::Bits* w, i64 n, i64 k, typename D::Bits* values,
                                std::uint8_t* meta) {
    const i64 meta_row = (k + 7) / 8, groups_row = k / 4;
    for (i64 t = blockIdx.x * i64(blockDim.x) + threadIdx.x; t < n * meta_row; t += i64(gridDim.x) * blockDim.x) {
        const i64 row = t / meta_row, b = t % meta_row;
        unsigned byte = 0;
        for (int h = 0; h < 2 && 2 * b + h < groups_row; ++h) {
            const i64 g = 2 * b + h;
            const typename D::Bits* src = w + row * k + 4 * g;
            const unsigned nib = nibble_of(keep4<D>(src));
            values[row * (k / 2) + 2 * g] = src[nib & 3];
            values[row * (k / 2) + 2 * g + 1] = src[nib >> 2];
            byte |= nib << (4 * h);
        }
        meta[t] = static_cast<std::uint8_t>(byte);
    }
}

// One thread per group: zeros, then v0 at i0, then v1 at i1 (the later wins when i0 == i1).
template <class D>
__global__ void decompress_kernel(const typename D::Bits* values, const std::uint8_t* meta, i64 n, i64 k,
                                  typename D::Bits* out) {
    const i64 meta_row = (k + 7) / 8, groups_row = k / 4;
    for (i64 t = blockIdx.x * i64(blockDim.x) + threadIdx.x; t < n * groups_row; t += i64(gridDim.x) * blockDim.x) {
        const i64 row = t / groups_row, g = t % groups_row;
        const unsigned nib = (meta[row * meta_row + g / 2] >> (4 * (g % 2))) & 15u;
        typename D::Bits d[4] = {0, 0, 0, 0};
        d[nib & 3] = values[row * (k / 2) + 2 * g];
        d[nib >> 2] = values[row * (k / 2) + 2 * g + 1];
#pragma unroll
        for (int j = 0; j < 4; ++j) {
            out[row * k + 4 * g + j] = d[j];
        }
    }
}

// ---- channel norms ---------------------------------------------------------------------------

template <class D>
__global__ void norms_kernel(const typename D::Bits* w, i64 outer, i64 channels, i64 inner, int p, float* out) {
    __shared__ double partial[kThreads];
    const i64 per_channel = outer * inner;
    for (i64 c = blockIdx.x; c < channels; c += gridDim.x) {
        double s = 0.0;
        for (i64 t = threadIdx.x; t < per_channel; t += blockDim.x) {
            const i64 o = t / inner, i = t % inner;
            const double v = D::to_f(w[(o * channels + c) * inner + i]);
            s += p == 1 ? fabs(v) : v * v;
        }
        partial[threadIdx.x] = s;
        __syncthreads();
        for (int half = kThreads / 2; half > 0; half /= 2) {
            if (threadIdx.x < half) {
                partial[threadIdx.x] += partial[threadIdx.x + half];
            }
            __syncthreads();
        }
        if (threadIdx.x == 0) {
            const double r = p == 2 ? sqrt(partial[0]) : partial[0];
            out[c] = r >= 0x1.ffffffp127 ? __int_as_float(0x7F800000) : static_cast<float>(r);
        }
        __syncthreads();
    }
}

// ---- matmul ----------------------------------------------------------------------------------

// One warp per (row of x, output column): lanes stride over the groups, then a shuffle sum.
template <class D>
__global__ void linear_kernel(const typename D::Bits* x, i64 m, i64 k, const typename D::Bits* values,
                              const std::uint8_t* meta, const float* bias, i64 n, typename D::Bits* y) {
    const int lane = threadIdx.x % 32;
    const i64 warps = i64(gridDim.x) * (blockDim.x / 32);
    const i64 meta_row = (k + 7) / 8, groups_row = k / 4;
    for (i64 t = blockIdx.x * i64(blockDim.x / 32) + threadIdx.x / 32; t < m * n; t += warps) {
        const i64 mi = t / n, col = t % n;
        const typename D::Bits* xr = x + mi * k;
        const typename D::Bits* vr = values + col * (k / 2);
        const std::uint8_t* mr = meta + col * meta_row;
        float acc = 0.0f;
        for (i64 g = lane; g < groups_row; g += 32) {
            const unsigned nib = (mr[g / 2] >> (4 * (g % 2))) & 15u;
            acc = fmaf(D::to_f(vr[2 * g]), D::to_f(xr[4 * g + (nib & 3)]), acc);
            acc = fmaf(D::to_f(vr[2 * g + 1]), D::to_f(xr[4 * g + (nib >> 2)]), acc);
        }
        for (int offset = 16; offset > 0; offset /= 2) {
            acc += __shfl_down_sync(0xffffffffu, acc, offset);
        }
        if (lane == 0) {
            y[mi * n + col] = D::from_f(acc + (bias ? bias[col] : 0.0f));
        }
    }
}

}  // namespace

void channel_norms(std::uintptr_t w, int dtype, std::int64_t outer, std::int64_t channels, std::int64_t inner,
                   int p, std::uintptr_t out, std::uintptr_t stream) {
    if (channels == 0) {
        return;
    }
    with_dtype(dtype, "channel_norms", [&](auto d) {
        using D = decltype(d);
        launch_kernel(norms_kernel<D>, grid_for(channels, 1), kThreads, 0, as_stream(stream),
            reinterpret_cast<const typename D::Bits*>(w), outer, channels, inner, p, reinterpret_cast<float*>(out));
    });
    check_launch("channel_norms");
}

void mask_2to4(std::uintptr_t w, int dtype, std::int64_t n, std::int64_t k, std::uintptr_t mask,
               std::uintptr_t stream) {
    const i64 groups = n * k / 4;
    if (groups == 0) {
        return;
    }
    with_dtype(dtype, "mask_2to4", [&](auto d) {
        using D = decltype(d);
        launch_kernel(mask_kernel<D>, grid_for(groups, kThreads), kThreads, 0, as_stream(stream),
            reinterpret_cast<const typename D::Bits*>(w), groups, reinterpret_cast<bool*>(mask));
    });
    check_launch("mask_2to4");
}

void compress_2to4(std::uintptr_t w, int dtype, std::int64_t n, std::int64_t k, std::uintptr_t values,
                   std::uintptr_t meta, std::uintptr_t stream) {
    const i64 bytes = n * meta_row_bytes(k);
    if (bytes == 0) {
        return;
    }
    with_dtype(dtype, "compress_2to4", [&](auto d) {
        using D = decltype(d);
        launch_kernel(compress_kernel<D>, grid_for(bytes, kThreads), kThreads, 0, as_stream(stream),
            reinterpret_cast<const typename D::Bits*>(w), n, k, reinterpret_cast<typename D::Bits*>(values),
            reinterpret_cast<std::uint8_t*>(meta));
    });
    check_launch("compress_2to4");
}

void decompress_2to4(std::uintptr_t values, std::uintptr_t meta, int dtype, std::int64_t n, std::int64_t k,
                     std::uintptr_t out, std::uintptr_t stream) {
    const i64 groups = n * (k / 4);
    if (groups == 0) {
        return;
    }
    with_dtype(dtype, "decompress_2to4", [&](auto d) {
        using D = decltype(d);
        launch_kernel(decompress_kernel<D>, grid_for(groups, kThreads), kThreads, 0, as_stream(stream),
            reinterpret_cast<const typename D::Bits*>(values), reinterpret_cast<const std::uint8_t*>(meta), n, k,
            reinterpret_cast<typename D::Bits*>(out));
    });
    check_launch("decompress_2to4");
}

void linear_2to4(std::uintptr_t x, int dtype, std::int64_t m, std::int64_t k, std::uintptr_t values,
                 std::uintptr_t meta, std::uintptr_t bias, std::int64_t n, std::uintptr_t y,
                 std::uintptr_t stream) {
    if (m * n == 0) {
        return;
    }
    with_dtype(dtype, "linear_2to4", [&](auto d) {
        using D = decltype(d);
        launch_kernel(linear_kernel<D>, grid_for(m * n, kThreads / 32), kThreads, 0, as_stream(stream),
            reinterpret_cast<const typename D::Bits*>(x), m, k, reinterpret_cast<const typename D::Bits*>(values),
            reinterpret_cast<const std::uint8_t*>(meta), reinterpret_cast<const float*>(bias), n,
            reinterpret_cast<typename D::Bits*>(y));
    });
    check_launch("linear_2to4");
}

}  // namespace greenai::cuda
