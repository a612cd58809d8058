// dsv4 engine: one sequence's forward steps for the benchmarks (dsv4 bench, frontier_bench):
// chunked prefill with progress, one-token decode, argmax, and the context limit a front end asks
// for. No generation loop lives here: `dsv4 run` and the server both generate through the
// scheduler (engine/scheduler.h), which runs the one sample -> text -> stop pipeline.
#pragma once
#include <cstdint>
#include <functional>
#include <span>
#include <vector>

#include "cache/seq_state.h"
#include "model/forward.h"

namespace dsv4::engine {

// Prompt tokens per forward pass for `run` and `bench` (`--chunk`), and forward rows per scheduler
// step for `serve` (`--step-tokens`: decode rows first, then prefill chunks). 512, as llama.cpp's default
// micro-batch: each routed expert then gets ~12 tokens of a chunk on average (top-6 of 256) and
// takes the packed GEMM instead of the fused few-token kernels (flash1, 2048-token prefill,
// Zen 3: 140 -> 157 tok/s against 256), for ~160 MiB more scratch whatever the depth.
inline constexpr int64_t kDefaultPrefillChunk = 512;

struct PrefillProgress {
  int64_t done = 0;     // tokens of this call prefilled so far
  int64_t total = 0;    // tokens of this call
  int64_t n_past = 0;   // the state's length now
  double seconds = 0;   // since the call began
};
using PrefillProgressFn = std::function<void(const PrefillProgress&)>;

// Appends `tokens` to `st` in chunks of at most `chunk` rows (chunked prefill equals one-shot
// prefill, issue 3) and leaves the [vocab] logits of the last token in `logits` (only that row
// goes through the LM head). `progress`, when set, runs after every chunk. Empty `tokens`: no-op,
// `logits` untouched.
void prefill(model::ForwardPass& fp, cache::SeqState& st, std::span<const int32_t> tokens, std::vector<float>& logits,
             int64_t chunk = kDefaultPrefillChunk, const PrefillProgressFn& progress = {});

// One decode step: appends `token` to `st`; `logits` receives the [vocab] logits of the next position.
void decode_step(model::ForwardPass& fp, cache::SeqState& st, int32_t token, std::vector<float>& logits);

// Index of the largest logit (ties to the lowest id).
int32_t argmax(std::span<const float> logits);

// Effective context limit for a model and a requested --ctx (0 = the model's).
int64_t context_limit(const model::Config& c, int64_t requested);

}  // namespace dsv4::engine
