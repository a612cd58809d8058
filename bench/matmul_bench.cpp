// kernels::matmul on V4-Flash shapes, against a memory roofline measured in the same run.
//
//  - BM_ReadBandwidth: sums a 512 MiB buffer with all OpenMP threads: the machine's achievable
//    read bandwidth (the roofline for decode, which streams every weight byte once per token).
//  - BM_Matmul/<fmt>/<n>: y = W x for n tokens; bytes/s counts the stored weight bytes (FP8: 1 B
//    per weight + scales, FP4: 0.5 B + scales, bf16: 2 B), items/s counts multiply-adds.
//    Decode (n = 1) is memory-bound: compare its bytes/s with BM_ReadBandwidth's. Prefill
//    (n = 256) reuses each decoded row for all tokens: compare its items/s with BM_FmaPeak's
//    (multiply-adds per second with every register busy: the compute roofline).
//
// Shapes (V4-ARCH §2): wq_b-like FP8 [4096 x 1024], an FP4 routed expert's w1 [2048 x 4096]
// (moe_inter_dim x dim of V4-Flash), a bf16 [4096 x 1024]. The weights are random bytes; speed does
// not depend on their values.
#include <benchmark/benchmark.h>
#include <omp.h>

#include <cstring>
#include <random>
#include <vector>

#include "core/dtype.h"
#include "kernels/linear.h"

namespace {

using dsv4::Dtype;
using dsv4::TensorView;
using dsv4::kernels::Linear;
using dsv4::kernels::WeightFormat;

struct Weights {
  std::vector<uint8_t> w, s;
  Linear lin;
  size_t bytes = 0;
};

Weights make(WeightFormat fmt, int64_t out, int64_t in) {
  std::mt19937 rng(1);
  Weights o;
  Linear& l = o.lin;
  l.fmt = fmt;
  l.out = out;
  l.in = in;
  l.ld = in;
  switch (fmt) {
    case WeightFormat::fp8_block128:
      o.w.resize(size_t(out * in));
      for (auto& b : o.w) b = uint8_t(rng() % 0x7e);
      o.s.assign(size_t(((out + 127) / 128) * ((in + 127) / 128)), 120);
      l.w = TensorView{o.w.data(), Dtype::e4m3, 2, {out, in}};
      l.scale = TensorView{o.s.data(), Dtype::e8m0, 2, {(out + 127) / 128, (in + 127) / 128}};
      break;
    case WeightFormat::fp4_block32:
      o.w.resize(size_t(out * in / 2));
      for (auto& b : o.w) b = uint8_t(rng());
      o.s.assign(size_t(out * in / 32), 122);
      l.w = TensorView{o.w.data(), Dtype::u8, 2, {out, in / 2}};
      l.scale = TensorView{o.s.data(), Dtype::e8m0, 2, {out, in / 32}};
      break;
    default:  // bf16
      l.fmt = WeightFormat::bf16;
      o.w.resize(size_t(out * in * 2));
      for (size_t i = 0; i < o.w.size(); i += 2) {
        const uint16_t h = dsv4::f32_to_bf16(float(int(rng() % 200) - 100) * 1e-3f);
        std::memcpy(&o.w[i], &h, 2);
      }
      l.w = TensorView{o.w.data(), Dtype::bf16, 2, {out, in}};
      break;
  }
  o.bytes = o.w.size() + o.s.size();
  return o;
}

void BM_ReadBandwidth(benchmark::State& state) {
  const size_t n = (size_t(512) << 20) / sizeof(uint64_t);
  std::vector<uint64_t> buf(n, 1);
  for (auto _ : state) {
    uint64_t sum = 0;
#pragma omp parallel for reduction(+ : sum) schedule(static)
    for (size_t i = 0; i < n; ++i) sum += buf[i];
    benchmark::DoNotOptimize(sum);
  }
  state.SetBytesProcessed(int64_t(state.iterations()) * int64_t(n * sizeof(uint64_t)));
  state.counters["threads"] = omp_get_max_threads();
}
BENCHMARK(BM_ReadBandwidth)->Unit(benchmark::kMillisecond)->UseRealTime();

// Multiply-add peak: 12 independent 16-lane accumulator chains per thread, compiled for the same
// ISA levels as the kernels (the compute roofline for prefill).
#if defined(__x86_64__) && !defined(__clang__)
#define BENCH_CLONES __attribute__((target_clones("avx512f", "arch=x86-64-v3", "default")))
#else
#define BENCH_CLONES
#endif
typedef float v16 __attribute__((vector_size(64)));
#pragma GCC diagnostic ignored "-Wpsabi"
BENCH_CLONES float fma_chains(int64_t iters, float seed) {
  v16 acc[12];
  for (int k = 0; k < 12; ++k) acc[k] = v16{} + seed * float(k + 1);
  const v16 a = v16{} + 0.999999f, b = v16{} + 1e-7f;
  for (int64_t i = 0; i < iters; ++i)
    for (int k = 0; k < 12; ++k) acc[k] = acc[k] * a + b;
  float s = 0;
  for (int k = 0; k < 12; ++k) s += acc[k][0];
  return s;
}

void BM_FmaPeak(benchmark::State& state) {
  const int64_t iters = 1 << 22;
  for (auto _ : state) {
    float total = 0;
#pragma omp parallel reduction(+ : total)
    total += fma_chains(iters, 1.f);
    benchmark::DoNotOptimize(total);
  }
  state.SetItemsProcessed(int64_t(state.iterations()) * omp_get_max_threads() * iters * 12 * 16);
}
BENCHMARK(BM_FmaPeak)->Unit(benchmark::kMillisecond)->UseRealTime();

void run(benchmark::State& state, WeightFormat fmt, int64_t out, int64_t in) {
  const int64_t n = state.range(0);
  Weights w = make(fmt, out, in);
  std::vector<float> x(size_t(n * in), 0.5f), y(size_t(n * out));
  for (auto _ : state) {
    dsv4::kernels::matmul(w.lin, x.data(), n, in, y.data(), out);
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(int64_t(state.iterations()) * int64_t(w.bytes));
  state.SetItemsProcessed(int64_t(state.iterations()) * n * out * in);
}

void BM_Matmul_fp8(benchmark::State& s) { run(s, WeightFormat::fp8_block128, 4096, 1024); }
void BM_Matmul_fp4(benchmark::State& s) { run(s, WeightFormat::fp4_block32, 2048, 4096); }
void BM_Matmul_bf16(benchmark::State& s) { run(s, WeightFormat::bf16, 4096, 1024); }
BENCHMARK(BM_Matmul_fp8)->Arg(1)->Arg(256)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_Matmul_fp4)->Arg(1)->Arg(256)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_Matmul_bf16)->Arg(1)->Arg(256)->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace
BENCHMARK_MAIN();
