// kernels::matmul on V4-Flash shapes, against rooflines measured in the same run.
//
//  - BM_ReadBandwidth/<threads>: kernels::measure_read_bandwidth with 1 thread and with all OpenMP
//    threads (1 GiB, each thread its own contiguous part, best of 5 passes): the roofline for
//    decode, which streams every weight byte once per token.
//  - BM_FmaPeak: kernels::measure_fma_peak, multiply-adds/s on every thread in the kernels' vector
//    width: the compute roofline for prefill.
//  - BM_Matmul_<fmt>/<n>: y = W x for n tokens; bytes/s counts the stored weight bytes (FP8: 1 B
//    per weight + scales, FP4: 0.5 B + scales, bf16: 2 B), items/s multiply-adds. of_roofline is
//    weight bytes/s over the all-thread read bandwidth, of_fma_peak multiply-adds/s over the peak.
//    Decode (n <= 8) cycles through distinct copies of the weights totalling at least 8x the L3
//    (and 256 MiB), so every weight byte comes from DRAM; prefill (n = 256) uses one copy.
//
// Shapes (V4-ARCH §2): wq_b-like FP8 [4096 x 1024], an FP4 routed expert's w1 [2048 x 4096]
// (moe_inter_dim x dim of V4-Flash), a bf16 [4096 x 1024]. The weights are random bytes; speed does
// not depend on their values.
#include <benchmark/benchmark.h>
#include "core/thread_pool.h"
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <random>
#include <vector>

#include "core/dtype.h"
#include "kernels/cpu/dispatch.h"
#include "kernels/linear.h"
#include "kernels/roofline.h"

namespace {

using dsv4::Dtype;
using dsv4::TensorView;
using dsv4::kernels::Linear;
using dsv4::kernels::WeightFormat;


double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// ---- rooflines (kernels/roofline.h) ---------------------------------------------------------

// The all-thread read bandwidth, measured once per run.
double roofline_bytes_per_s() {
  static const double bw = dsv4::kernels::measure_read_bandwidth();
  return bw;
}

void BM_ReadBandwidth(benchmark::State& state) {
  const int threads = state.range(0) == 0 ? dsv4::ThreadPool::default_threads() : int(state.range(0));
  double bw = 0;
  for (auto _ : state) {
    bw = dsv4::kernels::measure_read_bandwidth(threads);
    state.SetIterationTime(double(size_t(1) << 30) / bw);
  }
  state.SetBytesProcessed(int64_t(state.iterations()) * (int64_t(1) << 30));
  state.counters["threads"] = threads;
}
// 1 thread, then all threads (0)
BENCHMARK(BM_ReadBandwidth)->Arg(1)->Arg(0)->Iterations(1)->UseManualTime()->Unit(benchmark::kMillisecond);

double fma_peak_per_s() {
  static const double p = dsv4::kernels::measure_fma_peak();
  return p;
}

void BM_FmaPeak(benchmark::State& state) {
  double p = 0;
  for (auto _ : state) {
    p = dsv4::kernels::measure_fma_peak();
    state.SetIterationTime(1.0);
  }
  state.counters["G_madd_per_s"] = p * 1e-9;
  state.counters["vector_floats"] = dsv4::kernels::vector_floats();
}
BENCHMARK(BM_FmaPeak)->Iterations(1)->UseManualTime()->Unit(benchmark::kMillisecond);

// ---- matmul ---------------------------------------------------------------------------------

struct Weights {
  std::vector<uint8_t> w, s;
  // FP8: whether the tensor holds NaN codes, scanned once on first use as the model's weights are
  // (model/weights.cpp); shared by the copies, which hold the same bytes
  std::shared_ptr<std::atomic<int8_t>> nan_codes;
  Linear lin;
  size_t bytes = 0;
};

Weights make(WeightFormat fmt, int64_t out, int64_t in, uint32_t seed) {
  std::mt19937 rng(seed);
  Weights o;
  Linear& l = o.lin;
  l.fmt = fmt;
  l.out = out;
  l.in = in;
  l.ld = in;
  auto fill = [&](std::vector<uint8_t>& v, uint32_t mod) {
    for (size_t i = 0; i < v.size(); i += 4) {
      uint32_t r = rng();
      for (size_t k = i; k < std::min(v.size(), i + 4); ++k, r >>= 8) v[k] = uint8_t(mod ? (r & 0xff) % mod : r);
    }
  };
  switch (fmt) {
    case WeightFormat::fp8_block128:
      o.w.resize(size_t(out * in));
      fill(o.w, 0x7e);
      o.s.assign(size_t(((out + 127) / 128) * ((in + 127) / 128)), 120);
      l.w = TensorView{o.w.data(), Dtype::e4m3, 2, {out, in}};
      l.scale = TensorView{o.s.data(), Dtype::e8m0, 2, {(out + 127) / 128, (in + 127) / 128}};
      o.nan_codes = std::make_shared<std::atomic<int8_t>>(int8_t(-1));
      l.nan_codes = o.nan_codes.get();
      break;
    case WeightFormat::fp4_block32:
      o.w.resize(size_t(out * in / 2));
      fill(o.w, 0);
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

size_t l3_bytes() {
  const long l3 = sysconf(_SC_LEVEL3_CACHE_SIZE);
  return l3 > 0 ? size_t(l3) : size_t(32) << 20;
}

// The weight copies for one format: one for prefill, enough for decode that the working set is
// far beyond the L3 (kept for the whole run: repetitions reuse them).
const std::vector<Weights>& weights(WeightFormat fmt, int64_t out, int64_t in, bool decode) {
  static std::map<std::pair<int, bool>, std::vector<Weights>> cache;
  std::vector<Weights>& ws = cache[{int(fmt), decode}];
  if (!ws.empty()) return ws;
  ws.push_back(make(fmt, out, in, 1));
  const size_t want = decode ? std::max(size_t(256) << 20, 8 * l3_bytes()) : 0;
  while (ws.size() * ws[0].bytes < want) {
    Weights c = ws[0];  // distinct memory, same values (speed does not depend on them)
    c.lin.w.data = c.w.data();
    c.lin.scale.data = c.s.empty() ? nullptr : c.s.data();
    ws.push_back(std::move(c));  // moving keeps the buffers where they are
  }
  return ws;
}

void run(benchmark::State& state, WeightFormat fmt, int64_t out, int64_t in) {
  const int64_t n = state.range(0);
  const double roof = roofline_bytes_per_s(), peak = fma_peak_per_s();
  const std::vector<Weights>& ws = weights(fmt, out, in, n <= 8);
  std::vector<float> x(size_t(n * in), 0.5f), y(size_t(n * out));
  size_t k = 0;
  double best = 1e30;  // fastest single call: robust to other load on a shared machine
  for (auto _ : state) {
    const auto t0 = std::chrono::steady_clock::now();
    dsv4::kernels::matmul(ws[k].lin, x.data(), n, in, y.data(), out);
    benchmark::ClobberMemory();
    best = std::min(best, seconds_since(t0));
    k = k + 1 == ws.size() ? 0 : k + 1;
  }
  const double it = double(state.iterations()), bytes = double(ws[0].bytes), madds = double(n * out * in);
  state.SetBytesProcessed(int64_t(it * bytes));
  state.SetItemsProcessed(int64_t(it * madds));
  state.counters["copies"] = double(ws.size());
  state.counters["best_call_GBps"] = bytes / best * 1e-9;
  state.counters["best_call_Gmadds"] = madds / best * 1e-9;
  state.counters["of_roofline"] = benchmark::Counter(it * bytes / roof, benchmark::Counter::kIsRate);
  state.counters["of_fma_peak"] = benchmark::Counter(it * madds / peak, benchmark::Counter::kIsRate);
}

void BM_Matmul_fp8(benchmark::State& s) { run(s, WeightFormat::fp8_block128, 4096, 1024); }
void BM_Matmul_fp4(benchmark::State& s) { run(s, WeightFormat::fp4_block32, 2048, 4096); }
void BM_Matmul_bf16(benchmark::State& s) { run(s, WeightFormat::bf16, 4096, 1024); }
BENCHMARK(BM_Matmul_fp8)->Arg(1)->Arg(4)->Arg(256)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_Matmul_fp4)->Arg(1)->Arg(4)->Arg(256)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_Matmul_bf16)->Arg(1)->Arg(4)->Arg(256)->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace
BENCHMARK_MAIN();
