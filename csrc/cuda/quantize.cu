// CUDA build of quantize() of csrc/cuda/quant.h: per-segment (per channel / per group) and
// per-tensor quantization. Formats and arithmetic: src/greenai/ops/reference.py; the unit
// layout and the exactness rules: quant_units.cuh.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

#include "cuda/elements.cuh"
#include "cuda/launch.cuh"
#include "cuda/quant.h"
#include "cuda/quant_units.cuh"
#include "formats.h"

namespace greenai::cuda {
namespace {

constexpr float kFltMin = 1.17549435082228750797e-38f;  // 2^-126

// ---- quantization parameters --------------------------------------------------------------

struct QParams {
    float scale;
    float inv;
    int zp;
    int lo;
    int hi;
};

// mn = min(min(x), 0), mx = max(max(x), 0) over the segment.
__device__ __forceinline__ QParams qparams(float mn, float mx, int bits, bool sym) {
    const int qmax = bits == 8 ? kInt8Max : kInt4Max;
    QParams p;
    if (sym) {
        const float absmax = fmaxf(mx, -mn);
        p.scale = fmaxf(__fdiv_rn(absmax, static_cast<float>(qmax)), kFltMin);
        p.inv = __fdiv_rn(1.0f, p.scale);
        p.zp = 0;
        p.lo = -qmax;
        p.hi = qmax;
    } else {
        const int qmin = -qmax - 1;
        const float levels = static_cast<float>(qmax - qmin);
        p.scale = fmaxf(__fsub_rn(__fdiv_rn(mx, levels), __fdiv_rn(mn, levels)), kFltMin);
        p.inv = __fdiv_rn(1.0f, p.scale);
        const int z = qmin - __float2int_rn(__fmul_rn(mn, p.inv));
        p.zp = min(max(z, qmin), qmax);
        p.lo = qmin;
        p.hi = qmax;
    }
    return p;
}

__device__ __forceinline__ int quant1(float v, const QParams& p) {
    const int c = __float2int_rn(__fmul_rn(v, p.inv)) + p.zp;
    return min(max(c, p.lo), p.hi);
}

__device__ __forceinline__ void observe(float v, float& mn, float& mx, bool& bad) {
    mn = fminf(mn, v);
    mx = fmaxf(mx, v);
    bad |= !(fabsf(v) <= 3.402823466e38f);  // NaN or Inf
}

template <class L>
__device__ __forceinline__ void observe_unit(const typename L::Vec (&r)[L::NV], float& mn,
                                             float& mx, bool& bad) {
#pragma unroll
    for (int j = 0; j < L::NV; ++j) {
        float f[L::VW];
        L::to_float(r[j], f);
#pragma unroll
        for (int e = 0; e < L::VW; ++e) observe(f[e], mn, mx, bad);
    }
}

template <class L>
__device__ __forceinline__ void quantize_unit(const typename L::Vec (&r)[L::NV], i64 u,
                                              const QParams& p, std::uint8_t* q) {
    int c[L::EPU];
#pragma unroll
    for (int j = 0; j < L::NV; ++j) {
        float f[L::VW];
        L::to_float(r[j], f);
#pragma unroll
        for (int e = 0; e < L::VW; ++e) c[j * L::VW + e] = quant1(f[e], p);
    }
    L::store_codes(q, u, c);
}

// Order-preserving int32 key of a float (signed compare of keys = float compare); a zeroed
// key is +0.0, so atomicMax / atomicMin from zero give max(x, 0) / min(x, 0).
__device__ __forceinline__ int float_key(float f) {
    const int b = __float_as_int(f);
    return b >= 0 ? b : b ^ 0x7fffffff;
}
__device__ __forceinline__ float key_float(int k) {
    return __int_as_float(k >= 0 ? k : k ^ 0x7fffffff);
}

// ---- quantize: per segment (per channel / per group) --------------------------------------

// Units per thread kept in registers between the two sweeps (int4 units are two loads).
template <int BITS>
constexpr int kNReg = BITS == 4 ? 2 : 4;

// Teams of `tps` threads (a power of two, 1..512) each own one segment at a time; a block
// is max(tps, 256) threads. Sweep 1 loads (up to kNReg units per thread into registers) and
// reduces min / max; sweep 2 quantizes from registers (re-reading, from L1 / L2, the units
// beyond kNReg per thread).
template <class D, int BITS, bool VEC>
__global__ void __launch_bounds__(512, 2)
    quantize_segments_kernel(const typename D::Bits* __restrict__ w, i64 nseg, i64 ups, int tps,
                             bool sym, std::uint8_t* __restrict__ q, float* __restrict__ scale,
                             std::int8_t* __restrict__ zp, int* __restrict__ status) {
    using L = Lay<D, BITS, VEC>;
    using Vec = typename L::Vec;
    __shared__ float red[2][16];
    const int lane = static_cast<int>(threadIdx.x) & (tps - 1);
    const int team = static_cast<int>(threadIdx.x) / tps;
    const int teams = static_cast<int>(blockDim.x) / tps;
    const int width = tps < 32 ? tps : 32;
    for (i64 s0 = static_cast<i64>(blockIdx.x) * teams; s0 < nseg;
         s0 += static_cast<i64>(gridDim.x) * teams) {
        const i64 seg = s0 + team;
        const bool active = seg < nseg;
        const i64 ubase = seg * ups;
        Vec raw[kNReg<BITS>][L::NV];
#pragma unroll
        for (int i = 0; i < kNReg<BITS>; ++i) {
            const i64 u = lane + static_cast<i64>(i) * tps;
            const bool ok = active && u < ups;
#pragma unroll
            for (int j = 0; j < L::NV; ++j) raw[i][j] = ok ? L::load(w, L::elem(ubase + u, j)) : L::zero();
        }
        float mn = 0.0f;
        float mx = 0.0f;
        bool bad = false;
#pragma unroll
        for (int i = 0; i < kNReg<BITS>; ++i) observe_unit<L>(raw[i], mn, mx, bad);  // zeros are neutral
        for (i64 u = lane + static_cast<i64>(kNReg<BITS>) * tps; active && u < ups; u += tps) {
            Vec r[L::NV];
#pragma unroll
            for (int j = 0; j < L::NV; ++j) r[j] = L::load(w, L::elem(ubase + u, j));
            observe_unit<L>(r, mn, mx, bad);
        }
        if (bad) {
            *status = 1;
        }
        for (int off = width >> 1; off > 0; off >>= 1) {
            mn = fminf(mn, __shfl_xor_sync(kFullMask, mn, off));
            mx = fmaxf(mx, __shfl_xor_sync(kFullMask, mx, off));
        }
        if (tps > 32) {  // a team spans tps / 32 warps, a block max(1, 256 / tps) teams
            const int warp = static_cast<int>(threadIdx.x) >> 5;
            if ((threadIdx.x & 31) == 0) {
                red[0][warp] = mn;
                red[1][warp] = mx;
            }
            __syncthreads();
            const int first = team * (tps >> 5);  // the team's first warp
            mn = red[0][first];
            mx = red[1][first];
            for (int i = 1; i < (tps >> 5); ++i) {
                mn = fminf(mn, red[0][first + i]);
                mx = fmaxf(mx, red[1][first + i]);
            }
            __syncthreads();
        }
        const QParams p = qparams(mn, mx, BITS, sym);
        if (active && lane == 0) {
            scale[seg] = p.scale;
            if (zp != nullptr) {
                zp[seg] = static_cast<std::int8_t>(p.zp);
            }
        }
#pragma unroll
        for (int i = 0; i < kNReg<BITS>; ++i) {
            const i64 u = lane + static_cast<i64>(i) * tps;
            if (active && u < ups) {
                quantize_unit<L>(raw[i], ubase + u, p, q);
            }
        }
        for (i64 u = lane + static_cast<i64>(kNReg<BITS>) * tps; active && u < ups; u += tps) {
            Vec r[L::NV];
#pragma unroll
            for (int j = 0; j < L::NV; ++j) r[j] = L::load(w, L::elem(ubase + u, j));
            quantize_unit<L>(r, ubase + u, p, q);
        }
    }
}

// ---- quantize: per tensor -----------------------------------------------------------------

constexpr int kTensorThreads = 256;

// Grid-wide min / max into ws[1] (max key) and ws[2] (min key); ws[0] = 1 on NaN / Inf.
template <class D, bool VEC>
__global__ void __launch_bounds__(kTensorThreads)
    minmax_kernel(const typename D::Bits* __restrict__ w, i64 nvec, int* __restrict__ ws) {
    using L = Lay<D, 8, VEC>;
    __shared__ float red[2][kTensorThreads / 32];
    float mn = 0.0f;
    float mx = 0.0f;
    bool bad = false;
    const i64 stride = static_cast<i64>(gridDim.x) * kTensorThreads;
    for (i64 i = static_cast<i64>(blockIdx.x) * kTensorThreads + threadIdx.x; i < nvec; i += stride) {
        const typename L::Vec r[1] = {L::load(w, i * L::VW)};
        observe_unit<L>(r, mn, mx, bad);
    }
    if (bad) {
        ws[0] = 1;
    }
    for (int off = 16; off > 0; off >>= 1) {
        mn = fminf(mn, __shfl_xor_sync(kFullMask, mn, off));
        mx = fmaxf(mx, __shfl_xor_sync(kFullMask, mx, off));
    }
    const int warp = static_cast<int>(threadIdx.x) >> 5;
    if ((threadIdx.x & 31) == 0) {
        red[0][warp] = mn;
        red[1][warp] = mx;
    }
    __syncthreads();
    if (threadIdx.x == 0) {
        for (int i = 1; i < kTensorThreads / 32; ++i) {
            mn = fminf(mn, red[0][i]);
            mx = fmaxf(mx, red[1][i]);
        }
        atomicMax(ws + 1, float_key(mx));
        atomicMin(ws + 2, float_key(mn));
    }
}

// int8 codes of the whole tensor with the scale of minmax_kernel's range (per tensor is
// int8 only: formats.h).
template <class D, bool VEC>
__global__ void __launch_bounds__(kTensorThreads)
    quantize_tensor_kernel(const typename D::Bits* __restrict__ w, i64 units, bool sym,
                           std::uint8_t* __restrict__ q, float* __restrict__ scale,
                           std::int8_t* __restrict__ zp, const int* __restrict__ ws) {
    using L = Lay<D, 8, VEC>;
    const QParams p = qparams(key_float(ws[2]), key_float(ws[1]), 8, sym);
    if (blockIdx.x == 0 && threadIdx.x == 0) {
        scale[0] = p.scale;
        if (zp != nullptr) {
            zp[0] = static_cast<std::int8_t>(p.zp);
        }
    }
    const i64 stride = static_cast<i64>(gridDim.x) * kTensorThreads;
    for (i64 u = static_cast<i64>(blockIdx.x) * kTensorThreads + threadIdx.x; u < units; u += stride) {
        typename L::Vec r[L::NV];
#pragma unroll
        for (int j = 0; j < L::NV; ++j) r[j] = L::load(w, L::elem(u, j));
        quantize_unit<L>(r, u, p, q);
    }
}

int pow2_ceil(i64 v) {
    int p = 1;
    while (p < v) p <<= 1;
    return p;
}

// Per tensor: the range of the whole weight into the workspace, then the codes.
template <class D>
void launch_per_tensor(const typename D::Bits* w, i64 total, bool sym, std::uint8_t* q, float* scale,
                       std::int8_t* zp, int* ws, bool vec, cudaStream_t st, const char* fn) {
    constexpr int VW = kVecWidth<D>;
    const bool rvec = aligned(reinterpret_cast<std::uintptr_t>(w), 16) && total % VW == 0;
    const i64 nvec = rvec ? total / VW : total;
    const unsigned g1 = grid_for(nvec, kTensorThreads * 8);
    if (rvec) {
        launch_kernel(minmax_kernel<D, true>, g1, kTensorThreads, 0, st, w, nvec, ws);
    } else {
        launch_kernel(minmax_kernel<D, false>, g1, kTensorThreads, 0, st, w, nvec, ws);
    }
    check_launch(fn);
    if (vec) {
        const i64 units = total / Lay<D, 8, true>::EPU;
        launch_kernel(quantize_tensor_kernel<D, true>, grid_for(units, kTensorThreads), kTensorThreads, 0, st, w,
                      units, sym, q, scale, zp, ws);
    } else {
        const i64 units = total / Lay<D, 8, false>::EPU;
        launch_kernel(quantize_tensor_kernel<D, false>, grid_for(units, kTensorThreads), kTensorThreads, 0, st, w,
                      units, sym, q, scale, zp, ws);
    }
    check_launch(fn);
}

// Per segment of `seglen` elements: teams sized to the segment (see quantize_segments_kernel).
template <class D, int B, bool V>
void launch_segments(const typename D::Bits* w, i64 total, i64 seglen, bool sym, std::uint8_t* q, float* scale,
                     std::int8_t* zp, int* ws, cudaStream_t st, const char* fn) {
    using L = Lay<D, B, V>;
    const i64 nseg = total / seglen;
    const i64 ups = seglen / L::EPU;
    const int tps = std::min(512, pow2_ceil(ceil_div(ups, kNReg<B>)));
    const int threads = std::max(tps, 256);
    const int teams = threads / tps;
    launch_kernel(quantize_segments_kernel<D, B, V>, grid_for(nseg, teams), threads, 0, st, w, nseg, ups, tps, sym,
                  q, scale, zp, ws);
    check_launch(fn);
}

}  // namespace

void quantize(std::uintptr_t w, int dtype, std::int64_t n, std::int64_t k, int bits,
              std::int64_t group, bool symmetric, std::uintptr_t q, std::uintptr_t scale,
              std::uintptr_t zero_point, std::uintptr_t workspace, std::uintptr_t stream) {
    constexpr const char* fn = "quantize";
    check_shape(fn, n, k, bits, group, true);
    const cudaStream_t st = reinterpret_cast<cudaStream_t>(stream);
    const i64 total = n * k;
    const i64 seglen = group == kPerTensor ? total : group;
    auto* qp = reinterpret_cast<std::uint8_t*>(q);
    auto* sp = reinterpret_cast<float*>(scale);
    auto* zp = symmetric ? nullptr : reinterpret_cast<std::int8_t*>(zero_point);
    auto* ws = reinterpret_cast<int*>(workspace);
    with_dtype(dtype, fn, [&](auto d) {
        using D = decltype(d);
        const auto* wp = reinterpret_cast<const typename D::Bits*>(w);
        constexpr int VW = kVecWidth<D>;
        const bool vec = aligned(w, 16) && aligned(q, VW) && seglen % VW == 0;
        if (group == kPerTensor) {
            launch_per_tensor<D>(wp, total, symmetric, qp, sp, zp, ws, vec, st, fn);
            return;
        }
        with_bits(bits, [&](auto b) {
            constexpr int B = decltype(b)::value;
            if (vec) {
                launch_segments<D, B, true>(wp, total, seglen, symmetric, qp, sp, zp, ws, st, fn);
            } else {
                launch_segments<D, B, false>(wp, total, seglen, symmetric, qp, sp, zp, ws, st, fn);
            }
        });
    });
}

}  // namespace greenai::cuda
