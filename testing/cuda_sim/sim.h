// greenai's CUDA simulator: the CUDA kernels of csrc/cuda/*.cu compiled as C++ and run on the
// CPU under the CUDA execution model, so their indexing, vector paths, shared memory, warp
// shuffles and barriers are tested on machines without a GPU (greenai_cuda_sim).
//
// The model: blocks run one after another (in forward, reverse or random order); inside a
// block every CUDA thread is a fiber with its own stack, and fibers switch only at
// __syncthreads() and warp shuffles. Between two such points the fibers of a block run in
// the chosen order, so a missing __syncthreads() shows up as a wrong result under some order.
// Checked, and reported as a std::runtime_error from the launching call:
//   - __syncthreads() that not every live thread of the block reaches (deadlock),
//   - full-mask warp shuffles in a partial warp, after a lane exited, or with another mask,
//   - misaligned __ldg() (vector loads), with -fsanitize=alignment also any misaligned
//     uint4 / float4 / uint2 access,
//   - dynamic shared memory beyond the launch's size (a PROT_NONE page follows it),
//   - invalid launch configurations (cudaErrorInvalidConfiguration, as CUDA reports them).
// Not modelled: timing, the memory model beyond barriers, L1/L2, occupancy, and
// __launch_bounds__ (ignored).
//
// The .cu files include <cuda_runtime.h>, <cuda_fp16.h> and <cuda_bf16.h>; with
// testing/cuda_sim/include first on the include path those resolve to this header.
#pragma once

#include <math.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <tuple>
#include <type_traits>
#include <utility>

#include "cpu/floatconv.h"

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __shared__ static

// ---- CUDA's vector and stream types ---------------------------------------------------------

struct dim3 {
    unsigned x, y, z;
    constexpr dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};
struct alignas(16) uint4 {
    unsigned x, y, z, w;
};
struct alignas(8) uint2 {
    unsigned x, y;
};
struct alignas(16) float4 {
    float x, y, z, w;
};
inline uint4 make_uint4(unsigned x, unsigned y, unsigned z, unsigned w) { return {x, y, z, w}; }
inline uint2 make_uint2(unsigned x, unsigned y) { return {x, y}; }
inline float4 make_float4(float x, float y, float z, float w) { return {x, y, z, w}; }

struct CUstream_st;
using cudaStream_t = CUstream_st*;

enum cudaError_t {
    cudaSuccess = 0,
    cudaErrorInvalidValue = 1,
    cudaErrorInvalidConfiguration = 9,
};
cudaError_t cudaGetLastError();
const char* cudaGetErrorName(cudaError_t err);
const char* cudaGetErrorString(cudaError_t err);

// ---- 16-bit floats ----------------------------------------------------------------------------

struct __half {
    unsigned short bits;
};
struct __nv_bfloat16 {
    unsigned short bits;
};
inline __half __ushort_as_half(unsigned short b) { return {b}; }
inline unsigned short __half_as_ushort(__half h) { return h.bits; }
inline float __half2float(__half h) { return greenai::cpu::f16_to_float(h.bits); }
inline __half __float2half_rn(float f) { return {greenai::cpu::float_to_f16(f)}; }
inline __nv_bfloat16 __float2bfloat16_rn(float f) { return {greenai::cpu::float_to_bf16(f)}; }
inline unsigned short __bfloat16_as_ushort(__nv_bfloat16 b) { return b.bits; }

// ---- arithmetic and bit intrinsics ------------------------------------------------------------

template <class To, class From>
inline To greenai_sim_bit_cast(From v) {
    static_assert(sizeof(To) == sizeof(From), "bit cast between types of one size");
    To out;
    std::memcpy(&out, &v, sizeof out);
    return out;
}
inline float __uint_as_float(unsigned u) { return greenai_sim_bit_cast<float>(u); }
inline unsigned __float_as_uint(float f) { return greenai_sim_bit_cast<unsigned>(f); }
inline float __int_as_float(int i) { return greenai_sim_bit_cast<float>(i); }
inline int __float_as_int(float f) { return greenai_sim_bit_cast<int>(f); }

// The module is built with -ffp-contract=off, so these are single IEEE operations.
inline float __fadd_rn(float a, float b) { return a + b; }
inline float __fsub_rn(float a, float b) { return a - b; }
inline float __fmul_rn(float a, float b) { return a * b; }
inline float __fdiv_rn(float a, float b) { return a / b; }

// cvt.rni.s32.f32: nearest even, NaN -> 0, saturating.
inline int __float2int_rn(float f) {
    if (isnan(f)) {
        return 0;
    }
    if (f >= 2147483648.0f) {
        return 0x7fffffff;
    }
    if (f <= -2147483648.0f) {
        return static_cast<int>(0x80000000u);
    }
    return static_cast<int>(nearbyintf(f));
}

inline int __ffs(int v) { return __builtin_ffs(v); }
inline int __popc(unsigned v) { return __builtin_popcount(v); }

// Byte i of the result is byte (s >> 4 i) & 7 of the 8-byte value y:x.
inline unsigned __byte_perm(unsigned x, unsigned y, unsigned s) {
    const std::uint64_t v = (static_cast<std::uint64_t>(y) << 32) | x;
    unsigned r = 0;
    for (int i = 0; i < 4; ++i) {
        const unsigned sel = (s >> (4 * i)) & 7u;
        r |= static_cast<unsigned>((v >> (8 * sel)) & 0xffu) << (8 * i);
    }
    return r;
}

// CUDA's integer min / max overloads (mixed signedness compares as the common type).
template <class A, class B, class = std::enable_if_t<std::is_integral_v<A> && std::is_integral_v<B>>>
inline std::common_type_t<A, B> min(A a, B b) {
    using C = std::common_type_t<A, B>;
    return static_cast<C>(a) < static_cast<C>(b) ? static_cast<C>(a) : static_cast<C>(b);
}
template <class A, class B, class = std::enable_if_t<std::is_integral_v<A> && std::is_integral_v<B>>>
inline std::common_type_t<A, B> max(A a, B b) {
    using C = std::common_type_t<A, B>;
    return static_cast<C>(a) < static_cast<C>(b) ? static_cast<C>(b) : static_cast<C>(a);
}

// ---- the simulator's thread state -------------------------------------------------------------

namespace greenai::cuda_sim {

struct ThreadState {
    dim3 thread_idx;
    dim3 block_idx;
    dim3 block_dim;
    dim3 grid_dim;
    int linear;  // thread index within the block
};

// The calling CUDA thread's state; throws outside a simulated kernel.
const ThreadState& current();
// Suspend the calling CUDA thread at a block barrier / a full-mask warp barrier.
void block_barrier();
void warp_barrier(unsigned mask);
// The 16-byte exchange slot of thread `linear` of the current block (warp shuffles).
unsigned char* exchange_slot(int linear);
// The current block's dynamic shared memory.
void* dynamic_shared_memory();
// Throws std::runtime_error("greenai.cuda_sim: " + what) from inside a kernel.
[[noreturn]] void fault(const char* what);

// Run `body` for every thread of every block of the grid (see the file comment). Invalid
// configurations set the error cudaGetLastError() returns and run nothing.
void launch(dim3 grid, dim3 block, std::size_t smem, cudaStream_t stream,
            const std::function<void()>& body);

}  // namespace greenai::cuda_sim

#define threadIdx (::greenai::cuda_sim::current().thread_idx)
#define blockIdx (::greenai::cuda_sim::current().block_idx)
#define blockDim (::greenai::cuda_sim::current().block_dim)
#define gridDim (::greenai::cuda_sim::current().grid_dim)

inline void __syncthreads() { ::greenai::cuda_sim::block_barrier(); }

template <class T>
inline T __ldg(const T* p) {
    if (reinterpret_cast<std::uintptr_t>(p) % alignof(T) != 0) {
        ::greenai::cuda_sim::fault("misaligned __ldg");
    }
    return *p;
}

namespace greenai::cuda_sim {

// Every lane publishes v, then reads lane src(lane) within its segment of `width` lanes (its
// own value when src falls outside the segment).
template <class T, class Src>
inline T exchange(unsigned mask, T v, int width, Src src) {
    static_assert(sizeof(T) <= 16 && std::is_trivially_copyable_v<T>, "shuffle of a small value");
    if (width < 1 || width > 32 || (width & (width - 1)) != 0) {
        fault("shuffle width must be a power of two <= 32");
    }
    const int linear = current().linear;
    const int lane = linear & 31;
    std::memcpy(exchange_slot(linear), &v, sizeof(T));
    warp_barrier(mask);
    const int base = lane & ~(width - 1);
    int s = src(lane);
    if (s < base || s >= base + width) {
        s = lane;
    }
    T out;
    std::memcpy(&out, exchange_slot(linear - lane + s), sizeof(T));
    warp_barrier(mask);
    return out;
}

}  // namespace greenai::cuda_sim

template <class T>
inline T __shfl_xor_sync(unsigned mask, T v, int lane_mask, int width = 32) {
    return ::greenai::cuda_sim::exchange(mask, v, width, [&](int lane) { return lane ^ lane_mask; });
}
template <class T>
inline T __shfl_down_sync(unsigned mask, T v, unsigned delta, int width = 32) {
    return ::greenai::cuda_sim::exchange(mask, v, width,
                                         [&](int lane) { return lane + static_cast<int>(delta); });
}
template <class T>
inline T __shfl_sync(unsigned mask, T v, int src_lane, int width = 32) {
    return ::greenai::cuda_sim::exchange(mask, v, width, [&](int lane) {
        return (lane & ~(width - 1)) + (src_lane & (width - 1));
    });
}

// Fibers of one block never run at the same time, so read-modify-write is atomic here.
template <class T>
inline T atomicMax(T* p, T v) {
    const T old = *p;
    *p = old < v ? v : old;
    return old;
}
template <class T>
inline T atomicMin(T* p, T v) {
    const T old = *p;
    *p = v < old ? v : old;
    return old;
}
template <class T>
inline T atomicAdd(T* p, T v) {
    const T old = *p;
    *p = old + v;
    return old;
}

// ---- what csrc/cuda/launch.cuh provides under nvcc --------------------------------------------

namespace greenai::cuda {

template <class... Params, class... Args>
inline void launch_kernel(void (*kernel)(Params...), dim3 grid, dim3 block, std::size_t smem,
                          cudaStream_t stream, Args&&... args) {
    // Arguments are converted to the parameter types once, as a launch copies them.
    std::tuple<std::decay_t<Params>...> params(std::forward<Args>(args)...);
    ::greenai::cuda_sim::launch(grid, block, smem, stream, [&] { std::apply(kernel, params); });
}

template <class T>
inline T* dynamic_shared() {
    return static_cast<T*>(::greenai::cuda_sim::dynamic_shared_memory());
}

}  // namespace greenai::cuda
