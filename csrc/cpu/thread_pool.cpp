#include "cpu/thread_pool.h"

#include <pthread.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

namespace greenai::cpu {
namespace {

constexpr int kMaxThreads = 256;

class Pool {
  public:
    // Runs job(i) for every i in [0, tasks) on the calling thread and at most tasks - 1
    // workers: each takes the next unclaimed task until none is left. Workers that have not
    // joined by the time the caller has run out of tasks are not waited for: right after a
    // torch op, a woken worker can wait milliseconds for a CPU that one of libgomp's spinning
    // threads holds, and the caller does its task meanwhile (in one trace, 2 of 12 calls of a
    // 1 ms matrix-vector product waited 3.6 ms for their worker and took 4-8 ms).
    void run(int tasks, const std::function<void(int)>& job) {
        grow(tasks - 1);
        {
            std::lock_guard<std::mutex> lock(mutex_);
            job_ = &job;
            tasks_ = tasks;
            next_.store(0, std::memory_order_relaxed);
            open_ = tasks - 1;
            active_ = 0;
            error_ = nullptr;
            ++generation_;
        }
        wake_.notify_all();
        drain(job);
        std::unique_lock<std::mutex> lock(mutex_);
        open_ = 0;  // every task is claimed: late workers stay out
        done_.wait(lock, [this] { return active_ == 0; });
        job_ = nullptr;
        if (error_) {
            std::rethrow_exception(error_);
        }
    }

    std::mutex& busy() { return busy_; }

  private:
    void grow(int workers) {
        while (static_cast<int>(threads_.size()) < workers) {
            threads_.emplace_back([this] { work(); });
            threads_.back().detach();  // lives as long as the process; see the atfork note
        }
    }

    // Claims and runs tasks until none is left. tasks_ holds still while anyone drains: it is
    // set under the mutex before a run's workers join, and the next run starts only after
    // they have all left.
    void drain(const std::function<void(int)>& job) {
        for (;;) {
            const int i = next_.fetch_add(1, std::memory_order_relaxed);
            if (i >= tasks_) {
                return;
            }
            run_one(job, i);
        }
    }

    void work() {
        std::uint64_t seen = 0;
        for (;;) {
            const std::function<void(int)>* job;
            {
                std::unique_lock<std::mutex> lock(mutex_);
                wake_.wait(lock, [&] { return generation_ != seen; });
                seen = generation_;
                if (open_ == 0) {
                    continue;
                }
                --open_;
                ++active_;
                job = job_;
            }
            drain(*job);
            std::lock_guard<std::mutex> lock(mutex_);
            if (--active_ == 0) {
                done_.notify_one();
            }
        }
    }

    void run_one(const std::function<void(int)>& job, int index) {
        try {
            job(index);
        } catch (...) {
            std::lock_guard<std::mutex> lock(mutex_);
            if (!error_) {
                error_ = std::current_exception();
            }
        }
    }

    std::mutex busy_;  // held by the one caller using the pool
    std::mutex mutex_;
    std::condition_variable wake_;
    std::condition_variable done_;
    std::vector<std::thread> threads_;
    const std::function<void(int)>* job_ = nullptr;
    int tasks_ = 0;
    std::atomic<int> next_{0};  // the next unclaimed task
    int open_ = 0;              // workers that may still join this run
    int active_ = 0;            // workers that joined and have not finished
    std::uint64_t generation_ = 0;
    std::exception_ptr error_;
};

Pool* g_pool = nullptr;
std::once_flag g_atfork_once;

// A forked child has none of the parent's workers (and may have inherited a locked mutex),
// so it starts a fresh pool; the old one is leaked on purpose, since destroying it is unsafe.
void forget_pool_in_child() { g_pool = nullptr; }

Pool& pool() {
    std::call_once(g_atfork_once, [] { pthread_atfork(nullptr, nullptr, forget_pool_in_child); });
    static std::mutex create;
    std::lock_guard<std::mutex> lock(create);
    if (g_pool == nullptr) {
        g_pool = new Pool();
    }
    return *g_pool;
}

}  // namespace

void parallel_for(std::int64_t count, std::int64_t grain, int threads,
                  const std::function<void(std::int64_t, std::int64_t)>& fn) {
    if (count <= 0) {
        return;
    }
    grain = std::max<std::int64_t>(grain, 1);
    const std::int64_t most = (count + grain - 1) / grain;
    const int tasks = static_cast<int>(std::min<std::int64_t>({most, std::max(threads, 1), kMaxThreads}));
    if (tasks <= 1) {
        fn(0, count);
        return;
    }
    const auto chunk = [&](int i) {
        const std::int64_t begin = count * i / tasks;
        const std::int64_t end = count * (i + 1) / tasks;
        if (begin < end) {
            fn(begin, end);
        }
    };
    Pool& p = pool();
    std::unique_lock<std::mutex> busy(p.busy(), std::try_to_lock);
    if (!busy.owns_lock()) {
        for (int i = 0; i < tasks; ++i) {
            chunk(i);
        }
        return;
    }
    p.run(tasks, chunk);
}

}  // namespace greenai::cpu
