// The CPU backend's matmul on 1, 2 and 3 threads gives the same bits, with products large enough
// that every parallel part runs on the pool (activation quantisation, the fused and the blocked
// paths): the kernels' per-thread buffers must be the right thread's (a job that named the
// caller's thread_local buffer wrote through a pool thread's empty one and crashed).
#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <vector>

#include "kernels/cpu/cpu_backend.h"
#include "random_linear.h"

namespace dsv4::kernels {
namespace {

TEST(BackendMatmul, SameBitsOnOneTwoAndThreeThreads) {
  CpuBackend one(1), two(2), three(3);
  const int64_t out = 300, in = 1024;
  std::mt19937 rng(5);
  std::normal_distribution<float> nd(0.f, 1.f);
  std::vector<float> x(size_t(96 * in));
  for (auto& v : x) v = nd(rng);
  for (WeightFormat f : {WeightFormat::bf16, WeightFormat::fp8_block128, WeightFormat::fp4_block32}) {
    test::Owned o = test::make_random_linear(f, out, in, 21);
    for (int64_t n : {int64_t(1), int64_t(4), int64_t(7), int64_t(96)}) {
      for (bool act_fp8 : {false, true}) {
        MatmulOpts opts;
        opts.act_fp8 = act_fp8;
        std::vector<float> y1(size_t(n * out)), y2(y1.size()), y3(y1.size());
        one.matmul(o.lin, x.data(), n, in, y1.data(), out, opts);
        two.matmul(o.lin, x.data(), n, in, y2.data(), out, opts);
        three.matmul(o.lin, x.data(), n, in, y3.data(), out, opts);
        EXPECT_EQ(std::memcmp(y1.data(), y2.data(), y1.size() * 4), 0) << int(f) << " n=" << n << " act_fp8=" << act_fp8;
        EXPECT_EQ(std::memcmp(y1.data(), y3.data(), y1.size() * 4), 0) << int(f) << " n=" << n << " act_fp8=" << act_fp8;
      }
    }
  }
}

}  // namespace
}  // namespace dsv4::kernels
