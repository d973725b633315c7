// CUDA build of dequantize() of csrc/cuda/quant.h: (q - zero_point) * scale, unit by unit.
// Formats and arithmetic: src/greenai/ops/reference.py; the unit layout: quant_units.cuh.
#include <cuda_runtime.h>

#include <cstdint>
#include <type_traits>

#include "cuda/elements.cuh"
#include "cuda/launch.cuh"
#include "cuda/quant.h"
#include "cuda/quant_units.cuh"
#include "formats.h"

namespace greenai::cuda {
namespace {

constexpr int kDequantThreads = 256;

template <class D, int BITS, bool VEC>
__global__ void __launch_bounds__(kDequantThreads)
    dequantize_kernel(const std::uint8_t* __restrict__ q, const float* __restrict__ scale,
                      const std::int8_t* __restrict__ zp, i64 units, i64 seglen,
                      typename D::Bits* __restrict__ out) {
    using L = Lay<D, BITS, VEC>;
    const i64 stride = static_cast<i64>(gridDim.x) * kDequantThreads;
    for (i64 u = static_cast<i64>(blockIdx.x) * kDequantThreads + threadIdx.x; u < units; u += stride) {
        const u64 e0 = static_cast<u64>(L::elem(u, 0));
        const u64 sl = static_cast<u64>(seglen);
        const u64 seg = ((e0 | sl) >> 32) == 0
                            ? static_cast<u64>(static_cast<unsigned>(e0) / static_cast<unsigned>(sl))
                            : e0 / sl;
        const float s = __ldg(scale + seg);
        const int z = zp != nullptr ? static_cast<int>(__ldg(zp + seg)) : 0;
        int c[L::EPU];
        L::load_codes(q, u, c);
#pragma unroll
        for (int j = 0; j < L::NV; ++j) {
            float f[L::VW];
#pragma unroll
            for (int e = 0; e < L::VW; ++e) {
                f[e] = __fmul_rn(static_cast<float>(c[j * L::VW + e] - z), s);
            }
            L::store_vals(out, L::elem(u, j), f);
        }
    }
}

}  // namespace

void dequantize(std::uintptr_t q, std::uintptr_t scale, std::uintptr_t zero_point,
                std::int64_t n, std::int64_t k, int bits, std::int64_t group,
                std::uintptr_t out, int out_dtype, std::uintptr_t stream) {
    constexpr const char* fn = "dequantize";
    check_shape(fn, n, k, bits, group, true);
    const cudaStream_t st = reinterpret_cast<cudaStream_t>(stream);
    const i64 total = n * k;
    const i64 seglen = group == kPerTensor ? total : group;
    const auto* qp = reinterpret_cast<const std::uint8_t*>(q);
    const auto* sp = reinterpret_cast<const float*>(scale);
    const auto* zp = reinterpret_cast<const std::int8_t*>(zero_point);
    with_dtype(out_dtype, fn, [&](auto d) {
        using D = decltype(d);
        auto* op = reinterpret_cast<typename D::Bits*>(out);
        constexpr int VW = kVecWidth<D>;
        with_bits(bits, [&](auto b) {
            constexpr int B = decltype(b)::value;
            const bool vec = aligned(out, 16) && aligned(q, VW) && seglen % VW == 0;
            auto launch = [&](auto vtag) {
                constexpr bool V = decltype(vtag)::value;
                using L = Lay<D, B, V>;
                const i64 units = total / L::EPU;
                launch_kernel(dequantize_kernel<D, B, V>, grid_for(units, kDequantThreads), kDequantThreads, 0, st,
                    qp, sp, zp, units, seglen, op);
                check_launch(fn);
            };
            if (vec) {
                launch(std::true_type{});
            } else {
                launch(std::false_type{});
            }
        });
    });
}

}  // namespace greenai::cuda
