// The quantization kernels for AVX-512 CPUs that also have AVX512_BF16 (vdpbf16ps: 32
// bf16 multiplies with float32 sums per instruction, twice the float32 FMA's 16). Quantize,
// dequantize and the float32 matmuls are the AVX-512 ones, compiled again here; the bf16
// matmul below serves bfloat16 activations at more than kDirectMaxRows rows (see
// KernelTable::linear_tiled_bf16). A bf16 direct (matrix-vector) kernel was tried and
// dropped: on the machine it was measured on, unpacking int4 codes to bf16 (vpermw or an
// exponent-OR trick) cost more than the float32 path's conversions, 31 vs 32 GMAC/s.
#include "cpu/quant_kernels.h"

#include <cstring>

#ifdef GREENAI_X86_KERNELS

#define GREENAI_TARGET \
    __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c,avx512bf16")))

#include "cpu/quant_avx512_trait.h"
#include "cpu/quant_kernels_impl.h"

namespace greenai::cpu {
namespace {

using K512 = Kernels<Avx512>;

GREENAI_TARGET inline __m512 dot(__m512 acc, __m512i a, __m512i b) {
    return _mm512_dpbf16_ps(acc, (__m512bh)a, (__m512bh)b);
}

// --- tiled: any number of rows of x ------------------------------------------------------

constexpr int kMV = 2;   // vectors of 16 rows of x per micro-kernel
constexpr int kNR = 12;  // weight rows per micro-kernel: 24 accumulators of 32 registers

// 16 floats (integral, |v| <= 127: exact in bf16) stored as bf16.
GREENAI_TARGET inline void store_bf16_exact(std::uint16_t* p, __m512 v) {
    const __m256bh h = _mm512_cvtneps_pbh(v);
    std::memcpy(p, &h, sizeof h);
}

// Codes of weight rows [r0, r1) as bf16 pairs, tile[(r - r0) * kp + p] = (code 2p, code
// 2p + 1), zero past k.
GREENAI_TARGET void codes_to_pairs(const LinearArgs& a, std::int64_t r0, std::int64_t r1, std::uint32_t* tile) {
    const std::int64_t k = a.k, kp = (k + 1) / 2;
    for (std::int64_t r = r0; r < r1; ++r) {
        std::uint16_t* out = reinterpret_cast<std::uint16_t*>(tile + (r - r0) * kp);
        if (a.bits == 8) {
            const std::int8_t* codes = static_cast<const std::int8_t*>(a.q) + r * k;
            std::int64_t i = 0;
            for (; i + 16 <= k; i += 16) {
                store_bf16_exact(out + i, Avx512::load_i8(codes + i));
            }
            for (; i < k; ++i) {
                out[i] = float_to_bf16(static_cast<float>(codes[i]));
            }
        } else {
            const std::uint8_t* bytes = static_cast<const std::uint8_t*>(a.q) + r * k / 2;
            for (std::int64_t b = 0; b < k; b += 32) {
                __m512 nib[2];
                Avx512::u4_block(bytes + b / 2, nib);
                for (int j = 0; j < 2; ++j) {
                    store_bf16_exact(out + b + 16 * j, _mm512_sub_ps(nib[j], _mm512_set1_ps(8.0f)));
                }
            }
        }
        if (k % 2 != 0) {
            out[k] = 0;
        }
    }
}

// buf[ni * kMV * 16 + m] (+)= scale[ni] * sum over pairs [p0, p1) of x[m] . w[ni], for MV
// vectors of rows of x and NT weight rows, then minus scale * zero point * xsum[m].
template <int MV, int NT>
GREENAI_TARGET void micro(const std::uint32_t* xpT, std::int64_t ldx, const std::uint32_t* w, std::int64_t kp,
                          std::int64_t p0, std::int64_t p1, const float* scale, const std::int8_t* zp,
                          std::int64_t stride, const float* xsum, float* buf, bool first) {
    __m512 acc[MV][NT];
    for (int mv = 0; mv < MV; ++mv) {
        for (int ni = 0; ni < NT; ++ni) {
            acc[mv][ni] = _mm512_setzero_ps();
        }
    }
    for (std::int64_t p = p0; p < p1; ++p) {
        __m512i xv[MV];
        for (int mv = 0; mv < MV; ++mv) {
            xv[mv] = _mm512_loadu_si512(xpT + p * ldx + mv * 16);
        }
        for (int ni = 0; ni < NT; ++ni) {
            const __m512i wb = _mm512_set1_epi32(static_cast<int>(w[ni * kp + p]));
            for (int mv = 0; mv < MV; ++mv) {
                acc[mv][ni] = dot(acc[mv][ni], xv[mv], wb);
            }
        }
    }
    for (int ni = 0; ni < NT; ++ni) {
        const float s = scale[ni * stride];
        const float z = zp ? static_cast<float>(zp[ni * stride]) : 0.0f;
        for (int mv = 0; mv < MV; ++mv) {
            float* out = buf + ni * kMV * 16 + mv * 16;
            __m512 v = first ? _mm512_mul_ps(acc[mv][ni], _mm512_set1_ps(s))
                             : _mm512_fmadd_ps(acc[mv][ni], _mm512_set1_ps(s), _mm512_loadu_ps(out));
            if (zp != nullptr) {
                v = _mm512_fmadd_ps(_mm512_loadu_ps(xsum + mv * 16), _mm512_set1_ps(-s * z), v);
            }
            _mm512_storeu_ps(out, v);
        }
    }
}

template <int MV, int NT = kNR>
GREENAI_TARGET void micro_n(int nt, const std::uint32_t* xpT, std::int64_t ldx, const std::uint32_t* w,
                            std::int64_t kp, std::int64_t p0, std::int64_t p1, const float* scale,
                            const std::int8_t* zp, std::int64_t stride, const float* xsum, float* buf, bool first) {
    if constexpr (NT >= 1) {
        if (nt == NT) {
            micro<MV, NT>(xpT, ldx, w, kp, p0, p1, scale, zp, stride, xsum, buf, first);
        } else {
            micro_n<MV, NT - 1>(nt, xpT, ldx, w, kp, p0, p1, scale, zp, stride, xsum, buf, first);
        }
    }
}

GREENAI_TARGET void linear_tiled_bf16(const LinearArgs& a, const std::uint32_t* xpT, std::int64_t ldx,
                                      const float* xsumT, float* y32, std::int64_t n0, std::int64_t n1,
                                      std::uint32_t* tile) {
    static_assert(kTileRows % kNR == 0, "the tile holds whole micro-kernel columns");
    const std::int64_t k = a.k, kp = (k + 1) / 2;
    // Scale groups in pairs: per-tensor and per-channel scales have one group over all of k.
    const std::int64_t groups = a.group == k ? 1 : k / a.group;
    const std::int64_t group_pairs = a.group == k ? kp : a.group / 2;
    constexpr std::int64_t kStep = kMV * 16;
    alignas(64) float buf[kNR * kMV * 16];
    for (std::int64_t c0 = 0; c0 < a.m; c0 += kLinearRowChunk) {
        const std::int64_t c1 = std::min(a.m, c0 + kLinearRowChunk);
        for (std::int64_t t0 = n0; t0 < n1; t0 += kTileRows) {
            const std::int64_t rows = std::min(kTileRows, n1 - t0);
            codes_to_pairs(a, t0, t0 + rows, tile);
            for (std::int64_t m0 = c0; m0 < c1; m0 += kStep) {
                const std::int64_t valid = std::min(kStep, c1 - m0);
                for (std::int64_t r = 0; r < rows; r += kNR) {
                    const int nt = static_cast<int>(std::min<std::int64_t>(kNR, rows - r));
                    const std::int64_t row = t0 + r;
                    for (std::int64_t g = 0; g < groups; ++g) {
                        const std::int64_t idx = row * groups + g;
                        const std::int8_t* zp = a.zero_point ? a.zero_point + idx : nullptr;
                        const float* xs = zp ? xsumT + g * ldx + m0 : nullptr;
                        const std::int64_t p0 = g * group_pairs, p1 = std::min(kp, p0 + group_pairs);
                        if (valid > 16) {
                            micro_n<kMV>(nt, xpT + m0, ldx, tile + r * kp, kp, p0, p1, a.scale + idx, zp, groups,
                                         xs, buf, g == 0);
                        } else {
                            micro_n<1>(nt, xpT + m0, ldx, tile + r * kp, kp, p0, p1, a.scale + idx, zp, groups,
                                       xs, buf, g == 0);
                        }
                    }
                    for (int ni = 0; ni < nt; ++ni) {
                        const float b = a.bias ? a.bias[row + ni] : 0.0f;
                        for (std::int64_t m = 0; m < valid; ++m) {
                            y32[(m0 + m) * a.n + row + ni] = buf[ni * kMV * 16 + m] + b;
                        }
                    }
                }
            }
        }
    }
}

KernelTable make_table() {
    KernelTable t = K512::table("avx512_bf16");
    t.linear_tiled_bf16 = &linear_tiled_bf16;
    return t;
}

}  // namespace

const KernelTable kAvx512Bf16Kernels = make_table();

}  // namespace greenai::cpu

#endif  // GREENAI_X86_KERNELS
