// core/thread_pool.h: every thread runs each job once, ranges cover [0, n) exactly once, dynamic
// items each run once, nested runs stay on their thread, and thousands of short runs (a decode
// step's pattern) complete.
#include <gtest/gtest.h>

#include <atomic>
#include <thread>
#include <vector>

#include "core/thread_pool.h"

namespace dsv4 {
namespace {

TEST(ThreadPool, EveryThreadRunsEachJobOnce) {
  for (int n : {1, 2, 3, 5}) {
    ThreadPool pool(n);
    ASSERT_EQ(pool.size(), n);
    for (int rep = 0; rep < 200; ++rep) {
      std::vector<std::atomic<int>> hits(static_cast<size_t>(n));
      std::atomic<int> seen_n{0};
      pool.run([&](int t, int nt) {
        hits[size_t(t)].fetch_add(1);
        seen_n.store(nt);
      });
      ASSERT_EQ(seen_n.load(), n);
      for (int t = 0; t < n; ++t) ASSERT_EQ(hits[size_t(t)].load(), 1) << "thread " << t << " of " << n;
    }
  }
}

TEST(ThreadPool, RangesAndDynamicItemsCoverEachIndexOnce) {
  ThreadPool pool(3);
  for (int64_t n : {int64_t(0), int64_t(1), int64_t(2), int64_t(7), int64_t(1000)}) {
    std::vector<std::atomic<int>> a(static_cast<size_t>(n)), b(static_cast<size_t>(n));
    pool.for_ranges(n, [&](int64_t lo, int64_t hi, int) {
      for (int64_t i = lo; i < hi; ++i) a[size_t(i)].fetch_add(1);
    });
    pool.for_each_dynamic(n, 3, [&](int64_t i, int) { b[size_t(i)].fetch_add(1); });
    for (int64_t i = 0; i < n; ++i) {
      ASSERT_EQ(a[size_t(i)].load(), 1) << "range item " << i << " of " << n;
      ASSERT_EQ(b[size_t(i)].load(), 1) << "dynamic item " << i << " of " << n;
    }
  }
}

TEST(ThreadPool, NestedRunStaysOnItsThreadAndManyShortRunsFinish) {
  ThreadPool pool(2);
  std::atomic<int> inner{0};
  pool.run([&](int, int) {
    pool.run([&](int t, int nt) {
      EXPECT_EQ(t, 0);
      EXPECT_EQ(nt, 1);
      inner.fetch_add(1);
    });
  });
  EXPECT_EQ(inner.load(), 2);
  std::atomic<int64_t> sum{0};
  for (int rep = 0; rep < 20000; ++rep) pool.run([&](int t, int) { sum.fetch_add(t + 1); });
  EXPECT_EQ(sum.load(), 20000 * 3);
}

TEST(ThreadPool, TwoCallerThreadsBothComplete) {
  ThreadPool pool(2);
  std::atomic<int64_t> total{0};
  auto caller = [&] {
    for (int rep = 0; rep < 2000; ++rep) pool.for_ranges(10, [&](int64_t lo, int64_t hi, int) { total.fetch_add(hi - lo); });
  };
  std::thread a(caller), b(caller);
  a.join();
  b.join();
  EXPECT_EQ(total.load(), 2 * 2000 * 10);
}

}  // namespace
}  // namespace dsv4
