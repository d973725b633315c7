// The quantization kernels for AVX2 with FMA and F16C (x86-64 CPUs since about 2013).
#include "cpu/quant_kernels.h"

#ifdef GREENAI_X86_KERNELS

#include <immintrin.h>

#define GREENAI_TARGET __attribute__((target("avx2,fma,f16c")))

namespace greenai::cpu {
namespace {

struct Avx2 {
    using F = __m256;
    static constexpr int W = 8;
    static constexpr int MV = 2;  // fp32 micro-kernel: 2 x 6 accumulators of 16 registers
    static constexpr int NR = 6;

    GREENAI_TARGET static F zero() { return _mm256_setzero_ps(); }
    GREENAI_TARGET static F set1(float v) { return _mm256_set1_ps(v); }
    GREENAI_TARGET static F add(F a, F b) { return _mm256_add_ps(a, b); }
    GREENAI_TARGET static F sub(F a, F b) { return _mm256_sub_ps(a, b); }
    GREENAI_TARGET static F mul(F a, F b) { return _mm256_mul_ps(a, b); }
    GREENAI_TARGET static F fma(F a, F b, F c) { return _mm256_fmadd_ps(a, b, c); }
    GREENAI_TARGET static F min(F a, F b) { return _mm256_min_ps(a, b); }
    GREENAI_TARGET static F max(F a, F b) { return _mm256_max_ps(a, b); }
    GREENAI_TARGET static F rne(F a) { return _mm256_round_ps(a, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }
    GREENAI_TARGET static __m128 half(F a, __m128 (*op)(__m128, __m128)) {
        __m128 v = op(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
        v = op(v, _mm_movehl_ps(v, v));
        return op(v, _mm_shuffle_ps(v, v, 1));
    }
    GREENAI_TARGET static __m128 add4(__m128 a, __m128 b) { return _mm_add_ps(a, b); }
    GREENAI_TARGET static __m128 min4(__m128 a, __m128 b) { return _mm_min_ps(a, b); }
    GREENAI_TARGET static __m128 max4(__m128 a, __m128 b) { return _mm_max_ps(a, b); }
    GREENAI_TARGET static float hsum(F a) { return _mm_cvtss_f32(half(a, add4)); }
    GREENAI_TARGET static float hmin(F a) { return _mm_cvtss_f32(half(a, min4)); }
    GREENAI_TARGET static float hmax(F a) { return _mm_cvtss_f32(half(a, max4)); }

    GREENAI_TARGET static F load_f32(const float* p) { return _mm256_loadu_ps(p); }
    GREENAI_TARGET static F load_f16(const std::uint16_t* p) {
        return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
    }
    GREENAI_TARGET static F load_bf16(const std::uint16_t* p) {
        const __m256i wide = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
        return _mm256_castsi256_ps(_mm256_slli_epi32(wide, 16));
    }
    GREENAI_TARGET static F load_i8(const std::int8_t* p) {
        return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p))));
    }
    GREENAI_TARGET static void u4_block(const std::uint8_t* p, F* out) {
        const __m256i low = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p)));
        const __m256i high = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p + 8)));
        const __m256i mask = _mm256_set1_epi32(0x0F);
        out[0] = _mm256_cvtepi32_ps(_mm256_and_si256(low, mask));   // elements 0..7
        out[1] = _mm256_cvtepi32_ps(_mm256_and_si256(high, mask));  // 8..15
        out[2] = _mm256_cvtepi32_ps(_mm256_srli_epi32(low, 4));     // 16..23
        out[3] = _mm256_cvtepi32_ps(_mm256_srli_epi32(high, 4));    // 24..31
    }

    GREENAI_TARGET static void store_f32(float* p, F v) { _mm256_storeu_ps(p, v); }
    GREENAI_TARGET static void store_f16(std::uint16_t* p, F v) {
        _mm_storeu_si128(reinterpret_cast<__m128i*>(p), _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    }
    GREENAI_TARGET static __m128i narrow_u16(__m256i v) {  // 8 values in [0, 65535]
        return _mm_packus_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    }
    GREENAI_TARGET static void store_bf16(std::uint16_t* p, F v) {
        const __m256i u = _mm256_castps_si256(v);
        const __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(1));
        const __m256i rounded = _mm256_srli_epi32(_mm256_add_epi32(_mm256_add_epi32(u, _mm256_set1_epi32(0x7FFF)), lsb), 16);
        const __m256i quiet = _mm256_or_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(0x40));
        const __m256i nan = _mm256_castps_si256(_mm256_cmp_ps(v, v, _CMP_UNORD_Q));
        _mm_storeu_si128(reinterpret_cast<__m128i*>(p), narrow_u16(_mm256_blendv_epi8(rounded, quiet, nan)));
    }
    GREENAI_TARGET static F max_abs_bits(F acc, F v) {
        const __m256i mag = _mm256_and_si256(_mm256_castps_si256(v), _mm256_set1_epi32(0x7FFFFFFF));
        return _mm256_castsi256_ps(_mm256_max_epu32(_mm256_castps_si256(acc), mag));
    }
    GREENAI_TARGET static std::uint32_t hmax_bits(F a) {
        const __m256i u = _mm256_castps_si256(a);
        __m128i m = _mm_max_epu32(_mm256_castsi256_si128(u), _mm256_extracti128_si256(u, 1));
        m = _mm_max_epu32(m, _mm_shuffle_epi32(m, 0x4E));
        m = _mm_max_epu32(m, _mm_shuffle_epi32(m, 0xB1));
        return static_cast<std::uint32_t>(_mm_cvtsi128_si32(m));
    }
    GREENAI_TARGET static void store_i8_rne(std::int8_t* p, F v, std::int32_t zp) {
        const __m256i c = _mm256_add_epi32(
            _mm256_cvtps_epi32(_mm256_round_ps(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)), _mm256_set1_epi32(zp));
        const __m128i words = _mm_packs_epi32(_mm256_castsi256_si128(c), _mm256_extracti128_si256(c, 1));
        _mm_storel_epi64(reinterpret_cast<__m128i*>(p), _mm_packs_epi16(words, words));
    }
    GREENAI_TARGET static void store_i8(std::int8_t* p, F v) {
        const __m256i i = _mm256_cvtps_epi32(v);
        const __m128i words = _mm_packs_epi32(_mm256_castsi256_si128(i), _mm256_extracti128_si256(i, 1));
        _mm_storel_epi64(reinterpret_cast<__m128i*>(p), _mm_packs_epi16(words, words));
    }
    GREENAI_TARGET static void store_u8(std::uint8_t* p, F v) {
        const __m128i words = narrow_u16(_mm256_cvtps_epi32(v));
        _mm_storel_epi64(reinterpret_cast<__m128i*>(p), _mm_packus_epi16(words, words));
    }
};

}  // namespace
}  // namespace greenai::cpu

#include "cpu/quant_kernels_impl.h"

namespace greenai::cpu {
const KernelTable kAvx2Kernels = Kernels<Avx2>::table("avx2");
}  // namespace greenai::cpu

#endif  // GREENAI_X86_KERNELS
