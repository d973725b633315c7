// CPU-only build of csrc/cuda/sparse.h: the module was built without CUDA, so every CUDA
// sparsity op raises.
#include "cuda/sparse.h"

#include <stdexcept>

namespace greenai::cuda {
namespace {

[[noreturn]] void no_cuda() {
    throw std::runtime_error(
        "greenai._C was built without CUDA; rebuild with nvcc on PATH (GREENAI_CUDA=ON) to "
        "run the sparsity ops on CUDA tensors");
}

}  // namespace

void channel_norms(std::uintptr_t, int, std::int64_t, std::int64_t, std::int64_t, int, std::uintptr_t,
                   std::uintptr_t) {
    no_cuda();
}

void mask_2to4(std::uintptr_t, int, std::int64_t, std::int64_t, std::uintptr_t, std::uintptr_t) { no_cuda(); }

void compress_2to4(std::uintptr_t, int, std::int64_t, std::int64_t, std::uintptr_t, std::uintptr_t,
                   std::uintptr_t) {
    no_cuda();
}

void decompress_2to4(std::uintptr_t, std::uintptr_t, int, std::int64_t, std::int64_t, std::uintptr_t,
                     std::uintptr_t) {
    no_cuda();
}

void linear_2to4(std::uintptr_t, int, std::int64_t, std::int64_t, std::uintptr_t, std::uintptr_t,
                 std::uintptr_t, std::int64_t, std::uintptr_t, std::uintptr_t) {
    no_cuda();
}

}  // namespace greenai::cuda
