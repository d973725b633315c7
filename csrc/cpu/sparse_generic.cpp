// The sparsity kernels in plain C++: the fallback for CPUs without AVX2 and for other
// architectures.
#define GREENAI_TARGET

#include "cpu/sparse_kernels_impl.h"

namespace greenai::cpu {
const SparseKernelTable kGenericSparse = SparseKernels<ScalarSparse>::table("generic");
}  // namespace greenai::cpu
