// Bindings of the CUDA kernels (csrc/cuda/quant.h, csrc/cuda/sparse.h), shared by
// greenai._C (nvcc build, or the CPU-only fallbacks that raise) and the test-only
// greenai_cuda_sim (the same kernels under the CPU simulator of testing/cuda_sim/).
#pragma once

#include <pybind11/pybind11.h>

namespace greenai {

void bind_cuda_kernels(pybind11::module_& m);

}  // namespace greenai
