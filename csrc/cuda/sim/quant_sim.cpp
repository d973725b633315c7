// csrc/cuda/quant.cu compiled as C++ for greenai._cuda_sim (see sim.h).
#include "cuda/quant.cu"
