// The per-instruction-set kernel table behind quant.cpp. Each entry works on a range of rows
// in the calling thread; quant.cpp splits the work across threads and picks the table.
#pragma once

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstdint>

#include "cpu/quant.h"
#include "formats.h"

namespace greenai::cpu {

// Scale, its reciprocal and the zero point of a group whose values span [lo, hi], exactly
// as src/greenai/ops/reference.py computes them (one place for the formula).
struct GroupScale {
    float scale, inv, zero_point;
};

inline GroupScale group_scale(float lo, float hi, int bits, bool symmetric) {
    const float qmax = static_cast<float>(code_max(bits));
    GroupScale s{};
    if (symmetric) {
        const float absmax = std::max(-lo, hi);
        s.scale = std::max(absmax / qmax, FLT_MIN);
        s.inv = 1.0f / s.scale;
        s.zero_point = 0.0f;
    } else {
        const float levels = 2.0f * qmax + 1.0f;
        const float qmin = -qmax - 1.0f;
        lo = std::min(lo, 0.0f);
        hi = std::max(hi, 0.0f);
        s.scale = std::max(hi / levels - lo / levels, FLT_MIN);
        s.inv = 1.0f / s.scale;
        s.zero_point = std::min(std::max(qmin - std::nearbyint(lo * s.inv), qmin), qmax);
    }
    return s;
}

// Rows of the fp32 weight tile the tiled matmul dequantizes at a time (a multiple of every
// kernel table's micro-kernel width: 12, 6 and 4).
constexpr std::int64_t kTileRows = 24;
// Rows of x the tiled matmul multiplies per pass over a tile (their transposed panel,
// k x 64 floats, stays in the core's L2 cache).
constexpr std::int64_t kLinearRowChunk = 64;
// Rows of x the transposed panel is padded to a multiple of (every table's vector width
// divides it).
constexpr std::int64_t kLinearRowAlign = 16;
// Largest batch the direct (dequantize-on-the-fly) matmul handles.
constexpr std::int64_t kDirectMaxRows = 4;

struct KernelTable {
    const char* name;
    // Per-row or per-group quantize of rows [r0, r1): -1, or a row holding NaN/Inf.
    std::int64_t (*quantize_rows)(const QuantizeArgs&, std::int64_t r0, std::int64_t r1);
    // min and max over rows [r0, r1); false if a value is NaN or Inf.
    bool (*range_rows)(const QuantizeArgs&, std::int64_t r0, std::int64_t r1, float* lo, float* hi);
    // Per-tensor quantize of rows [r0, r1) with the given scale.
    void (*encode_rows)(const QuantizeArgs&, std::int64_t r0, std::int64_t r1, GroupScale s);
    void (*dequantize_rows)(const DequantizeArgs&, std::int64_t r0, std::int64_t r1);
    // Widen count values of `type` to float32, and narrow (round to nearest even).
    void (*to_float)(const void* src, FloatType type, std::int64_t count, float* dst);
    void (*from_float)(const float* src, std::int64_t count, void* dst, FloatType type);
    // Output rows [n0, n1) of y32 (m, n) = x32 (m, k) W^T + bias, for m <= kDirectMaxRows.
    // xsum holds each x row's sums over the groups, (m, k / group).
    void (*linear_direct)(const LinearArgs&, const float* x32, const float* xsum, float* y32,
                          std::int64_t n0, std::int64_t n1);
    // The same for any m, from x transposed (xT[i * ldx + m], ldx a multiple of
    // kLinearRowAlign, zero beyond m), dequantizing kTileRows rows at a time into tile
    // (kTileRows * k floats).
    void (*linear_tiled)(const LinearArgs&, const float* xT, std::int64_t ldx, float* y32,
                         std::int64_t n0, std::int64_t n1, float* tile);

    // For bfloat16 x on CPUs with bf16 dot products (nullptr elsewhere), any m and bits: the
    // products of bf16 x with the codes (exact in bf16) are exact in float32, so this agrees
    // with the float32 kernels up to the order of float32 sums, at twice the multiplies per
    // instruction. The scale is applied per group and the zero point folded into the group
    // sums of x; subnormal bf16 inputs and products count as zero.
    // xpT[p * ldx + m] holds x[m, 2p] (low half) and x[m, 2p + 1] (high half, zero past k)
    // for p < ceil(k / 2), ldx a multiple of kLinearRowAlign, zero beyond m; xsumT[g * ldx +
    // m] the sums of x over group g (nullptr when there is no zero point). tile holds
    // kTileRows * ceil(k / 2) pairs of codes.
    void (*linear_tiled_bf16)(const LinearArgs&, const std::uint32_t* xpT, std::int64_t ldx, const float* xsumT,
                              float* y32, std::int64_t n0, std::int64_t n1, std::uint32_t* tile);
};

extern const KernelTable kGenericKernels;
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define GREENAI_X86_KERNELS 1
extern const KernelTable kAvx2Kernels;
extern const KernelTable kAvx512Kernels;
extern const KernelTable kAvx512Bf16Kernels;
#endif

}  // namespace greenai::cpu
