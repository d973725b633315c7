// The per-instruction-set kernel table behind sparse.cpp (the pattern of quant_kernels.h).
// Each entry works on a range of rows or channels in the calling thread; sparse.cpp splits
// the work across threads and picks the table of the instruction set quant.cpp chose.
#pragma once

#include <cstdint>

#include "cpu/quant_kernels.h"  // GREENAI_X86_KERNELS
#include "cpu/sparse.h"

namespace greenai::cpu {

// Rows of x the direct 2:4 matmul multiplies per pass over the weight.
constexpr std::int64_t kSparseDirectRows = 8;

struct SparseKernelTable {
    const char* name;
    void (*norms)(const NormArgs&, std::int64_t c0, std::int64_t c1);  // channels [c0, c1)
    void (*mask_rows)(const Sparse24Args&, std::int64_t r0, std::int64_t r1);
    void (*compress_rows)(const Sparse24Args&, std::int64_t r0, std::int64_t r1);
    void (*decompress_rows)(const Sparse24Args&, std::int64_t r0, std::int64_t r1);
    // Output columns [n0, n1) of y32 (m, n) = x32 (m, k) W^T + bias, any m.
    void (*linear_rows)(const Linear24Args&, const float* x32, float* y32, std::int64_t n0, std::int64_t n1);
    // The same for bfloat16 x read as it is (no float32 copy), or nullptr where the table has
    // no such kernel (only the avx512_bf16 one has: vdpbf16ps).
    void (*linear_bf16_rows)(const Linear24Args&, float* y32, std::int64_t n0, std::int64_t n1);
};

extern const SparseKernelTable kGenericSparse;
#ifdef GREENAI_X86_KERNELS
extern const SparseKernelTable kAvx2Sparse;
extern const SparseKernelTable kAvx512Sparse;
extern const SparseKernelTable kAvx512Bf16Sparse;
#endif

}  // namespace greenai::cpu
