// Memory advice for the CPU kernels' outputs.
#pragma once

#include <cstddef>
#include <cstdint>

namespace greenai::cpu {

// Asks Linux to back the 2 MiB-aligned part of [address, address + bytes) with transparent
// huge pages (madvise MADV_HUGEPAGE) before it is first written. torch's CPU allocator maps
// large tensors fresh from the kernel, and faulting them in 4 KiB pages costs about as much
// as the kernel that fills them (about 20 ms for 45 MB on a 2-core VM, 5 ms with huge pages);
// NumPy does the same for its own arrays. Returns false where the advice does not apply
// (range under 2 MiB, not Linux, THP disabled); the memory works the same either way.
bool advise_huge_pages(std::uintptr_t address, std::size_t bytes);

}  // namespace greenai::cpu
