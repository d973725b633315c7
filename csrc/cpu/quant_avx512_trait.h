// The AVX-512 trait of the quantization kernels (see quant_kernels_impl.h), shared by the
// AVX-512 file and the AVX-512 + BF16 one; each defines GREENAI_TARGET first, so each gets
// its own internal-linkage copy compiled for its instruction set.
#pragma once

#ifndef GREENAI_TARGET
#error "define GREENAI_TARGET before including quant_avx512_trait.h"
#endif

// GCC 12's AVX-512 headers trip -Wmaybe-uninitialized on their own _mm512_undefined_*()
// placeholders (GCC bug 105593); the warning says nothing about this code.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <immintrin.h>

#include <cstdint>

namespace greenai::cpu {
namespace {

struct Avx512 {
    using F = __m512;
    static constexpr int W = 16;
    static constexpr int MV = 2;  // fp32 micro-kernel: 2 x 12 accumulators of 32 registers
    static constexpr int NR = 12;

    GREENAI_TARGET static F zero() { return _mm512_setzero_ps(); }
    GREENAI_TARGET static F set1(float v) { return _mm512_set1_ps(v); }
    GREENAI_TARGET static F add(F a, F b) { return _mm512_add_ps(a, b); }
    GREENAI_TARGET static F sub(F a, F b) { return _mm512_sub_ps(a, b); }
    GREENAI_TARGET static F mul(F a, F b) { return _mm512_mul_ps(a, b); }
    GREENAI_TARGET static F fma(F a, F b, F c) { return _mm512_fmadd_ps(a, b, c); }
    GREENAI_TARGET static F min(F a, F b) { return _mm512_min_ps(a, b); }
    GREENAI_TARGET static F max(F a, F b) { return _mm512_max_ps(a, b); }
    GREENAI_TARGET static F rne(F a) { return _mm512_roundscale_ps(a, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }
    GREENAI_TARGET static float hsum(F a) { return _mm512_reduce_add_ps(a); }
    GREENAI_TARGET static float hmin(F a) { return _mm512_reduce_min_ps(a); }
    GREENAI_TARGET static float hmax(F a) { return _mm512_reduce_max_ps(a); }

    GREENAI_TARGET static F load_f32(const float* p) { return _mm512_loadu_ps(p); }
    GREENAI_TARGET static F load_f16(const std::uint16_t* p) {
        return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
    }
    GREENAI_TARGET static F load_bf16(const std::uint16_t* p) {
        const __m512i wide = _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
        return _mm512_castsi512_ps(_mm512_slli_epi32(wide, 16));
    }
    GREENAI_TARGET static F load_i8(const std::int8_t* p) {
        return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))));
    }
    GREENAI_TARGET static void u4_block(const std::uint8_t* p, F* out) {
        const __m512i bytes = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
        out[0] = _mm512_cvtepi32_ps(_mm512_and_si512(bytes, _mm512_set1_epi32(0x0F)));
        out[1] = _mm512_cvtepi32_ps(_mm512_srli_epi32(bytes, 4));
    }

    GREENAI_TARGET static void store_f32(float* p, F v) { _mm512_storeu_ps(p, v); }
    GREENAI_TARGET static void store_f16(std::uint16_t* p, F v) {
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(p),
                            _mm512_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    }
    GREENAI_TARGET static void store_bf16(std::uint16_t* p, F v) {
        const __m512i u = _mm512_castps_si512(v);
        const __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
        const __m512i rounded = _mm512_srli_epi32(_mm512_add_epi32(_mm512_add_epi32(u, _mm512_set1_epi32(0x7FFF)), lsb), 16);
        const __m512i quiet = _mm512_or_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(0x40));
        const __mmask16 nan = _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
        const __m512i bits = _mm512_mask_blend_epi32(nan, rounded, quiet);
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), _mm512_cvtepi32_epi16(bits));
    }
    GREENAI_TARGET static void store_i8(std::int8_t* p, F v) {
        _mm_storeu_si128(reinterpret_cast<__m128i*>(p), _mm512_cvtsepi32_epi8(_mm512_cvtps_epi32(v)));
    }
    GREENAI_TARGET static F max_abs_bits(F acc, F v) {
        const __m512i mag = _mm512_and_si512(_mm512_castps_si512(v), _mm512_set1_epi32(0x7FFFFFFF));
        return _mm512_castsi512_ps(_mm512_max_epu32(_mm512_castps_si512(acc), mag));
    }
    GREENAI_TARGET static std::uint32_t hmax_bits(F a) { return _mm512_reduce_max_epu32(_mm512_castps_si512(a)); }
    GREENAI_TARGET static void store_i8_rne(std::int8_t* p, F v, std::int32_t zp) {
        const __m512i c = _mm512_cvt_roundps_epi32(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        _mm_storeu_si128(reinterpret_cast<__m128i*>(p), _mm512_cvtsepi32_epi8(_mm512_add_epi32(c, _mm512_set1_epi32(zp))));
    }
    GREENAI_TARGET static void store_u8(std::uint8_t* p, F v) {
        _mm_storeu_si128(reinterpret_cast<__m128i*>(p), _mm512_cvtusepi32_epi8(_mm512_cvtps_epi32(v)));
    }
};

}  // namespace
}  // namespace greenai::cpu
