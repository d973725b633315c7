// Exact float16/bfloat16 <-> float32 conversions in portable C++ (round to nearest even
// when narrowing, NaN kept NaN). Used for scalar tails and by the generic kernels; the
// SIMD kernels use the CPU's own instructions, which give the same results.
#pragma once

#include <cstdint>
#include <cstring>

namespace greenai::cpu {

inline float bits_to_float(std::uint32_t u) {
    float f;
    std::memcpy(&f, &u, sizeof f);
    return f;
}

inline std::uint32_t float_to_bits(float f) {
    std::uint32_t u;
    std::memcpy(&u, &f, sizeof u);
    return u;
}

inline float bf16_to_float(std::uint16_t h) { return bits_to_float(static_cast<std::uint32_t>(h) << 16); }

inline std::uint16_t float_to_bf16(float f) {
    const std::uint32_t u = float_to_bits(f);
    if ((u & 0x7FFFFFFFu) > 0x7F800000u) {
        return static_cast<std::uint16_t>((u >> 16) | 0x0040u);  // quiet NaN, sign kept
    }
    const std::uint32_t rounded = u + 0x7FFFu + ((u >> 16) & 1u);
    return static_cast<std::uint16_t>(rounded >> 16);
}

inline float f16_to_float(std::uint16_t h) {
    const std::uint32_t sign = static_cast<std::uint32_t>(h & 0x8000u) << 16;
    const std::uint32_t exp = (h >> 10) & 0x1Fu;
    const std::uint32_t mant = h & 0x3FFu;
    if (exp == 0x1Fu) {  // Inf or NaN
        return bits_to_float(sign | 0x7F800000u | (mant << 13));
    }
    if (exp != 0) {  // normal
        return bits_to_float(sign | ((exp + 112u) << 23) | (mant << 13));
    }
    // zero or subnormal: mant * 2^-24, exact in float32
    const float magnitude = static_cast<float>(mant) * 5.9604644775390625e-08f;
    return sign ? -magnitude : magnitude;
}

inline std::uint16_t float_to_f16(float f) {
    const std::uint32_t u = float_to_bits(f);
    const std::uint16_t sign = static_cast<std::uint16_t>((u >> 16) & 0x8000u);
    const std::uint32_t abs = u & 0x7FFFFFFFu;
    if (abs > 0x7F800000u) {
        return static_cast<std::uint16_t>(sign | 0x7E00u | ((abs >> 13) & 0x3FFu));
    }
    if (abs >= 0x477FF000u) {  // rounds to >= 65520: Inf (also Inf itself)
        return static_cast<std::uint16_t>(sign | 0x7C00u);
    }
    if (abs < 0x38800000u) {  // below 2^-14: subnormal half (or zero); RNE on mant * 2^24
        const float scaled = bits_to_float(abs) * 16777216.0f;  // exact: power of two
        // scaled < 1024; round half to even by hand to stay independent of the FP mode
        const std::uint32_t whole = static_cast<std::uint32_t>(scaled);
        const float frac = scaled - static_cast<float>(whole);
        std::uint32_t m = whole;
        if (frac > 0.5f || (frac == 0.5f && (whole & 1u))) {
            ++m;
        }
        return static_cast<std::uint16_t>(sign | m);
    }
    // normal half: rebias the exponent, round the 13 dropped mantissa bits to nearest even
    std::uint32_t v = abs - (112u << 23);
    v += 0x0FFFu + ((v >> 13) & 1u);
    return static_cast<std::uint16_t>(sign | (v >> 13));
}

}  // namespace greenai::cpu
