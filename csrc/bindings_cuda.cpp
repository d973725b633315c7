// See bindings_cuda.h. Device pointers and the stream arrive as integers; the Python layer
// (greenai.ops) has validated every shape, and nothing here can check a device pointer.
#include "bindings_cuda.h"

#include "cuda/quant.h"
#include "cuda/sparse.h"

namespace py = pybind11;

namespace greenai {

void bind_cuda_kernels(py::module_& m) {
    // --- quantization (formats: src/greenai/ops/reference.py) ---
    m.attr("cuda_quantize_workspace_bytes") = greenai::cuda::kQuantizeWorkspaceBytes;
    m.def("quantize_cuda", &greenai::cuda::quantize, py::arg("w"), py::arg("dtype"), py::arg("n"), py::arg("k"),
          py::arg("bits"), py::arg("group"), py::arg("symmetric"), py::arg("q"), py::arg("scale"),
          py::arg("zero_point"), py::arg("workspace"), py::arg("stream"), py::call_guard<py::gil_scoped_release>(),
          "quantize_cpu's CUDA twin on `stream`; sets the int32 at workspace[0] to 1 on NaN/Inf.");
    m.def("dequantize_cuda", &greenai::cuda::dequantize, py::arg("q"), py::arg("scale"), py::arg("zero_point"),
          py::arg("n"), py::arg("k"), py::arg("bits"), py::arg("group"), py::arg("out"), py::arg("out_dtype"),
          py::arg("stream"), py::call_guard<py::gil_scoped_release>(), "dequantize_cpu's CUDA twin on `stream`.");
    m.def("quantized_linear_cuda", &greenai::cuda::quantized_linear, py::arg("x"), py::arg("dtype"), py::arg("m"),
          py::arg("k"), py::arg("q"), py::arg("scale"), py::arg("zero_point"), py::arg("bias"), py::arg("n"),
          py::arg("bits"), py::arg("group"), py::arg("y"), py::arg("stream"), py::call_guard<py::gil_scoped_release>(),
          "quantized_linear_cpu's CUDA twin on `stream` (tuned for m <= 8).");
    // --- sparsity (formats: src/greenai/ops/sparse_reference.py) ---
    m.def("channel_norms_cuda", &greenai::cuda::channel_norms, py::arg("w"), py::arg("dtype"), py::arg("outer"),
          py::arg("channels"), py::arg("inner"), py::arg("p"), py::arg("out"), py::arg("stream"),
          py::call_guard<py::gil_scoped_release>(), "channel_norms_cpu's CUDA twin on `stream`.");
    m.def("mask_2to4_cuda", &greenai::cuda::mask_2to4, py::arg("w"), py::arg("dtype"), py::arg("n"), py::arg("k"),
          py::arg("mask"), py::arg("stream"), py::call_guard<py::gil_scoped_release>(),
          "mask_2to4_cpu's CUDA twin on `stream`.");
    m.def("compress_2to4_cuda", &greenai::cuda::compress_2to4, py::arg("w"), py::arg("dtype"), py::arg("n"),
          py::arg("k"), py::arg("values"), py::arg("meta"), py::arg("stream"),
          py::call_guard<py::gil_scoped_release>(), "compress_2to4_cpu's CUDA twin on `stream`.");
    m.def("decompress_2to4_cuda", &greenai::cuda::decompress_2to4, py::arg("values"), py::arg("meta"),
          py::arg("dtype"), py::arg("n"), py::arg("k"), py::arg("out"), py::arg("stream"),
          py::call_guard<py::gil_scoped_release>(), "decompress_2to4_cpu's CUDA twin on `stream`.");
    m.def("linear_2to4_cuda", &greenai::cuda::linear_2to4, py::arg("x"), py::arg("dtype"), py::arg("m"),
          py::arg("k"), py::arg("values"), py::arg("meta"), py::arg("bias"), py::arg("n"), py::arg("y"),
          py::arg("stream"), py::call_guard<py::gil_scoped_release>(),
          "linear_2to4_cpu's CUDA twin on `stream` (one warp per output: for small m).");
}

}  // namespace greenai
