// The quantization kernels, written once against a small SIMD interface `S` and compiled
// once per instruction set: quant_generic.cpp, quant_avx2.cpp and quant_avx512.cpp each
// define GREENAI_TARGET (a function attribute naming the instruction set, empty for
// generic) and a trait struct, then include this file. Everything here has internal
// linkage, so the copies built for different instruction sets never meet at link time
// (a shared inline function compiled with AVX-512 could otherwise be picked for all).
//
// The trait S provides: F (a vector of W floats), zero, set1, add, sub, mul, fma, min, max,
// rne (round half to even), hsum/hmin/hmax, load_f32/load_f16/load_bf16/load_i8 (W
// values), u4_block (16 bytes -> 32 / W vectors of nibbles, in element order),
// store_f32/store_f16/store_bf16, store_i8 (W integral values), store_u8 (W values in
// [0, 255]); and MV x NR, the register tile of the fp32 matmul micro-kernel (MV vectors
// of rows of x by NR weight rows).
//
// The kernels live in two parts, each a struct of static functions over S:
//   quant_codec_impl.h   QuantCodec<S>: quantize, dequantize, float conversions;
//   quant_linear_impl.h  QuantLinear<S>: the direct and tiled quantized matmuls.
// Kernels<S>::table() gathers them into the instruction set's KernelTable.
#pragma once

#include "cpu/quant_codec_impl.h"
#include "cpu/quant_kernels.h"
#include "cpu/quant_linear_impl.h"

#ifndef GREENAI_TARGET
#error "define GREENAI_TARGET before including quant_kernels_impl.h"
#endif

namespace greenai::cpu {
namespace {

template <class S>
struct Kernels {
    static constexpr KernelTable table(const char* name) {
        using C = QuantCodec<S>;
        using L = QuantLinear<S>;
        return KernelTable{
            name,
            &C::quantize_rows,
            &C::range_rows,
            &C::encode_rows,
            &C::dequantize_rows,
            &C::to_float,
            &C::from_float,
            &L::linear_direct,
            &L::linear_tiled,
            nullptr,  // linear_tiled_bf16: quant_avx512bf16.cpp sets its own
        };
    }
};

}  // namespace
}  // namespace greenai::cpu
