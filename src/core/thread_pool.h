// dsv4 core: the one pool of compute threads (issue 11, DESIGN.md "core/ ... threads"). The CPU
// backend creates it once and every parallel kernel runs on it; model code never sees threads.
//
// run(fn) calls fn(thread, n_threads) on every thread of the pool (the caller is thread 0) and
// returns when all have finished: a fork/join like an OpenMP parallel region, without OpenMP.
// Between runs the workers poll briefly, yielding the core (a decode step issues thousands of
// short runs, and waking a sleeping thread costs tens of microseconds), then sleep on a futex
// (std::atomic::wait), so a machine whose cores are busy with other work is not taken from it by
// idle spinning (issue 11 point 5: libgomp's default spinning made every command ~7x slower there).
//
// A run from inside a run (nested parallelism) or from a second thread while one is in progress
// executes fn(0, 1) on the calling thread: kernels give the same bits for any thread count, so
// this changes speed only.
#pragma once
#include <atomic>
#include <cstdint>
#include <mutex>
#include <thread>
#include <type_traits>
#include <vector>

namespace dsv4 {

class ThreadPool {
 public:
  // n_threads <= 0: default_threads().
  explicit ThreadPool(int n_threads = 0);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return n_; }

  // fn(int thread, int n_threads) on every thread; returns when all are done.
  template <class F>
  void run(F&& fn) {
    using Fn = std::remove_reference_t<F>;
    run_impl([](void* ctx, int t, int n) { (*static_cast<Fn*>(ctx))(t, n); }, const_cast<void*>(static_cast<const void*>(&fn)));
  }

  // Static split of [0, n) into one contiguous range per thread: fn(begin, end, thread).
  // Stays on the calling thread when n < min_parallel.
  template <class F>
  void for_ranges(int64_t n, F&& fn, int64_t min_parallel = 2) {
    if (n <= 0) return;
    if (n < min_parallel || n_ == 1) {
      fn(int64_t(0), n, 0);
      return;
    }
    run([&](int t, int nt) {
      const int64_t a = n * t / nt, b = n * (t + 1) / nt;
      if (a < b) fn(a, b, t);
    });
  }

  // Dynamic schedule: items [0, n) claimed `chunk` at a time; fn(item, thread).
  template <class F>
  void for_each_dynamic(int64_t n, int64_t chunk, F&& fn) {
    if (n <= 0) return;
    std::atomic<int64_t> next{0};
    run([&](int t, int) {
      for (;;) {
        const int64_t a = next.fetch_add(chunk, std::memory_order_relaxed);
        if (a >= n) break;
        const int64_t b = std::min(n, a + chunk);
        for (int64_t i = a; i < b; ++i) fn(i, t);
      }
    });
  }

  // Threads to use when none is asked for: DSV4_THREADS, else OMP_NUM_THREADS (the setting users
  // of OpenMP builds know), else the CPUs this process may run on.
  static int default_threads();

 private:
  using Call = void (*)(void*, int, int);
  void run_impl(Call call, void* ctx);
  void worker(int id);

  int n_ = 1;
  std::vector<std::thread> workers_;
  std::mutex run_mu_;                 // one run at a time; others run serially (see above)
  std::atomic<uint32_t> epoch_{0};    // bumped per run; workers wait for a change
  std::atomic<int32_t> pending_{0};   // workers still running the current job
  std::atomic<bool> stop_{false};
  Call call_ = nullptr;
  void* ctx_ = nullptr;
  int guard_depth_ = 0;  // the caller's alloc-guard depth (core/alloc_guard.h) for the workers
};

}  // namespace dsv4
