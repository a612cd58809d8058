// Rooflines of this machine (see kernels/roofline.h).

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "core/thread_pool.h"
#include "kernels/cpu/dispatch.h"
#include "kernels/roofline.h"

#pragma GCC diagnostic ignored "-Wpsabi"

namespace dsv4::kernels {

namespace {

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

typedef float v8f __attribute__((vector_size(32)));

// Sums n floats (n a multiple of 32) with four independent 32-byte accumulators.
DSV4_CLONES float sum_floats(const float* p, size_t n) {
  v8f a0{}, a1{}, a2{}, a3{};
  for (size_t i = 0; i + 32 <= n; i += 32) {
    v8f x0, x1, x2, x3;
    std::memcpy(&x0, p + i, 32);
    std::memcpy(&x1, p + i + 8, 32);
    std::memcpy(&x2, p + i + 16, 32);
    std::memcpy(&x3, p + i + 24, 32);
    a0 += x0, a1 += x1, a2 += x2, a3 += x3;
  }
  const v8f a = (a0 + a1) + (a2 + a3);
  return a[0] + a[7];
}

// 12 independent accumulator chains of W-float vectors.
template <int W>
DSV4_CLONES float fma_chains(int64_t iters, float seed) {
  using v = typename Vec<W>::type;
  v acc[12];
  for (int k = 0; k < 12; ++k) acc[k] = v{} + seed * float(k + 1);
  const v a = v{} + 0.999999f, b = v{} + 1e-7f;
  for (int64_t i = 0; i < iters; ++i)
    for (int k = 0; k < 12; ++k) acc[k] = acc[k] * a + b;
  float s = 0;
  for (int k = 0; k < 12; ++k) s += acc[k][0];
  return s;
}

volatile float g_sink;  // keeps the measured sums alive

}  // namespace

double measure_read_bandwidth(int threads, size_t bytes, int passes) {
  if (threads <= 0) threads = ThreadPool::default_threads();
  ThreadPool pool(threads);  // its own threads: the count asked for, as the kernels' pool runs them
  const size_t n = bytes / sizeof(float) / 32 * 32;
  float* p = static_cast<float*>(std::aligned_alloc(4096, n * sizeof(float)));
  if (!p) return 0;
  const size_t chunks = n / 32;
  auto part = [&](int t, int nt, size_t* a, size_t* b) {
    *a = chunks * size_t(t) / size_t(nt) * 32;
    *b = chunks * size_t(t + 1) / size_t(nt) * 32;
  };
  pool.run([&](int t, int nt) {  // first touch by the reading thread
    size_t a, b;
    part(t, nt, &a, &b);
    for (size_t i = a; i < b; ++i) p[i] = 1.f;
  });
  double best = 1e30;
  std::vector<float> sums(size_t(pool.size()));
  for (int pass = 0; pass < std::max(1, passes); ++pass) {
    const auto t0 = std::chrono::steady_clock::now();
    pool.run([&](int t, int nt) {
      size_t a, b;
      part(t, nt, &a, &b);
      sums[size_t(t)] = sum_floats(p + a, b - a);
    });
    best = std::min(best, seconds_since(t0));
    float total = 0;
    for (float v : sums) total += v;
    g_sink = total;
  }
  std::free(p);
  return double(n * sizeof(float)) / best;
}

double measure_fma_peak() {
  const int w = vector_floats();
  const int64_t iters = int64_t(1) << 24 >> (w / 8);
  ThreadPool pool;
  std::vector<float> sums(size_t(pool.size()));
  double best = 1e30;
  for (int pass = 0; pass < 3; ++pass) {
    const auto t0 = std::chrono::steady_clock::now();
    pool.run([&](int t, int) {
      sums[size_t(t)] = w == 16 ? fma_chains<16>(iters, 1.f) : w == 8 ? fma_chains<8>(iters, 1.f) : fma_chains<4>(iters, 1.f);
    });
    best = std::min(best, seconds_since(t0));
    float s = 0;
    for (float v : sums) s += v;
    g_sink = s;
  }
  return double(pool.size()) * double(iters) * 12.0 * double(w) / best;
}

}  // namespace dsv4::kernels
