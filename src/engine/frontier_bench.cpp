#include "engine/frontier_bench.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>

#include "core/error.h"

namespace dsv4::engine {

namespace {
using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

uint64_t splitmix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}
}  // namespace

void bench_tokens(uint64_t seed, int64_t first_pos, int64_t n, int32_t vocab, std::vector<int32_t>& out) {
  const int64_t lo = 1000, hi = std::max<int64_t>(lo + 1, std::min<int64_t>(vocab, 100000));
  out.resize(size_t(n));
  for (int64_t i = 0; i < n; ++i)
    out[size_t(i)] = int32_t(lo + int64_t(splitmix64(seed * 0x100000001B3ull + uint64_t(first_pos + i)) % uint64_t(hi - lo)));
}

size_t current_rss_bytes() {
  std::ifstream f("/proc/self/statm");
  size_t pages = 0, resident = 0;
  if (!(f >> pages >> resident)) return 0;
  return resident * size_t(::sysconf(_SC_PAGESIZE));
}

std::vector<int64_t> parse_context_list(const std::string& s) {
  std::vector<int64_t> out;
  size_t i = 0;
  while (i <= s.size()) {
    size_t j = s.find(',', i);
    if (j == std::string::npos) j = s.size();
    std::string item = s.substr(i, j - i);
    int64_t mult = 1;
    if (!item.empty() && (item.back() == 'K' || item.back() == 'k')) mult = 1024, item.pop_back();
    else if (!item.empty() && (item.back() == 'M' || item.back() == 'm')) mult = 1048576, item.pop_back();
    size_t used = 0;
    int64_t v = 0;
    try {
      v = std::stoll(item, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (item.empty() || used != item.size() || v <= 0)
      throw Error("--contexts: '" + s.substr(i, j - i) + "' is not a positive token count (e.g. 128,2K,1M)");
    out.push_back(v * mult);
    i = j + 1;
  }
  return out;
}

void fill_state_synthetic(cache::SeqState& st, int64_t n, uint64_t seed) {
  if (st.n_past() != 0) throw Error("bench: the synthetic state must start empty");
  if (n <= 0 || n % 128) throw Error("bench: a synthetic state needs a multiple of 128 tokens, got " + std::to_string(n));
  const cache::StateShape& sh = st.shape();
  bench_tokens(seed, 0, n, 100000, st.tokens());
  uint64_t s = seed * 0x9E3779B97F4A7C15ull + 0x632BE59BD9B4E5ull;
  auto normal = [&s]() {  // splitmix64 + Box-Muller (no std distributions: same values everywhere)
    auto next = [&s]() {
      uint64_t z = (s += 0x9E3779B97F4A7C15ull);
      z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
      z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
      return z ^ (z >> 31);
    };
    const double u1 = (double(next() >> 11) + 1.0) / 9007199254740993.0, u2 = double(next() >> 11) / 9007199254740992.0;
    return float(std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2));
  };
  std::vector<float> row(size_t(std::max(sh.head_dim, sh.index_head_dim)));
  auto fill_row = [&](int width) {
    for (int i = 0; i < width; ++i) row[size_t(i)] = normal();
  };
  for (int l = 0; l < sh.n_layers; ++l) {
    cache::LayerState& L = st.layer(l);
    for (int64_t p = std::max<int64_t>(0, n - sh.window); p < n; ++p) {
      fill_row(sh.head_dim);
      st.window_store(l, p, row.data());
    }
    if (L.ratio == 0) continue;
    for (int64_t e = 0; e < n / L.ratio; ++e) {
      fill_row(sh.head_dim);
      L.kv_compressed.append(row.data());
    }
    if (L.ratio != 4) continue;
    for (int64_t e = 0; e < n / 4; ++e) {
      fill_row(sh.index_head_dim);
      L.index_keys.append(row.data());
    }
  }
}

// Stays whole: the prefill/decode alternation is the benchmark; splitting it hides the timing.
std::vector<FrontierRow> run_frontier_bench(model::ForwardPass& fp, const FrontierBenchOptions& opt,
                                            const std::function<void(const FrontierRow&)>& on_row,
                                            const PrefillProgressFn& progress) {
  const model::Config& c = fp.model().config();
  if (opt.contexts.empty()) throw Error("bench: no context frontiers");
  for (size_t i = 0; i < opt.contexts.size(); ++i)
    if (opt.contexts[i] <= 0 || (i && opt.contexts[i] <= opt.contexts[i - 1]))
      throw Error("bench: context frontiers must be positive and ascending");
  if (opt.gen < 1) throw Error("bench: --gen must be >= 1, got " + std::to_string(opt.gen));
  if (opt.chunk < 1) throw Error("bench: --chunk must be >= 1, got " + std::to_string(opt.chunk));
  const int64_t limit = context_limit(c, 0);
  if (opt.contexts.back() + opt.gen > limit)
    throw Error("bench: frontier " + std::to_string(opt.contexts.back()) + " + " + std::to_string(opt.gen) +
                " decoded tokens exceeds the model's context of " + std::to_string(limit));

  std::vector<FrontierRow> rows;
  auto st = fp.new_state();
  std::vector<float> logits, dlogits;
  std::vector<int32_t> seg;
  double total_prefill = 0;
  // Greedy decode of opt.gen tokens on a clone, so the next segment continues from exactly the
  // frontier; only the forward passes are timed.
  auto time_decode = [&](int32_t tok, FrontierRow& row) {
    auto dst = st->clone();
    row.gen = opt.gen;
    for (int g = 0; g < opt.gen; ++g) {
      const auto t1 = Clock::now();
      decode_step(fp, *dst, tok, dlogits);
      row.decode_seconds += seconds_since(t1);
      tok = argmax(dlogits);
    }
  };
  for (int64_t frontier : opt.contexts) {
    FrontierRow row;
    row.context = frontier;
    if (opt.synthetic_state) {  // a fresh state filled to the frontier, no prefill
      st = fp.new_state();
      fill_state_synthetic(*st, frontier, opt.seed);
      row.state_bytes = st->bytes();
      row.state_bytes_model = cache::state_bytes_at(st->shape(), frontier, /*per_page=*/true).total();
      row.rss_bytes = current_rss_bytes();
      bench_tokens(opt.seed, frontier, 1, int32_t(c.vocab_size), seg);
      time_decode(seg[0], row);
      rows.push_back(row);
      if (on_row) on_row(row);
      continue;
    }
    row.prefill_tokens = frontier - st->n_past();
    bench_tokens(opt.seed, st->n_past(), row.prefill_tokens, int32_t(c.vocab_size), seg);
    const auto t0 = Clock::now();
    prefill(fp, *st, seg, logits, opt.chunk, progress);
    row.prefill_seconds = seconds_since(t0);
    total_prefill += row.prefill_seconds;
    row.prefill_total_seconds = total_prefill;
    row.state_bytes = st->bytes();
    row.state_bytes_model = cache::state_bytes_at(st->shape(), frontier, /*per_page=*/true).total();
    row.rss_bytes = current_rss_bytes();

    time_decode(argmax(logits), row);
    rows.push_back(row);
    if (on_row) on_row(row);
  }
  return rows;
}

std::string frontier_csv_header() {
  return "context,prefill_tokens,prefill_s,prefill_tok_s,prefill_total_s,gen,decode_ms_per_tok,decode_tok_s,"
         "state_bytes,state_bytes_model,rss_bytes\n";
}

std::string frontier_csv_line(const FrontierRow& r) {
  char buf[512];
  std::snprintf(buf, sizeof buf, "%lld,%lld,%.6f,%.2f,%.3f,%d,%.4f,%.2f,%zu,%zu,%zu\n", (long long)r.context,
                (long long)r.prefill_tokens, r.prefill_seconds, r.prefill_tok_s(), r.prefill_total_seconds, r.gen,
                r.decode_ms_per_token(), r.decode_tok_s(), r.state_bytes, r.state_bytes_model, r.rss_bytes);
  return buf;
}

std::string frontier_table_header() {
  char buf[256];
  std::snprintf(buf, sizeof buf, "%10s %12s %10s %12s %10s %14s %14s %10s\n", "context", "prefill t/s", "prefill s",
                "decode ms/t", "decode t/s", "state bytes", "state MiB", "RSS MiB");
  return buf;
}

std::string frontier_table_line(const FrontierRow& r) {
  char buf[256];
  std::snprintf(buf, sizeof buf, "%10lld %12.1f %10.1f %12.3f %10.1f %14zu %14.3f %10.1f\n", (long long)r.context,
                r.prefill_tok_s(), r.prefill_total_seconds, r.decode_ms_per_token(), r.decode_tok_s(), r.state_bytes,
                double(r.state_bytes) / 1048576.0, double(r.rss_bytes) / 1048576.0);
  return buf;
}

}  // namespace dsv4::engine
