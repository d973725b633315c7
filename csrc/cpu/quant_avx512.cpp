// The quantization kernels for AVX-512 (F, BW, VL, DQ) with FMA and F16C; used only when the
// CPU reports all of them (quant.cpp), so the module still runs on CPUs without AVX-512.
#include "cpu/quant_kernels.h"

#ifdef GREENAI_X86_KERNELS

#define GREENAI_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")))

#include "cpu/quant_avx512_trait.h"
#include "cpu/quant_kernels_impl.h"

namespace greenai::cpu {
const KernelTable kAvx512Kernels = Kernels<Avx512>::table("avx512");
}  // namespace greenai::cpu

#endif  // GREENAI_X86_KERNELS
