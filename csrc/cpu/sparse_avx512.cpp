// The sparsity kernels for AVX-512 (F, BW, VL, DQ) with FMA and F16C; used only when the CPU
// reports all of them (quant.cpp chooses the instruction set for both kernel families).
//
// A group of 4 float32 is one 128-bit lane and a group of 4 16-bit values one 64-bit lane,
// so in-lane shuffles (vpshufd) or 64-bit rotates (vprorq) line each element up with the
// other three of its group; three compares per rotation give the 2:4 pattern as mask bits.
// Compress and decompress are vpcompressd / vpexpandd under that mask; the matmul reads
// meta as 2-bit positions and gathers x with one two-source permute (vpermt2ps) per 16
// weights.
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

namespace greenai::cpu {
namespace {

struct Avx512Sparse {
    // Lanes whose rotation-r partner has a lower index within the group (it wins ties).
    static constexpr __mmask16 kLow32[4] = {0, 0x8888, 0xCCCC, 0xEEEE};
    static constexpr __mmask32 kLow16[4] = {0, 0x88888888u, 0xCCCCCCCCu, 0xEEEEEEEEu};

    // The kept pattern of 16 float32 (4 groups) as mask bits.
    GREENAI_TARGET static __mmask16 keep32(__m512i bits) {
        const __m512i key = _mm512_min_epu32(_mm512_and_si512(bits, _mm512_set1_epi32(0x7FFFFFFF)),
                                             _mm512_set1_epi32(static_cast<int>(kNanKey32)));
        const __m512i r1 = _mm512_shuffle_epi32(key, static_cast<_MM_PERM_ENUM>(0x39));  // (i + 1) % 4
        const __m512i r2 = _mm512_shuffle_epi32(key, static_cast<_MM_PERM_ENUM>(0x4E));  // (i + 2) % 4
        const __m512i r3 = _mm512_shuffle_epi32(key, static_cast<_MM_PERM_ENUM>(0x93));  // (i + 3) % 4
        const __mmask16 b1 = _mm512_mask_cmpge_epi32_mask(kLow32[1], r1, key) |
                             _mm512_mask_cmpgt_epi32_mask(static_cast<__mmask16>(~kLow32[1]), r1, key);
        const __mmask16 b2 = _mm512_mask_cmpge_epi32_mask(kLow32[2], r2, key) |
                             _mm512_mask_cmpgt_epi32_mask(static_cast<__mmask16>(~kLow32[2]), r2, key);
        const __mmask16 b3 = _mm512_mask_cmpge_epi32_mask(kLow32[3], r3, key) |
                             _mm512_mask_cmpgt_epi32_mask(static_cast<__mmask16>(~kLow32[3]), r3, key);
        return static_cast<__mmask16>(~((b1 & b2) | (b1 & b3) | (b2 & b3)));
    }

    // The kept pattern of 32 16-bit values (8 groups).
    GREENAI_TARGET static __mmask32 keep16(__m512i bits, std::uint32_t nan_key) {
        const __m512i key = _mm512_min_epu16(_mm512_and_si512(bits, _mm512_set1_epi16(0x7FFF)),
                                             _mm512_set1_epi16(static_cast<short>(nan_key)));
        const __m512i r1 = _mm512_ror_epi64(key, 16);
        const __m512i r2 = _mm512_ror_epi64(key, 32);
        const __m512i r3 = _mm512_ror_epi64(key, 48);
        const __mmask32 b1 = _mm512_mask_cmpge_epi16_mask(kLow16[1], r1, key) |
                             _mm512_mask_cmpgt_epi16_mask(~kLow16[1], r1, key);
        const __mmask32 b2 = _mm512_mask_cmpge_epi16_mask(kLow16[2], r2, key) |
                             _mm512_mask_cmpgt_epi16_mask(~kLow16[2], r2, key);
        const __mmask32 b3 = _mm512_mask_cmpge_epi16_mask(kLow16[3], r3, key) |
                             _mm512_mask_cmpgt_epi16_mask(~kLow16[3], r3, key);
        return ~((b1 & b2) | (b1 & b3) | (b2 & b3));
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

    GREENAI_TARGET static std::int64_t compress16(const std::uint16_t* w, std::int64_t len, std::uint32_t nan_key,
                                                  std::uint16_t* values, std::uint8_t* meta) {
        std::int64_t i = 0;
        for (; i + 32 <= len; i += 32) {
            const __m512i bits = _mm512_loadu_si512(w + i);
            const __mmask32 kept = keep16(bits, nan_key);
            const __mmask16 lo = static_cast<__mmask16>(kept), hi = static_cast<__mmask16>(kept >> 16);
            // vpcompressw needs AVX512_VBMI2, which the dispatch does not require: compress
            // through 32-bit lanes instead.
            const __m256i vlo = _mm512_cvtepi32_epi16(
                _mm512_maskz_compress_epi32(lo, _mm512_cvtepu16_epi32(_mm512_castsi512_si256(bits))));
            const __m256i vhi = _mm512_cvtepi32_epi16(
                _mm512_maskz_compress_epi32(hi, _mm512_cvtepu16_epi32(_mm512_extracti64x4_epi64(bits, 1))));
            _mm_storeu_si128(reinterpret_cast<__m128i*>(values + i / 2), _mm256_castsi256_si128(vlo));
            _mm_storeu_si128(reinterpret_cast<__m128i*>(values + i / 2 + 8), _mm256_castsi256_si128(vhi));
            for (int b = 0; b < 4; ++b) {
                meta[i / 8 + b] = kBytes.meta_of_kept[(kept >> (8 * b)) & 0xFF];
            }
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

    GREENAI_TARGET static std::int64_t decompress16(const std::uint16_t* values, const std::uint8_t* meta,
                                                    std::int64_t len, std::uint16_t* dense) {
        std::int64_t i = 0;
        for (; i + 32 <= len; i += 32) {
            unsigned t[4], any = 0;
            for (int b = 0; b < 4; ++b) {
                t[b] = kBytes.kept_of_meta[meta[i / 8 + b]];
                any |= t[b];
            }
            if (any & 0x100u) {
                for (std::int64_t g = i / 4; g < i / 4 + 8; ++g) {
                    decompress_group(values, meta, g, dense);
                }
                continue;
            }
            for (int h = 0; h < 2; ++h) {
                const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(values + i / 2 + 8 * h));
                const __m512i wide = _mm512_cvtepu16_epi32(_mm256_zextsi128_si256(v));
                const __mmask16 kept = static_cast<__mmask16>(t[2 * h] | (t[2 * h + 1] << 8));
                _mm256_storeu_si256(reinterpret_cast<__m256i*>(dense + i + 16 * h),
                                    _mm512_cvtepi32_epi16(_mm512_maskz_expand_epi32(kept, wide)));
            }
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

}  // namespace

const SparseKernelTable kAvx512Sparse = SparseKernels<Avx512Sparse>::table("avx512");
}  // namespace greenai::cpu

#endif  // GREENAI_X86_KERNELS
