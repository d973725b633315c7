// The quantize, dequantize and float conversion kernels of quant_kernels_impl.h (see its
// comment for the SIMD trait S and why everything here has internal linkage), compiled once
// per instruction set under the including file's GREENAI_TARGET.
#pragma once

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstdint>
#include <limits>

#include "cpu/elements_impl.h"
#include "cpu/floatconv.h"
#include "cpu/quant_kernels.h"
#include "formats.h"

#ifndef GREENAI_TARGET
#error "define GREENAI_TARGET before including quant_codec_impl.h"
#endif

namespace greenai::cpu {
namespace {

template <class S>
struct QuantCodec {
    using F = typename S::F;
    static constexpr int W = S::W;
    static constexpr int kBlockVectors = 32 / W;  // vectors per int4 block of 32

    // --- vector loads and stores by element type (scalar ones: elements_impl.h) ------------

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
    GREENAI_TARGET static void store(void* base, std::int64_t i, F v) {
        if constexpr (DT == FloatType::f32) {
            S::store_f32(static_cast<float*>(base) + i, v);
        } else if constexpr (DT == FloatType::f16) {
            S::store_f16(static_cast<std::uint16_t*>(base) + i, v);
        } else {
            S::store_bf16(static_cast<std::uint16_t*>(base) + i, v);
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
        const float qmax = static_cast<float>(code_max(BITS));
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
        constexpr float qmax = static_cast<float>(kInt8Max);  // per tensor is int8 only
        const float qmin = a.symmetric ? -qmax : -qmax - 1.0f;
        Ahead pf = ahead<DT>(a.w, r0 * a.k, r1 * a.k, 1);
        encode<DT, 8>(a.w, r0 * a.k, (r1 - r0) * a.k, s, qmin, qmax, a.q, pf);
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

    // --- dispatch by dtype and bits (the kernel table's entries) ------------------------------

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
};

}  // namespace
}  // namespace greenai::cpu
