// CPU-only build of csrc/cuda/runtime.h: the module was built without CUDA
// (GREENAI_CUDA=OFF, or AUTO without nvcc), so there is never a usable device.
#include "cuda/runtime.h"

namespace greenai::cuda {

bool compiled_with_cuda() noexcept { return false; }

int compiled_runtime_version() noexcept { return 0; }

int device_count() { return 0; }

std::optional<int> driver_version() noexcept { return std::nullopt; }

}  // namespace greenai::cuda
