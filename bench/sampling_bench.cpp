// Sampler over one DeepSeek-V4 logits row (vocab 129280). Arg 0: "flat", N(0, 2) logits, where
// the top_p 0.9 nucleus is ~40% of the vocab (the worst case for partial selection). Arg 1:
// "peaked", the same floor plus a head of 32 tokens at 18, 17.5, ... (~99% of the mass), closer
// to a trained LM's next-token distribution.
#include <benchmark/benchmark.h>

#include <cmath>
#include <vector>

#include "engine/sampling.h"

namespace {

using dsv4::engine::Rng;
using dsv4::engine::Sampler;
using dsv4::engine::SamplingParams;

constexpr size_t kVocab = 129280;

std::vector<float> bench_logits(bool peaked) {
  Rng rng(7);
  std::vector<float> v(kVocab);
  for (auto& x : v) {
    const double u1 = 1.0 - rng.next_double(), u2 = rng.next_double();
    x = static_cast<float>(2.0 * std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2));
  }
  if (peaked)
    for (int i = 0; i < 32; ++i) v[rng.next_u64() % kVocab] = 18.0f - 0.5f * static_cast<float>(i);
  return v;
}

void run(benchmark::State& state, SamplingParams p) {
  const auto logits = bench_logits(state.range(0) != 0);
  p.seed = 1;
  p.has_seed = true;
  Sampler s(p);
  const std::vector<int32_t> history = {1, 2, 3, 4, 5, 6, 7, 8};
  for (auto _ : state) benchmark::DoNotOptimize(s.sample(logits, history).token);
  state.SetItemsProcessed(state.iterations());
}

void BM_SampleGreedy(benchmark::State& state) {
  SamplingParams p;
  p.temperature = 0;
  run(state, p);
}

void BM_SampleTopP09(benchmark::State& state) {
  SamplingParams p;
  p.temperature = 1.0f;
  p.top_p = 0.9f;
  run(state, p);
}

void BM_SampleFull(benchmark::State& state) {  // temperature 1, no truncation
  run(state, SamplingParams{});
}

void BM_SampleTopK40TopP095(benchmark::State& state) {
  SamplingParams p;
  p.top_k = 40;
  p.top_p = 0.95f;
  p.presence_penalty = 0.5f;
  p.top_logprobs = 5;
  run(state, p);
}

}  // namespace

// Arg: 0 flat, 1 peaked.
BENCHMARK(BM_SampleGreedy)->Arg(1);
BENCHMARK(BM_SampleTopP09)->Arg(0)->Arg(1);
BENCHMARK(BM_SampleFull)->Arg(1);
BENCHMARK(BM_SampleTopK40TopP095)->Arg(0)->Arg(1);
BENCHMARK_MAIN();
