// Dispatch of the sparsity kernels: the instruction set quant.cpp chose (one switch for both
// kernel families, so _C.set_cpu_isa covers these too), work split across the thread pool,
// float32 staging of half-precision activations for the matmul.
#include "cpu/sparse.h"

#include <algorithm>
#include <string>
#include <vector>

#include "cpu/floatconv.h"
#include "cpu/sparse_kernels.h"
#include "cpu/thread_pool.h"
#include "formats.h"

namespace greenai::cpu {
namespace {

// quant.cpp's instruction sets include variants of AVX-512 ("avx512_bf16"), offered only on
// CPUs with the whole AVX-512 set these kernels need: "avx512_bf16" has its own table (the
// AVX-512 one plus a bfloat16 matmul), any other "avx512*" runs the AVX-512 table.
const SparseKernelTable& sparse_kernels() {
    const std::string isa = current_isa();
#ifdef GREENAI_X86_KERNELS
    if (isa == kAvx512Bf16Sparse.name) {
        return kAvx512Bf16Sparse;
    }
    if (isa.rfind("avx512", 0) == 0) {
        return kAvx512Sparse;
    }
    if (isa == kAvx2Sparse.name) {
        return kAvx2Sparse;
    }
#endif
    return kGenericSparse;
}

// Items per task so that each task reads at least about 64 KiB.
std::int64_t grain(std::int64_t item_bytes) {
    return std::max<std::int64_t>(1, (64 * 1024) / std::max<std::int64_t>(item_bytes, 1));
}

}  // namespace

std::string sparse_isa() { return sparse_kernels().name; }

void channel_norms(const NormArgs& args, int threads) {
    const SparseKernelTable& k = sparse_kernels();
    parallel_for(args.channels, grain(args.outer * args.inner * float_bytes(args.dtype)), threads,
                 [&](std::int64_t c0, std::int64_t c1) { k.norms(args, c0, c1); });
}

void mask_2to4(const Sparse24Args& args, int threads) {
    const SparseKernelTable& k = sparse_kernels();
    parallel_for(args.n, grain(args.k * float_bytes(args.dtype)), threads,
                 [&](std::int64_t r0, std::int64_t r1) { k.mask_rows(args, r0, r1); });
}

void compress_2to4(const Sparse24Args& args, int threads) {
    const SparseKernelTable& k = sparse_kernels();
    parallel_for(args.n, grain(args.k * float_bytes(args.dtype)), threads,
                 [&](std::int64_t r0, std::int64_t r1) { k.compress_rows(args, r0, r1); });
}

void decompress_2to4(const Sparse24Args& args, int threads) {
    const SparseKernelTable& k = sparse_kernels();
    parallel_for(args.n, grain(args.k * float_bytes(args.dtype)), threads,
                 [&](std::int64_t r0, std::int64_t r1) { k.decompress_rows(args, r0, r1); });
}

void linear_2to4(const Linear24Args& args, int threads) {
    const SparseKernelTable& k = sparse_kernels();
    const std::int64_t m = args.m, n = args.n, kk = args.k;
    if (m == 0 || n == 0) {
        return;
    }
    std::vector<float> x_staged, y_staged;
    const float* x32 = static_cast<const float*>(args.x);
    float* y32 = static_cast<float*>(args.y);
    const bool bf16_kernel = args.dtype == FloatType::bf16 && k.linear_bf16_rows != nullptr;
    if (bf16_kernel) {
        y_staged.resize(static_cast<std::size_t>(m * n));
        y32 = y_staged.data();
    } else if (args.dtype != FloatType::f32) {
        x_staged.resize(static_cast<std::size_t>(m * kk));
        const auto* x16 = static_cast<const std::uint16_t*>(args.x);
        for (std::int64_t i = 0; i < m * kk; ++i) {
            x_staged[static_cast<std::size_t>(i)] =
                args.dtype == FloatType::f16 ? f16_to_float(x16[i]) : bf16_to_float(x16[i]);
        }
        x32 = x_staged.data();
        y_staged.resize(static_cast<std::size_t>(m * n));
        y32 = y_staged.data();
    }
    const std::int64_t row_bytes = kk / 2 * float_bytes(args.dtype) + meta_row_bytes(kk);
    parallel_for(n, grain(row_bytes), threads, [&](std::int64_t n0, std::int64_t n1) {
        if (bf16_kernel) {
            k.linear_bf16_rows(args, y32, n0, n1);
        } else {
            k.linear_rows(args, x32, y32, n0, n1);
        }
    });
    if (args.dtype != FloatType::f32) {
        auto* y16 = static_cast<std::uint16_t*>(args.y);
        for (std::int64_t i = 0; i < m * n; ++i) {
            const float v = y_staged[static_cast<std::size_t>(i)];
            y16[i] = args.dtype == FloatType::f16 ? float_to_f16(v) : float_to_bf16(v);
        }
    }
}

}  // namespace greenai::cpu
