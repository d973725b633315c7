// Run-time queries about CUDA that the binding layer exposes to Python.
//
// Plain C++: no CUDA headers here, so bindings.cpp (compiled by the host compiler) can
// include it whether or not the CUDA kernels are built. CMake compiles exactly one
// implementation into the module:
//   - csrc/cuda/runtime.cu           (nvcc; CUDA runtime linked statically), or
//   - csrc/cuda/runtime_fallback.cpp (CPU-only build: no CUDA, every answer is "none").
#pragma once

#include <optional>

namespace greenai::cuda {

// True when the CUDA kernels were compiled into this module.
bool compiled_with_cuda() noexcept;

// CUDA runtime version the module was built against, encoded as 1000 * major + 10 * minor
// (CUDART_VERSION, e.g. 13000 for 13.0); 0 in a CPU-only build.
int compiled_runtime_version() noexcept;

// Number of CUDA devices usable now. 0 in a CPU-only build, and 0 (with the CUDA error
// state cleared) when there is no driver, no device, a driver too old for the runtime, or
// the devices are unavailable. Any other CUDA error throws std::runtime_error.
// Note: the first call initialises the CUDA driver in this process.
int device_count();

// Version of the installed CUDA driver (1000 * major + 10 * minor), or std::nullopt when no
// driver is installed or the module was built without CUDA. Does not initialise a context.
std::optional<int> driver_version() noexcept;

}  // namespace greenai::cuda
