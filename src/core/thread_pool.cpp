#include "core/thread_pool.h"

#include "core/alloc_guard.h"

#include <sched.h>

#include <chrono>
#include <cstdlib>
#include <string>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define DSV4_CPU_RELAX() _mm_pause()
#elif defined(__aarch64__)
#define DSV4_CPU_RELAX() asm volatile("yield" ::: "memory")
#else
#define DSV4_CPU_RELAX() ((void)0)
#endif

namespace dsv4 {

namespace {
thread_local bool t_in_run = false;

// How a thread waits for `ready()`: a few pause instructions, then sched_yield() until ~200 us have
// passed, then a futex sleep (`sleep()`). Yielding instead of spinning matters on a shared machine:
// when other processes want the cores, a waiting thread gives its slice away at once (as
// OMP_WAIT_POLICY=passive would), yet on an idle machine sched_yield returns at once and the
// thread picks up the next run within microseconds (the gap between a decode step's runs),
// where a futex wake would cost tens of microseconds per run.
template <class Ready, class Sleep>
void wait_for(Ready&& ready, Sleep&& sleep) {
  for (int i = 0; i < 64; ++i) {
    if (ready()) return;
    DSV4_CPU_RELAX();
  }
  const auto t0 = std::chrono::steady_clock::now();
  for (int i = 1;; ++i) {
    if (ready()) return;
    sched_yield();
    if (i % 16 == 0 && std::chrono::steady_clock::now() - t0 > std::chrono::microseconds(200)) break;
  }
  while (!ready()) sleep();
}

int env_threads(const char* name) {
  const char* v = std::getenv(name);
  if (!v || !*v) return 0;
  char* end = nullptr;
  const long n = std::strtol(v, &end, 10);
  return (end && *end == '\0' && n > 0 && n <= 4096) ? int(n) : 0;
}
}  // namespace

int ThreadPool::default_threads() {
  if (int n = env_threads("DSV4_THREADS")) return n;
  if (int n = env_threads("OMP_NUM_THREADS")) return n;
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof(set), &set) == 0) {
    const int n = CPU_COUNT(&set);
    if (n > 0) return n;
  }
  const unsigned h = std::thread::hardware_concurrency();
  return h > 0 ? int(h) : 1;
}

ThreadPool::ThreadPool(int n_threads) : n_(n_threads > 0 ? n_threads : default_threads()) {
  workers_.reserve(size_t(n_ - 1));
  for (int i = 1; i < n_; ++i) workers_.emplace_back([this, i] { worker(i); });
}

ThreadPool::~ThreadPool() {
  stop_.store(true, std::memory_order_relaxed);
  epoch_.fetch_add(1, std::memory_order_release);
  epoch_.notify_all();
  for (auto& t : workers_) t.join();
}

void ThreadPool::run_impl(Call call, void* ctx) {
  std::unique_lock<std::mutex> lock(run_mu_, std::try_to_lock);
  if (n_ == 1 || t_in_run || !lock.owns_lock()) {
    call(ctx, 0, 1);
    return;
  }
  call_ = call;
  ctx_ = ctx;
  guard_depth_ = alloc_guard_depth();
  pending_.store(n_ - 1, std::memory_order_relaxed);
  epoch_.fetch_add(1, std::memory_order_release);
  epoch_.notify_all();
  t_in_run = true;
  call(ctx, 0, n_);
  t_in_run = false;
  int32_t p = 0;
  wait_for([&] { return (p = pending_.load(std::memory_order_acquire)) == 0; },
           [&] { pending_.wait(p, std::memory_order_acquire); });
}

void ThreadPool::worker(int id) {
  t_in_run = true;  // a run from inside a job stays on its thread
  uint32_t seen = 0;
  for (;;) {
    uint32_t e = seen;
    wait_for([&] { return (e = epoch_.load(std::memory_order_acquire)) != seen; },
             [&] { epoch_.wait(seen, std::memory_order_acquire); });
    seen = e;
    if (stop_.load(std::memory_order_relaxed)) return;
    set_alloc_guard_depth(guard_depth_);  // the caller's alloc guard covers its jobs
    call_(ctx_, id, n_);
    set_alloc_guard_depth(0);
    if (pending_.fetch_sub(1, std::memory_order_acq_rel) == 1) pending_.notify_one();
  }
}

}  // namespace dsv4
