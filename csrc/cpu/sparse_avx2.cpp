// The sparsity kernels for AVX2 with FMA and F16C (no AVX-512 instruction anywhere in this
// file: it is the build for CPUs without AVX-512). The norms are the scalar code of
// sparse_kernels_impl.h, which the compiler vectorises; the 2:4 kernels are written here.
//
// A group of 4 float32 is one 128-bit lane and a group of 4 16-bit values one 64-bit
// quarter, so in-lane shuffles (vpshufd, vpshufb) line each element up with the other three
// of its group. AVX2 has only signed "greater than" compares; keys fit in 31 (15) bits, so
// "partner >= key" is "partner > key - 1". Three compares per element give the number of
// its group's elements that beat it, and it is kept when fewer than two do.
//
// Without AVX-512's compress / expand, the kept values move with byte shuffles (vpshufb) or
// 32-bit permutes (vpermd) whose controls come from small tables indexed by the kept
// pattern or the meta byte of two groups. The decompress tables encode decompress_group's
// rule for every byte, nibbles outside the format included, so decompress needs no
// fallback. The matmul gathers x by the meta's 2-bit positions with one vpermps per 8
// weights and half of x's 8 values, like the AVX-512 kernel's vpermt2ps.
#include "cpu/sparse_kernels.h"

#ifdef GREENAI_X86_KERNELS

#include <immintrin.h>

#define GREENAI_TARGET __attribute__((target("avx2,fma,f16c")))

#include "cpu/sparse_kernels_impl.h"
#include "cpu/sparse_shuffle_tables.h"

namespace greenai::cpu {
namespace {

GREENAI_TARGET inline __m128i load128(const void* p) { return _mm_loadu_si128(static_cast<const __m128i*>(p)); }
GREENAI_TARGET inline __m256i load256(const void* p) { return _mm256_loadu_si256(static_cast<const __m256i*>(p)); }
// 16 bytes at lo in the low 128-bit lane, 16 at hi in the high one.
GREENAI_TARGET inline __m256i load2x128(const void* lo, const void* hi) {
    return _mm256_inserti128_si256(_mm256_castsi128_si256(load128(lo)), load128(hi), 1);
}

struct Avx2Sparse {
    // The kept pattern of 8 float32 (2 groups): all-ones lanes where kept.
    GREENAI_TARGET static __m256i keep32(__m256i bits) {
        const __m256i key = _mm256_min_epu32(_mm256_and_si256(bits, _mm256_set1_epi32(0x7FFFFFFF)),
                                             _mm256_set1_epi32(static_cast<int>(kNanKeyF32)));
        const __m256i r1 = _mm256_shuffle_epi32(key, 0x39);  // (i + 1) % 4
        const __m256i r2 = _mm256_shuffle_epi32(key, 0x4E);  // (i + 2) % 4
        const __m256i r3 = _mm256_shuffle_epi32(key, 0x93);  // (i + 3) % 4
        // Lanes whose rotation-r partner has a lower index (it wins ties) compare with key - 1.
        const __m256i b1 = _mm256_cmpgt_epi32(r1, _mm256_sub_epi32(key, _mm256_setr_epi32(0, 0, 0, 1, 0, 0, 0, 1)));
        const __m256i b2 = _mm256_cmpgt_epi32(r2, _mm256_sub_epi32(key, _mm256_setr_epi32(0, 0, 1, 1, 0, 0, 1, 1)));
        const __m256i b3 = _mm256_cmpgt_epi32(r3, _mm256_sub_epi32(key, _mm256_setr_epi32(0, 1, 1, 1, 0, 1, 1, 1)));
        // b1 + b2 + b3 is minus the number of elements that beat this one
        return _mm256_cmpgt_epi32(_mm256_add_epi32(_mm256_add_epi32(b1, b2), b3), _mm256_set1_epi32(-2));
    }

    // The kept pattern of 16 16-bit values (4 groups): all-ones lanes where kept.
    GREENAI_TARGET static __m256i keep16(__m256i bits, std::uint32_t nan_key) {
        const __m256i key = _mm256_min_epu16(_mm256_and_si256(bits, _mm256_set1_epi16(0x7FFF)),
                                             _mm256_set1_epi16(static_cast<short>(nan_key)));
        // rotations within each 64-bit group: element i takes element (i + r) % 4
        const __m256i rot1 = _mm256_setr_epi8(2, 3, 4, 5, 6, 7, 0, 1, 10, 11, 12, 13, 14, 15, 8, 9,  //
                                              2, 3, 4, 5, 6, 7, 0, 1, 10, 11, 12, 13, 14, 15, 8, 9);
        const __m256i rot2 = _mm256_setr_epi8(4, 5, 6, 7, 0, 1, 2, 3, 12, 13, 14, 15, 8, 9, 10, 11,  //
                                              4, 5, 6, 7, 0, 1, 2, 3, 12, 13, 14, 15, 8, 9, 10, 11);
        const __m256i rot3 = _mm256_setr_epi8(6, 7, 0, 1, 2, 3, 4, 5, 14, 15, 8, 9, 10, 11, 12, 13,  //
                                              6, 7, 0, 1, 2, 3, 4, 5, 14, 15, 8, 9, 10, 11, 12, 13);
        const __m256i low1 = _mm256_set1_epi64x(0x0001000000000000LL);
        const __m256i low2 = _mm256_set1_epi64x(0x0001000100000000LL);
        const __m256i low3 = _mm256_set1_epi64x(0x0001000100010000LL);
        const __m256i b1 = _mm256_cmpgt_epi16(_mm256_shuffle_epi8(key, rot1), _mm256_sub_epi16(key, low1));
        const __m256i b2 = _mm256_cmpgt_epi16(_mm256_shuffle_epi8(key, rot2), _mm256_sub_epi16(key, low2));
        const __m256i b3 = _mm256_cmpgt_epi16(_mm256_shuffle_epi8(key, rot3), _mm256_sub_epi16(key, low3));
        return _mm256_cmpgt_epi16(_mm256_add_epi16(_mm256_add_epi16(b1, b2), b3), _mm256_set1_epi16(-2));
    }

    GREENAI_TARGET static std::int64_t mask32(const std::uint32_t* w, std::int64_t len, std::uint8_t* out) {
        const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
        std::int64_t i = 0;
        for (; i + 32 <= len; i += 32) {
            const __m256i k0 = keep32(load256(w + i));
            const __m256i k1 = keep32(load256(w + i + 8));
            const __m256i k2 = keep32(load256(w + i + 16));
            const __m256i k3 = keep32(load256(w + i + 24));
            // packs interleave the 128-bit lanes: 4-byte runs come out as k0 k1 k2 k3 of lane
            // 0, then of lane 1; vpermd puts them back in order
            const __m256i bytes = _mm256_packs_epi16(_mm256_packs_epi32(k0, k1), _mm256_packs_epi32(k2, k3));
            const __m256i ordered = _mm256_permutevar8x32_epi32(bytes, order);
            _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + i), _mm256_abs_epi8(ordered));
        }
        for (; i + 8 <= len; i += 8) {
            const __m256i kept = keep32(load256(w + i));
            const __m128i b16 = _mm_packs_epi32(_mm256_castsi256_si128(kept), _mm256_extracti128_si256(kept, 1));
            _mm_storel_epi64(reinterpret_cast<__m128i*>(out + i), _mm_abs_epi8(_mm_packs_epi16(b16, b16)));
        }
        return i;
    }

    GREENAI_TARGET static std::int64_t mask16(const std::uint16_t* w, std::int64_t len, std::uint32_t nan_key,
                                              std::uint8_t* out) {
        std::int64_t i = 0;
        for (; i + 32 <= len; i += 32) {
            const __m256i k0 = keep16(load256(w + i), nan_key);
            const __m256i k1 = keep16(load256(w + i + 16), nan_key);
            const __m256i bytes = _mm256_permute4x64_epi64(_mm256_packs_epi16(k0, k1), 0xD8);
            _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + i), _mm256_abs_epi8(bytes));
        }
        for (; i + 16 <= len; i += 16) {
            const __m256i kept = keep16(load256(w + i), nan_key);
            const __m128i bytes = _mm_packs_epi16(_mm256_castsi256_si128(kept), _mm256_extracti128_si256(kept, 1));
            _mm_storeu_si128(reinterpret_cast<__m128i*>(out + i), _mm_abs_epi8(bytes));
        }
        return i;
    }

    GREENAI_TARGET static std::int64_t compress32(const std::uint32_t* w, std::int64_t len, std::uint32_t* values,
                                                  std::uint8_t* meta) {
        std::int64_t i = 0;
        for (; i + 16 <= len; i += 16) {
            const __m256i a = load256(w + i);
            const __m256i b = load256(w + i + 8);
            const unsigned ka = static_cast<unsigned>(_mm256_movemask_ps(_mm256_castsi256_ps(keep32(a))));
            const unsigned kb = static_cast<unsigned>(_mm256_movemask_ps(_mm256_castsi256_ps(keep32(b))));
            const __m256i ia = _mm256_castsi128_si256(load128(kShuffles.compress32[ka]));
            const __m256i ib = _mm256_castsi128_si256(load128(kShuffles.compress32[kb]));
            const __m256i va = _mm256_permutevar8x32_epi32(a, ia), vb = _mm256_permutevar8x32_epi32(b, ib);
            _mm256_storeu_si256(reinterpret_cast<__m256i*>(values + i / 2),
                                _mm256_inserti128_si256(va, _mm256_castsi256_si128(vb), 1));
            meta[i / 8] = kBytes.meta_of_kept[ka];
            meta[i / 8 + 1] = kBytes.meta_of_kept[kb];
        }
        if (i + 8 <= len) {  // len is a multiple of 8: at most one more meta byte
            const __m256i a = load256(w + i);
            const unsigned ka = static_cast<unsigned>(_mm256_movemask_ps(_mm256_castsi256_ps(keep32(a))));
            const __m256i ia = _mm256_castsi128_si256(load128(kShuffles.compress32[ka]));
            _mm_storeu_si128(reinterpret_cast<__m128i*>(values + i / 2),
                             _mm256_castsi256_si128(_mm256_permutevar8x32_epi32(a, ia)));
            meta[i / 8] = kBytes.meta_of_kept[ka];
            i += 8;
        }
        return i;
    }

    GREENAI_TARGET static std::int64_t compress16(const std::uint16_t* w, std::int64_t len, std::uint32_t nan_key,
                                                  std::uint16_t* values, std::uint8_t* meta) {
        std::int64_t i = 0;
        for (; i + 32 <= len; i += 32) {
            const __m256i a = load256(w + i);
            const __m256i b = load256(w + i + 16);
            // bytes: a 0-7, b 0-7 (lane 0), a 8-15, b 8-15 (lane 1); one bit each
            const auto kept = static_cast<std::uint32_t>(
                _mm256_movemask_epi8(_mm256_packs_epi16(keep16(a, nan_key), keep16(b, nan_key))));
            const unsigned a0 = kept & 0xFF, b0 = (kept >> 8) & 0xFF, a1 = (kept >> 16) & 0xFF, b1 = kept >> 24;
            // each vector's 8 kept values in the low halves of its two lanes
            const __m256i va = _mm256_shuffle_epi8(a, load2x128(kShuffles.compress16[a0], kShuffles.compress16[a1]));
            const __m256i vb = _mm256_shuffle_epi8(b, load2x128(kShuffles.compress16[b0], kShuffles.compress16[b1]));
            // 64-bit quarters va0 vb0 va2 vb2 -> va0 va2 vb0 vb2
            _mm256_storeu_si256(reinterpret_cast<__m256i*>(values + i / 2),
                                _mm256_permute4x64_epi64(_mm256_unpacklo_epi64(va, vb), 0xD8));
            meta[i / 8] = kBytes.meta_of_kept[a0];
            meta[i / 8 + 1] = kBytes.meta_of_kept[a1];
            meta[i / 8 + 2] = kBytes.meta_of_kept[b0];
            meta[i / 8 + 3] = kBytes.meta_of_kept[b1];
        }
        for (; i + 16 <= len; i += 16) {
            const __m256i a = load256(w + i);
            const __m256i k = keep16(a, nan_key);
            const auto kept = static_cast<std::uint32_t>(_mm256_movemask_epi8(_mm256_packs_epi16(k, k)));
            const unsigned a0 = kept & 0xFF, a1 = (kept >> 16) & 0xFF;
            const __m256i va = _mm256_shuffle_epi8(a, load2x128(kShuffles.compress16[a0], kShuffles.compress16[a1]));
            _mm_storeu_si128(reinterpret_cast<__m128i*>(values + i / 2),
                             _mm256_castsi256_si128(_mm256_permute4x64_epi64(va, 0x08)));
            meta[i / 8] = kBytes.meta_of_kept[a0];
            meta[i / 8 + 1] = kBytes.meta_of_kept[a1];
        }
        return i;  // a remaining group pair (len % 16 == 8) is left to the scalar code
    }

    GREENAI_TARGET static std::int64_t decompress32(const std::uint32_t* values, const std::uint8_t* meta,
                                                    std::int64_t len, std::uint32_t* dense) {
        std::int64_t i = 0;
        for (; i + 8 <= len; i += 8) {
            const __m256i v = _mm256_broadcastsi128_si256(load128(values + i / 2));
            const __m256i control = load256(kShuffles.decompress32[meta[i / 8]]);
            _mm256_storeu_si256(reinterpret_cast<__m256i*>(dense + i), _mm256_shuffle_epi8(v, control));
        }
        return i;
    }

    GREENAI_TARGET static std::int64_t decompress16(const std::uint16_t* values, const std::uint8_t* meta,
                                                    std::int64_t len, std::uint16_t* dense) {
        const __m256i upper = _mm256_setr_epi64x(0, 0, 0x0808080808080808LL, 0x0808080808080808LL);
        std::int64_t i = 0;
        for (; i + 16 <= len; i += 16) {
            const __m256i v = _mm256_broadcastsi128_si256(load128(values + i / 2));
            const __m256i control = load2x128(kShuffles.decompress16[meta[i / 8]], kShuffles.decompress16[meta[i / 8 + 1]]);
            // lane 1 reads values 4-7 (bytes 8-15); 0x80 + 8 still writes zero
            _mm256_storeu_si256(reinterpret_cast<__m256i*>(dense + i),
                                _mm256_shuffle_epi8(v, _mm256_add_epi8(control, upper)));
        }
        return i;  // a remaining meta byte (len % 16 == 8) is left to the scalar code
    }

    // 8 weights from index j of a compressed row, as float32.
    template <FloatType DT>
    GREENAI_TARGET static __m256 load8(const void* values, std::int64_t j) {
        if constexpr (DT == FloatType::f32) {
            return _mm256_loadu_ps(static_cast<const float*>(values) + j);
        } else {
            const __m128i h = load128(static_cast<const std::uint16_t*>(values) + j);
            if constexpr (DT == FloatType::f16) {
                return _mm256_cvtph_ps(h);
            } else {
                return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
            }
        }
    }

    // One step of dot: dense elements [e, e + 16) (4 groups, 8 weights, 2 meta bytes). The 2
    // meta bytes are the 2-bit positions of the 8 weights: weights 0-3 read x[e, e + 8) and
    // weights 4-7 read x[e + 8, e + 16), each through one vpermps with the same indices.
    template <int M, FloatType DT>
    GREENAI_TARGET static void dot_step(const float* x, std::int64_t k, const void* values, const std::uint8_t* meta,
                                        std::int64_t e, __m256* acc) {
        const __m256i shifts = _mm256_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14);
        const __m256i base = _mm256_setr_epi32(0, 0, 4, 4, 0, 0, 4, 4);
        std::uint16_t m16;
        std::memcpy(&m16, meta + e / 8, sizeof m16);
        const __m256i pos = _mm256_and_si256(_mm256_srlv_epi32(_mm256_set1_epi32(m16), shifts), _mm256_set1_epi32(3));
        const __m256i idx = _mm256_add_epi32(pos, base);
        const __m256 v = load8<DT>(values, e / 2);
        for (int mi = 0; mi < M; ++mi) {
            const __m256 lo = _mm256_permutevar8x32_ps(_mm256_loadu_ps(x + mi * k + e), idx);
            const __m256 hi = _mm256_permutevar8x32_ps(_mm256_loadu_ps(x + mi * k + e + 8), idx);
            acc[mi] = _mm256_fmadd_ps(v, _mm256_blend_ps(lo, hi, 0xF0), acc[mi]);
        }
    }

    GREENAI_TARGET static float hsum(__m256 v) {
        __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
        s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        s = _mm_add_ss(s, _mm_movehdup_ps(s));
        return _mm_cvtss_f32(s);
    }

    template <int M, FloatType DT>
    GREENAI_TARGET static std::int64_t dot(const float* x, std::int64_t k, const void* values,
                                           const std::uint8_t* meta, float* sums) {
        // two accumulator chains while 2M registers leave room for the operands
        constexpr int kChains = M <= 4 ? 2 : 1;
        __m256 acc[kChains][M];
        for (int c = 0; c < kChains; ++c) {
            for (int mi = 0; mi < M; ++mi) {
                acc[c][mi] = _mm256_setzero_ps();
            }
        }
        std::int64_t i = 0;
        for (; i + 16 * kChains <= k; i += 16 * kChains) {
            for (int c = 0; c < kChains; ++c) {
                dot_step<M, DT>(x, k, values, meta, i + 16 * c, acc[c]);
            }
        }
        if (i + 16 <= k) {
            dot_step<M, DT>(x, k, values, meta, i, acc[0]);
            i += 16;
        }
        for (int mi = 0; mi < M; ++mi) {
            __m256 s = acc[0][mi];
            for (int c = 1; c < kChains; ++c) {
                s = _mm256_add_ps(s, acc[c][mi]);
            }
            sums[mi] = hsum(s);
        }
        return i;
    }
};

}  // namespace

const SparseKernelTable kAvx2Sparse = SparseKernels<Avx2Sparse>::table("avx2");
}  // namespace greenai::cpu

#endif  // GREENAI_X86_KERNELS
