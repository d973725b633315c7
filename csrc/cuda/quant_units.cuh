// What the quantization kernels (quantize.cu, dequantize.cu, quantized_linear.cu) share:
// 16-byte vectors of elements and codes, the unit layout below, and the host-side checks
// and dispatch of their arguments. Formats and arithmetic: src/greenai/ops/reference.py;
// constants and layout rules: formats.h.
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
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <string>
#include <type_traits>

#include "cuda/elements.cuh"
#include "cuda/launch.cuh"
#include "formats.h"

namespace greenai::cuda {

using u64 = unsigned long long;

constexpr unsigned kFullMask = 0xffffffffu;

inline bool aligned(std::uintptr_t p, std::uintptr_t a) { return p % a == 0; }

// ---- 16-byte vectors ----------------------------------------------------------------------

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
                b[i] = static_cast<unsigned char>((c[i] + kInt4Offset) | ((c[VW + i] + kInt4Offset) << 4));
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
                c[i] = static_cast<int>(b[i] & 0x0f) - kInt4Offset;
                c[VW + i] = static_cast<int>(b[i] >> 4) - kInt4Offset;
            }
        }
    }
};

// ---- host: argument checks and dispatch -----------------------------------------------------

// std::invalid_argument naming greenai.cuda.<fn> unless n, k, bits and group describe a
// valid layout (formats.h); allow_tensor admits kPerTensor (int8 only).
inline void check_shape(const char* fn, std::int64_t n, std::int64_t k, int bits, std::int64_t group,
                        bool allow_tensor) {
    if (n < 1 || k < 1) {
        bad_arg(fn, "n and k must be >= 1");
    }
    if (k > 0x7fffffff - 64) {
        bad_arg(fn, "k must be < 2^31");
    }
    if (!is_bits(bits)) {
        bad_arg(fn, "bits must be 8 or 4, got " + std::to_string(bits));
    }
    if (!packs_k(bits, k)) {
        bad_arg(fn, "int4 needs k and group multiples of 32");
    }
    if (!is_group(bits, k, group, allow_tensor)) {
        bad_arg(fn, std::string("group must be ") + (allow_tensor ? "-1 (int8 only), " : "") +
                        "k, or a multiple of 32 dividing k; got " + std::to_string(group));
    }
}

// f(std::integral_constant<int, 8>{}) or the same with 4, for checked bits.
template <class F>
void with_bits(int bits, F&& f) {
    if (bits == 8) {
        f(std::integral_constant<int, 8>{});
    } else {
        f(std::integral_constant<int, 4>{});
    }
}

}  // namespace greenai::cuda
