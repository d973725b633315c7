// What greenai_cuda_sim's Python side controls and reads of the simulator (sim.h): the
// order blocks and threads run in, the record of launches, and buffers with a guard page.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

namespace greenai::cuda_sim {

// Order of blocks in a grid and of threads between two barriers.
enum class Order { Forward, Reverse, Random };
void set_order(Order order, std::uint64_t seed);

struct LaunchRecord {
    std::array<unsigned, 3> grid;
    std::array<unsigned, 3> block;
    std::size_t smem;
    std::uintptr_t stream;
};
// The launches since the last call, valid or not, oldest first.
std::vector<LaunchRecord> take_launches();

class GuardedMapping;

// `bytes` of memory whose last byte is followed (or, with guard_front, whose first byte is
// preceded) by a PROT_NONE page: a kernel reading or writing past it faults at once.
class GuardedBuffer {
public:
    GuardedBuffer(std::size_t bytes, bool guard_front);
    ~GuardedBuffer();
    GuardedBuffer(const GuardedBuffer&) = delete;
    GuardedBuffer& operator=(const GuardedBuffer&) = delete;
    unsigned char* data() const { return data_; }
    std::size_t size() const { return bytes_; }

private:
    std::size_t bytes_;
    std::unique_ptr<GuardedMapping> map_;
    unsigned char* data_;
};

}  // namespace greenai::cuda_sim
