// CUDA quantization kernels: int8 / int4 weight quantize, dequantize and a quantized linear
// layer for small batches (decode). Formats and arithmetic: src/greenai/ops/reference.py.
//
// Plain C++: no CUDA headers here, so bindings_cuda.cpp can include it in every build. CMake
// compiles exactly one implementation into the module:
//   - csrc/cuda/quantize.cu, dequantize.cu and quantized_linear.cu (nvcc), or
//   - csrc/cuda/quant_fallback.cpp (CPU-only build: every function throws).
//
// Conventions shared by every function (the constants and rules: csrc/formats.h):
//   - Pointers are device pointers passed as std::uintptr_t; `stream` is a cudaStream_t as
//     std::uintptr_t (0 = the legacy default stream). Every kernel is launched on `stream`,
//     nothing synchronizes, and a failed launch throws std::runtime_error naming the
//     function and the CUDA error.
//   - Float dtype codes: 0 = float32, 1 = float16, 2 = bfloat16 (FloatType).
//   - `bits` is 8 (codes int8 (n, k)) or 4 (codes uint8 (n, k / 2), two nibbles u = q + 8
//     per byte: byte 16 * b + i of a row holds element 32 * b + i in its low nibble and
//     element 32 * b + 16 + i in its high nibble).
//   - `group`: -1 = one scale for the whole tensor (int8 only); k = one per row (output
//     channel); otherwise a divisor of k that is a multiple of 32. Scales are float32 with
//     one value per (row, group), row-major (n, k / group); zero points int8 in the same
//     layout, or 0 (null) when symmetric.
//   - Tensors are contiguous row-major. Shapes are checked (std::invalid_argument, which
//     pybind11 raises as ValueError), pointers cannot be.
#pragma once

#include <cstdint>

namespace greenai::cuda {

// Bytes of the zeroed scratch buffer quantize() needs (the caller zeroes it before each
// call). Bytes 0..3 hold an int32 status that quantize sets to 1 when any input value is
// NaN or Inf (the outputs are then meaningless; the caller raises); bytes 4..11 hold the
// per-tensor maximum and minimum as order-preserving int32 keys.
constexpr std::int64_t kQuantizeWorkspaceBytes = 16;

// Quantize w (n, k) of `dtype` into codes q, scale and (asymmetric only) zero_point.
// Bit for bit equal to reference.quantize.
void quantize(std::uintptr_t w, int dtype, std::int64_t n, std::int64_t k, int bits,
              std::int64_t group, bool symmetric, std::uintptr_t q, std::uintptr_t scale,
              std::uintptr_t zero_point, std::uintptr_t workspace, std::uintptr_t stream);

// out (n, k) of `out_dtype` = (q - zero_point) * scale, one float32 rounding, then
// round-to-nearest-even into out_dtype. Bit for bit equal to reference.dequantize.
void dequantize(std::uintptr_t q, std::uintptr_t scale, std::uintptr_t zero_point,
                std::int64_t n, std::int64_t k, int bits, std::int64_t group,
                std::uintptr_t out, int out_dtype, std::uintptr_t stream);

// y (m, n) = x (m, k) @ W.T + bias, W (n, k) given by (q, scale, zero_point); accumulated in
// float32 (per group: scale * sum(x * (q - zero_point))), y in x's dtype. group is never -1
// here (the caller expands a per-tensor scale to per-channel). bias is float32 (n,) or 0.
// Tuned for m <= 8; any m >= 1 works (tiles of 8 rows of x).
void quantized_linear(std::uintptr_t x, int dtype, std::int64_t m, std::int64_t k,
                      std::uintptr_t q, std::uintptr_t scale, std::uintptr_t zero_point,
                      std::uintptr_t bias, std::int64_t n, int bits, std::int64_t group,
                      std::uintptr_t y, std::uintptr_t stream);

}  // namespace greenai::cuda
