// The sparsity kernels for AVX-512 (F, BW, VL, DQ) with FMA and F16C; used only when the CPU
// reports all of them (quant.cpp chooses the instruction set for both kernel families).
//
// A group of 4 float32 is one 128-bit lane and a group of 4 16-bit values one 64-bit lane,
// so in-lane shuffles (vpshufd) or 64-bit rotates (vprorq) line each element up with the
// other three of its group; one subtraction per rotation and a majority of their signs
// (vpternlog) give the 2:4 pattern as mask bits. float32 compress and decompress are
// vpcompressd / vpexpandd under that mask; 16-bit ones move values with the byte shuffles
// (vpshufb) of sparse_shuffle_tables.h, four table rows per vector, never widening to 32
// bits. The matmul reads meta as 2-bit positions and gathers x with one two-source permute
// (vpermt2ps) per 16 weights.
#include "cpu/sparse_kernels.h"

#ifdef GREENAI_X86_KERNELS

// GCC 12's AVX-512 headers trip -Wmaybe-uninitialized and -Wuninitialized (inside
// _mm512_reduce_add_ps) on their own _mm*_undefined_*() placeholders (GCC bug 105593); the
// warnings say nothing about this file.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif
#include <immintrin.h>

#define GREENAI_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")))

#include "cpu/sparse_kernels_impl.h"
#include "cpu/sparse_shuffle_tables.h"

namespace greenai::cpu {
namespace {

// Four 16-byte table rows, one per 128-bit lane (lane 0 first).
GREENAI_TARGET inline __m512i lanes4(const void* r0, const void* r1, const void* r2, const void* r3) {
    const auto row = [](const void* p) { return _mm_loadu_si128(static_cast<const __m128i*>(p)); };
    __m512i v = _mm512_castsi128_si512(row(r0));
    v = _mm512_inserti32x4(v, row(r1), 1);
    v = _mm512_inserti32x4(v, row(r2), 2);
    return _mm512_inserti32x4(v, row(r3), 3);
}

struct Avx512Sparse {
    // Rotation r lines element i up with element (i + r) % 4 of its group, which beats it when
    // its key is larger, or equal with a lower index (the lanes where low_r is 1): when
    // key - low_r - partner is negative (keys fit in 31 / 15 bits, so this never wraps). An
    // element is dropped when at least two partners beat it: the majority (vpternlog 0xE8)
    // of the three signs, read out with one vpmovd2m / vpmovw2m.

    // The kept pattern of 16 float32 (4 groups) as mask bits.
    GREENAI_TARGET static __mmask16 keep32(__m512i bits) {
        const __m512i key = _mm512_min_epu32(_mm512_and_si512(bits, _mm512_set1_epi32(0x7FFFFFFF)),
                                             _mm512_set1_epi32(static_cast<int>(kNanKeyF32)));
        const __m512i low1 = _mm512_set4_epi32(1, 0, 0, 0);  // set4 lists lanes 3 2 1 0
        const __m512i low2 = _mm512_set4_epi32(1, 1, 0, 0);
        const __m512i low3 = _mm512_set4_epi32(1, 1, 1, 0);
        const __m512i r1 = _mm512_shuffle_epi32(key, static_cast<_MM_PERM_ENUM>(0x39));  // (i + 1) % 4
        const __m512i r2 = _mm512_shuffle_epi32(key, static_cast<_MM_PERM_ENUM>(0x4E));  // (i + 2) % 4
        const __m512i r3 = _mm512_shuffle_epi32(key, static_cast<_MM_PERM_ENUM>(0x93));  // (i + 3) % 4
        const __m512i d1 = _mm512_sub_epi32(_mm512_sub_epi32(key, low1), r1);
        const __m512i d2 = _mm512_sub_epi32(_mm512_sub_epi32(key, low2), r2);
        const __m512i d3 = _mm512_sub_epi32(_mm512_sub_epi32(key, low3), r3);
        return static_cast<__mmask16>(~_mm512_movepi32_mask(_mm512_ternarylogic_epi32(d1, d2, d3, 0xE8)));
    }

    // The kept pattern of 32 16-bit values (8 groups).
    GREENAI_TARGET static __mmask32 keep16(__m512i bits, std::uint32_t nan_key) {
        const __m512i key = _mm512_min_epu16(_mm512_and_si512(bits, _mm512_set1_epi16(0x7FFF)),
                                             _mm512_set1_epi16(static_cast<short>(nan_key)));
        const __m512i low1 = _mm512_set1_epi64(0x0001000000000000LL);
        const __m512i low2 = _mm512_set1_epi64(0x0001000100000000LL);
        const __m512i low3 = _mm512_set1_epi64(0x0001000100010000LL);
        const __m512i d1 = _mm512_sub_epi16(_mm512_sub_epi16(key, low1), _mm512_ror_epi64(key, 16));
        const __m512i d2 = _mm512_sub_epi16(_mm512_sub_epi16(key, low2), _mm512_ror_epi64(key, 32));
        const __m512i d3 = _mm512_sub_epi16(_mm512_sub_epi16(key, low3), _mm512_ror_epi64(key, 48));
        return ~_mm512_movepi16_mask(_mm512_ternarylogic_epi32(d1, d2, d3, 0xE8));
    }

    GREENAI_TARGET static std::int64_t mask32(const std::uint32_t* w, std::int64_t len, std::uint8_t* out) {
        std::int64_t i = 0;
        for (; i + 16 <= len; i += 16) {
            const __mmask16 kept = keep32(_mm512_loadu_si512(w + i));
            _mm_storeu_si128(reinterpret_cast<__m128i*>(out + i), _mm_maskz_set1_epi8(kept, 1));
        }
        return i;
    }

    GREENAI_TARGET static std::int64_t mask16(const std::uint16_t* w, std::int64_t len, std::uint32_t nan_key,
                                              std::uint8_t* out) {
        std::int64_t i = 0;
        for (; i + 32 <= len; i += 32) {
            const __mmask32 kept = keep16(_mm512_loadu_si512(w + i), nan_key);
            _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + i), _mm256_maskz_set1_epi8(kept, 1));
        }
        return i;
    }

    GREENAI_TARGET static std::int64_t compress32(const std::uint32_t* w, std::int64_t len, std::uint32_t* values,
                                                  std::uint8_t* meta) {
        std::int64_t i = 0;
        for (; i + 16 <= len; i += 16) {
            const __m512i bits = _mm512_loadu_si512(w + i);
            const __mmask16 kept = keep32(bits);
            _mm256_storeu_si256(reinterpret_cast<__m256i*>(values + i / 2),
                                _mm512_castsi512_si256(_mm512_maskz_compress_epi32(kept, bits)));
            meta[i / 8] = kBytes.meta_of_kept[kept & 0xFF];
            meta[i / 8 + 1] = kBytes.meta_of_kept[kept >> 8];
        }
        return i;
    }

    // The 4 kept values of each 128-bit lane (8 elements, one kept byte) in its low 8 bytes.
    GREENAI_TARGET static __m512i pack_lanes16(__m512i bits, __mmask32 kept) {
        const auto& t = kShuffles.compress16;
        return _mm512_shuffle_epi8(bits, lanes4(t[kept & 0xFF], t[(kept >> 8) & 0xFF], t[(kept >> 16) & 0xFF],
                                                t[kept >> 24]));
    }

    GREENAI_TARGET static void meta16(__mmask32 kept, std::uint8_t* meta) {
        for (int b = 0; b < 4; ++b) {
            meta[b] = kBytes.meta_of_kept[(kept >> (8 * b)) & 0xFF];
        }
    }

    // In-lane byte shuffles (vpshufb) pack each 128-bit lane's kept values, one 64-bit permute
    // joins the lanes: no widening to 32 bits (vpcompressw would need AVX512_VBMI2).
    GREENAI_TARGET static std::int64_t compress16(const std::uint16_t* w, std::int64_t len, std::uint32_t nan_key,
                                                  std::uint16_t* values, std::uint8_t* meta) {
        const __m512i even = _mm512_setr_epi64(0, 2, 4, 6, 8, 10, 12, 14);
        std::int64_t i = 0;
        for (; i + 64 <= len; i += 64) {
            const __m512i a = _mm512_loadu_si512(w + i), b = _mm512_loadu_si512(w + i + 32);
            const __mmask32 ka = keep16(a, nan_key), kb = keep16(b, nan_key);
            const __m512i va = pack_lanes16(a, ka), vb = pack_lanes16(b, kb);
            _mm512_storeu_si512(values + i / 2, _mm512_permutex2var_epi64(va, even, vb));
            meta16(ka, meta + i / 8);
            meta16(kb, meta + i / 8 + 4);
        }
        for (; i + 32 <= len; i += 32) {
            const __m512i a = _mm512_loadu_si512(w + i);
            const __mmask32 ka = keep16(a, nan_key);
            _mm256_storeu_si256(reinterpret_cast<__m256i*>(values + i / 2),
                                _mm512_castsi512_si256(_mm512_permutexvar_epi64(even, pack_lanes16(a, ka))));
            meta16(ka, meta + i / 8);
        }
        return i;
    }

    GREENAI_TARGET static std::int64_t decompress32(const std::uint32_t* values, const std::uint8_t* meta,
                                                    std::int64_t len, std::uint32_t* dense) {
        std::int64_t i = 0;
        for (; i + 16 <= len; i += 16) {
            const unsigned t0 = kBytes.kept_of_meta[meta[i / 8]], t1 = kBytes.kept_of_meta[meta[i / 8 + 1]];
            if ((t0 | t1) & 0x100u) {  // a nibble outside the format: group by group
                for (std::int64_t g = i / 4; g < i / 4 + 4; ++g) {
                    decompress_group(values, meta, g, dense);
                }
                continue;
            }
            const __m512i v = _mm512_castsi256_si512(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(values + i / 2)));
            _mm512_storeu_si512(dense + i, _mm512_maskz_expand_epi32(static_cast<__mmask16>(t0 | (t1 << 8)), v));
        }
        return i;
    }

    // Lane j of 32 outputs is meta byte j's two groups, written by one vpshufb from the lane's
    // 4 values (one 64-bit permute spreads them); the tables define every byte, nibbles
    // outside the format included, so no byte needs the scalar code.
    GREENAI_TARGET static std::int64_t decompress16(const std::uint16_t* values, const std::uint8_t* meta,
                                                    std::int64_t len, std::uint16_t* dense) {
        const __m512i spread = _mm512_setr_epi64(0, 0, 1, 1, 2, 2, 3, 3);
        const auto& t = kShuffles.decompress16;
        std::int64_t i = 0;
        for (; i + 32 <= len; i += 32) {
            const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(values + i / 2));
            const std::uint8_t* m = meta + i / 8;
            const __m512i control = lanes4(t[m[0]], t[m[1]], t[m[2]], t[m[3]]);
            _mm512_storeu_si512(dense + i,
                                _mm512_shuffle_epi8(_mm512_permutexvar_epi64(spread, _mm512_castsi256_si512(v)), control));
        }
        return i;
    }

    // 16 weights from index j of a compressed row, as float32.
    template <FloatType DT>
    GREENAI_TARGET static __m512 load16(const void* values, std::int64_t j) {
        if constexpr (DT == FloatType::f32) {
            return _mm512_loadu_ps(static_cast<const float*>(values) + j);
        } else {
            const __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(static_cast<const std::uint16_t*>(values) + j));
            if constexpr (DT == FloatType::f16) {
                return _mm512_cvtph_ps(h);
            } else {
                return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
            }
        }
    }

    // One step of dot: dense elements [e, e + 32) (8 groups, 16 weights, 4 meta bytes). Read
    // as a little-endian bit stream the 4 meta bytes are the 2-bit positions of the 16 weights
    // in order, so weight j multiplies x[e + 4 * (j / 2) + ((meta >> 2j) & 3)]: one two-source
    // permute of the 32 x values.
    template <int M, FloatType DT>
    GREENAI_TARGET static void dot_step(const float* x, std::int64_t k, const void* values, const std::uint8_t* meta,
                                        std::int64_t e, __m512* acc) {
        const __m512i shifts = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
        const __m512i base = _mm512_setr_epi32(0, 0, 4, 4, 8, 8, 12, 12, 16, 16, 20, 20, 24, 24, 28, 28);
        std::uint32_t m32;
        std::memcpy(&m32, meta + e / 8, sizeof m32);
        const __m512i pos = _mm512_and_si512(_mm512_srlv_epi32(_mm512_set1_epi32(static_cast<int>(m32)), shifts),
                                             _mm512_set1_epi32(3));
        const __m512i idx = _mm512_add_epi32(pos, base);
        const __m512 v = load16<DT>(values, e / 2);
        for (int mi = 0; mi < M; ++mi) {
            const __m512 lo = _mm512_loadu_ps(x + mi * k + e), hi = _mm512_loadu_ps(x + mi * k + e + 16);
            acc[mi] = _mm512_fmadd_ps(v, _mm512_permutex2var_ps(lo, idx, hi), acc[mi]);
        }
    }

    template <int M, FloatType DT>
    GREENAI_TARGET static std::int64_t dot(const float* x, std::int64_t k, const void* values,
                                           const std::uint8_t* meta, float* sums) {
        __m512 acc0[M], acc1[M];
        for (int mi = 0; mi < M; ++mi) {
            acc0[mi] = acc1[mi] = _mm512_setzero_ps();
        }
        std::int64_t i = 0;
        for (; i + 64 <= k; i += 64) {
            dot_step<M, DT>(x, k, values, meta, i, acc0);
            dot_step<M, DT>(x, k, values, meta, i + 32, acc1);
        }
        if (i + 32 <= k) {
            dot_step<M, DT>(x, k, values, meta, i, acc0);
            i += 32;
        }
        for (int mi = 0; mi < M; ++mi) {
            sums[mi] = _mm512_reduce_add_ps(_mm512_add_ps(acc0[mi], acc1[mi]));
        }
        return i;
    }
};

// --- bfloat16 matmul with AVX512_BF16 ----------------------------------------------------------
// One 32-bit lane of a vector of values is a group's kept pair (v0, v1): vdpbf16ps multiplies
// it with the pair (x[4g + i0], x[4g + i1]) and adds both products to the lane's float32 sum,
// so 32 weights cost one two-source word permute of 64 x values (vpermt2w) and one vdpbf16ps
// per row of x, and x stays bfloat16. vdpbf16ps treats subnormal inputs and results as zero.

#define GREENAI_TARGET_BF16 \
    __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c,avx512bf16")))

struct Bf16Direct {
    static constexpr std::int64_t kPrefetchBytes = 16 * 1024;

    // Dense elements [e, e + 64) of M rows of x (16 groups, 32 weights, 8 meta bytes). Word j
    // of the permute reads x[e + 4 (j / 2) + p_j], p_j the 2-bit field j of the meta bytes read
    // as a little-endian bit stream; lane L (words 8L to 8L + 7) takes its fields from meta
    // bytes 2L and 2L + 1.
    template <int M>
    GREENAI_TARGET_BF16 static void step(const std::uint16_t* x, std::int64_t k, const std::uint16_t* values,
                                         const std::uint8_t* meta, std::int64_t e, __m512* acc) {
        const __m512i pick = _mm512_set_epi64(0x0706070607060706LL, 0x0706070607060706LL, 0x0504050405040504LL,
                                              0x0504050405040504LL, 0x0302030203020302LL, 0x0302030203020302LL,
                                              0x0100010001000100LL, 0x0100010001000100LL);
        const __m512i shifts = _mm512_set4_epi32(0x000E000C, 0x000A0008, 0x00060004, 0x00020000);
        const __m512i base = _mm512_set_epi16(60, 60, 56, 56, 52, 52, 48, 48, 44, 44, 40, 40, 36, 36, 32, 32,  //
                                              28, 28, 24, 24, 20, 20, 16, 16, 12, 12, 8, 8, 4, 4, 0, 0);
        std::uint64_t m64;
        std::memcpy(&m64, meta + e / 8, sizeof m64);
        const __m512i fields = _mm512_shuffle_epi8(_mm512_set1_epi64(static_cast<long long>(m64)), pick);
        const __m512i idx = _mm512_add_epi16(
            _mm512_and_si512(_mm512_srlv_epi16(fields, shifts), _mm512_set1_epi16(3)), base);
        const __m512i v = _mm512_loadu_si512(values + e / 2);
        // the weights stream from memory (rows are contiguous): one values line per step, and
        // the meta line of 8 steps, a fixed distance ahead across row ends
        _mm_prefetch(reinterpret_cast<const char*>(values + e / 2) + kPrefetchBytes, _MM_HINT_T0);
        _mm_prefetch(reinterpret_cast<const char*>(meta + e / 8) + kPrefetchBytes / 8, _MM_HINT_T0);
        for (int mi = 0; mi < M; ++mi) {
            const __m512i lo = _mm512_loadu_si512(x + mi * k + e), hi = _mm512_loadu_si512(x + mi * k + e + 32);
            acc[mi] = _mm512_dpbf16_ps(acc[mi], (__m512bh)v, (__m512bh)_mm512_permutex2var_epi16(lo, idx, hi));
        }
    }

    // Weight rows [n0, n1), at most kBlock of them, times M rows of x. k is walked in chunks
    // of 16 KiB of x (M rows of kChunk<M> elements), each for every weight row in turn, so the
    // chunk stays in L1: with whole rows (64 KiB at M = 8, k = 4096) x came from L2 for every
    // weight row, 16 lines per 32 weights, and that was the bottleneck. Per-row float32 sums
    // of the chunks wait in `part` (8 KiB at M = 8). At M <= 2 and k <= 8192 / M the chunk is
    // the whole row, so each weight row still streams in one sequential pass.
    static constexpr std::int64_t kBlock = SparseKernels<Avx512Sparse>::kWeightBlock;
    template <int M>
    static constexpr std::int64_t kChunk = 8192 / M / 64 * 64;

    template <int M>
    GREENAI_TARGET_BF16 static void rows(const Linear24Args& a, const std::uint16_t* x, float* y, std::int64_t n0,
                                         std::int64_t n1) {
        const std::int64_t k = a.k, meta_row = meta_row_bytes(k), body = k / 64 * 64;
        constexpr int kChains = M <= 4 ? 2 : 1;  // latency of vdpbf16ps: two chains for few rows
        __m512 part[kBlock][M];
        for (std::int64_t r = 0; r < n1 - n0; ++r) {
            for (int mi = 0; mi < M; ++mi) {
                part[r][mi] = _mm512_setzero_ps();
            }
        }
        for (std::int64_t c0 = 0; c0 < body; c0 += kChunk<M>) {
            const std::int64_t c1 = std::min(body, c0 + kChunk<M>);
            for (std::int64_t row = n0; row < n1; ++row) {
                const auto* values = static_cast<const std::uint16_t*>(a.values) + row * (k / 2);
                const std::uint8_t* meta = a.meta + row * meta_row;
                __m512 acc[kChains][M];
                for (int mi = 0; mi < M; ++mi) {
                    acc[0][mi] = part[row - n0][mi];
                    for (int c = 1; c < kChains; ++c) {
                        acc[c][mi] = _mm512_setzero_ps();
                    }
                }
                std::int64_t e = c0;
                for (; e + 128 <= c1; e += 128) {
                    step<M>(x, k, values, meta, e, acc[0]);
                    step<M>(x, k, values, meta, e + 64, acc[kChains - 1]);
                }
                if (e < c1) {
                    step<M>(x, k, values, meta, e, acc[0]);
                }
                for (int mi = 0; mi < M; ++mi) {
                    __m512 s = acc[0][mi];
                    for (int c = 1; c < kChains; ++c) {
                        s = _mm512_add_ps(s, acc[c][mi]);
                    }
                    part[row - n0][mi] = s;
                }
            }
        }
        for (std::int64_t row = n0; row < n1; ++row) {
            const auto* values = static_cast<const std::uint16_t*>(a.values) + row * (k / 2);
            const std::uint8_t* meta = a.meta + row * meta_row;
            float sums[M];
            for (int mi = 0; mi < M; ++mi) {
                sums[mi] = _mm512_reduce_add_ps(part[row - n0][mi]);
            }
            for (std::int64_t g = body / 4; g < k / 4; ++g) {
                const unsigned nib = (meta[g / 2] >> (4 * (g % 2))) & 15u;
                const float v0 = bf16_to_float(values[2 * g]), v1 = bf16_to_float(values[2 * g + 1]);
                for (int mi = 0; mi < M; ++mi) {
                    sums[mi] += v0 * bf16_to_float(x[mi * k + 4 * g + (nib & 3)]) +
                                v1 * bf16_to_float(x[mi * k + 4 * g + (nib >> 2)]);
                }
            }
            const float b = a.bias ? a.bias[row] : 0.0f;
            for (int mi = 0; mi < M; ++mi) {
                y[mi * a.n + row] = sums[mi] + b;
            }
        }
    }

    // Blocks of weight rows and of rows of x as in SparseKernels::linear_dt.
    GREENAI_TARGET_BF16 static void linear(const Linear24Args& a, float* y32, std::int64_t n0, std::int64_t n1) {
        const auto* x16 = static_cast<const std::uint16_t*>(a.x);
        for (std::int64_t r0 = n0; r0 < n1; r0 += kBlock) {
            const std::int64_t r1 = std::min(n1, r0 + kBlock);
            for (std::int64_t m0 = 0; m0 < a.m; m0 += kSparseDirectRows) {
                const std::uint16_t* x = x16 + m0 * a.k;
                float* y = y32 + m0 * a.n;
                switch (std::min(kSparseDirectRows, a.m - m0)) {
                    case 1: rows<1>(a, x, y, r0, r1); break;
                    case 2: rows<2>(a, x, y, r0, r1); break;
                    case 3: rows<3>(a, x, y, r0, r1); break;
                    case 4: rows<4>(a, x, y, r0, r1); break;
                    case 5: rows<5>(a, x, y, r0, r1); break;
                    case 6: rows<6>(a, x, y, r0, r1); break;
                    case 7: rows<7>(a, x, y, r0, r1); break;
                    default: rows<8>(a, x, y, r0, r1); break;
                }
            }
        }
    }
};

constexpr SparseKernelTable bf16_table() {
    SparseKernelTable t = SparseKernels<Avx512Sparse>::table("avx512_bf16");
    t.linear_bf16_rows = &Bf16Direct::linear;
    return t;
}

}  // namespace

const SparseKernelTable kAvx512Sparse = SparseKernels<Avx512Sparse>::table("avx512");
const SparseKernelTable kAvx512Bf16Sparse = bf16_table();
}  // namespace greenai::cpu

#endif  // GREENAI_X86_KERNELS
