// One float element of any FloatType read as float32, and a float32 written back as one
// (round to nearest even): the scalar paths of the quantization and sparsity kernels. Like
// quant_kernels_impl.h and sparse_kernels_impl.h, which include it, it is compiled once per
// instruction set under that file's GREENAI_TARGET, with internal linkage.
#pragma once

#include <cstdint>

#include "cpu/floatconv.h"
#include "formats.h"

#ifndef GREENAI_TARGET
#error "define GREENAI_TARGET before including elements_impl.h"
#endif

namespace greenai::cpu {
namespace {

template <FloatType DT>
GREENAI_TARGET inline float load1(const void* base, std::int64_t i) {
    if constexpr (DT == FloatType::f32) {
        return static_cast<const float*>(base)[i];
    } else if constexpr (DT == FloatType::f16) {
        return f16_to_float(static_cast<const std::uint16_t*>(base)[i]);
    } else {
        return bf16_to_float(static_cast<const std::uint16_t*>(base)[i]);
    }
}

template <FloatType DT>
GREENAI_TARGET inline void store1(void* base, std::int64_t i, float v) {
    if constexpr (DT == FloatType::f32) {
        static_cast<float*>(base)[i] = v;
    } else if constexpr (DT == FloatType::f16) {
        static_cast<std::uint16_t*>(base)[i] = float_to_f16(v);
    } else {
        static_cast<std::uint16_t*>(base)[i] = float_to_bf16(v);
    }
}

}  // namespace
}  // namespace greenai::cpu
