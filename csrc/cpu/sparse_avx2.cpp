// The sparsity kernels compiled for AVX2 with FMA and F16C. The 2:4 code is the scalar code
// of sparse_kernels_impl.h (the compiler vectorises the norms); only AVX-512 has
// hand-written 2:4 kernels so far, since its mask registers and compress / expand / two-
// source permute instructions map onto 2:4 directly.
#include "cpu/sparse_kernels.h"

#ifdef GREENAI_X86_KERNELS

#define GREENAI_TARGET __attribute__((target("avx2,fma,f16c")))

#include "cpu/sparse_kernels_impl.h"

namespace greenai::cpu {
const SparseKernelTable kAvx2Sparse = SparseKernels<ScalarSparse>::table("avx2");
}  // namespace greenai::cpu

#endif  // GREENAI_X86_KERNELS
