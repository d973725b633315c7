// CPU-only build of csrc/cuda/quant.h: the module was built without CUDA, so every CUDA
// quantization op raises.
#include "cuda/quant.h"

#include <stdexcept>

namespace greenai::cuda {
namespace {

[[noreturn]] void no_cuda() {
    throw std::runtime_error(
        "greenai._C was built without CUDA; rebuild with nvcc on PATH (GREENAI_CUDA=ON) to "
        "run the quantization ops on CUDA tensors");
}

}  // namespace

void quantize(std::uintptr_t, int, std::int64_t, std::int64_t, int, std::int64_t, bool,
              std::uintptr_t, std::uintptr_t, std::uintptr_t, std::uintptr_t, std::uintptr_t) {
    no_cuda();
}

void dequantize(std::uintptr_t, std::uintptr_t, std::uintptr_t, std::int64_t, std::int64_t, int,
                std::int64_t, std::uintptr_t, int, std::uintptr_t) {
    no_cuda();
}

void quantized_linear(std::uintptr_t, int, std::int64_t, std::int64_t, std::uintptr_t,
                      std::uintptr_t, std::uintptr_t, std::uintptr_t, std::int64_t, int,
                      std::int64_t, std::uintptr_t, std::uintptr_t) {
    no_cuda();
}

}  // namespace greenai::cuda
