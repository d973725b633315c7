// The quantization kernels in plain C++, one value at a time: the fallback for CPUs without
// AVX2 and for other architectures (the compiler may still vectorise it).
#include <algorithm>
#include <cmath>

#include "cpu/floatconv.h"
#include "cpu/quant_kernels.h"

#define GREENAI_TARGET

namespace greenai::cpu {
namespace {

struct Generic {
    using F = float;
    static constexpr int W = 1;
    static constexpr int MV = 2;
    static constexpr int NR = 4;

    static F zero() { return 0.0f; }
    static F set1(float v) { return v; }
    static F add(F a, F b) { return a + b; }
    static F sub(F a, F b) { return a - b; }
    static F mul(F a, F b) { return a * b; }
    static F fma(F a, F b, F c) { return a * b + c; }
    static F min(F a, F b) { return a < b ? a : b; }
    static F max(F a, F b) { return a > b ? a : b; }
    static F rne(F a) { return std::nearbyint(a); }
    static float hsum(F a) { return a; }
    static float hmin(F a) { return a; }
    static float hmax(F a) { return a; }

    static F load_f32(const float* p) { return *p; }
    static F load_f16(const std::uint16_t* p);
    static F load_bf16(const std::uint16_t* p);
    static F load_i8(const std::int8_t* p) { return static_cast<float>(*p); }
    static void u4_block(const std::uint8_t* p, F* out) {
        for (int i = 0; i < 16; ++i) {
            out[i] = static_cast<float>(p[i] & 0x0F);
            out[16 + i] = static_cast<float>(p[i] >> 4);
        }
    }
    static void store_f32(float* p, F v) { *p = v; }
    static void store_f16(std::uint16_t* p, F v);
    static void store_bf16(std::uint16_t* p, F v);
    static void store_i8(std::int8_t* p, F v) { *p = static_cast<std::int8_t>(v); }
    static F max_abs_bits(F acc, F v) {
        return bits_to_float(std::max(float_to_bits(acc), float_to_bits(v) & 0x7FFFFFFFu));
    }
    static std::uint32_t hmax_bits(F a) { return float_to_bits(a); }
    static void store_i8_rne(std::int8_t* p, F v, std::int32_t zp) {
        const std::int32_t c = static_cast<std::int32_t>(std::nearbyint(v)) + zp;
        *p = static_cast<std::int8_t>(std::min(std::max(c, -128), 127));
    }
    static void store_u8(std::uint8_t* p, F v) { *p = static_cast<std::uint8_t>(v); }
};

}  // namespace
}  // namespace greenai::cpu

#include "cpu/quant_kernels_impl.h"

namespace greenai::cpu {
namespace {
Generic::F Generic::load_f16(const std::uint16_t* p) { return f16_to_float(*p); }
Generic::F Generic::load_bf16(const std::uint16_t* p) { return bf16_to_float(*p); }
void Generic::store_f16(std::uint16_t* p, F v) { *p = float_to_f16(v); }
void Generic::store_bf16(std::uint16_t* p, F v) { *p = float_to_bf16(v); }
}  // namespace

const KernelTable kGenericKernels = Kernels<Generic>::table("generic");
}  // namespace greenai::cpu
