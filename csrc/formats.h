// greenai's quantization and 2:4 formats as the native code sees them: the float dtype codes
// of every binding, the code ranges and int4 packing, the group sizes, the 2:4 magnitude
// keys, and the rules that tell a valid layout from an invalid one. bindings.cpp (argument
// checks), the CPU kernels (cpu/) and the CUDA kernels (cuda/) all take them from here.
//
// The formats themselves are defined by src/greenai/ops/reference.py and sparse_reference.py
// (greenai.ops' Python checks use the same rules). Plain C++17 with no CUDA includes: device
// code may use the constexpr variables (scalar constexpr variables are usable in CUDA device
// code); the functions are for host code.
#pragma once

#include <cstdint>

namespace greenai {

// --- float dtype codes: the `dtype` / `out_dtype` integers of every binding ------------------

enum class FloatType : int { f32 = 0, f16 = 1, bf16 = 2 };

constexpr bool is_float_type(int code) { return code >= 0 && code <= 2; }

constexpr std::int64_t float_bytes(FloatType t) { return t == FloatType::f32 ? 4 : 2; }

// --- quantization (reference.py) ---------------------------------------------------------------

// Codes of `bits` 8 are int8 in [-128, 127], of `bits` 4 in [-8, 7]; symmetric ones stay
// within [-max, max].
constexpr int kInt8Max = 127;
constexpr int kInt4Max = 7;
// An int4 code is stored as the nibble code + kInt4Offset, in blocks of kInt4Block elements
// along k: byte 16 * b + i of a row holds element 32 * b + i in its low nibble and element
// 32 * b + 16 + i in its high nibble.
constexpr int kInt4Offset = 8;
constexpr std::int64_t kInt4Block = 32;

// `group`: kPerTensor (one scale for the tensor, int8 only), k (one per row), or a multiple
// of kGroupMultiple dividing k. Scales (and zero points) are (n, k / group), row-major.
constexpr std::int64_t kPerTensor = -1;
constexpr std::int64_t kGroupMultiple = 32;

constexpr bool is_bits(int bits) { return bits == 8 || bits == 4; }

constexpr int code_max(int bits) { return bits == 8 ? kInt8Max : kInt4Max; }

// k of a weight that `bits` can pack (int4 needs whole blocks).
constexpr bool packs_k(int bits, std::int64_t k) { return bits == 8 || k % kInt4Block == 0; }

// A group of one scale per row or per group of a row: k, or a multiple of kGroupMultiple
// dividing k (kPerTensor is not one).
constexpr bool is_row_group(std::int64_t k, std::int64_t group) {
    return group == k || (group > 0 && group % kGroupMultiple == 0 && k % group == 0);
}

// A valid group for `bits` (one of is_row_group's, or kPerTensor for int8 where allowed).
constexpr bool is_group(int bits, std::int64_t k, std::int64_t group, bool allow_per_tensor) {
    return is_row_group(k, group) || (group == kPerTensor && allow_per_tensor && bits == 8);
}

// Bytes of the codes of an (n, k) weight.
constexpr std::int64_t code_bytes(std::int64_t n, std::int64_t k, int bits) { return bits == 8 ? n * k : n * k / 2; }

// --- 2:4 sparsity (sparse_reference.py) ----------------------------------------------------------

// Magnitudes compare as integer keys: the bits without the sign, NaNs clamped to one key
// above Inf (so NaN is the largest and is kept).
constexpr std::uint32_t kNanKeyF32 = 0x7F800001u;
constexpr std::uint32_t kNanKeyF16 = 0x7C01u;
constexpr std::uint32_t kNanKeyBF16 = 0x7F81u;

// Bytes of the 2:4 metadata of one row of k elements (a nibble per group of 4).
constexpr std::int64_t meta_row_bytes(std::int64_t k) { return (k + 7) / 8; }

}  // namespace greenai
