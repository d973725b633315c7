// greenai_cuda_sim: the CUDA kernels under the CPU simulator (sim.h), with the same
// bindings as greenai._C's *_cuda functions (csrc/bindings_cuda.cpp) plus the simulator's
// controls. Test-only: built with -Ccmake.define.GREENAI_CUDA_SIM=ON, never part of greenai's
// package. Pointers are plain CPU addresses here.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <stdexcept>
#include <string>

#include "bindings_cuda.h"
#include "cuda_sim/control.h"
#include "cuda_sim/selftest.h"

namespace py = pybind11;
namespace sim = greenai::cuda_sim;

PYBIND11_MODULE(greenai_cuda_sim, m) {
    m.doc() =
        "greenai's CUDA kernels compiled for the CPU and run under a simulator of the CUDA\n"
        "execution model (testing/cuda_sim/sim.h), for greenai's tests on machines without a GPU.";

    greenai::bind_cuda_kernels(m);

#ifdef GREENAI_CUDA_SIM_UBSAN
    m.attr("ubsan") = true;
#else
    m.attr("ubsan") = false;
#endif

    m.def(
        "set_order",
        [](const std::string& order, std::uint64_t seed) {
            if (order == "forward") {
                sim::set_order(sim::Order::Forward, seed);
            } else if (order == "reverse") {
                sim::set_order(sim::Order::Reverse, seed);
            } else if (order == "random") {
                sim::set_order(sim::Order::Random, seed);
            } else {
                throw py::value_error("order must be 'forward', 'reverse' or 'random', got '" + order + "'");
            }
        },
        py::arg("order"), py::arg("seed") = 0,
        "Order of the blocks of a grid and of a block's threads between barriers.");

    m.def(
        "take_launches",
        [] {
            py::list out;
            for (const sim::LaunchRecord& r : sim::take_launches()) {
                py::dict d;
                d["grid"] = py::make_tuple(r.grid[0], r.grid[1], r.grid[2]);
                d["block"] = py::make_tuple(r.block[0], r.block[1], r.block[2]);
                d["smem"] = r.smem;
                d["stream"] = r.stream;
                out.append(d);
            }
            return out;
        },
        "The launches since the last call (grid, block, smem bytes, stream), oldest first.");

    m.def("selftest", &sim::selftest, py::arg("name"),
          "Run one of the simulator's planted-bug kernels (testing/cuda_sim/selftest.h).");

    py::class_<sim::GuardedBuffer>(m, "GuardedBuffer", py::buffer_protocol(),
                                   "Bytes next to a PROT_NONE page: an access past them faults.")
        .def(py::init<std::size_t, bool>(), py::arg("nbytes"), py::arg("guard_front") = false)
        .def_property_readonly("address",
                               [](const sim::GuardedBuffer& b) { return reinterpret_cast<std::uintptr_t>(b.data()); })
        .def_buffer([](sim::GuardedBuffer& b) {
            return py::buffer_info(b.data(), 1, py::format_descriptor<unsigned char>::format(), 1,
                                   {static_cast<py::ssize_t>(b.size())}, {1});
        });
}
