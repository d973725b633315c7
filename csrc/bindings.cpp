// The pybind11 module greenai._C; the CUDA kernels' bindings are in bindings_cuda.cpp,
// shared with the test-only greenai_cuda_sim. Kernels and helpers live in csrc/cpu/ and
// csrc/cuda/ behind plain C++ headers; this file converts arguments and results and holds
// no computation of its own.
//
// Build facts come from CMake as compile definitions (see CMakeLists.txt):
//   GREENAI_VERSION, GREENAI_BUILD_TYPE, GREENAI_COMPILER, GREENAI_CUDA_OPTION,
//   GREENAI_CUDA_COMPILER, GREENAI_CUDA_ARCHITECTURES (empty string = none).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <initializer_list>
#include <string>

#include "cpu/memory.h"
#include "cpu/quant.h"
#include "cpu/sparse.h"
#include "bindings_cuda.h"
#include "cuda/runtime.h"
#include "formats.h"

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

// --- CPU buffers --------------------------------------------------------------------------
// The CPU kernels take NumPy arrays (a CPU tensor's .numpy() shares its memory; bfloat16 is
// passed as an int16 view). Every extent is checked here, so a bad call from Python raises
// ValueError instead of reading or writing out of bounds.

void* checked_buffer(const py::object& obj, const char* name, std::int64_t count, std::int64_t itemsize,
                     bool writable) {
    if (!py::isinstance<py::array>(obj)) {
        throw py::type_error(std::string(name) + " must be a NumPy array");
    }
    auto a = py::reinterpret_borrow<py::array>(obj);
    if (!(a.flags() & py::array::c_style)) {
        throw py::value_error(std::string(name) + " must be C-contiguous");
    }
    if (a.itemsize() != itemsize || a.size() != count) {
        throw py::value_error(std::string(name) + " must hold " + std::to_string(count) + " items of " +
                              std::to_string(itemsize) + " bytes, not " + std::to_string(a.size()) + " of " +
                              std::to_string(a.itemsize()));
    }
    if (writable && !a.writeable()) {
        throw py::value_error(std::string(name) + " must be writable");
    }
    return const_cast<void*>(a.data());
}

greenai::FloatType float_type(int code, const char* name) {
    if (!greenai::is_float_type(code)) {
        throw py::value_error(std::string(name) + " must be 0 (float32), 1 (float16) or 2 (bfloat16), not " +
                              std::to_string(code));
    }
    return static_cast<greenai::FloatType>(code);
}

// Checks n, k, bits and group against the rules of formats.h and returns the number of scales.
std::int64_t check_layout(std::int64_t n, std::int64_t k, int bits, std::int64_t group, bool allow_per_tensor) {
    if (n < 1 || k < 1) {
        throw py::value_error("n and k must be positive, not " + std::to_string(n) + " and " + std::to_string(k));
    }
    if (!greenai::is_bits(bits)) {
        throw py::value_error("bits must be 8 or 4, not " + std::to_string(bits));
    }
    if (!greenai::packs_k(bits, k)) {
        throw py::value_error("bits=4 needs k to be a multiple of 32, not " + std::to_string(k));
    }
    if (!greenai::is_group(bits, k, group, allow_per_tensor)) {
        throw py::value_error("group must be " + std::string(allow_per_tensor ? "-1, " : "") +
                              "k or a multiple of 32 dividing k, not " + std::to_string(group));
    }
    return group == greenai::kPerTensor ? 1 : n * (k / group);
}

int check_threads(int threads) {
    if (threads < 1) {
        throw py::value_error("threads must be at least 1, not " + std::to_string(threads));
    }
    return threads;
}

std::int64_t quantize_cpu(const py::object& w, int dtype, std::int64_t n, std::int64_t k, int bits,
                          std::int64_t group, bool symmetric, const py::object& q, const py::object& scale,
                          const py::object& zero_point, int threads) {
    using namespace greenai::cpu;
    const std::int64_t scales = check_layout(n, k, bits, group, true);
    QuantizeArgs a{};
    a.dtype = float_type(dtype, "dtype");
    a.w = checked_buffer(w, "w", n * k, greenai::float_bytes(a.dtype), false);
    a.n = n;
    a.k = k;
    a.bits = bits;
    a.group = group;
    a.symmetric = symmetric;
    a.q = checked_buffer(q, "q", greenai::code_bytes(n, k, bits), 1, true);
    a.scale = static_cast<float*>(checked_buffer(scale, "scale", scales, 4, true));
    if (symmetric != zero_point.is_none()) {
        throw py::value_error("zero_point must be None exactly when symmetric");
    }
    a.zero_point = symmetric ? nullptr : static_cast<std::int8_t*>(checked_buffer(zero_point, "zero_point", scales, 1, true));
    check_threads(threads);
    py::gil_scoped_release release;
    return greenai::cpu::quantize(a, threads);
}

void dequantize_cpu(const py::object& q, const py::object& scale, const py::object& zero_point, std::int64_t n,
                    std::int64_t k, int bits, std::int64_t group, const py::object& out, int out_dtype, int threads) {
    using namespace greenai::cpu;
    const std::int64_t scales = check_layout(n, k, bits, group, true);
    DequantizeArgs a{};
    a.q = checked_buffer(q, "q", greenai::code_bytes(n, k, bits), 1, false);
    a.scale = static_cast<const float*>(checked_buffer(scale, "scale", scales, 4, false));
    a.zero_point = zero_point.is_none()
                       ? nullptr
                       : static_cast<const std::int8_t*>(checked_buffer(zero_point, "zero_point", scales, 1, false));
    a.n = n;
    a.k = k;
    a.bits = bits;
    a.group = group;
    a.out_dtype = float_type(out_dtype, "out_dtype");
    a.out = checked_buffer(out, "out", n * k, greenai::float_bytes(a.out_dtype), true);
    check_threads(threads);
    py::gil_scoped_release release;
    greenai::cpu::dequantize(a, threads);
}

void quantized_linear_cpu(const py::object& x, int dtype, std::int64_t m, std::int64_t k, const py::object& q,
                          const py::object& scale, const py::object& zero_point, const py::object& bias,
                          std::int64_t n, int bits, std::int64_t group, const py::object& y, int threads) {
    using namespace greenai::cpu;
    const std::int64_t scales = check_layout(n, k, bits, group, false);
    if (m < 0) {
        throw py::value_error("m must not be negative, not " + std::to_string(m));
    }
    LinearArgs a{};
    a.dtype = float_type(dtype, "dtype");
    a.x = checked_buffer(x, "x", m * k, greenai::float_bytes(a.dtype), false);
    a.m = m;
    a.k = k;
    a.q = checked_buffer(q, "q", greenai::code_bytes(n, k, bits), 1, false);
    a.scale = static_cast<const float*>(checked_buffer(scale, "scale", scales, 4, false));
    a.zero_point = zero_point.is_none()
                       ? nullptr
                       : static_cast<const std::int8_t*>(checked_buffer(zero_point, "zero_point", scales, 1, false));
    a.bias = bias.is_none() ? nullptr : static_cast<const float*>(checked_buffer(bias, "bias", n, 4, false));
    a.n = n;
    a.bits = bits;
    a.group = group;
    a.y = checked_buffer(y, "y", m * n, greenai::float_bytes(a.dtype), true);
    check_threads(threads);
    py::gil_scoped_release release;
    greenai::cpu::quantized_linear(a, threads);
}

// --- CPU sparsity kernels (formats: src/greenai/ops/sparse_reference.py) -----------------------

// The product of non-negative extents, or ValueError (negative, or past int64).
std::int64_t extent_product(std::initializer_list<std::int64_t> extents, const char* what) {
    std::int64_t total = 1;
    for (const std::int64_t e : extents) {
        if (e < 0 || __builtin_mul_overflow(total, e, &total)) {
            throw py::value_error(std::string(what) + " must be non-negative and their product must fit in int64");
        }
    }
    return total;
}

// n * k of a 2:4 weight, after checking k % 4 == 0.
std::int64_t check_2to4(std::int64_t n, std::int64_t k) {
    const std::int64_t total = extent_product({n, k}, "n and k");
    if (k % 4 != 0) {
        throw py::value_error("k must be a multiple of 4 for 2:4 sparsity, not " + std::to_string(k));
    }
    return total;
}

void channel_norms_cpu(const py::object& w, int dtype, std::int64_t outer, std::int64_t channels, std::int64_t inner,
                       int p, const py::object& out, int threads) {
    using namespace greenai::cpu;
    if (p != 1 && p != 2) {
        throw py::value_error("p must be 1 or 2, not " + std::to_string(p));
    }
    NormArgs a{};
    a.dtype = float_type(dtype, "dtype");
    a.w = checked_buffer(w, "w", extent_product({outer, channels, inner}, "outer, channels and inner"),
                         greenai::float_bytes(a.dtype), false);
    a.outer = outer;
    a.channels = channels;
    a.inner = inner;
    a.p = p;
    a.out = static_cast<float*>(checked_buffer(out, "out", channels, 4, true));
    check_threads(threads);
    py::gil_scoped_release release;
    channel_norms(a, threads);
}

void mask_2to4_cpu(const py::object& w, int dtype, std::int64_t n, std::int64_t k, const py::object& mask,
                   int threads) {
    using namespace greenai::cpu;
    const std::int64_t count = check_2to4(n, k);
    Sparse24Args a{};
    a.dtype = float_type(dtype, "dtype");
    a.dense = checked_buffer(w, "w", count, greenai::float_bytes(a.dtype), false);
    a.n = n;
    a.k = k;
    a.mask = static_cast<std::uint8_t*>(checked_buffer(mask, "mask", count, 1, true));
    check_threads(threads);
    py::gil_scoped_release release;
    mask_2to4(a, threads);
}

void compress_2to4_cpu(const py::object& w, int dtype, std::int64_t n, std::int64_t k, const py::object& values,
                       const py::object& meta, int threads) {
    using namespace greenai::cpu;
    const std::int64_t count = check_2to4(n, k);
    Sparse24Args a{};
    a.dtype = float_type(dtype, "dtype");
    a.dense = checked_buffer(w, "w", count, greenai::float_bytes(a.dtype), false);
    a.n = n;
    a.k = k;
    a.values = checked_buffer(values, "values", count / 2, greenai::float_bytes(a.dtype), true);
    a.meta = static_cast<std::uint8_t*>(checked_buffer(meta, "meta", n * greenai::meta_row_bytes(k), 1, true));
    check_threads(threads);
    py::gil_scoped_release release;
    compress_2to4(a, threads);
}

void decompress_2to4_cpu(const py::object& values, const py::object& meta, int dtype, std::int64_t n,
                         std::int64_t k, const py::object& out, int threads) {
    using namespace greenai::cpu;
    const std::int64_t count = check_2to4(n, k);
    Sparse24Args a{};
    a.dtype = float_type(dtype, "dtype");
    a.values = checked_buffer(values, "values", count / 2, greenai::float_bytes(a.dtype), false);
    a.meta = static_cast<std::uint8_t*>(checked_buffer(meta, "meta", n * greenai::meta_row_bytes(k), 1, false));
    a.n = n;
    a.k = k;
    a.dense = checked_buffer(out, "out", count, greenai::float_bytes(a.dtype), true);
    check_threads(threads);
    py::gil_scoped_release release;
    decompress_2to4(a, threads);
}

void linear_2to4_cpu(const py::object& x, int dtype, std::int64_t m, std::int64_t k, const py::object& values,
                     const py::object& meta, const py::object& bias, std::int64_t n, const py::object& y,
                     int threads) {
    using namespace greenai::cpu;
    const std::int64_t weights = check_2to4(n, k);
    Linear24Args a{};
    a.dtype = float_type(dtype, "dtype");
    a.x = checked_buffer(x, "x", extent_product({m, k}, "m and k"), greenai::float_bytes(a.dtype), false);
    a.m = m;
    a.k = k;
    a.values = checked_buffer(values, "values", weights / 2, greenai::float_bytes(a.dtype), false);
    a.meta = static_cast<const std::uint8_t*>(checked_buffer(meta, "meta", n * greenai::meta_row_bytes(k), 1, false));
    a.bias = bias.is_none() ? nullptr : static_cast<const float*>(checked_buffer(bias, "bias", n, 4, false));
    a.n = n;
    a.y = checked_buffer(y, "y", extent_product({m, n}, "m and n"), greenai::float_bytes(a.dtype), true);
    check_threads(threads);
    py::gil_scoped_release release;
    linear_2to4(a, threads);
}

// The numbers of formats.h, so a test can hold greenai.ops.formats to them.
py::dict format_constants() {
    py::dict d;
    d["int8_max"] = greenai::kInt8Max;
    d["int4_max"] = greenai::kInt4Max;
    d["int4_offset"] = greenai::kInt4Offset;
    d["int4_block"] = greenai::kInt4Block;
    d["per_tensor"] = greenai::kPerTensor;
    d["group_multiple"] = greenai::kGroupMultiple;
    d["float32"] = static_cast<int>(greenai::FloatType::f32);
    d["float16"] = static_cast<int>(greenai::FloatType::f16);
    d["bfloat16"] = static_cast<int>(greenai::FloatType::bf16);
    d["meta_bytes_per_8"] = greenai::meta_row_bytes(8);
    return d;
}

}  // namespace

PYBIND11_MODULE(_C, m) {
    m.doc() = "greenai native core: quantization kernels, build facts and CUDA run-time queries.";

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

    m.def("format_constants", &format_constants,
          "The format numbers the kernels are built with (csrc/formats.h), for the test that\n"
          "checks them against greenai.ops.formats: code ranges, int4 packing, group rules,\n"
          "float dtype codes and 2:4 metadata bytes per row of 8 inputs.");

    // --- CPU quantization kernels (formats: src/greenai/ops/reference.py) ---
    m.def("quantize_cpu", &quantize_cpu, py::arg("w"), py::arg("dtype"), py::arg("n"), py::arg("k"),
          py::arg("bits"), py::arg("group"), py::arg("symmetric"), py::arg("q"), py::arg("scale"),
          py::arg("zero_point"), py::arg("threads"),
          "Quantize w (n, k) into q, scale and zero_point (None when symmetric). group: -1 per tensor,\n"
          "k per row, else a multiple of 32 dividing k. Returns -1, or a row holding NaN/Inf.");
    m.def("dequantize_cpu", &dequantize_cpu, py::arg("q"), py::arg("scale"), py::arg("zero_point"), py::arg("n"),
          py::arg("k"), py::arg("bits"), py::arg("group"), py::arg("out"), py::arg("out_dtype"), py::arg("threads"),
          "Write (q - zero_point) * scale into out (n, k) of out_dtype (0 f32, 1 f16, 2 bf16 as int16).");
    m.def("quantized_linear_cpu", &quantized_linear_cpu, py::arg("x"), py::arg("dtype"), py::arg("m"), py::arg("k"),
          py::arg("q"), py::arg("scale"), py::arg("zero_point"), py::arg("bias"), py::arg("n"), py::arg("bits"),
          py::arg("group"), py::arg("y"), py::arg("threads"),
          "y (m, n) = x (m, k) W^T + bias with W quantized (group k or a multiple of 32 dividing k);\n"
          "float32 accumulation, x and y of the same dtype, bias float32 or None.");
    // --- sparsity kernels (formats: src/greenai/ops/sparse_reference.py) ---
    m.def("channel_norms_cpu", &channel_norms_cpu, py::arg("w"), py::arg("dtype"), py::arg("outer"),
          py::arg("channels"), py::arg("inner"), py::arg("p"), py::arg("out"), py::arg("threads"),
          "out (channels,) float32 = p-norm (p 1 or 2) of each channel of w viewed as (outer, channels, inner);\n"
          "float64 accumulation, NaN propagates.");
    m.def("mask_2to4_cpu", &mask_2to4_cpu, py::arg("w"), py::arg("dtype"), py::arg("n"), py::arg("k"),
          py::arg("mask"), py::arg("threads"),
          "mask (n, k) bool: the 2 largest |w| of every 4 along k (ties to the lower index, NaN largest).");
    m.def("compress_2to4_cpu", &compress_2to4_cpu, py::arg("w"), py::arg("dtype"), py::arg("n"), py::arg("k"),
          py::arg("values"), py::arg("meta"), py::arg("threads"),
          "values (n, k / 2) and meta uint8 (n, ceil(k / 8)) of the 2:4 pattern of w (n, k).");
    m.def("decompress_2to4_cpu", &decompress_2to4_cpu, py::arg("values"), py::arg("meta"), py::arg("dtype"),
          py::arg("n"), py::arg("k"), py::arg("out"), py::arg("threads"),
          "out (n, k): the dense weight of (values, meta), zeros where pruned.");
    m.def("linear_2to4_cpu", &linear_2to4_cpu, py::arg("x"), py::arg("dtype"), py::arg("m"), py::arg("k"),
          py::arg("values"), py::arg("meta"), py::arg("bias"), py::arg("n"), py::arg("y"), py::arg("threads"),
          "y (m, n) = x (m, k) W^T + bias, W = (values, meta) of x's dtype; float32 accumulation,\n"
          "bias float32 or None.");
    greenai::bind_cuda_kernels(m);
    m.def("advise_huge_pages", &greenai::cpu::advise_huge_pages, py::arg("address"), py::arg("bytes"),
          "Ask Linux for transparent huge pages on the 2 MiB-aligned part of a fresh CPU buffer\n"
          "(madvise MADV_HUGEPAGE); False where that does not apply. Never changes its contents.");
    m.def("cpu_isas", &greenai::cpu::supported_isas,
          "Instruction sets the CPU kernels can use on this CPU, best first (avx512, avx2, generic).");
    m.def("cpu_isa", &greenai::cpu::current_isa, "The instruction set the CPU kernels use now.");
    m.def("sparse_cpu_isa", &greenai::cpu::sparse_isa,
          "The sparsity kernels' table under cpu_isa() now: avx512_bf16, avx512, avx2 or generic.");
    m.def("set_cpu_isa", &greenai::cpu::set_isa, py::arg("name"),
          "Use the kernels for one of cpu_isas() (for tests and benchmarks); ValueError otherwise.");
}
