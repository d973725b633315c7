// The float element types of the CUDA kernels, and the dispatch from a dtype code to one.
// Each type names the raw bits a kernel loads and stores (Bits) and converts them: to_f
// (exact), from_f (round to nearest even), and key, the magnitude key the 2:4 kernels
// compare (the bits without the sign, NaNs clamped one above Inf; formats.h).
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <string>

#include "cuda/launch.cuh"
#include "formats.h"

namespace greenai::cuda {

struct F32 {
    using Bits = unsigned int;
    __device__ static float to_f(Bits b) { return __uint_as_float(b); }
    __device__ static Bits from_f(float f) { return __float_as_uint(f); }
    __device__ static unsigned key(Bits b) { return min(b & 0x7FFFFFFFu, kNanKeyF32); }
};
struct F16 {
    using Bits = unsigned short;
    __device__ static float to_f(Bits b) { return __half2float(__ushort_as_half(b)); }
    __device__ static Bits from_f(float f) { return __half_as_ushort(__float2half_rn(f)); }
    __device__ static unsigned key(Bits b) { return min(static_cast<unsigned>(b) & 0x7FFFu, kNanKeyF16); }
};
struct BF16 {
    using Bits = unsigned short;
    __device__ static float to_f(Bits b) { return __uint_as_float(static_cast<unsigned>(b) << 16); }
    __device__ static Bits from_f(float f) { return __bfloat16_as_ushort(__float2bfloat16_rn(f)); }
    __device__ static unsigned key(Bits b) { return min(static_cast<unsigned>(b) & 0x7FFFu, kNanKeyBF16); }
};

// f(F32{}), f(F16{}) or f(BF16{}) for a dtype code (formats.h); std::invalid_argument
// naming greenai.cuda.<fn> for any other code.
template <class F>
void with_dtype(int dtype, const char* fn, F&& f) {
    if (!is_float_type(dtype)) {
        bad_arg(fn, "dtype code must be 0 (float32), 1 (float16) or 2 (bfloat16), got " + std::to_string(dtype));
    }
    switch (static_cast<FloatType>(dtype)) {
        case FloatType::f32:
            f(F32{});
            break;
        case FloatType::f16:
            f(F16{});
            break;
        case FloatType::bf16:
            f(BF16{});
            break;
    }
}

}  // namespace greenai::cuda
