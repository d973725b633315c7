// CPU quantization kernels: quantize, dequantize and the weight-only quantized matmul.
//
// Formats and arithmetic are defined by src/greenai/ops/reference.py (and summarised in
// greenai.ops' docstring); these kernels reproduce quantize/dequantize bit for bit. Callers
// (bindings.cpp) have checked every size against the buffers, so pointers here are valid
// for the extents the arguments describe.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "formats.h"  // FloatType, and the rules of group and bits

namespace greenai::cpu {

// group: -1 = one scale for the tensor (bits 8 only), k = per row (output channel), else a
// divisor of k (a multiple of 32). bits 4 needs k % 32 == 0. (formats.h)
struct QuantizeArgs {
    const void* w;  // (n, k) row-major, `dtype`
    FloatType dtype;
    std::int64_t n, k;
    int bits;
    std::int64_t group;
    bool symmetric;
    void* q;                  // int8 (n, k), or uint8 (n, k / 2) for bits 4
    float* scale;             // one per (row, group); 1 per tensor
    std::int8_t* zero_point;  // same layout as scale; nullptr when symmetric
};

struct DequantizeArgs {
    const void* q;
    const float* scale;
    const std::int8_t* zero_point;  // nullptr when symmetric
    std::int64_t n, k;
    int bits;
    std::int64_t group;  // as in QuantizeArgs
    void* out;           // (n, k) row-major, `out_dtype`
    FloatType out_dtype;
};

// y = x W^T + bias with W given like DequantizeArgs (group never -1: expand the scale first).
struct LinearArgs {
    const void* x;  // (m, k) row-major, `dtype`
    FloatType dtype;
    std::int64_t m, k;
    const void* q;
    const float* scale;
    const std::int8_t* zero_point;
    const float* bias;  // (n,) or nullptr
    std::int64_t n;
    int bits;
    std::int64_t group;
    void* y;  // (m, n) row-major, `dtype`
};

// Returns -1, or the index of a row holding NaN or Inf (then the outputs are unspecified).
std::int64_t quantize(const QuantizeArgs& args, int threads);
void dequantize(const DequantizeArgs& args, int threads);
void quantized_linear(const LinearArgs& args, int threads);

// Instruction sets: the kernels are compiled for each of "avx512_bf16" (AVX-512 plus bf16
// dot products, used for bfloat16 activations), "avx512", "avx2" and "generic" (x86-64;
// elsewhere only "generic") and the best one the CPU supports is used.
std::vector<std::string> supported_isas();
std::string current_isa();
// Forces one of supported_isas() (tests compare them); throws std::invalid_argument otherwise.
void set_isa(const std::string& name);

}  // namespace greenai::cpu
