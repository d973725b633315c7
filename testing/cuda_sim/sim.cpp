// The fiber scheduler behind testing/cuda_sim/sim.h (see its file comment for the model).
#include "cuda_sim/sim.h"

#include <sys/mman.h>
#include <ucontext.h>
#include <unistd.h>

#include <algorithm>
#include <exception>
#include <mutex>
#include <numeric>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "cuda_sim/control.h"

namespace greenai::cuda_sim {

// An anonymous mapping whose last page (or first, for `guard_front`) is PROT_NONE.
class GuardedMapping {
public:
    GuardedMapping() = default;
    GuardedMapping(std::size_t bytes, bool guard_front) {
        const std::size_t page = static_cast<std::size_t>(sysconf(_SC_PAGESIZE));
        usable_ = (bytes + page - 1) / page * page;
        size_ = usable_ + page;
        void* p = mmap(nullptr, size_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED) {
            throw std::runtime_error("greenai.cuda_sim: mmap failed");
        }
        base_ = static_cast<unsigned char*>(p);
        unsigned char* guard = guard_front ? base_ : base_ + usable_;
        if (mprotect(guard, page, PROT_NONE) != 0) {
            munmap(base_, size_);
            throw std::runtime_error("greenai.cuda_sim: mprotect failed");
        }
        front_ = guard_front ? base_ + page : base_;
        guard_front_ = guard_front;
    }
    GuardedMapping(const GuardedMapping&) = delete;
    GuardedMapping& operator=(const GuardedMapping&) = delete;
    GuardedMapping(GuardedMapping&& o) noexcept { swap(o); }
    GuardedMapping& operator=(GuardedMapping&& o) noexcept {
        swap(o);
        return *this;
    }
    ~GuardedMapping() {
        if (base_ != nullptr) {
            munmap(base_, size_);
        }
    }
    // `bytes` (<= usable) ending at the guard page (or starting right after a front guard).
    unsigned char* place(std::size_t bytes) const {
        return guard_front_ ? front_ : front_ + usable_ - bytes;
    }
    std::size_t usable() const { return usable_; }

private:
    void swap(GuardedMapping& o) noexcept {
        std::swap(base_, o.base_);
        std::swap(front_, o.front_);
        std::swap(size_, o.size_);
        std::swap(usable_, o.usable_);
        std::swap(guard_front_, o.guard_front_);
    }
    unsigned char* base_ = nullptr;
    unsigned char* front_ = nullptr;
    std::size_t size_ = 0;
    std::size_t usable_ = 0;
    bool guard_front_ = false;
};

namespace {

constexpr std::size_t kStackBytes = 256 * 1024;
constexpr unsigned kMaxThreadsPerBlock = 1024;
constexpr std::size_t kMaxSharedBytes = 48 * 1024;  // without cudaFuncSetAttribute opt-in

enum class State { Ready, AtBlockBarrier, AtWarpBarrier, Done };

struct Fiber {
    ucontext_t ctx;
    ThreadState ts;
    State state;
};

// Everything below but g_last_error is touched only under g_mutex.
std::mutex g_mutex;
ucontext_t g_scheduler;
Fiber* g_current = nullptr;
std::vector<Fiber> g_fibers;
std::vector<std::vector<unsigned char>> g_stacks;
std::vector<unsigned char> g_slots;  // 16 bytes per thread of the block
GuardedMapping g_smem_map;
unsigned char* g_smem = nullptr;
const std::function<void()>* g_body = nullptr;
std::exception_ptr g_fault;
thread_local cudaError_t g_last_error = cudaSuccess;  // per OS thread, as CUDA's
Order g_order = Order::Forward;
std::mt19937_64 g_rng{0};
std::vector<LaunchRecord> g_launches;

void fiber_main() {
    try {
        (*g_body)();
    } catch (...) {
        if (!g_fault) {
            g_fault = std::current_exception();
        }
    }
    g_current->state = State::Done;
    // returning resumes uc_link, the scheduler
}

void suspend(State state) {
    Fiber* self = g_current;
    self->state = state;
    if (swapcontext(&self->ctx, &g_scheduler) != 0) {
        throw std::runtime_error("greenai.cuda_sim: swapcontext failed");
    }
}

std::vector<std::size_t> visiting_order(std::size_t count) {
    std::vector<std::size_t> order(count);
    std::iota(order.begin(), order.end(), std::size_t{0});
    if (g_order == Order::Reverse) {
        std::reverse(order.begin(), order.end());
    } else if (g_order == Order::Random) {
        std::shuffle(order.begin(), order.end(), g_rng);
    }
    return order;
}

std::string describe_states(std::size_t threads) {
    std::size_t counts[4] = {0, 0, 0, 0};
    for (std::size_t i = 0; i < threads; ++i) {
        ++counts[static_cast<int>(g_fibers[i].state)];
    }
    return std::to_string(counts[1]) + " threads at __syncthreads(), " + std::to_string(counts[2]) +
           " at a warp shuffle, " + std::to_string(counts[3]) + " exited";
}

// Releases the warps whose lanes all wait at a warp barrier, else the block barrier when every
// live thread waits there. False when nothing could be released (every thread exited, or a
// deadlock, which throws).
bool release(std::size_t threads) {
    bool released = false;
    for (std::size_t w0 = 0; w0 < threads; w0 += 32) {
        const std::size_t w1 = std::min(threads, w0 + 32);
        std::size_t waiting = 0, exited = 0;
        for (std::size_t i = w0; i < w1; ++i) {
            waiting += g_fibers[i].state == State::AtWarpBarrier;
            exited += g_fibers[i].state == State::Done;
        }
        if (waiting == 0) {
            continue;
        }
        if (w1 - w0 < 32) {
            throw std::runtime_error("greenai.cuda_sim: full-mask warp shuffle in a partial warp (block of " +
                                     std::to_string(threads) + " threads)");
        }
        if (exited != 0) {
            throw std::runtime_error("greenai.cuda_sim: full-mask warp shuffle after " + std::to_string(exited) +
                                     " lanes of warp " + std::to_string(w0 / 32) + " exited");
        }
        if (waiting == 32) {
            for (std::size_t i = w0; i < w1; ++i) {
                g_fibers[i].state = State::Ready;
            }
            released = true;
        }
    }
    if (released) {
        return true;
    }
    std::size_t at_barrier = 0, live = 0;
    for (std::size_t i = 0; i < threads; ++i) {
        live += g_fibers[i].state != State::Done;
        at_barrier += g_fibers[i].state == State::AtBlockBarrier;
    }
    if (live == 0) {
        return false;
    }
    if (at_barrier == live && live != threads) {
        throw std::runtime_error("greenai.cuda_sim: __syncthreads() after " + std::to_string(threads - live) +
                                 " threads of the block exited (undefined in CUDA)");
    }
    if (at_barrier == live) {
        for (std::size_t i = 0; i < threads; ++i) {
            if (g_fibers[i].state == State::AtBlockBarrier) {
                g_fibers[i].state = State::Ready;
            }
        }
        return true;
    }
    throw std::runtime_error("greenai.cuda_sim: deadlock: " + describe_states(threads) +
                             " (a __syncthreads() not every thread reaches, or lanes of one warp split "
                             "between a shuffle and a barrier)");
}

void run_block(const dim3& grid, const dim3& block, const dim3& block_idx, std::size_t smem) {
    const std::size_t threads = static_cast<std::size_t>(block.x) * block.y * block.z;
    if (smem > 0) {
        std::memset(g_smem, 0xff, smem);  // uninitialised shared memory reads as NaN
    }
    for (std::size_t i = 0; i < threads; ++i) {
        Fiber& f = g_fibers[i];
        const unsigned lin = static_cast<unsigned>(i);
        f.ts.thread_idx = dim3(lin % block.x, lin / block.x % block.y, lin / (block.x * block.y));
        f.ts.block_idx = block_idx;
        f.ts.block_dim = block;
        f.ts.grid_dim = grid;
        f.ts.linear = static_cast<int>(i);
        f.state = State::Ready;
        if (getcontext(&f.ctx) != 0) {
            throw std::runtime_error("greenai.cuda_sim: getcontext failed");
        }
        f.ctx.uc_stack.ss_sp = g_stacks[i].data();
        f.ctx.uc_stack.ss_size = g_stacks[i].size();
        f.ctx.uc_link = &g_scheduler;
        makecontext(&f.ctx, fiber_main, 0);
    }
    for (;;) {
        for (const std::size_t i : visiting_order(threads)) {
            Fiber& f = g_fibers[i];
            if (f.state != State::Ready) {
                continue;
            }
            g_current = &f;
            const int rc = swapcontext(&g_scheduler, &f.ctx);
            g_current = nullptr;
            if (rc != 0) {
                throw std::runtime_error("greenai.cuda_sim: swapcontext failed");
            }
            if (g_fault) {
                std::rethrow_exception(g_fault);
            }
        }
        if (!release(threads)) {
            return;
        }
    }
}

bool valid_config(const dim3& grid, const dim3& block, std::size_t smem) {
    const unsigned long long threads = static_cast<unsigned long long>(block.x) * block.y * block.z;
    return grid.x >= 1 && grid.y >= 1 && grid.z >= 1 && grid.x <= 0x7fffffffu && grid.y <= 65535 &&
           grid.z <= 65535 && block.x >= 1 && block.y >= 1 && block.z >= 1 && block.x <= 1024 &&
           block.y <= 1024 && block.z <= 64 && threads <= kMaxThreadsPerBlock && smem <= kMaxSharedBytes;
}

}  // namespace

const ThreadState& current() {
    if (g_current == nullptr) {
        throw std::runtime_error("greenai.cuda_sim: threadIdx and friends read outside a kernel");
    }
    return g_current->ts;
}

void block_barrier() { suspend(State::AtBlockBarrier); }

void warp_barrier(unsigned mask) {
    if (mask != 0xffffffffu) {
        fault("only full-mask (0xffffffff) warp shuffles are simulated");
    }
    suspend(State::AtWarpBarrier);
}

unsigned char* exchange_slot(int linear) { return g_slots.data() + 16 * static_cast<std::size_t>(linear); }

void* dynamic_shared_memory() {
    if (g_smem == nullptr) {
        fault("dynamic shared memory used by a launch that asked for none");
    }
    return g_smem;
}

void fault(const char* what) { throw std::runtime_error(std::string("greenai.cuda_sim: ") + what); }

void launch(dim3 grid, dim3 block, std::size_t smem, cudaStream_t stream, const std::function<void()>& body) {
    const std::lock_guard<std::mutex> lock(g_mutex);  // one simulated launch at a time
    g_launches.push_back(LaunchRecord{{grid.x, grid.y, grid.z},
                                      {block.x, block.y, block.z},
                                      smem,
                                      reinterpret_cast<std::uintptr_t>(stream)});
    if (!valid_config(grid, block, smem)) {
        g_last_error = cudaErrorInvalidConfiguration;
        return;
    }
    const std::size_t threads = static_cast<std::size_t>(block.x) * block.y * block.z;
    while (g_stacks.size() < threads) {
        g_stacks.emplace_back(kStackBytes);
    }
    g_fibers.resize(std::max(g_fibers.size(), threads));
    g_slots.assign(16 * threads, 0);
    g_smem = nullptr;
    if (smem > 0) {
        if (g_smem_map.usable() < smem) {
            g_smem_map = GuardedMapping(smem, false);
        }
        // 16-byte aligned; the bytes up to the guard page past a size that is no multiple of
        // 16 stay undetected, as on a GPU
        g_smem = reinterpret_cast<unsigned char*>(
            reinterpret_cast<std::uintptr_t>(g_smem_map.place(smem)) & ~std::uintptr_t{15});
    }
    g_body = &body;
    g_fault = nullptr;

    std::vector<dim3> blocks;
    blocks.reserve(static_cast<std::size_t>(grid.x) * grid.y * grid.z);
    for (unsigned z = 0; z < grid.z; ++z) {
        for (unsigned y = 0; y < grid.y; ++y) {
            for (unsigned x = 0; x < grid.x; ++x) {
                blocks.emplace_back(x, y, z);
            }
        }
    }
    for (const std::size_t b : visiting_order(blocks.size())) {
        run_block(grid, block, blocks[b], smem);
    }
    g_body = nullptr;
}

// ---- control.h ----------------------------------------------------------------------------

void set_order(Order order, std::uint64_t seed) {
    std::lock_guard<std::mutex> lock(g_mutex);
    g_order = order;
    g_rng.seed(seed);
}

std::vector<LaunchRecord> take_launches() {
    std::lock_guard<std::mutex> lock(g_mutex);
    std::vector<LaunchRecord> out;
    out.swap(g_launches);
    return out;
}

GuardedBuffer::GuardedBuffer(std::size_t bytes, bool guard_front)
    : bytes_(bytes), map_(std::make_unique<GuardedMapping>(std::max<std::size_t>(bytes, 1), guard_front)) {
    data_ = map_->place(bytes);
}
GuardedBuffer::~GuardedBuffer() = default;

}  // namespace greenai::cuda_sim

cudaError_t cudaGetLastError() {
    const cudaError_t err = greenai::cuda_sim::g_last_error;
    greenai::cuda_sim::g_last_error = cudaSuccess;
    return err;
}

const char* cudaGetErrorName(cudaError_t err) {
    switch (err) {
        case cudaSuccess:
            return "cudaSuccess";
        case cudaErrorInvalidValue:
            return "cudaErrorInvalidValue";
        case cudaErrorInvalidConfiguration:
            return "cudaErrorInvalidConfiguration";
    }
    return "cudaErrorUnknown";
}

const char* cudaGetErrorString(cudaError_t err) {
    switch (err) {
        case cudaSuccess:
            return "no error";
        case cudaErrorInvalidValue:
            return "invalid argument";
        case cudaErrorInvalidConfiguration:
            return "invalid configuration argument";
    }
    return "unknown error";
}
