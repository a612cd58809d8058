// dsv4 engine: the end-to-end benchmark at context frontiers (`dsv4 bench`, STYLE.md
// "Benchmarks"): one sequence is prefilled up to each frontier in turn (chunked, logits only for
// the last token of a chunk); at each frontier a clone of the state decodes `gen` greedy tokens,
// so the prefill continues from exactly the frontier. Rows report prefill tok/s of the segment
// that reached the frontier, decode ms/token, and the state's bytes (measured and modelled).
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "engine/generate.h"
#include "model/forward.h"

namespace dsv4::engine {

struct FrontierBenchOptions {
  std::vector<int64_t> contexts;  // ascending, positive
  int gen = 32;                   // decoded tokens per frontier (>= 1)
  int64_t chunk = kDefaultPrefillChunk;
  uint64_t seed = 0;              // of the synthetic prompt tokens
  // Instead of prefilling, fill the state to each frontier with synthetic compressed entries,
  // indexer keys and window rows of the right count and format (fill_state_synthetic), so decode
  // at a 1M context can be timed at real width without hours of prefill. prefill_* stay 0.
  bool synthetic_state = false;
};

struct FrontierRow {
  int64_t context = 0;          // tokens in the state when decoding starts
  int64_t prefill_tokens = 0;   // tokens of the segment that reached this frontier
  double prefill_seconds = 0;   // of that segment
  double prefill_total_seconds = 0;  // from 0 to this frontier
  int gen = 0;
  double decode_seconds = 0;    // of the `gen` decode steps (forward passes only)
  size_t state_bytes = 0;       // SeqState::bytes() at the frontier
  size_t state_bytes_model = 0; // cache::state_bytes_at(shape, context).total()
  size_t rss_bytes = 0;         // process resident set at the frontier (0 if unknown)

  double prefill_tok_s() const { return prefill_seconds > 0 ? double(prefill_tokens) / prefill_seconds : 0; }
  double decode_ms_per_token() const { return gen > 0 ? 1e3 * decode_seconds / gen : 0; }
  double decode_tok_s() const { return decode_seconds > 0 ? gen / decode_seconds : 0; }
};

// Synthetic prompt ids for benchmarks: deterministic in (seed, position), ordinary vocabulary
// tokens (ids in [1000, min(vocab, 100000))), no specials.
void bench_tokens(uint64_t seed, int64_t first_pos, int64_t n, int32_t vocab, std::vector<int32_t>& out);

// Makes `st` (empty) a state of n tokens (n a multiple of 128, so every compressor window is
// closed and the compressor states are legitimately empty): synthetic token ids, n/m random
// compressed entries per CSA/HCA layer, n/4 random indexer keys per CSA layer and a full window
// ring, each row stored through the state's own codec (native FP8/FP4 or fp32), values N(0, 1).
// Deterministic in seed. Throws dsv4::Error if st is not empty or n is not a multiple of 128.
void fill_state_synthetic(cache::SeqState& st, int64_t n, uint64_t seed);

// Runs the benchmark; `on_row` (if set) sees each row as soon as it is measured, `progress`
// (if set) every prefill chunk. Throws dsv4::Error for bad options.
std::vector<FrontierRow> run_frontier_bench(model::ForwardPass& fp, const FrontierBenchOptions& opt,
                                            const std::function<void(const FrontierRow&)>& on_row = {},
                                            const PrefillProgressFn& progress = {});

// Parses "128,512,2K,1M" (K = 1024, M = 1048576); throws dsv4::Error naming the bad item.
std::vector<int64_t> parse_context_list(const std::string& s);

// CSV (header + one line per row) and an aligned text table.
std::string frontier_csv_header();
std::string frontier_csv_line(const FrontierRow& r);
std::string frontier_table_header();
std::string frontier_table_line(const FrontierRow& r);

// Resident set size of this process in bytes (0 when /proc is unavailable).
size_t current_rss_bytes();

}  // namespace dsv4::engine
