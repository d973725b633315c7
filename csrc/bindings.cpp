// The only pybind11 translation unit of greenai._C. Kernels and helpers live in
// csrc/cpu/ and csrc/cuda/ behind plain C++ headers; this file converts arguments and
// results and holds no computation of its own.
//
// Build facts come from CMake as compile definitions (see CMakeLists.txt):
//   GREENAI_VERSION, GREENAI_BUILD_TYPE, GREENAI_COMPILER, GREENAI_CUDA_OPTION,
//   GREENAI_CUDA_COMPILER, GREENAI_CUDA_ARCHITECTURES (empty string = none).
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <string>

#include "cuda/runtime.h"

namespace py = pybind11;

namespace {

// An empty compile-time string means "not applicable" and becomes None.
py::object str_or_none(const char* value) {
    if (value == nullptr || value[0] == '\0') {
        return py::none();
    }
    return py::str(value);
}

py::dict build_info() {
    py::dict info;
    info["version"] = py::str(GREENAI_VERSION);
    info["build_type"] = py::str(GREENAI_BUILD_TYPE);
    info["compiler"] = py::str(GREENAI_COMPILER);
    info["cuda_option"] = py::str(GREENAI_CUDA_OPTION);
    const bool with_cuda = greenai::cuda::compiled_with_cuda();
    info["cuda"] = py::bool_(with_cuda);
    if (with_cuda) {
        const int v = greenai::cuda::compiled_runtime_version();
        info["cuda_version"] = py::str(std::to_string(v / 1000) + "." + std::to_string((v % 1000) / 10));
    } else {
        info["cuda_version"] = py::none();
    }
    info["cuda_architectures"] = str_or_none(GREENAI_CUDA_ARCHITECTURES);
    info["cuda_compiler"] = str_or_none(GREENAI_CUDA_COMPILER);
    return info;
}

}  // namespace

PYBIND11_MODULE(_C, m) {
    m.doc() = "greenai native core: build facts and CUDA run-time queries.";

    m.def("build_info", &build_info,
          "How this module was built: version, build_type, compiler, cuda_option, cuda (bool),\n"
          "cuda_version, cuda_architectures and cuda_compiler (str or None without CUDA).");

    m.def("cuda_device_count", &greenai::cuda::device_count,
          py::call_guard<py::gil_scoped_release>(),
          "Number of usable CUDA devices: 0 without CUDA compiled in, without a driver or\n"
          "without a device (never raises for those; the CUDA error state is cleared).\n"
          "Raises RuntimeError for any other CUDA error. The first call initialises the CUDA\n"
          "driver in this process.");

    m.def("cuda_driver_version", &greenai::cuda::driver_version,
          py::call_guard<py::gil_scoped_release>(),
          "Installed CUDA driver version as 1000 * major + 10 * minor (e.g. 12040), or None\n"
          "without a driver or without CUDA compiled in.");
}
