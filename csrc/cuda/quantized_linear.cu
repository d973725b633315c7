// CUDA build of quantized_linear() of csrc/cuda/quant.h: y = x W^T + bias straight from the
// codes, for small batches (decode). Formats and arithmetic: src/greenai/ops/reference.py;
// the code layout: quant_units.cuh.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "cuda/elements.cuh"
#include "cuda/launch.cuh"
#include "cuda/quant.h"
#include "cuda/quant_units.cuh"
#include "formats.h"

namespace greenai::cuda {
namespace {

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
    const float code_bias = 8388608.0f + (BITS == 8 ? 128.0f : static_cast<float>(kInt4Offset));

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
            code = static_cast<int>((kk % 32) < 16 ? (b & 0x0f) : (b >> 4)) - kInt4Offset;
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

}  // namespace

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
        with_bits(bits, [&](auto b) {
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
