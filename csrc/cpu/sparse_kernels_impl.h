// The sparsity kernels, written once and compiled once per instruction set (the pattern of
// quant_kernels_impl.h): sparse_generic.cpp, sparse_avx2.cpp and sparse_avx512.cpp define
// GREENAI_TARGET, include this file, define a trait struct and instantiate
// SparseKernels<Trait>::table(). Everything here has internal linkage.
//
// The scalar code below is complete on its own (the generic table is this code with a trait
// that vectorises nothing). A trait speeds up the bulk of a row: each of its functions
// handles a prefix of the elements it is given (a multiple of its step) and returns how many
// it handled; the scalar code finishes the rest:
//   mask32(w, len, out), mask16(w, len, nan_key, out): 0 / 1 bytes of the 2:4 pattern;
//   compress32(w, len, values, meta), compress16(w, len, nan_key, values, meta): len a
//     multiple of 8 (whole meta bytes);
//   decompress32(values, meta, len, dense), decompress16(...): the inverse;
//   dot<M, DT>(x, k, values, meta, sums): sums[mi] = the dot products of M rows of x (row
//     stride k) with one compressed weight row, over the prefix it handled.
// 32-bit elements are float32 bit patterns, 16-bit ones float16 or bfloat16 bit patterns;
// magnitudes are compared as integers (the bits without the sign, NaNs clamped to one key),
// which orders finite values, Inf and NaN exactly as their absolute values (NaN highest).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>

#include "cpu/elements_impl.h"
#include "cpu/floatconv.h"
#include "cpu/sparse_kernels.h"
#include "formats.h"

#ifndef GREENAI_TARGET
#error "define GREENAI_TARGET before including sparse_kernels_impl.h"
#endif

namespace greenai::cpu {
namespace {

// --- the 2:4 pattern of one group -----------------------------------------------------------

// Magnitude keys of float32 and of 16-bit elements (the NaN keys kNanKey*: formats.h).
GREENAI_TARGET inline std::uint32_t key32(std::uint32_t bits) { return std::min(bits & 0x7FFFFFFFu, kNanKeyF32); }
GREENAI_TARGET inline std::uint32_t key16(std::uint16_t bits, std::uint32_t nan_key) {
    return std::min<std::uint32_t>(bits & 0x7FFFu, nan_key);
}

// Bit i set when element i of the group is kept: fewer than two others beat it, where j
// beats i if its key is larger, or equal with j < i.
GREENAI_TARGET inline unsigned keep4(const std::uint32_t key[4]) {
    unsigned kept = 0;
    for (int i = 0; i < 4; ++i) {
        int beaten = 0;
        for (int j = 0; j < 4; ++j) {
            beaten += j < i ? key[j] >= key[i] : (j > i && key[j] > key[i]);
        }
        kept |= static_cast<unsigned>(beaten < 2) << i;
    }
    return kept;
}

// Nibble i0 | i1 << 2 of a 4-bit kept pattern with two bits set, and back (0 for a nibble
// with i0 >= i1, which compress never writes).
struct NibbleTables {
    std::uint8_t nibble_of_kept[16]{};
    std::uint8_t kept_of_nibble[16]{};
    constexpr NibbleTables() {
        for (unsigned i0 = 0; i0 < 4; ++i0) {
            for (unsigned i1 = i0 + 1; i1 < 4; ++i1) {
                const unsigned kept = (1u << i0) | (1u << i1);
                nibble_of_kept[kept] = static_cast<std::uint8_t>(i0 | (i1 << 2));
                kept_of_nibble[i0 | (i1 << 2)] = static_cast<std::uint8_t>(kept);
            }
        }
    }
};
constexpr NibbleTables kNibbles{};

// The same for a meta byte (two groups): meta_of_kept[8-bit kept pattern], and
// kept_of_meta[byte] = the 8-bit kept pattern, plus 0x100 when a nibble has i0 >= i1.
struct ByteTables {
    std::uint8_t meta_of_kept[256]{};
    std::uint16_t kept_of_meta[256]{};
    constexpr ByteTables() {
        for (unsigned b = 0; b < 256; ++b) {
            meta_of_kept[b] = static_cast<std::uint8_t>(kNibbles.nibble_of_kept[b & 15] |
                                                        (kNibbles.nibble_of_kept[b >> 4] << 4));
            const unsigned lo = kNibbles.kept_of_nibble[b & 15], hi = kNibbles.kept_of_nibble[b >> 4];
            kept_of_meta[b] = static_cast<std::uint16_t>(lo | (hi << 4) | ((lo == 0 || hi == 0) ? 0x100u : 0u));
        }
    }
};
constexpr ByteTables kBytes{};

template <class T>
GREENAI_TARGET inline T bits_at(const void* base, std::int64_t i) {
    T v;
    std::memcpy(&v, static_cast<const unsigned char*>(base) + i * static_cast<std::int64_t>(sizeof(T)), sizeof v);
    return v;
}

template <FloatType DT>
GREENAI_TARGET inline unsigned keep_group(const void* w, std::int64_t i) {
    std::uint32_t key[4];
    for (int j = 0; j < 4; ++j) {
        if constexpr (DT == FloatType::f32) {
            key[j] = key32(bits_at<std::uint32_t>(w, i + j));
        } else {
            key[j] = key16(bits_at<std::uint16_t>(w, i + j), DT == FloatType::f16 ? kNanKeyF16 : kNanKeyBF16);
        }
    }
    return keep4(key);
}

// Writes group g (values 2g, 2g + 1 and its nibble) of a compressed row from the dense row.
template <FloatType DT>
GREENAI_TARGET inline void compress_group(const void* dense, std::int64_t g, void* values, std::uint8_t* meta) {
    using T = std::conditional_t<DT == FloatType::f32, std::uint32_t, std::uint16_t>;
    const unsigned kept = keep_group<DT>(dense, 4 * g);
    const unsigned nib = kNibbles.nibble_of_kept[kept];
    T* v = static_cast<T*>(values) + 2 * g;
    v[0] = bits_at<T>(dense, 4 * g + (nib & 3));
    v[1] = bits_at<T>(dense, 4 * g + (nib >> 2));
    if (g % 2 == 0) {
        meta[g / 2] = static_cast<std::uint8_t>(nib);
    } else {
        meta[g / 2] = static_cast<std::uint8_t>(meta[g / 2] | (nib << 4));
    }
}

// Group g of a dense row from a compressed row: zeros, then v0 at i0, then v1 at i1.
template <class T>
GREENAI_TARGET inline void decompress_group(const T* values, const std::uint8_t* meta, std::int64_t g, T* dense) {
    const unsigned nib = (meta[g / 2] >> (4 * (g % 2))) & 15u;
    T* d = dense + 4 * g;
    d[0] = d[1] = d[2] = d[3] = 0;
    d[nib & 3] = values[2 * g];
    d[nib >> 2] = values[2 * g + 1];
}

template <class S>
struct SparseKernels {
    // --- channel norms ----------------------------------------------------------------------

    template <int P>
    GREENAI_TARGET static double term(float v) {
        const double d = v;
        return P == 1 ? std::fabs(d) : d * d;
    }

    // Channels whose contiguous runs are at least this long are summed run by run; shorter
    // runs (Conv kernels, Linear columns) are accumulated elementwise into a buffer.
    static constexpr std::int64_t kRunMin = 16;
    static constexpr std::int64_t kBuffer = 2048;

    template <FloatType DT, int P>
    GREENAI_TARGET static double run_sum(const void* w, std::int64_t i0, std::int64_t len) {
        double acc[8] = {};
        std::int64_t i = 0;
        for (; i + 8 <= len; i += 8) {
            for (int j = 0; j < 8; ++j) {
                acc[j] += term<P>(load1<DT>(w, i0 + i + j));
            }
        }
        double tail = 0.0;
        for (; i < len; ++i) {
            tail += term<P>(load1<DT>(w, i0 + i));
        }
        return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7])) + tail;
    }

    // float32 of the p-th root; sums at or past the float32 rounding edge give +Inf.
    GREENAI_TARGET static float finish(double sum, int p) {
        const double r = p == 2 ? std::sqrt(sum) : sum;
        return r >= 0x1.ffffffp127 ? std::numeric_limits<float>::infinity() : static_cast<float>(r);
    }

    template <FloatType DT, int P>
    GREENAI_TARGET static void norms_t(const NormArgs& a, std::int64_t c0, std::int64_t c1) {
        const std::int64_t inner = a.inner, stride = a.channels * inner;
        if (inner == 0 || a.outer == 0) {  // empty channels: norm 0
            std::fill(a.out + c0, a.out + c1, 0.0f);
            return;
        }
        if (inner >= kRunMin) {
            for (std::int64_t c = c0; c < c1; ++c) {
                double s = 0.0;
                for (std::int64_t o = 0; o < a.outer; ++o) {
                    s += run_sum<DT, P>(a.w, o * stride + c * inner, inner);
                }
                a.out[c] = finish(s, P);
            }
            return;
        }
        const std::int64_t block = kBuffer / inner;
        double acc[kBuffer];
        for (std::int64_t cb = c0; cb < c1; cb += block) {
            const std::int64_t len = std::min(block, c1 - cb) * inner;
            std::fill(acc, acc + len, 0.0);
            for (std::int64_t o = 0; o < a.outer; ++o) {
                const std::int64_t base = o * stride + cb * inner;
                for (std::int64_t e = 0; e < len; ++e) {
                    acc[e] += term<P>(load1<DT>(a.w, base + e));
                }
            }
            for (std::int64_t c = cb; c < cb + len / inner; ++c) {
                double s = 0.0;
                for (std::int64_t j = 0; j < inner; ++j) {
                    s += acc[(c - cb) * inner + j];
                }
                a.out[c] = finish(s, P);
            }
        }
    }

    template <FloatType DT>
    GREENAI_TARGET static void norms_dt(const NormArgs& a, std::int64_t c0, std::int64_t c1) {
        if (a.p == 1) {
            norms_t<DT, 1>(a, c0, c1);
        } else {
            norms_t<DT, 2>(a, c0, c1);
        }
    }

    GREENAI_TARGET static void norms(const NormArgs& a, std::int64_t c0, std::int64_t c1) {
        switch (a.dtype) {
            case FloatType::f32: norms_dt<FloatType::f32>(a, c0, c1); break;
            case FloatType::f16: norms_dt<FloatType::f16>(a, c0, c1); break;
            default: norms_dt<FloatType::bf16>(a, c0, c1); break;
        }
    }

    // --- 2:4 mask, compress, decompress ------------------------------------------------------

    template <FloatType DT>
    GREENAI_TARGET static void mask_t(const Sparse24Args& a, std::int64_t r0, std::int64_t r1) {
        const std::int64_t e0 = r0 * a.k, len = (r1 - r0) * a.k;
        std::int64_t done;
        if constexpr (DT == FloatType::f32) {
            done = S::mask32(static_cast<const std::uint32_t*>(a.dense) + e0, len, a.mask + e0);
        } else {
            done = S::mask16(static_cast<const std::uint16_t*>(a.dense) + e0, len,
                             DT == FloatType::f16 ? kNanKeyF16 : kNanKeyBF16, a.mask + e0);
        }
        for (std::int64_t i = e0 + done; i < e0 + len; i += 4) {
            const unsigned kept = keep_group<DT>(a.dense, i);
            for (int j = 0; j < 4; ++j) {
                a.mask[i + j] = static_cast<std::uint8_t>((kept >> j) & 1u);
            }
        }
    }

    template <FloatType DT>
    GREENAI_TARGET static void compress_t(const Sparse24Args& a, std::int64_t r0, std::int64_t r1) {
        using T = std::conditional_t<DT == FloatType::f32, std::uint32_t, std::uint16_t>;
        const std::int64_t k = a.k, meta_row = meta_row_bytes(k);
        for (std::int64_t r = r0; r < r1; ++r) {
            const T* dense = static_cast<const T*>(a.dense) + r * k;
            T* values = static_cast<T*>(a.values) + r * (k / 2);
            std::uint8_t* meta = a.meta + r * meta_row;
            const std::int64_t whole = k / 8 * 8;  // the SIMD code writes whole meta bytes
            std::int64_t done;
            if constexpr (DT == FloatType::f32) {
                done = S::compress32(dense, whole, values, meta);
            } else {
                done = S::compress16(dense, whole, DT == FloatType::f16 ? kNanKeyF16 : kNanKeyBF16, values, meta);
            }
            for (std::int64_t g = done / 4; g < k / 4; ++g) {
                compress_group<DT>(dense, g, values, meta);
            }
        }
    }

    template <class T>
    GREENAI_TARGET static void decompress_t(const Sparse24Args& a, std::int64_t r0, std::int64_t r1) {
        const std::int64_t k = a.k, meta_row = meta_row_bytes(k);
        for (std::int64_t r = r0; r < r1; ++r) {
            T* dense = static_cast<T*>(const_cast<void*>(a.dense)) + r * k;
            const T* values = static_cast<const T*>(a.values) + r * (k / 2);
            const std::uint8_t* meta = a.meta + r * meta_row;
            std::int64_t done;
            if constexpr (sizeof(T) == 4) {
                done = S::decompress32(values, meta, k / 8 * 8, dense);
            } else {
                done = S::decompress16(values, meta, k / 8 * 8, dense);
            }
            for (std::int64_t g = done / 4; g < k / 4; ++g) {
                decompress_group(values, meta, g, dense);
            }
        }
    }

    GREENAI_TARGET static void mask_rows(const Sparse24Args& a, std::int64_t r0, std::int64_t r1) {
        switch (a.dtype) {
            case FloatType::f32: mask_t<FloatType::f32>(a, r0, r1); break;
            case FloatType::f16: mask_t<FloatType::f16>(a, r0, r1); break;
            default: mask_t<FloatType::bf16>(a, r0, r1); break;
        }
    }

    GREENAI_TARGET static void compress_rows(const Sparse24Args& a, std::int64_t r0, std::int64_t r1) {
        switch (a.dtype) {
            case FloatType::f32: compress_t<FloatType::f32>(a, r0, r1); break;
            case FloatType::f16: compress_t<FloatType::f16>(a, r0, r1); break;
            default: compress_t<FloatType::bf16>(a, r0, r1); break;
        }
    }

    GREENAI_TARGET static void decompress_rows(const Sparse24Args& a, std::int64_t r0, std::int64_t r1) {
        if (a.dtype == FloatType::f32) {
            decompress_t<std::uint32_t>(a, r0, r1);
        } else {
            decompress_t<std::uint16_t>(a, r0, r1);  // a bit-pattern copy: the same for both
        }
    }

    // --- matmul -----------------------------------------------------------------------------

    template <int M, FloatType DT>
    GREENAI_TARGET static void direct_t(const Linear24Args& a, const float* x, float* y, std::int64_t n0,
                                        std::int64_t n1) {
        const std::int64_t k = a.k, meta_row = meta_row_bytes(k);
        const std::int64_t value_bytes = DT == FloatType::f32 ? 4 : 2;
        for (std::int64_t row = n0; row < n1; ++row) {
            const void* values = static_cast<const unsigned char*>(a.values) + row * (k / 2) * value_bytes;
            const std::uint8_t* meta = a.meta + row * meta_row;
            float sums[M];
            const std::int64_t done = S::template dot<M, DT>(x, k, values, meta, sums);
            for (std::int64_t g = done / 4; g < k / 4; ++g) {
                const unsigned nib = (meta[g / 2] >> (4 * (g % 2))) & 15u;
                const float v0 = load1<DT>(values, 2 * g), v1 = load1<DT>(values, 2 * g + 1);
                for (int mi = 0; mi < M; ++mi) {
                    sums[mi] += v0 * x[mi * k + 4 * g + (nib & 3)] + v1 * x[mi * k + 4 * g + (nib >> 2)];
                }
            }
            const float b = a.bias ? a.bias[row] : 0.0f;
            for (int mi = 0; mi < M; ++mi) {
                y[mi * a.n + row] = sums[mi] + b;
            }
        }
    }

    // Weight rows per block of linear_dt: a block (16 rows of 4096 float32 weights: 136 KiB)
    // stays in the core's cache while every block of kSparseDirectRows rows of x passes over it.
    static constexpr std::int64_t kWeightBlock = 16;

    template <FloatType DT>
    GREENAI_TARGET static void linear_dt(const Linear24Args& a, const float* x32, float* y32, std::int64_t n0,
                                         std::int64_t n1) {
        for (std::int64_t r0 = n0; r0 < n1; r0 += kWeightBlock) {
            const std::int64_t r1 = std::min(n1, r0 + kWeightBlock);
            for (std::int64_t m0 = 0; m0 < a.m; m0 += kSparseDirectRows) {
                const float* x = x32 + m0 * a.k;
                float* y = y32 + m0 * a.n;
                switch (std::min(kSparseDirectRows, a.m - m0)) {
                    case 1: direct_t<1, DT>(a, x, y, r0, r1); break;
                    case 2: direct_t<2, DT>(a, x, y, r0, r1); break;
                    case 3: direct_t<3, DT>(a, x, y, r0, r1); break;
                    case 4: direct_t<4, DT>(a, x, y, r0, r1); break;
                    case 5: direct_t<5, DT>(a, x, y, r0, r1); break;
                    case 6: direct_t<6, DT>(a, x, y, r0, r1); break;
                    case 7: direct_t<7, DT>(a, x, y, r0, r1); break;
                    default: direct_t<8, DT>(a, x, y, r0, r1); break;
                }
            }
        }
    }

    GREENAI_TARGET static void linear_rows(const Linear24Args& a, const float* x32, float* y32, std::int64_t n0,
                                           std::int64_t n1) {
        switch (a.dtype) {
            case FloatType::f32: linear_dt<FloatType::f32>(a, x32, y32, n0, n1); break;
            case FloatType::f16: linear_dt<FloatType::f16>(a, x32, y32, n0, n1); break;
            default: linear_dt<FloatType::bf16>(a, x32, y32, n0, n1); break;
        }
    }

    static constexpr SparseKernelTable table(const char* name) {
        return SparseKernelTable{name, &norms, &mask_rows, &compress_rows, &decompress_rows, &linear_rows, nullptr};
    }
};

// The trait of the plain scalar code: vectorises nothing.
struct ScalarSparse {
    static std::int64_t mask32(const std::uint32_t*, std::int64_t, std::uint8_t*) { return 0; }
    static std::int64_t mask16(const std::uint16_t*, std::int64_t, std::uint32_t, std::uint8_t*) { return 0; }
    static std::int64_t compress32(const std::uint32_t*, std::int64_t, std::uint32_t*, std::uint8_t*) { return 0; }
    static std::int64_t compress16(const std::uint16_t*, std::int64_t, std::uint32_t, std::uint16_t*,
                                   std::uint8_t*) {
        return 0;
    }
    static std::int64_t decompress32(const std::uint32_t*, const std::uint8_t*, std::int64_t, std::uint32_t*) {
        return 0;
    }
    static std::int64_t decompress16(const std::uint16_t*, const std::uint8_t*, std::int64_t, std::uint16_t*) {
        return 0;
    }
    template <int M, FloatType DT>
    static std::int64_t dot(const float*, std::int64_t, const void*, const std::uint8_t*, float* sums) {
        for (int mi = 0; mi < M; ++mi) {
            sums[mi] = 0.0f;
        }
        return 0;
    }
};

}  // namespace
}  // namespace greenai::cpu
