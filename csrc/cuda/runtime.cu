// CUDA build of csrc/cuda/runtime.h. Compiled by nvcc; the module links the CUDA runtime
// statically (cudart_static), which loads libcuda.so lazily on the first runtime call, so
// importing the module works on machines without a driver.
#include "cuda/runtime.h"

#include <cuda_runtime_api.h>

#include <stdexcept>
#include <string>

namespace greenai::cuda {
namespace {

// Errors that mean "no usable CUDA here" rather than "something is broken".
bool means_no_cuda(cudaError_t err) noexcept {
    switch (err) {
        case cudaErrorNoDevice:                    // no CUDA-capable device
        case cudaErrorInsufficientDriver:          // no driver, or driver older than runtime
        case cudaErrorStubLibrary:                 // only the libcuda stub is installed
        case cudaErrorCallRequiresNewerDriver:     // driver too old for this call
        case cudaErrorSystemDriverMismatch:        // kernel module / libcuda mismatch
        case cudaErrorCompatNotSupportedOnDevice:  // forward-compat package, wrong device
        case cudaErrorDevicesUnavailable:          // all devices busy (exclusive mode)
        case cudaErrorSystemNotReady:              // e.g. fabric manager not running
        case cudaErrorInitializationError:         // driver failed to initialise
            return true;
        default:
            return false;
    }
}

}  // namespace

bool compiled_with_cuda() noexcept { return true; }

int compiled_runtime_version() noexcept { return CUDART_VERSION; }

int device_count() {
    int count = 0;
    const cudaError_t err = cudaGetDeviceCount(&count);
    if (err == cudaSuccess) {
        return count;
    }
    // Clear the (non-sticky) error so later runtime calls do not report it again.
    static_cast<void>(cudaGetLastError());
    if (means_no_cuda(err)) {
        return 0;
    }
    throw std::runtime_error(std::string("cudaGetDeviceCount failed: ") + cudaGetErrorName(err) +
                             ": " + cudaGetErrorString(err));
}

std::optional<int> driver_version() noexcept {
    int version = 0;
    const cudaError_t err = cudaDriverGetVersion(&version);
    if (err != cudaSuccess) {
        static_cast<void>(cudaGetLastError());
        return std::nullopt;
    }
    if (version <= 0) {  // cudaDriverGetVersion reports 0 when no driver is installed
        return std::nullopt;
    }
    return version;
}

}  // namespace greenai::cuda
