// greenai_cuda_sim build: CUDA's header, supplied by the simulator.
#pragma once
#include "cuda_sim/sim.h"
