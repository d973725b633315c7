// CUDA build of csrc/cuda/quant.h. Formats and arithmetic: src/greenai/ops/reference.py.
//
// Exactness: every scale / code computation uses the IEEE-rounded intrinsics (__fdiv_rn,
// __fsub_rn, __fmul_rn, __float2int_rn) so nvcc can neither contract nor approximate them;
// the module is built without --use_fast_math.
//
// Indexing: the flattened (n, k) weight is a sequence of contiguous segments of `group`
// elements (k per channel, n * k per tensor), and segment s owns scale[s] / zero_point[s].
// Kernels walk "units": the elements one thread loads with one or two 16-byte loads
// (scalar loads when alignment or lengths do not allow vectors). For int8 a unit is VW
// consecutive elements whose codes are VW consecutive bytes; for int4 a unit is VW elements
// at offset j of a 32-element block plus the VW elements 16 further on, whose codes are the
// VW bytes at offset j / 2 ... of the block's 16 bytes (low / high nibbles). In both cases
// unit u's codes are the VW bytes at u * VW, and a unit never straddles a segment.
#include "cuda/quant.h"

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <type_traits>

#include "cuda/launch.cuh"

namespace greenai::cuda {
namespace {

using i64 = long long;
using u64 = unsigned long long;

constexpr float kFltMin = 1.17549435082228750797e-38f;  // 2^-126
constexpr unsigned kFullMask = 0xffffffffu;
constexpr i64 kMaxGrid = i64(1) << 24;  // grid-stride loops cover the rest

// ---- host helpers -------------------------------------------------------------------------

void check_launch(const char* fn) {
    const cudaError_t err = cudaGetLastError();
    if (err != cudaSuccess) {
        throw std::runtime_error(std::string("greenai.cuda.") + fn + ": kernel launch failed: " +
                                 cudaGetErrorName(err) + ": " + cudaGetErrorString(err));
    }
}

[[noreturn]] void bad_arg(const char* fn, const std::string& what) {
    throw std::invalid_argument(std::string("greenai.cuda.") + fn + ": " + what);
}

bool aligned(std::uintptr_t p, std::uintptr_t a) { return p % a == 0; }

i64 ceil_div(i64 a, i64 b) { return (a + b - 1) / b; }

unsigned grid_for(i64 work, i64 per_block) {
    return static_cast<unsigned>(std::max<i64>(1, std::min(ceil_div(work, per_block), kMaxGrid)));
}

// ---- element types ------------------------------------------------------------------------

struct F32 {
    using Bits = unsigned int;
    __device__ static float to_f(Bits b) { return __uint_as_float(b); }
    __device__ static Bits from_f(float f) { return __float_as_uint(f); }
};
struct F16 {
    using Bits = unsigned short;
    __device__ static float to_f(Bits b) { return __half2float(__ushort_as_half(b)); }
    __device__ static Bits from_f(float f) { return __half_as_ushort(__float2half_rn(f)); }
};
struct BF16 {
    using Bits = unsigned short;
    __device__ static float to_f(Bits b) { return __uint_as_float(static_cast<unsigned>(b) << 16); }
    __device__ static Bits from_f(float f) { return __bfloat16_as_ushort(__float2bfloat16_rn(f)); }
};

template <class D>
constexpr int kVecWidth = static_cast<int>(16 / sizeof(typename D::Bits));

__device__ __forceinline__ unsigned word_of(const uint4& v, int i) {
    return i == 0 ? v.x : i == 1 ? v.y : i == 2 ? v.z : v.w;
}

// 16 bytes of D values -> floats.
template <class D>
__device__ __forceinline__ void unpack16(const uint4& v, float* f) {
#pragma unroll
    for (int i = 0; i < 4; ++i) {
        const unsigned w = word_of(v, i);
        if constexpr (sizeof(typename D::Bits) == 4) {
            f[i] = D::to_f(w);
        } else {
            f[2 * i] = D::to_f(static_cast<typename D::Bits>(w & 0xffffu));
            f[2 * i + 1] = D::to_f(static_cast<typename D::Bits>(w >> 16));
        }
    }
}

// floats -> 16 bytes of D values (round to nearest even).
template <class D>
__device__ __forceinline__ uint4 pack16(const float* f) {
    unsigned w[4];
#pragma unroll
    for (int i = 0; i < 4; ++i) {
        if constexpr (sizeof(typename D::Bits) == 4) {
            w[i] = D::from_f(f[i]);
        } else {
            w[i] = static_cast<unsigned>(D::from_f(f[2 * i])) |
                   (static_cast<unsigned>(D::from_f(f[2 * i + 1])) << 16);
        }
    }
    return make_uint4(w[0], w[1], w[2], w[3]);
}

// N bytes (N = 1, 4, 8) at p, N-aligned.
template <int N>
__device__ __forceinline__ void store_bytes(std::uint8_t* p, const unsigned char* b) {
    if constexpr (N == 1) {
        *p = b[0];
    } else if constexpr (N == 4) {
        *reinterpret_cast<unsigned*>(p) = b[0] | (unsigned(b[1]) << 8) | (unsigned(b[2]) << 16) |
                                          (unsigned(b[3]) << 24);
    } else {
        static_assert(N == 8, "store_bytes: N must be 1, 4 or 8");
        uint2 v;
        v.x = b[0] | (unsigned(b[1]) << 8) | (unsigned(b[2]) << 16) | (unsigned(b[3]) << 24);
        v.y = b[4] | (unsigned(b[5]) << 8) | (unsigned(b[6]) << 16) | (unsigned(b[7]) << 24);
        *reinterpret_cast<uint2*>(p) = v;
    }
}

template <int N>
__device__ __forceinline__ void load_bytes(const std::uint8_t* p, unsigned char* b) {
    if constexpr (N == 1) {
        b[0] = __ldg(p);
    } else if constexpr (N == 4) {
        const unsigned v = __ldg(reinterpret_cast<const unsigned*>(p));
#pragma unroll
        for (int i = 0; i < 4; ++i) b[i] = static_cast<unsigned char>(v >> (8 * i));
    } else {
        static_assert(N == 8, "load_bytes: N must be 1, 4 or 8");
        const uint2 v = __ldg(reinterpret_cast<const uint2*>(p));
#pragma unroll
        for (int i = 0; i < 4; ++i) {
            b[i] = static_cast<unsigned char>(v.x >> (8 * i));
            b[4 + i] = static_cast<unsigned char>(v.y >> (8 * i));
        }
    }
}

// ---- unit layout (see the file comment) ---------------------------------------------------

template <class D, int BITS, bool VEC>
struct Lay {
    using Bits = typename D::Bits;
    static constexpr int VW = VEC ? kVecWidth<D> : 1;  // elements per load = code bytes per unit
    static constexpr int NV = BITS == 4 ? 2 : 1;       // loads per unit
    static constexpr int EPU = VW * NV;                // elements per unit
    using Vec = std::conditional_t<VEC, uint4, Bits>;

    // Flat element index of load j of unit u.
    __device__ static i64 elem(i64 u, int j) {
        if constexpr (BITS == 8) {
            return u * VW;
        } else {
            constexpr u64 kUnitsPerBlock = 16 / VW;  // units per 32-element block
            return static_cast<i64>(static_cast<u64>(u) / kUnitsPerBlock) * 32 +
                   static_cast<i64>(static_cast<u64>(u) % kUnitsPerBlock) * VW + 16 * j;
        }
    }
    __device__ static Vec load(const Bits* p, i64 e) {
        if constexpr (VEC) {
            return __ldg(reinterpret_cast<const uint4*>(p + e));
        } else {
            return __ldg(p + e);
        }
    }
    __device__ static Vec zero() {
        if constexpr (VEC) {
            return make_uint4(0u, 0u, 0u, 0u);
        } else {
            return Bits(0);
        }
    }
    __device__ static void to_float(const Vec& v, float* f) {
        if constexpr (VEC) {
            unpack16<D>(v, f);
        } else {
            f[0] = D::to_f(v);
        }
    }
    __device__ static void store_vals(Bits* p, i64 e, const float* f) {
        if constexpr (VEC) {
            *reinterpret_cast<uint4*>(p + e) = pack16<D>(f);
        } else {
            p[e] = D::from_f(f[0]);
        }
    }
    // c[0, VW): load 0's codes; c[VW, 2 VW): load 1's (int4 high nibbles).
    __device__ static void store_codes(std::uint8_t* q, i64 u, const int* c) {
        unsigned char b[VW];
#pragma unroll
        for (int i = 0; i < VW; ++i) {
            if constexpr (BITS == 8) {
                b[i] = static_cast<unsigned char>(c[i] & 0xff);
            } else {
                b[i] = static_cast<unsigned char>((c[i] + 8) | ((c[VW + i] + 8) << 4));
            }
        }
        store_bytes<VW>(q + u * VW, b);
    }
    __device__ static void load_codes(const std::uint8_t* q, i64 u, int* c) {
        unsigned char b[VW];
        load_bytes<VW>(q + u * VW, b);
#pragma unroll
        for (int i = 0; i < VW; ++i) {
            if constexpr (BITS == 8) {
                c[i] = static_cast<int>(static_cast<signed char>(b[i]));
            } else {
                c[i] = static_cast<int>(b[i] & 0x0f) - 8;
                c[VW + i] = static_cast<int>(b[i] >> 4) - 8;
            }
        }
    }
};

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
    const int qmax = bits == 8 ? 127 : 7;
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

template <class D, int BITS, bool VEC>
__global__ void __launch_bounds__(kTensorThreads)
    quantize_tensor_kernel(const typename D::Bits* __restrict__ w, i64 units, bool sym,
                           std::uint8_t* __restrict__ q, float* __restrict__ scale,
                           std::int8_t* __restrict__ zp, const int* __restrict__ ws) {
    using L = Lay<D, BITS, VEC>;
    const QParams p = qparams(key_float(ws[2]), key_float(ws[1]), BITS, sym);
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

// ---- dequantize ---------------------------------------------------------------------------

constexpr int kDequantThreads = 256;

template <class D, int BITS, bool VEC>
__global__ void __launch_bounds__(kDequantThreads)
    dequantize_kernel(const std::uint8_t* __restrict__ q, const float* __restrict__ scale,
                      const std::int8_t* __restrict__ zp, i64 units, i64 seglen,
                      typename D::Bits* __restrict__ out) {
    using L = Lay<D, BITS, VEC>;
    const i64 stride = static_cast<i64>(gridDim.x) * kDequantThreads;
    for (i64 u = static_cast<i64>(blockIdx.x) * kDequantThreads + threadIdx.x; u < units; u += stride) {
        const u64 e0 = static_cast<u64>(L::elem(u, 0));
        const u64 sl = static_cast<u64>(seglen);
        const u64 seg = ((e0 | sl) >> 32) == 0
                            ? static_cast<u64>(static_cast<unsigned>(e0) / static_cast<unsigned>(sl))
                            : e0 / sl;
        const float s = __ldg(scale + seg);
        const int z = zp != nullptr ? static_cast<int>(__ldg(zp + seg)) : 0;
        int c[L::EPU];
        L::load_codes(q, u, c);
#pragma unroll
        for (int j = 0; j < L::NV; ++j) {
            float f[L::VW];
#pragma unroll
            for (int e = 0; e < L::VW; ++e) {
                f[e] = __fmul_rn(static_cast<float>(c[j * L::VW + e] - z), s);
            }
            L::store_vals(out, L::elem(u, j), f);
        }
    }
}

// ---- quantized linear ---------------------------------------------------------------------

constexpr int kQlWarps = 8;     // warps per block
constexpr int kQlRows = 2;      // output rows (n) per warp
constexpr int kQlMaxTile = 8;   // rows of x per tile
constexpr int kQlSmemBytes = 40 * 1024;

// 2^23 + u as a float: byte b of `word` (a value u < 256) under the exponent of 2^23.
__device__ __forceinline__ float magic_byte(unsigned word, int b) {
    return __uint_as_float(__byte_perm(word, 0x4b000000u, 0x7440u | static_cast<unsigned>(b)));
}

// One 16-byte chunk of codes for R rows against the matching x (float, smem).
//   int8: byte j is element j of the 16-element chunk; x at xc[j].
//   int4: byte j holds element j (low nibble, x at xc[j]) and 16 + j (high, x at xc[16 + j]).
// off[r] = 2^23 + code bias + zero point, so magic - off = q - zero_point exactly.
template <int BITS, int MT, int R>
__device__ __forceinline__ void chunk_fma(const float* __restrict__ xc, int tstride,
                                          const uint4 (&wv)[R], const float (&s)[R],
                                          const float (&off)[R], float (&acc)[R][MT]) {
    float part[R][MT];
#pragma unroll
    for (int r = 0; r < R; ++r) {
#pragma unroll
        for (int t = 0; t < MT; ++t) part[r][t] = 0.0f;
    }
#pragma unroll
    for (int wi = 0; wi < 4; ++wi) {
        if constexpr (BITS == 8) {
            float wf[R][4];
#pragma unroll
            for (int r = 0; r < R; ++r) {
                const unsigned u = word_of(wv[r], wi) ^ 0x80808080u;  // q + 128 per byte
#pragma unroll
                for (int b = 0; b < 4; ++b) wf[r][b] = __fsub_rn(magic_byte(u, b), off[r]);
            }
#pragma unroll
            for (int t = 0; t < MT; ++t) {
                const float4 xv = *reinterpret_cast<const float4*>(xc + t * tstride + 4 * wi);
#pragma unroll
                for (int r = 0; r < R; ++r) {
                    part[r][t] = fmaf(xv.x, wf[r][0], part[r][t]);
                    part[r][t] = fmaf(xv.y, wf[r][1], part[r][t]);
                    part[r][t] = fmaf(xv.z, wf[r][2], part[r][t]);
                    part[r][t] = fmaf(xv.w, wf[r][3], part[r][t]);
                }
            }
        } else {
            float wl[R][4];
            float wh[R][4];
#pragma unroll
            for (int r = 0; r < R; ++r) {
                const unsigned w = word_of(wv[r], wi);
                const unsigned lo = w & 0x0f0f0f0fu;
                const unsigned hi = (w >> 4) & 0x0f0f0f0fu;
#pragma unroll
                for (int b = 0; b < 4; ++b) {
                    wl[r][b] = __fsub_rn(magic_byte(lo, b), off[r]);
                    wh[r][b] = __fsub_rn(magic_byte(hi, b), off[r]);
                }
            }
#pragma unroll
            for (int t = 0; t < MT; ++t) {
                const float4 xl = *reinterpret_cast<const float4*>(xc + t * tstride + 4 * wi);
                const float4 xh = *reinterpret_cast<const float4*>(xc + t * tstride + 16 + 4 * wi);
#pragma unroll
                for (int r = 0; r < R; ++r) {
                    part[r][t] = fmaf(xl.x, wl[r][0], part[r][t]);
                    part[r][t] = fmaf(xl.y, wl[r][1], part[r][t]);
                    part[r][t] = fmaf(xl.z, wl[r][2], part[r][t]);
                    part[r][t] = fmaf(xl.w, wl[r][3], part[r][t]);
                    part[r][t] = fmaf(xh.x, wh[r][0], part[r][t]);
                    part[r][t] = fmaf(xh.y, wh[r][1], part[r][t]);
                    part[r][t] = fmaf(xh.z, wh[r][2], part[r][t]);
                    part[r][t] = fmaf(xh.w, wh[r][3], part[r][t]);
                }
            }
        }
    }
#pragma unroll
    for (int r = 0; r < R; ++r) {
#pragma unroll
        for (int t = 0; t < MT; ++t) acc[r][t] = fmaf(s[r], part[r][t], acc[r][t]);
    }
}

// Vector path (q 16-byte aligned, row bytes a multiple of 16). Block: kQlWarps warps, each
// owning kQlRows consecutive output rows; blockIdx.y picks a tile of MT rows of x. x is
// staged in shared memory as float, k-tile by k-tile (kc elements), in 16-byte-code chunks
// of EPC elements padded to EPC + 4 floats (conflict-free 128-bit reads when lanes read
// consecutive chunks). Lane l handles chunks l, l + 32, ... of each k-tile, two at a time.
template <class D, int BITS, int MT>
__global__ void __launch_bounds__(kQlWarps * 32)
    qlinear_kernel(const typename D::Bits* __restrict__ x, i64 m, i64 tile0, int k,
                   const std::uint8_t* __restrict__ q, const float* __restrict__ scale,
                   const std::int8_t* __restrict__ zp, const float* __restrict__ bias, i64 n,
                   int group, int gshift, int kc, bool xvec, typename D::Bits* __restrict__ y) {
    constexpr int R = kQlRows;
    constexpr int EPC = BITS == 8 ? 16 : 32;
    constexpr int CS = EPC + 4;
    constexpr int XVW = kVecWidth<D>;
    float* xs = dynamic_shared<float>();
    const int tstride = (kc / EPC) * CS;
    const int warp = static_cast<int>(threadIdx.x) >> 5;
    const int lane = static_cast<int>(threadIdx.x) & 31;
    const i64 m0 = (tile0 + blockIdx.y) * MT;
    const i64 row0 = (static_cast<i64>(blockIdx.x) * kQlWarps + warp) * R;
    const i64 row_bytes = BITS == 8 ? k : k / 2;
    const i64 groups = k / group;
    const float code_bias = 8388608.0f + (BITS == 8 ? 128.0f : 8.0f);

    bool rvalid[R];
    const uint4* qrow[R];
#pragma unroll
    for (int r = 0; r < R; ++r) {
        rvalid[r] = row0 + r < n;
        qrow[r] = reinterpret_cast<const uint4*>(q + (rvalid[r] ? row0 + r : 0) * row_bytes);
    }
    float acc[R][MT];
#pragma unroll
    for (int r = 0; r < R; ++r) {
#pragma unroll
        for (int t = 0; t < MT; ++t) acc[r][t] = 0.0f;
    }

    for (int k0 = 0; k0 < k; k0 += kc) {
        const int kcur = min(kc, k - k0);
        __syncthreads();  // previous k-tile fully consumed
#pragma unroll
        for (int t = 0; t < MT; ++t) {
            float* dst = xs + t * tstride;
            const i64 gm = m0 + t;
            if (gm < m) {
                const typename D::Bits* src = x + gm * k + k0;
                if (xvec) {
                    for (int i = static_cast<int>(threadIdx.x); i < kcur / XVW; i += kQlWarps * 32) {
                        float f[XVW];
                        unpack16<D>(__ldg(reinterpret_cast<const uint4*>(src) + i), f);
                        const int kk = i * XVW;
                        float* d = dst + (kk / EPC) * CS + kk % EPC;
#pragma unroll
                        for (int e = 0; e < XVW; e += 4) {
                            *reinterpret_cast<float4*>(d + e) = make_float4(f[e], f[e + 1], f[e + 2], f[e + 3]);
                        }
                    }
                } else {
                    for (int i = static_cast<int>(threadIdx.x); i < kcur; i += kQlWarps * 32) {
                        dst[(i / EPC) * CS + i % EPC] = D::to_f(src[i]);
                    }
                }
            } else {
                for (int i = static_cast<int>(threadIdx.x); i < kcur; i += kQlWarps * 32) {
                    dst[(i / EPC) * CS + i % EPC] = 0.0f;
                }
            }
        }
        __syncthreads();

        const int nch = kcur / EPC;
        const int cbase = k0 / EPC;
        for (int c = lane; c < nch; c += 64) {
            const bool two = c + 32 < nch;
            uint4 wv[2][R];
            float s[2][R];
            float off[2][R];
#pragma unroll
            for (int h = 0; h < 2; ++h) {
                const int cg = cbase + c + 32 * h;  // chunk index within the row
                const int kk = cg * EPC;
                const i64 g = gshift >= 0 ? (kk >> gshift) : (kk / group);
#pragma unroll
                for (int r = 0; r < R; ++r) {
                    if (rvalid[r] && (h == 0 || two)) {
                        wv[h][r] = __ldg(qrow[r] + cg);
                        const i64 si = (row0 + r) * groups + g;
                        s[h][r] = __ldg(scale + si);
                        const float z = zp != nullptr ? static_cast<float>(__ldg(zp + si)) : 0.0f;
                        off[h][r] = code_bias + z;
                    } else {
                        wv[h][r] = make_uint4(0u, 0u, 0u, 0u);
                        s[h][r] = 0.0f;
                        off[h][r] = code_bias;
                    }
                }
            }
            chunk_fma<BITS, MT, R>(xs + c * CS, tstride, wv[0], s[0], off[0], acc);
            if (two) {
                chunk_fma<BITS, MT, R>(xs + (c + 32) * CS, tstride, wv[1], s[1], off[1], acc);
            }
        }
    }

#pragma unroll
    for (int r = 0; r < R; ++r) {
#pragma unroll
        for (int t = 0; t < MT; ++t) {
            float v = acc[r][t];
#pragma unroll
            for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(kFullMask, v, o);
            acc[r][t] = v;
        }
    }
#pragma unroll
    for (int r = 0; r < R; ++r) {
#pragma unroll
        for (int t = 0; t < MT; ++t) {
            if (lane == r * MT + t) {
                const i64 row = row0 + r;
                const i64 gm = m0 + t;
                if (row < n && gm < m) {
                    float v = acc[r][t];
                    if (bias != nullptr) {
                        v += __ldg(bias + row);
                    }
                    y[gm * n + row] = D::from_f(v);
                }
            }
        }
    }
}

// Scalar path (int8 with k % 16 != 0, or misaligned q): one warp per output row, any k.
template <class D, int BITS>
__global__ void __launch_bounds__(kQlWarps * 32)
    qlinear_scalar_kernel(const typename D::Bits* __restrict__ x, i64 m, i64 tile0, i64 k,
                          const std::uint8_t* __restrict__ q, const float* __restrict__ scale,
                          const std::int8_t* __restrict__ zp, const float* __restrict__ bias,
                          i64 n, i64 group, typename D::Bits* __restrict__ y) {
    constexpr int MT = kQlMaxTile;
    const int warp = static_cast<int>(threadIdx.x) >> 5;
    const int lane = static_cast<int>(threadIdx.x) & 31;
    const i64 row = static_cast<i64>(blockIdx.x) * kQlWarps + warp;
    if (row >= n) {
        return;  // whole warp
    }
    const i64 m0 = (tile0 + blockIdx.y) * MT;
    const i64 groups = k / group;
    const i64 row_bytes = BITS == 8 ? k : k / 2;
    const std::uint8_t* qr = q + row * row_bytes;
    float acc[MT];
#pragma unroll
    for (int t = 0; t < MT; ++t) acc[t] = 0.0f;
    for (i64 kk = lane; kk < k; kk += 32) {
        int code;
        if constexpr (BITS == 8) {
            code = static_cast<int>(static_cast<signed char>(__ldg(qr + kk)));
        } else {
            const unsigned char b = __ldg(qr + (kk / 32) * 16 + kk % 16);
            code = static_cast<int>((kk % 32) < 16 ? (b & 0x0f) : (b >> 4)) - 8;
        }
        const i64 si = row * groups + kk / group;
        const float s = __ldg(scale + si);
        const int z = zp != nullptr ? static_cast<int>(__ldg(zp + si)) : 0;
        const float wq = static_cast<float>(code - z);
#pragma unroll
        for (int t = 0; t < MT; ++t) {
            if (m0 + t < m) {
                const float xv = D::to_f(x[(m0 + t) * k + kk]);
                acc[t] = fmaf(__fmul_rn(xv, wq), s, acc[t]);
            }
        }
    }
#pragma unroll
    for (int t = 0; t < MT; ++t) {
        float v = acc[t];
#pragma unroll
        for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(kFullMask, v, o);
        if (lane == t && m0 + t < m) {
            if (bias != nullptr) {
                v += __ldg(bias + row);
            }
            y[(m0 + t) * n + row] = D::from_f(v);
        }
    }
}

// ---- dispatch -----------------------------------------------------------------------------

template <class F>
void with_dtype(int dtype, const char* fn, F&& f) {
    switch (dtype) {
        case 0:
            f(F32{});
            break;
        case 1:
            f(F16{});
            break;
        case 2:
            f(BF16{});
            break;
        default:
            bad_arg(fn, "dtype code must be 0 (float32), 1 (float16) or 2 (bfloat16), got " +
                            std::to_string(dtype));
    }
}

template <class F>
void with_bits(int bits, const char* fn, F&& f) {
    if (bits == 8) {
        f(std::integral_constant<int, 8>{});
    } else if (bits == 4) {
        f(std::integral_constant<int, 4>{});
    } else {
        bad_arg(fn, "bits must be 8 or 4, got " + std::to_string(bits));
    }
}

void check_shape(const char* fn, std::int64_t n, std::int64_t k, int bits, std::int64_t group,
                 bool allow_tensor) {
    if (n < 1 || k < 1) {
        bad_arg(fn, "n and k must be >= 1");
    }
    if (k > 0x7fffffff - 64) {
        bad_arg(fn, "k must be < 2^31");
    }
    if (group == -1 && allow_tensor) {
        // per tensor
    } else if (group < 1 || k % group != 0 || (group != k && group % 32 != 0)) {
        bad_arg(fn, "group must be -1, k, or a multiple of 32 dividing k; got " + std::to_string(group));
    }
    if (bits == 4 && (k % 32 != 0 || (group != -1 && group % 32 != 0))) {
        bad_arg(fn, "int4 needs k and group multiples of 32");
    }
}

int pow2_ceil(i64 v) {
    int p = 1;
    while (p < v) p <<= 1;
    return p;
}

}  // namespace

void quantize(std::uintptr_t w, int dtype, std::int64_t n, std::int64_t k, int bits,
              std::int64_t group, bool symmetric, std::uintptr_t q, std::uintptr_t scale,
              std::uintptr_t zero_point, std::uintptr_t workspace, std::uintptr_t stream) {
    constexpr const char* fn = "quantize";
    check_shape(fn, n, k, bits, group, true);
    const cudaStream_t st = reinterpret_cast<cudaStream_t>(stream);
    const i64 total = n * k;
    auto* qp = reinterpret_cast<std::uint8_t*>(q);
    auto* sp = reinterpret_cast<float*>(scale);
    auto* zp = symmetric ? nullptr : reinterpret_cast<std::int8_t*>(zero_point);
    auto* ws = reinterpret_cast<int*>(workspace);
    with_dtype(dtype, fn, [&](auto d) {
        using D = decltype(d);
        using Bits = typename D::Bits;
        const auto* wp = reinterpret_cast<const Bits*>(w);
        constexpr int VW = kVecWidth<D>;
        with_bits(bits, fn, [&](auto b) {
            constexpr int B = decltype(b)::value;
            const i64 seglen = group == -1 ? total : group;
            const bool vec = aligned(w, 16) && aligned(q, VW) && seglen % VW == 0;
            if (group == -1) {
                const bool rvec = aligned(w, 16) && total % VW == 0;
                const i64 nvec = rvec ? total / VW : total;
                const unsigned g1 = grid_for(nvec, kTensorThreads * 8);
                if (rvec) {
                    launch_kernel(minmax_kernel<D, true>, g1, kTensorThreads, 0, st, wp, nvec, ws);
                } else {
                    launch_kernel(minmax_kernel<D, false>, g1, kTensorThreads, 0, st, wp, nvec, ws);
                }
                check_launch(fn);
                if (vec) {
                    using L = Lay<D, B, true>;
                    const i64 units = total / L::EPU;
                    launch_kernel(quantize_tensor_kernel<D, B, true>, grid_for(units, kTensorThreads), kTensorThreads, 0, st,
                        wp, units, symmetric, qp, sp, zp, ws);
                } else {
                    using L = Lay<D, B, false>;
                    const i64 units = total / L::EPU;
                    launch_kernel(quantize_tensor_kernel<D, B, false>, grid_for(units, kTensorThreads), kTensorThreads, 0, st,
                        wp, units, symmetric, qp, sp, zp, ws);
                }
                check_launch(fn);
                return;
            }
            auto launch = [&](auto vtag) {
                constexpr bool V = decltype(vtag)::value;
                using L = Lay<D, B, V>;
                const i64 nseg = total / seglen;
                const i64 ups = seglen / L::EPU;
                const int tps = std::min(512, pow2_ceil(ceil_div(ups, kNReg<B>)));
                const int threads = std::max(tps, 256);
                const int teams = threads / tps;
                launch_kernel(quantize_segments_kernel<D, B, V>, grid_for(nseg, teams), threads, 0, st,
                    wp, nseg, ups, tps, symmetric, qp, sp, zp, ws);
                check_launch(fn);
            };
            if (vec) {
                launch(std::true_type{});
            } else {
                launch(std::false_type{});
            }
        });
    });
}

void dequantize(std::uintptr_t q, std::uintptr_t scale, std::uintptr_t zero_point,
                std::int64_t n, std::int64_t k, int bits, std::int64_t group,
                std::uintptr_t out, int out_dtype, std::uintptr_t stream) {
    constexpr const char* fn = "dequantize";
    check_shape(fn, n, k, bits, group, true);
    const cudaStream_t st = reinterpret_cast<cudaStream_t>(stream);
    const i64 total = n * k;
    const i64 seglen = group == -1 ? total : group;
    const auto* qp = reinterpret_cast<const std::uint8_t*>(q);
    const auto* sp = reinterpret_cast<const float*>(scale);
    const auto* zp = reinterpret_cast<const std::int8_t*>(zero_point);
    with_dtype(out_dtype, fn, [&](auto d) {
        using D = decltype(d);
        auto* op = reinterpret_cast<typename D::Bits*>(out);
        constexpr int VW = kVecWidth<D>;
        with_bits(bits, fn, [&](auto b) {
            constexpr int B = decltype(b)::value;
            const bool vec = aligned(out, 16) && aligned(q, VW) && seglen % VW == 0;
            auto launch = [&](auto vtag) {
                constexpr bool V = decltype(vtag)::value;
                using L = Lay<D, B, V>;
                const i64 units = total / L::EPU;
                launch_kernel(dequantize_kernel<D, B, V>, grid_for(units, kDequantThreads), kDequantThreads, 0, st,
                    qp, sp, zp, units, seglen, op);
                check_launch(fn);
            };
            if (vec) {
                launch(std::true_type{});
            } else {
                launch(std::false_type{});
            }
        });
    });
}

void quantized_linear(std::uintptr_t x, int dtype, std::int64_t m, std::int64_t k,
                      std::uintptr_t q, std::uintptr_t scale, std::uintptr_t zero_point,
                      std::uintptr_t bias, std::int64_t n, int bits, std::int64_t group,
                      std::uintptr_t y, std::uintptr_t stream) {
    constexpr const char* fn = "quantized_linear";
    check_shape(fn, n, k, bits, group, false);
    if (m < 1) {
        bad_arg(fn, "m must be >= 1");
    }
    const cudaStream_t st = reinterpret_cast<cudaStream_t>(stream);
    const auto* qp = reinterpret_cast<const std::uint8_t*>(q);
    const auto* sp = reinterpret_cast<const float*>(scale);
    const auto* zp = reinterpret_cast<const std::int8_t*>(zero_point);
    const auto* bp = reinterpret_cast<const float*>(bias);
    constexpr i64 kMaxTilesPerLaunch = 65535;
    with_dtype(dtype, fn, [&](auto d) {
        using D = decltype(d);
        using Bits = typename D::Bits;
        const auto* xp = reinterpret_cast<const Bits*>(x);
        auto* yp = reinterpret_cast<Bits*>(y);
        constexpr int XVW = kVecWidth<D>;
        with_bits(bits, fn, [&](auto b) {
            constexpr int B = decltype(b)::value;
            constexpr int EPC = B == 8 ? 16 : 32;
            const bool vec = aligned(q, 16) && k % EPC == 0;
            if (!vec) {
                const i64 tiles = ceil_div(m, kQlMaxTile);
                const unsigned gx = static_cast<unsigned>(ceil_div(n, kQlWarps));
                for (i64 t0 = 0; t0 < tiles; t0 += kMaxTilesPerLaunch) {
                    const dim3 grid(gx, static_cast<unsigned>(std::min(kMaxTilesPerLaunch, tiles - t0)));
                    launch_kernel(qlinear_scalar_kernel<D, B>, grid, kQlWarps * 32, 0, st, xp, m, t0, k, qp, sp, zp, bp,
                                                                                n, group, yp);
                    check_launch(fn);
                }
                return;
            }
            const bool xvec = aligned(x, 16) && k % XVW == 0;
            const int gshift = (group & (group - 1)) == 0 ? __builtin_ctzll(static_cast<u64>(group)) : -1;
            const unsigned gx = static_cast<unsigned>(ceil_div(n, i64(kQlWarps) * kQlRows));
            auto launch = [&](auto mt) {
                constexpr int MT = decltype(mt)::value;
                constexpr int CS = EPC + 4;
                int cpk = kQlSmemBytes / (4 * MT * CS);  // chunks per k-tile
                if (cpk >= 32) {
                    cpk -= cpk % 32;
                }
                const int nchunks = static_cast<int>(k / EPC);
                cpk = std::min(cpk, nchunks);
                const int kc = cpk * EPC;
                const std::size_t smem = static_cast<std::size_t>(MT) * cpk * CS * sizeof(float);
                const i64 tiles = ceil_div(m, MT);
                for (i64 t0 = 0; t0 < tiles; t0 += kMaxTilesPerLaunch) {
                    const dim3 grid(gx, static_cast<unsigned>(std::min(kMaxTilesPerLaunch, tiles - t0)));
                    launch_kernel(qlinear_kernel<D, B, MT>, grid, kQlWarps * 32, smem, st,
                        xp, m, t0, static_cast<int>(k), qp, sp, zp, bp, n, static_cast<int>(group), gshift,
                        kc, xvec, yp);
                    check_launch(fn);
                }
            };
            if (m <= 1) {
                launch(std::integral_constant<int, 1>{});
            } else if (m <= 2) {
                launch(std::integral_constant<int, 2>{});
            } else if (m <= 4) {
                launch(std::integral_constant<int, 4>{});
            } else {
                launch(std::integral_constant<int, 8>{});
            }
        });
    });
}

}  // namespace greenai::cuda
