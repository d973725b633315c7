// The quantization kernels, written once against a small SIMD interface `S` and compiled
// once per instruction set: quant_generic.cpp, quant_avx2.cpp and quant_avx512.cpp each
// define GREENAI_TARGET (a function attribute naming the instruction set, empty for
// generic) and a trait struct, then include this file. Everything here has internal
// linkage, so the copies built for different instruction sets never meet at link time
// (a shared inline function compiled with AVX-512 could otherwise be picked for all).
//
// The trait S provides: F (a vector of W floats), zero, set1, add, sub, mul, fma, min, max,
// rne (round half to even), hsum/hmin/hmax, load_f32/load_f16/load_bf16/load_i8 (W
// values), u4_block (16 bytes -> 32 / W vectors of nibbles, in element order),
// store_f32/store_f16/store_bf16, store_i8 (W integral values), store_u8 (W values in
// [0, 255]); and MV x NR, the register tile of the fp32 matmul micro-kernel (MV vectors
// of rows of x by NR weight rows).
#pragma once

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstdint>
#include <limits>

#include "cpu/floatconv.h"
#include "cpu/quant_kernels.h"

#ifndef GREENAI_TARGET
#error "define GREENAI_TARGET before including quant_kernels_impl.h"
#endif

namespace greenai::cpu {
namespace {

template <class S>
struct Kernels {
    using F = typename S::F;
    static constexpr int W = S::W;
    static constexpr int kBlockVectors = 32 / W;  // vectors per int4 block of 32

    // --- loads and stores by element type -------------------------------------------------

    template <FloatType DT>
    GREENAI_TARGET static F load(const void* base, std::int64_t i) {
        if constexpr (DT == FloatType::f32) {
            return S::load_f32(static_cast<const float*>(base) + i);
        } else if constexpr (DT == FloatType::f16) {
            return S::load_f16(static_cast<const std::uint16_t*>(base) + i);
        } else {
            return S::load_bf16(static_cast<const std::uint16_t*>(base) + i);
        }
    }

    template <FloatType DT>
    GREENAI_TARGET static float load1(const void* base, std::int64_t i) {
        if constexpr (DT == FloatType::f32) {
            return static_cast<const float*>(base)[i];
        } else if constexpr (DT == FloatType::f16) {
            return f16_to_float(static_cast<const std::uint16_t*>(base)[i]);
        } else {
            return bf16_to_float(static_cast<const std::uint16_t*>(base)[i]);
        }
    }

    template <FloatType DT>
    GREENAI_TARGET static void store(void* base, std::int64_t i, F v) {
        if constexpr (DT == FloatType::f32) {
            S::store_f32(static_cast<float*>(base) + i, v);
        } else if constexpr (DT == FloatType::f16) {
            S::store_f16(static_cast<std::uint16_t*>(base) + i, v);
        } else {
            S::store_bf16(static_cast<std::uint16_t*>(base) + i, v);
        }
    }

    template <FloatType DT>
    GREENAI_TARGET static void store1(void* base, std::int64_t i, float v) {
        if constexpr (DT == FloatType::f32) {
            static_cast<float*>(base)[i] = v;
        } else if constexpr (DT == FloatType::f16) {
            static_cast<std::uint16_t*>(base)[i] = float_to_f16(v);
        } else {
            static_cast<std::uint16_t*>(base)[i] = float_to_bf16(v);
        }
    }

    // --- quantize --------------------------------------------------------------------------

    // A software prefetch that runs ahead of the quantize loops' reads of the weight. The
    // per-row (per-group) quantize reads each value twice, once for the range and once for
    // the codes (from cache by then), so with a fixed distance the next row would stream in
    // during the range pass only and memory would idle during the codes. Instead a cursor
    // that starts kQuantizePrefetchBytes ahead advances half a vector's bytes per vector of
    // either pass (full ones in the single-pass per-tensor sweeps) and prefetches each line it
    // enters, below the end of the thread's rows. 11008x4096 float32, cold: 14.0 -> 9.2 ms on
    // 2 threads (a fixed 16 KiB distance: 9.8 ms; 8 or 32 KiB: about the same or slower).
    // Non-temporal stores of the codes measured slower: a fresh output page has just been
    // zeroed by the kernel, so its lines are in cache already.
    static constexpr std::int64_t kQuantizePrefetchBytes = 16384;

    struct Ahead {
        const std::uint8_t* base;  // the weight's first byte
        std::int64_t at;           // byte offset of the cursor
        std::int64_t end;          // byte offset where prefetching stops
        std::int64_t step;         // bytes the cursor advances per vector read
    };

    // An Ahead over elements [e0, e1) of a weight of type DT, for loops that read every
    // element `passes` times (1 or 2).
    template <FloatType DT>
    static Ahead ahead(const void* base, std::int64_t e0, std::int64_t e1, int passes) {
        constexpr std::int64_t bytes = DT == FloatType::f32 ? 4 : 2;
        return Ahead{static_cast<const std::uint8_t*>(base), e0 * bytes + kQuantizePrefetchBytes, e1 * bytes,
                     W * bytes / passes};
    }

    GREENAI_TARGET static void advance(Ahead& p) {
        const std::int64_t line = p.at >> 6;
        p.at += p.step;
        if ((p.at >> 6) != line && p.at < p.end) {
            __builtin_prefetch(p.base + p.at, 0, 3);
        }
    }

    // min and max of base[i0, i0 + len); false if any value is NaN or Inf. The check adds
    // v - v (0 for finite values, NaN otherwise) into an accumulator that NaN poisons.
    template <FloatType DT>
    GREENAI_TARGET static bool range(const void* base, std::int64_t i0, std::int64_t len, float* lo,
                                     float* hi, Ahead& pf) {
        F vlo = S::set1(std::numeric_limits<float>::infinity());
        F vhi = S::set1(-std::numeric_limits<float>::infinity());
        F bad = S::zero();
        std::int64_t i = 0;
        for (; i + W <= len; i += W) {
            advance(pf);
            const F v = load<DT>(base, i0 + i);
            vlo = S::min(vlo, v);
            vhi = S::max(vhi, v);
            bad = S::add(bad, S::sub(v, v));
        }
        float slo = S::hmin(vlo), shi = S::hmax(vhi), sbad = S::hsum(bad);
        for (; i < len; ++i) {
            const float v = load1<DT>(base, i0 + i);
            slo = std::min(slo, v);
            shi = std::max(shi, v);
            sbad += v - v;
        }
        *lo = slo;
        *hi = shi;
        return sbad == 0.0f;
    }

    // The largest magnitude in base[i0, i0 + len), all a symmetric scale needs; false if any
    // value is NaN or Inf. Magnitudes are compared as the bits of non-negative floats, as
    // unsigned integers: the same order, with Inf and then NaN above every finite value, so
    // one integer max per vector finds the largest and catches both (two operations per
    // vector, where range's min, max and check take four).
    template <FloatType DT>
    GREENAI_TARGET static bool absmax(const void* base, std::int64_t i0, std::int64_t len, float* out,
                                      Ahead& pf) {
        F acc = S::zero();
        std::int64_t i = 0;
        for (; i + W <= len; i += W) {
            advance(pf);
            acc = S::max_abs_bits(acc, load<DT>(base, i0 + i));
        }
        std::uint32_t bits = S::hmax_bits(acc);
        for (; i < len; ++i) {
            bits = std::max(bits, float_to_bits(load1<DT>(base, i0 + i)) & 0x7FFFFFFFu);
        }
        *out = bits_to_float(bits);
        return bits < 0x7F800000u;
    }

    GREENAI_TARGET static F code(F v, F inv, F zp, F qmin, F qmax) {
        return S::min(S::max(S::add(S::rne(S::mul(v, inv)), zp), qmin), qmax);
    }

    GREENAI_TARGET static float code1(float v, const GroupScale& s, float qmin, float qmax) {
        return std::min(std::max(std::nearbyint(v * s.inv) + s.zero_point, qmin), qmax);
    }

    // Codes of base[i0, i0 + len) into q: int8 at q[i0 + i], or for bits 4 packed nibbles
    // (len and i0 multiples of 32) at q[(i0 + i) / 2] in the block layout.
    //
    // int8 vectors take a shorter path than code(): the product converted to int32 rounding
    // half to even, plus the zero point, saturated to int8. It gives the same codes: the
    // asymmetric range [-128, 127] is the saturation's, and a symmetric product never rounds
    // past 127 in magnitude (|v| <= absmax, so |v * inv| <= 127 (1 + 4e-7) < 127.5, the
    // same when the scale is FLT_MIN), so its clamp at -127 never acts; an asymmetric product
    // stays within 255 (1 + 4e-7) in magnitude, far inside int32.
    template <FloatType DT, int BITS>
    GREENAI_TARGET static void encode(const void* base, std::int64_t i0, std::int64_t len,
                                      const GroupScale& s, float qmin, float qmax, void* q, Ahead& pf) {
        const F inv = S::set1(s.inv);
        if constexpr (BITS == 8) {
            auto* out = static_cast<std::int8_t*>(q) + i0;
            const auto zp8 = static_cast<std::int32_t>(s.zero_point);
            std::int64_t i = 0;
            for (; i + W <= len; i += W) {
                advance(pf);
                S::store_i8_rne(out + i, S::mul(load<DT>(base, i0 + i), inv), zp8);
            }
            for (; i < len; ++i) {
                out[i] = static_cast<std::int8_t>(code1(load1<DT>(base, i0 + i), s, qmin, qmax));
            }
        } else {
            auto* out = static_cast<std::uint8_t*>(q) + i0 / 2;
            const F zp = S::set1(s.zero_point), lo = S::set1(qmin), hi = S::set1(qmax);
            const F eight = S::set1(8.0f), sixteen = S::set1(16.0f);
            for (std::int64_t b = 0; b < len; b += 32) {
                F nib[kBlockVectors];
                for (int j = 0; j < kBlockVectors; ++j) {
                    advance(pf);
                    nib[j] = S::add(code(load<DT>(base, i0 + b + j * W), inv, zp, lo, hi), eight);
                }
                for (int j = 0; j < kBlockVectors / 2; ++j) {
                    S::store_u8(out + b / 2 + j * W, S::fma(nib[kBlockVectors / 2 + j], sixteen, nib[j]));
                }
            }
        }
    }

    template <FloatType DT, int BITS>
    GREENAI_TARGET static std::int64_t quantize_rows_t(const QuantizeArgs& a, std::int64_t r0,
                                                       std::int64_t r1) {
        const float qmax = BITS == 8 ? 127.0f : 7.0f;
        const float qmin = a.symmetric ? -qmax : -qmax - 1.0f;
        const std::int64_t groups = a.k / a.group;
        Ahead pf = ahead<DT>(a.w, r0 * a.k, r1 * a.k, 2);
        for (std::int64_t r = r0; r < r1; ++r) {
            for (std::int64_t g = 0; g < groups; ++g) {
                const std::int64_t i0 = r * a.k + g * a.group;
                float lo, hi;
                if (a.symmetric) {
                    if (!absmax<DT>(a.w, i0, a.group, &hi, pf)) {
                        return r;
                    }
                    lo = -hi;
                } else if (!range<DT>(a.w, i0, a.group, &lo, &hi, pf)) {
                    return r;
                }
                const GroupScale s = group_scale(lo, hi, BITS, a.symmetric);
                a.scale[r * groups + g] = s.scale;
                if (a.zero_point != nullptr) {
                    a.zero_point[r * groups + g] = static_cast<std::int8_t>(s.zero_point);
                }
                encode<DT, BITS>(a.w, i0, a.group, s, qmin, qmax, a.q, pf);
            }
        }
        return -1;
    }

    template <FloatType DT>
    GREENAI_TARGET static bool range_rows_t(const QuantizeArgs& a, std::int64_t r0, std::int64_t r1,
                                            float* lo, float* hi) {
        Ahead pf = ahead<DT>(a.w, r0 * a.k, r1 * a.k, 1);
        return range<DT>(a.w, r0 * a.k, (r1 - r0) * a.k, lo, hi, pf);
    }

    template <FloatType DT>
    GREENAI_TARGET static void encode_rows_t(const QuantizeArgs& a, std::int64_t r0, std::int64_t r1,
                                             GroupScale s) {
        const float qmin = a.symmetric ? -127.0f : -128.0f;
        Ahead pf = ahead<DT>(a.w, r0 * a.k, r1 * a.k, 1);
        encode<DT, 8>(a.w, r0 * a.k, (r1 - r0) * a.k, s, qmin, 127.0f, a.q, pf);
    }

    // --- dequantize ------------------------------------------------------------------------

    // Writes W-wide runs of (code - zp) * scale for one group: int8 codes q8[i0 + i], or the
    // int4 block layout of q4 (i0 and len multiples of 32).
    template <FloatType OUT, int BITS>
    GREENAI_TARGET static void decode(const void* q, std::int64_t i0, std::int64_t len, float scale,
                                      float zp, void* out, std::int64_t o0) {
        const F s = S::set1(scale);
        if constexpr (BITS == 8) {
            const auto* codes = static_cast<const std::int8_t*>(q) + i0;
            const F z = S::set1(zp);
            std::int64_t i = 0;
            for (; i + W <= len; i += W) {
                store<OUT>(out, o0 + i, S::mul(S::sub(S::load_i8(codes + i), z), s));
            }
            for (; i < len; ++i) {
                store1<OUT>(out, o0 + i, (static_cast<float>(codes[i]) - zp) * scale);
            }
        } else {
            const auto* bytes = static_cast<const std::uint8_t*>(q) + i0 / 2;
            const F z = S::set1(zp + 8.0f);  // nibble = code + 8
            for (std::int64_t b = 0; b < len; b += 32) {
                F nib[kBlockVectors];
                S::u4_block(bytes + b / 2, nib);
                for (int j = 0; j < kBlockVectors; ++j) {
                    store<OUT>(out, o0 + b + j * W, S::mul(S::sub(nib[j], z), s));
                }
            }
        }
    }

    template <FloatType OUT, int BITS>
    GREENAI_TARGET static void dequantize_rows_into(const DequantizeArgs& a, std::int64_t r0,
                                                    std::int64_t r1, void* out, std::int64_t out_row0) {
        if (a.group == -1) {
            const float zp = a.zero_point ? static_cast<float>(a.zero_point[0]) : 0.0f;
            decode<OUT, BITS>(a.q, r0 * a.k, (r1 - r0) * a.k, a.scale[0], zp, out, (r0 - out_row0) * a.k);
            return;
        }
        const std::int64_t groups = a.k / a.group;
        for (std::int64_t r = r0; r < r1; ++r) {
            for (std::int64_t g = 0; g < groups; ++g) {
                const std::int64_t idx = r * groups + g;
                const float zp = a.zero_point ? static_cast<float>(a.zero_point[idx]) : 0.0f;
                decode<OUT, BITS>(a.q, r * a.k + g * a.group, a.group, a.scale[idx], zp, out,
                                  (r - out_row0) * a.k + g * a.group);
            }
        }
    }

    template <FloatType OUT, int BITS>
    GREENAI_TARGET static void dequantize_rows_t(const DequantizeArgs& a, std::int64_t r0, std::int64_t r1) {
        dequantize_rows_into<OUT, BITS>(a, r0, r1, a.out, 0);
    }

    // --- conversions -----------------------------------------------------------------------

    template <FloatType DT>
    GREENAI_TARGET static void to_float_t(const void* src, std::int64_t count, float* dst) {
        std::int64_t i = 0;
        for (; i + W <= count; i += W) {
            S::store_f32(dst + i, load<DT>(src, i));
        }
        for (; i < count; ++i) {
            dst[i] = load1<DT>(src, i);
        }
    }

    template <FloatType DT>
    GREENAI_TARGET static void from_float_t(const float* src, std::int64_t count, void* dst) {
        std::int64_t i = 0;
        for (; i + W <= count; i += W) {
            store<DT>(dst, i, S::load_f32(src + i));
        }
        for (; i < count; ++i) {
            store1<DT>(dst, i, src[i]);
        }
    }

    // --- matmul: direct, for a few rows of x ------------------------------------------------

    // How far ahead of the codes being multiplied the direct matmul prefetches. The hardware
    // prefetchers alone keep too few lines in flight for one core to stream at its full rate
    // (the loop's own loads sit behind its arithmetic in the reorder buffer, which covers only
    // ~1.5 KiB of codes); from 8 KiB ahead, a core reads cold codes about as fast as a loop
    // that only loads them (one core, 11008x4096 int8: 1.58 -> 1.29 ms). Nearer distances
    // gain little (1 KiB: nothing; the out-of-order window already reaches that far); 16 KiB
    // and the L2 hint measured the same or slightly slower.
    static constexpr std::int64_t kPrefetchBytes = 8192;

    // Prefetches the line kPrefetchBytes past p, unless that is past end (the caller's codes).
    GREENAI_TARGET static void prefetch_codes(const void* p, const std::uint8_t* end) {
        const std::uint8_t* here = static_cast<const std::uint8_t*>(p);
        if (end - here > kPrefetchBytes) {
            __builtin_prefetch(here + kPrefetchBytes, 0, 3);
        }
    }

    // y32[mi, row] for rows [n0, n1): per group, the dot products of the raw codes with x,
    // then scale * (dot - (zero point + nibble offset) * sum of x over the group).
    template <int M, int BITS>
    GREENAI_TARGET static void direct_t(const LinearArgs& a, const float* x32, const float* xsum,
                                        float* y32, std::int64_t n0, std::int64_t n1) {
        constexpr int U = M == 1 ? 4 : 2;  // independent accumulators per row of x
        const std::int64_t k = a.k, group = a.group, groups = k / group;
        // The codes of rows [n0, n1) are one contiguous stream; prefetch stops at its end.
        const std::uint8_t* const stream_end = static_cast<const std::uint8_t*>(a.q) + n1 * k * BITS / 8;
        const float offset = BITS == 4 ? 8.0f : 0.0f;
        const bool centred = a.zero_point != nullptr || BITS == 4;
        for (std::int64_t row = n0; row < n1; ++row) {
            F total[M];
            float scalar[M];
            for (int mi = 0; mi < M; ++mi) {
                total[mi] = S::zero();
                scalar[mi] = 0.0f;
            }
            for (std::int64_t g = 0; g < groups; ++g) {
                const std::int64_t g0 = g * group;
                F acc[M][U];
                float tail[M];
                for (int mi = 0; mi < M; ++mi) {
                    tail[mi] = 0.0f;
                    for (int u = 0; u < U; ++u) {
                        acc[mi][u] = S::zero();
                    }
                }
                if constexpr (BITS == 8) {
                    const std::int8_t* codes = static_cast<const std::int8_t*>(a.q) + row * k + g0;
                    std::int64_t i = 0;
                    for (; i + U * W <= group; i += U * W) {
                        prefetch_codes(codes + i, stream_end);
                        for (int u = 0; u < U; ++u) {
                            const F w = S::load_i8(codes + i + u * W);
                            for (int mi = 0; mi < M; ++mi) {
                                acc[mi][u] = S::fma(w, S::load_f32(x32 + mi * k + g0 + i + u * W), acc[mi][u]);
                            }
                        }
                    }
                    for (; i + W <= group; i += W) {
                        const F w = S::load_i8(codes + i);
                        for (int mi = 0; mi < M; ++mi) {
                            acc[mi][0] = S::fma(w, S::load_f32(x32 + mi * k + g0 + i), acc[mi][0]);
                        }
                    }
                    for (; i < group; ++i) {
                        const float w = static_cast<float>(codes[i]);
                        for (int mi = 0; mi < M; ++mi) {
                            tail[mi] += w * x32[mi * k + g0 + i];
                        }
                    }
                } else {
                    const std::uint8_t* bytes = static_cast<const std::uint8_t*>(a.q) + (row * k + g0) / 2;
                    // Blocks in pairs where the group allows, so consecutive vectors go to
                    // different accumulators and the sums' FMA latency overlaps.
                    constexpr int kPair = U >= 2 * kBlockVectors ? 2 : 1;
                    std::int64_t b = 0;
                    for (; b + 32 * kPair <= group; b += 32 * kPair) {
                        prefetch_codes(bytes + b / 2, stream_end);
                        for (int h = 0; h < kPair; ++h) {
                            F nib[kBlockVectors];
                            S::u4_block(bytes + (b + 32 * h) / 2, nib);
                            for (int j = 0; j < kBlockVectors; ++j) {
                                const int u = (h * kBlockVectors + j) % U;
                                for (int mi = 0; mi < M; ++mi) {
                                    acc[mi][u] = S::fma(nib[j], S::load_f32(x32 + mi * k + g0 + b + 32 * h + j * W),
                                                        acc[mi][u]);
                                }
                            }
                        }
                    }
                    for (; b < group; b += 32) {
                        F nib[kBlockVectors];
                        S::u4_block(bytes + b / 2, nib);
                        for (int j = 0; j < kBlockVectors; ++j) {
                            for (int mi = 0; mi < M; ++mi) {
                                acc[mi][j % U] = S::fma(nib[j], S::load_f32(x32 + mi * k + g0 + b + j * W),
                                                        acc[mi][j % U]);
                            }
                        }
                    }
                }
                const std::int64_t idx = row * groups + g;
                const float scale = a.scale[idx];
                const float z = offset + (a.zero_point ? static_cast<float>(a.zero_point[idx]) : 0.0f);
                const F vs = S::set1(scale);
                for (int mi = 0; mi < M; ++mi) {
                    F sum = acc[mi][0];
                    for (int u = 1; u < U; ++u) {
                        sum = S::add(sum, acc[mi][u]);
                    }
                    total[mi] = S::fma(sum, vs, total[mi]);
                    float extra = tail[mi];
                    if (centred) {
                        extra -= z * xsum[mi * groups + g];
                    }
                    scalar[mi] += scale * extra;
                }
            }
            const float b = a.bias ? a.bias[row] : 0.0f;
            for (int mi = 0; mi < M; ++mi) {
                y32[mi * a.n + row] = S::hsum(total[mi]) + scalar[mi] + b;
            }
        }
    }

    template <int BITS>
    GREENAI_TARGET static void direct_bits(const LinearArgs& a, const float* x32, const float* xsum,
                                           float* y32, std::int64_t n0, std::int64_t n1) {
        const std::int64_t groups = a.k / a.group;
        for (std::int64_t m0 = 0; m0 < a.m; m0 += kDirectMaxRows) {
            const std::int64_t rows = std::min(kDirectMaxRows, a.m - m0);
            const float* x = x32 + m0 * a.k;
            const float* xs = xsum ? xsum + m0 * groups : nullptr;
            float* y = y32 + m0 * a.n;
            switch (rows) {
                case 1: direct_t<1, BITS>(a, x, xs, y, n0, n1); break;
                case 2: direct_t<2, BITS>(a, x, xs, y, n0, n1); break;
                case 3: direct_t<3, BITS>(a, x, xs, y, n0, n1); break;
                default: direct_t<4, BITS>(a, x, xs, y, n0, n1); break;
            }
        }
    }

    GREENAI_TARGET static void linear_direct(const LinearArgs& a, const float* x32, const float* xsum,
                                             float* y32, std::int64_t n0, std::int64_t n1) {
        if (a.bits == 8) {
            direct_bits<8>(a, x32, xsum, y32, n0, n1);
        } else {
            direct_bits<4>(a, x32, xsum, y32, n0, n1);
        }
    }

    // --- matmul: tiled, for many rows of x --------------------------------------------------

    // Outer-product micro-kernel: vectors run along the rows of x (x is given transposed,
    // xT[i * ldx + m]) and each weight is broadcast, so nothing is summed across lanes.
    // Computes y[m, ni] for MV vectors of rows of x (m_valid of them real) and NT weight rows.
    template <int MV, int NT>
    GREENAI_TARGET static void micro(const float* xT, std::int64_t ldx, const float* w, std::int64_t k,
                                     float* y, std::int64_t ldy, std::int64_t m_valid, const float* bias) {
        F acc[MV][NT];
        for (int mv = 0; mv < MV; ++mv) {
            for (int ni = 0; ni < NT; ++ni) {
                acc[mv][ni] = S::zero();
            }
        }
        for (std::int64_t i = 0; i < k; ++i) {
            F xv[MV];
            for (int mv = 0; mv < MV; ++mv) {
                xv[mv] = S::load_f32(xT + i * ldx + mv * W);
            }
            for (int ni = 0; ni < NT; ++ni) {
                const F wb = S::set1(w[ni * k + i]);
                for (int mv = 0; mv < MV; ++mv) {
                    acc[mv][ni] = S::fma(xv[mv], wb, acc[mv][ni]);
                }
            }
        }
        alignas(64) float lanes[W];
        for (int mv = 0; mv < MV; ++mv) {
            const std::int64_t valid = std::min<std::int64_t>(W, m_valid - mv * W);
            for (int ni = 0; ni < NT; ++ni) {
                S::store_f32(lanes, acc[mv][ni]);
                const float b = bias ? bias[ni] : 0.0f;
                for (std::int64_t lane = 0; lane < valid; ++lane) {
                    y[(mv * W + lane) * ldy + ni] = lanes[lane] + b;
                }
            }
        }
    }

    template <int MV, int NT = S::NR>
    GREENAI_TARGET static void micro_n(int nt, const float* xT, std::int64_t ldx, const float* w, std::int64_t k,
                                       float* y, std::int64_t ldy, std::int64_t m_valid, const float* bias) {
        if constexpr (NT >= 1) {
            if (nt == NT) {
                micro<MV, NT>(xT, ldx, w, k, y, ldy, m_valid, bias);
            } else {
                micro_n<MV, NT - 1>(nt, xT, ldx, w, k, y, ldy, m_valid, bias);
            }
        }
    }

    // Output rows [n0, n1) for every row of x: per chunk of kLinearRowChunk rows of x (so
    // their transposed panel stays in cache), dequantize kTileRows weight rows at a time into
    // tile, then run the micro-kernel over them.
    GREENAI_TARGET static void linear_tiled(const LinearArgs& a, const float* xT, std::int64_t ldx, float* y32,
                                            std::int64_t n0, std::int64_t n1, float* tile) {
        static_assert(kTileRows % S::NR == 0, "the tile holds whole micro-kernel columns");
        const DequantizeArgs d{a.q, a.scale, a.zero_point, a.n, a.k, a.bits, a.group, tile, FloatType::f32};
        constexpr std::int64_t kStep = static_cast<std::int64_t>(S::MV) * W;
        for (std::int64_t c0 = 0; c0 < a.m; c0 += kLinearRowChunk) {
            const std::int64_t c1 = std::min(a.m, c0 + kLinearRowChunk);
            for (std::int64_t t0 = n0; t0 < n1; t0 += kTileRows) {
                const std::int64_t rows = std::min(kTileRows, n1 - t0);
                if (a.bits == 8) {
                    dequantize_rows_into<FloatType::f32, 8>(d, t0, t0 + rows, tile, t0);
                } else {
                    dequantize_rows_into<FloatType::f32, 4>(d, t0, t0 + rows, tile, t0);
                }
                for (std::int64_t m0 = c0; m0 < c1; m0 += kStep) {
                    const std::int64_t valid = std::min(kStep, c1 - m0);
                    for (std::int64_t r = 0; r < rows; r += S::NR) {
                        const int nt = static_cast<int>(std::min<std::int64_t>(S::NR, rows - r));
                        const float* bias = a.bias ? a.bias + t0 + r : nullptr;
                        float* y = y32 + m0 * a.n + t0 + r;
                        if (valid > W) {
                            micro_n<S::MV>(nt, xT + m0, ldx, tile + r * a.k, a.k, y, a.n, valid, bias);
                        } else {
                            micro_n<1>(nt, xT + m0, ldx, tile + r * a.k, a.k, y, a.n, valid, bias);
                        }
                    }
                }
            }
        }
    }

    // --- the table --------------------------------------------------------------------------

    GREENAI_TARGET static std::int64_t quantize_rows(const QuantizeArgs& a, std::int64_t r0, std::int64_t r1) {
        switch (a.dtype) {
            case FloatType::f32:
                return a.bits == 8 ? quantize_rows_t<FloatType::f32, 8>(a, r0, r1)
                                   : quantize_rows_t<FloatType::f32, 4>(a, r0, r1);
            case FloatType::f16:
                return a.bits == 8 ? quantize_rows_t<FloatType::f16, 8>(a, r0, r1)
                                   : quantize_rows_t<FloatType::f16, 4>(a, r0, r1);
            default:
                return a.bits == 8 ? quantize_rows_t<FloatType::bf16, 8>(a, r0, r1)
                                   : quantize_rows_t<FloatType::bf16, 4>(a, r0, r1);
        }
    }

    GREENAI_TARGET static bool range_rows(const QuantizeArgs& a, std::int64_t r0, std::int64_t r1, float* lo,
                                          float* hi) {
        switch (a.dtype) {
            case FloatType::f32: return range_rows_t<FloatType::f32>(a, r0, r1, lo, hi);
            case FloatType::f16: return range_rows_t<FloatType::f16>(a, r0, r1, lo, hi);
            default: return range_rows_t<FloatType::bf16>(a, r0, r1, lo, hi);
        }
    }

    GREENAI_TARGET static void encode_rows(const QuantizeArgs& a, std::int64_t r0, std::int64_t r1,
                                           GroupScale s) {
        switch (a.dtype) {
            case FloatType::f32: encode_rows_t<FloatType::f32>(a, r0, r1, s); break;
            case FloatType::f16: encode_rows_t<FloatType::f16>(a, r0, r1, s); break;
            default: encode_rows_t<FloatType::bf16>(a, r0, r1, s); break;
        }
    }

    GREENAI_TARGET static void dequantize_rows(const DequantizeArgs& a, std::int64_t r0, std::int64_t r1) {
        switch (a.out_dtype) {
            case FloatType::f32:
                return a.bits == 8 ? dequantize_rows_t<FloatType::f32, 8>(a, r0, r1)
                                   : dequantize_rows_t<FloatType::f32, 4>(a, r0, r1);
            case FloatType::f16:
                return a.bits == 8 ? dequantize_rows_t<FloatType::f16, 8>(a, r0, r1)
                                   : dequantize_rows_t<FloatType::f16, 4>(a, r0, r1);
            default:
                return a.bits == 8 ? dequantize_rows_t<FloatType::bf16, 8>(a, r0, r1)
                                   : dequantize_rows_t<FloatType::bf16, 4>(a, r0, r1);
        }
    }

    GREENAI_TARGET static void to_float(const void* src, FloatType type, std::int64_t count, float* dst) {
        switch (type) {
            case FloatType::f32: to_float_t<FloatType::f32>(src, count, dst); break;
            case FloatType::f16: to_float_t<FloatType::f16>(src, count, dst); break;
            default: to_float_t<FloatType::bf16>(src, count, dst); break;
        }
    }

    GREENAI_TARGET static void from_float(const float* src, std::int64_t count, void* dst, FloatType type) {
        switch (type) {
            case FloatType::f32: from_float_t<FloatType::f32>(src, count, dst); break;
            case FloatType::f16: from_float_t<FloatType::f16>(src, count, dst); break;
            default: from_float_t<FloatType::bf16>(src, count, dst); break;
        }
    }

    static constexpr KernelTable table(const char* name) {
        return KernelTable{name,          &quantize_rows, &range_rows,    &encode_rows,  &dequantize_rows,
                           &to_float,     &from_float,    &linear_direct, &linear_tiled, nullptr};
    }
};

}  // namespace
}  // namespace greenai::cpu
