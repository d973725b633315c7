// The CPU kernels' threads: a small persistent pool of std::threads, sized per call.
//
// greenai links no OpenMP runtime on purpose: torch ships its own (libgomp or Intel's), and
// two OpenMP runtimes in one process oversubscribe the cores or crash. The Python layer
// passes torch.get_num_threads() as the thread count, so greenai's kernels use exactly the
// cores torch was told to use, and only while a kernel runs (workers sleep in between).
#pragma once

#include <cstdint>
#include <functional>

namespace greenai::cpu {

// Splits [0, count) into at most `threads` contiguous chunks of at least `grain` items and
// runs fn(begin, end) on each, the calling thread taking the first, and any that no worker
// has started by the time it is done (a worker the scheduler keeps waiting delays nothing).
// Blocks until all are done; an exception thrown by fn is rethrown here. When another thread is already using the
// pool (two Python threads calling kernels at once), the chunks run in the calling thread.
void parallel_for(std::int64_t count, std::int64_t grain, int threads,
                  const std::function<void(std::int64_t, std::int64_t)>& fn);

}  // namespace greenai::cpu
