#include "cpu/memory.h"

#if defined(__linux__)
#include <sys/mman.h>
#endif

namespace greenai::cpu {

bool advise_huge_pages(std::uintptr_t address, std::size_t bytes) {
#if defined(__linux__) && defined(MADV_HUGEPAGE)
    constexpr std::uintptr_t kHuge = std::uintptr_t{2} << 20;
    const std::uintptr_t begin = (address + kHuge - 1) & ~(kHuge - 1);
    const std::uintptr_t end = (address + bytes) & ~(kHuge - 1);
    if (bytes == 0 || end <= begin) {
        return false;
    }
    return madvise(reinterpret_cast<void*>(begin), end - begin, MADV_HUGEPAGE) == 0;
#else
    (void)address;
    (void)bytes;
    return false;
#endif
}

}  // namespace greenai::cpu
