// The weight-only quantized matmuls of quant_kernels_impl.h (see its comment for the SIMD
// trait S and why everything here has internal linkage): direct for a few rows of x, tiled
// for many, compiled once per instruction set under the including file's GREENAI_TARGET.
#pragma once

#include <algorithm>
#include <cstdint>

#include "cpu/quant_codec_impl.h"
#include "cpu/quant_kernels.h"
#include "formats.h"

#ifndef GREENAI_TARGET
#error "define GREENAI_TARGET before including quant_linear_impl.h"
#endif

namespace greenai::cpu {
namespace {

template <class S>
struct QuantLinear {
    using F = typename S::F;
    using Codec = QuantCodec<S>;
    static constexpr int W = S::W;
    static constexpr int kBlockVectors = Codec::kBlockVectors;

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
        const float offset = BITS == 4 ? static_cast<float>(kInt4Offset) : 0.0f;
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
                    Codec::template dequantize_rows_into<FloatType::f32, 8>(d, t0, t0 + rows, tile, t0);
                } else {
                    Codec::template dequantize_rows_into<FloatType::f32, 4>(d, t0, t0 + rows, tile, t0);
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
};

}  // namespace
}  // namespace greenai::cpu
