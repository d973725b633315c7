// greenai._cuda_sim build: CUDA's header, supplied by the simulator.
#pragma once
#include "cuda/sim/sim.h"
