// Dispatch of the quantization kernels: picks the instruction set, splits rows across the
// thread pool, and does the work that spans rows (per-tensor scales, float32 staging of
// half-precision activations, group sums of x).
#include "cpu/quant.h"

#include <algorithm>
#include <atomic>
#include <cfloat>
#include <limits>
#include <mutex>
#include <stdexcept>
#include <vector>

#include "cpu/quant_kernels.h"
#include "cpu/thread_pool.h"
#include "formats.h"

namespace greenai::cpu {
namespace {

std::vector<const KernelTable*> supported_tables() {
    std::vector<const KernelTable*> tables;
#ifdef GREENAI_X86_KERNELS
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
        __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c")) {
        if (__builtin_cpu_supports("avx512bf16")) {
            tables.push_back(&kAvx512Bf16Kernels);
        }
        tables.push_back(&kAvx512Kernels);
    }
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c")) {
        tables.push_back(&kAvx2Kernels);
    }
#endif
    tables.push_back(&kGenericKernels);
    return tables;
}

const std::vector<const KernelTable*>& tables() {
    static const std::vector<const KernelTable*> all = supported_tables();
    return all;
}

std::atomic<const KernelTable*> g_current{nullptr};

const KernelTable& kernels() {
    const KernelTable* current = g_current.load(std::memory_order_acquire);
    if (current == nullptr) {
        current = tables().front();
        g_current.store(current, std::memory_order_release);
    }
    return *current;
}

// Rows per task so that each task reads at least about 64 KiB.
std::int64_t row_grain(std::int64_t row_bytes) {
    return std::max<std::int64_t>(1, (64 * 1024) / std::max<std::int64_t>(row_bytes, 1));
}

// Sums of each row of x32 (m, k) over groups of `group`, (m, k / group).
std::vector<float> group_sums(const float* x32, std::int64_t m, std::int64_t k, std::int64_t group) {
    const std::int64_t groups = k / group;
    std::vector<float> sums(static_cast<std::size_t>(m * groups));
    for (std::int64_t r = 0; r < m; ++r) {
        for (std::int64_t g = 0; g < groups; ++g) {
            float s = 0.0f;
            const float* p = x32 + r * k + g * group;
            for (std::int64_t i = 0; i < group; ++i) {
                s += p[i];
            }
            sums[static_cast<std::size_t>(r * groups + g)] = s;
        }
    }
    return sums;
}

}  // namespace

std::int64_t quantize(const QuantizeArgs& args, int threads) {
    const KernelTable& k = kernels();
    const std::int64_t grain = row_grain(args.k * float_bytes(args.dtype));
    if (args.group != -1) {
        std::atomic<std::int64_t> bad{-1};
        parallel_for(args.n, grain, threads, [&](std::int64_t r0, std::int64_t r1) {
            const std::int64_t row = k.quantize_rows(args, r0, r1);
            if (row >= 0) {
                std::int64_t none = -1;
                bad.compare_exchange_strong(none, row);
            }
        });
        return bad.load();
    }
    // Per tensor: the range of every chunk, then one scale, then the codes.
    std::mutex merge;
    float lo = std::numeric_limits<float>::infinity();
    float hi = -std::numeric_limits<float>::infinity();
    std::int64_t bad = -1;
    parallel_for(args.n, grain, threads, [&](std::int64_t r0, std::int64_t r1) {
        float clo, chi;
        const bool finite = k.range_rows(args, r0, r1, &clo, &chi);
        std::lock_guard<std::mutex> lock(merge);
        if (!finite && bad < 0) {
            bad = r0;
        }
        lo = std::min(lo, clo);
        hi = std::max(hi, chi);
    });
    if (bad >= 0) {
        return bad;
    }
    const GroupScale s = group_scale(lo, hi, 8, args.symmetric);
    args.scale[0] = s.scale;
    if (args.zero_point != nullptr) {
        args.zero_point[0] = static_cast<std::int8_t>(s.zero_point);
    }
    parallel_for(args.n, grain, threads,
                 [&](std::int64_t r0, std::int64_t r1) { k.encode_rows(args, r0, r1, s); });
    return -1;
}

void dequantize(const DequantizeArgs& args, int threads) {
    const KernelTable& k = kernels();
    const std::int64_t grain = row_grain(args.k * float_bytes(args.out_dtype));
    parallel_for(args.n, grain, threads,
                 [&](std::int64_t r0, std::int64_t r1) { k.dequantize_rows(args, r0, r1); });
}

void quantized_linear(const LinearArgs& args, int threads) {
    const KernelTable& k = kernels();
    const std::int64_t m = args.m, n = args.n, kk = args.k;
    if (m == 0) {
        return;
    }
    // float32 views of x and y (staged when they are half precision).
    std::vector<float> x_staged, y_staged;
    const float* x32 = static_cast<const float*>(args.x);
    if (args.dtype != FloatType::f32) {
        x_staged.resize(static_cast<std::size_t>(m * kk));
        k.to_float(args.x, args.dtype, m * kk, x_staged.data());
        x32 = x_staged.data();
    }
    float* y32 = static_cast<float*>(args.y);
    if (args.dtype != FloatType::f32) {
        y_staged.resize(static_cast<std::size_t>(m * n));
        y32 = y_staged.data();
    }
    const std::int64_t code_row_bytes = code_bytes(1, kk, args.bits);
    if (m <= kDirectMaxRows) {
        // Group sums of x, for the zero point (and the int4 nibble offset).
        std::vector<float> xsum;
        if (args.zero_point != nullptr || args.bits == 4) {
            xsum = group_sums(x32, m, kk, args.group);
        }
        const float* xs = xsum.empty() ? nullptr : xsum.data();
        parallel_for(n, row_grain(code_row_bytes), threads, [&](std::int64_t n0, std::int64_t n1) {
            k.linear_direct(args, x32, xs, y32, n0, n1);
        });
    } else if (args.dtype == FloatType::bf16 && k.linear_tiled_bf16 != nullptr) {
        // Pairs of bf16 x transposed and zero-padded, and the group sums transposed likewise.
        const std::int64_t ldx = (m + kLinearRowAlign - 1) / kLinearRowAlign * kLinearRowAlign;
        const std::int64_t kp = (kk + 1) / 2;
        const std::uint16_t* xb = static_cast<const std::uint16_t*>(args.x);
        std::vector<std::uint32_t> xpT(static_cast<std::size_t>(kp * ldx), 0);
        for (std::int64_t r = 0; r < m; ++r) {
            for (std::int64_t i = 0; i < kk; ++i) {
                const std::uint32_t bits = xb[r * kk + i];
                xpT[static_cast<std::size_t>((i / 2) * ldx + r)] |= i % 2 == 0 ? bits : bits << 16;
            }
        }
        std::vector<float> xsumT;
        if (args.zero_point != nullptr) {
            const std::int64_t groups = kk / args.group;
            const std::vector<float> sums = group_sums(x32, m, kk, args.group);
            xsumT.assign(static_cast<std::size_t>(groups * ldx), 0.0f);
            for (std::int64_t r = 0; r < m; ++r) {
                for (std::int64_t g = 0; g < groups; ++g) {
                    xsumT[static_cast<std::size_t>(g * ldx + r)] = sums[static_cast<std::size_t>(r * groups + g)];
                }
            }
        }
        const std::int64_t blocks = (n + kTileRows - 1) / kTileRows;
        parallel_for(blocks, 1, threads, [&](std::int64_t b0, std::int64_t b1) {
            std::vector<std::uint32_t> tile(static_cast<std::size_t>(kTileRows * kp));
            k.linear_tiled_bf16(args, xpT.data(), ldx, xsumT.empty() ? nullptr : xsumT.data(), y32, b0 * kTileRows,
                                std::min(n, b1 * kTileRows), tile.data());
        });
    } else {
        // x transposed and zero-padded, so the micro-kernel loads whole vectors of rows.
        const std::int64_t ldx = (m + kLinearRowAlign - 1) / kLinearRowAlign * kLinearRowAlign;
        std::vector<float> xT(static_cast<std::size_t>(kk * ldx), 0.0f);
        for (std::int64_t r = 0; r < m; ++r) {
            for (std::int64_t i = 0; i < kk; ++i) {
                xT[static_cast<std::size_t>(i * ldx + r)] = x32[r * kk + i];
            }
        }
        const std::int64_t blocks = (n + kTileRows - 1) / kTileRows;
        parallel_for(blocks, 1, threads, [&](std::int64_t b0, std::int64_t b1) {
            std::vector<float> tile(static_cast<std::size_t>(kTileRows * kk));
            k.linear_tiled(args, xT.data(), ldx, y32, b0 * kTileRows, std::min(n, b1 * kTileRows), tile.data());
        });
    }
    if (args.dtype != FloatType::f32) {
        k.from_float(y32, m * n, args.y, args.dtype);
    }
}

std::vector<std::string> supported_isas() {
    std::vector<std::string> names;
    for (const KernelTable* t : tables()) {
        names.emplace_back(t->name);
    }
    return names;
}

std::string current_isa() { return kernels().name; }

void set_isa(const std::string& name) {
    for (const KernelTable* t : tables()) {
        if (name == t->name) {
            g_current.store(t, std::memory_order_release);
            return;
        }
    }
    std::string known;
    for (const std::string& s : supported_isas()) {
        known += (known.empty() ? "" : ", ") + s;
    }
    throw std::invalid_argument("unknown or unsupported instruction set '" + name + "'; this CPU supports " + known);
}

}  // namespace greenai::cpu
