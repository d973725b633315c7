// CPU kernels for structured pruning and 2:4 semi-structured sparsity: per-channel norms,
// the 2:4 mask, the compressed 2:4 format and a matmul on it.
//
// Formats and arithmetic are defined by src/greenai/ops/sparse_reference.py (summarised in
// greenai.ops.sparse's docstring); mask, compress and decompress match it bit for bit, norms
// and the matmul up to float summation order. Callers (bindings.cpp) have checked every size
// against the buffers, so pointers here are valid for the extents the arguments describe.
#pragma once

#include <cstdint>
#include <string>

#include "formats.h"  // FloatType

namespace greenai::cpu {

// out[c] = (sum over o, i of |w[o, c, i]|^p)^(1/p) for p in {1, 2}, w viewed as a row-major
// (outer, channels, inner) array: dim 0 of an (N, ...) weight is (1, N, rest), dim 1 is
// (N, C, rest). Accumulated in float64 (no overflow or underflow of squares of any float32),
// rounded once to float32; NaN propagates, Inf gives Inf.
struct NormArgs {
    const void* w;
    FloatType dtype;
    std::int64_t outer, channels, inner;
    int p;
    float* out;  // (channels,)
};
void channel_norms(const NormArgs& args, int threads);

// The 2:4 pattern of w (n, k), k % 4 == 0: of every 4 consecutive elements along k, keep the
// 2 of largest magnitude; equal magnitudes (+0 and -0 included) keep the lower index; NaN
// ranks above Inf (torch.topk's order) and NaNs tie with each other.
//
// Compressed form: values (n, k / 2) of the input dtype, the kept pair of each group in index
// order; meta uint8 (n, ceil(k / 8)): group g of a row is the nibble i0 | i1 << 2 (i0 < i1,
// the kept positions within the group) in the low nibble of byte g / 2 for even g, the high
// nibble for odd g; a row with an odd number of groups has a zero high nibble in its last byte.
// Read as a little-endian bit stream, meta is the 2-bit position of each value in order.
struct Sparse24Args {
    const void* dense;  // (n, k): the input of mask / compress, the output of decompress
    FloatType dtype;
    std::int64_t n, k;
    void* values;        // (n, k / 2)
    std::uint8_t* meta;  // (n, (k + 7) / 8)
    std::uint8_t* mask;  // (n, k) of 0 / 1, for mask_2to4 only
};
void mask_2to4(const Sparse24Args& args, int threads);
void compress_2to4(const Sparse24Args& args, int threads);
// Writes the kept values at their positions and zeros elsewhere. A nibble with i0 == i1
// (never produced by compress_2to4) writes v0 then v1 to the same position, so v1 stays.
void decompress_2to4(const Sparse24Args& args, int threads);

// y (m, n) = x (m, k) W^T + bias with W given by (values, meta) of x's dtype, accumulated in
// float32: sum over groups of v0 * x[4g + i0] + v1 * x[4g + i1] (for i0 == i1 both terms).
// bfloat16 on the avx512_bf16 table (vdpbf16ps) reads subnormal inputs as zero.
struct Linear24Args {
    const void* x;  // (m, k)
    FloatType dtype;
    std::int64_t m, k;
    const void* values;
    const std::uint8_t* meta;
    const float* bias;  // (n,) or nullptr
    std::int64_t n;
    void* y;  // (m, n), x's dtype
};
void linear_2to4(const Linear24Args& args, int threads);

// The name of the kernel table the functions above run now ("avx512_bf16", "avx512", "avx2"
// or "generic"): quant.cpp's current_isa() picks it; other avx512* names share "avx512".
std::string sparse_isa();

}  // namespace greenai::cpu
