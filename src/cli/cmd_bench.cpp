// `dsv4 bench`: end-to-end prefill and decode speed at context frontiers
// (engine/frontier_bench.h), as an aligned table on stdout and optionally CSV.
//   dsv4 bench [--model DIR] [--contexts 128,512,2048] [--gen 32] [--csv FILE]
//   dsv4 bench --long [--model DIR] [--max-context 1048576]   (issue 3; not run in CI)
// --long defaults to the narrow `long` preset (model/tiny_checkpoint.h) and the frontiers 1K,
// 32K, 256K and 1M. Rows are printed (and the CSV flushed) as each frontier completes, so a long
// run that is stopped early keeps what it measured.

#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <span>
#include <fstream>
#include <memory>
#include <string>
#include <thread>

#include "cli/commands.h"
#include "cli/common.h"
#include "cli/progress.h"
#include "core/error.h"
#include "engine/default_model.h"
#include "engine/frontier_bench.h"
#include "engine/generate.h"
#include "kernels/backend.h"
#include "kernels/roofline.h"
#include "model/expert_parallel.h"
#include "model/expert_store.h"
#include "model/model_stats.h"
#include "model/tiny_checkpoint.h"

namespace dsv4::cli {

namespace {

struct BenchArgs {
  std::string model, contexts, csv, numerics = "reference";
  ModelLoadArgs load;
  int gen = 0;  // 0: 32, or 8 with --long
  bool long_context = false, synthetic_state = false;
  int64_t max_context = 1048576;
  int64_t chunk = engine::kDefaultPrefillChunk;
  int64_t warmup = -1;  // warm-up prefill tokens before timing (-1: one chunk)
  uint64_t seed = 0;
  std::string expert_budgets;  // issue 14: fractions of the routed experts' bytes
};

std::string proc_field(const char* file, const char* key) {
  std::ifstream f(file);
  std::string line;
  while (std::getline(f, line))
    if (line.rfind(key, 0) == 0) {
      size_t c = line.find(':');
      if (c == std::string::npos) continue;
      size_t b = line.find_first_not_of(" \t", c + 1);
      return b == std::string::npos ? "" : line.substr(b);
    }
  return "?";
}

std::vector<int64_t> frontiers(const BenchArgs& a) {
  if (!a.contexts.empty()) return engine::parse_context_list(a.contexts);
  if (!a.long_context) return {128, 512, 2048};
  if (a.max_context < 1) throw Error("--max-context must be positive");
  std::vector<int64_t> out;
  for (int64_t f : {int64_t(1024), int64_t(32768), int64_t(262144), int64_t(1048576)})
    if (f <= a.max_context) out.push_back(f);
  if (out.empty() || out.back() != a.max_context) out.push_back(a.max_context);
  return out;
}

std::string loadavg() {
  std::string s = read_whole_file("/proc/loadavg");
  while (!s.empty() && s.back() == '\n') s.pop_back();
  return s;
}

// The machine's CPU time so far (/proc/stat's "cpu" line, in ticks): all of it, and the part stolen
// by the hypervisor (a vCPU ready to run while the host ran something else). A shared VM's timings
// move by tens of percent with it, so each bench row says how much was stolen while it ran.
struct MachineCpu {
  unsigned long long total = 0, steal = 0;
  bool ok = false;
};
MachineCpu machine_cpu() {
  MachineCpu m;
  std::ifstream f("/proc/stat");
  std::string cpu;
  unsigned long long v[8] = {};  // user nice system idle iowait irq softirq steal
  if (f >> cpu && cpu == "cpu") {
    int k = 0;
    while (k < 8 && f >> v[k]) ++k;
    if (k == 8) {
      for (unsigned long long x : v) m.total += x;
      m.steal = v[7];
      m.ok = true;
    }
  }
  return m;
}
// "; host steal X% of CPU time" between two readings, to end a report line ("" when /proc/stat has
// no steal field, or for spans under 20 ticks, ~0.1 s of two CPUs, where one tick is 5% or more).
std::string steal_since(const MachineCpu& a, const MachineCpu& b) {
  if (!a.ok || !b.ok || b.total < a.total + 20) return "";
  char buf[160];
  const double pct = 100.0 * double(b.steal - a.steal) / double(b.total - a.total);
  std::snprintf(buf, sizeof buf, "; host steal %.1f%% of CPU time%s", pct,
                pct > 5 ? " (over 5%: other guests took the CPUs, timings unreliable)" : "");
  return buf;
}

// Peak resident set of this process (VmHWM) in bytes; reset_peak_rss() restarts it (clear_refs 5).
int64_t peak_rss() {
  const std::string v = proc_field("/proc/self/status", "VmHWM");
  return v == "?" ? 0 : std::stoll(v) * 1024;
}
void reset_peak_rss() {
  std::ofstream f("/proc/self/clear_refs");
  f << "5";
}

// Issue 14: decode speed with the routed experts under budgets (fractions of their bytes; 1 or more:
// resident, mapped). Measured in the same run: the shards' O_DIRECT read bandwidth at the store's
// read size and queue depth, and RAM read bandwidth. The bound of a budget is a decoded token's
// missed expert bytes (read by the store) at disk speed plus the rest of its weight bytes at RAM
// speed; each row prints tok/s / bound, the hit rate and the peak RSS of that row.
void run_expert_bench(const BenchArgs& a) {
  const model::Numerics num = parse_numerics(a.numerics);
  const std::string dir = !a.model.empty() ? a.model : engine::default_model_dir();
  std::vector<double> fractions;
  {
    std::string s = a.expert_budgets;
    for (size_t p = 0; p <= s.size();) {
      size_t q = s.find(',', p);
      if (q == std::string::npos) q = s.size();
      const std::string item = s.substr(p, q - p);
      double v = 0;
      if (item.find('/') != std::string::npos) v = std::stod(item.substr(0, item.find('/'))) / std::stod(item.substr(item.find('/') + 1));
      else v = std::stod(item);
      if (!(v > 0)) throw Error("--expert-budgets: each budget must be a positive fraction (got '" + item + "')");
      fractions.push_back(v);
      p = q + 1;
    }
  }
  int64_t total = 0, slot = 0, other = 0, n_ids = 1;
  std::printf("bench: load average at start: %s\n", loadavg().c_str());
  double disk_bw = 0;
  int io_threads = 4;
  {
    model::ModelLoadOptions o;
    o.expert_cache_bytes = 0;
    o.expert_force_streaming = true;
    auto probe = model::Model::load(dir, o);
    const model::ExpertStore& st = probe->expert_store();
    total = st.total_expert_bytes();
    slot = st.slot_bytes();
    for (const auto& f : probe->checkpoint().files()) other += int64_t(f->size());
    other -= total;
    // Best of three 2-second runs (the disk is shared: the best is the least disturbed, and a higher
    // bandwidth makes the bound stricter).
    for (int r = 0; r < 3; ++r) {
      const double bw = st.measure_disk_read_bandwidth(2.0, io_threads);
      std::printf("bench: disk read run %d: %.2f GB/s\n", r + 1, bw / 1e9);
      disk_bw = std::max(disk_bw, bw);
    }
    n_ids = int64_t(probe->config().n_layers) * probe->config().n_routed_experts;
    std::printf("bench: experts: %.0f MiB of routed experts (%lld), %.0f MiB of other weights, slot %.2f MiB, reads of "
                "%.2f MiB, %d reads in flight, %s\n",
                double(total) / 1048576.0, (long long)n_ids, double(other) / 1048576.0, double(slot) / 1048576.0,
                double(st.read_bytes()) / 1048576.0, io_threads,
                st.direct_io() ? "O_DIRECT" : "buffered: O_DIRECT refused, the page cache may serve reads");
  }
  const double ram_bw = kernels::measure_read_bandwidth();
  std::printf("bench: measured now: disk read %.2f GB/s (best run; O_DIRECT, random experts), RAM read %.1f GB/s "
              "(%d threads)\n",
              disk_bw / 1e9, ram_bw / 1e9, kernels::default_backend().threads());
  std::printf("bench: numerics %s, prompt %lld tokens, %d decode tokens after %d warm-up tokens per budget\n",
              model::numerics_name(num), (long long)(a.contexts.empty() ? 64 : engine::parse_context_list(a.contexts).front()),
              a.gen > 0 ? a.gen : 16, 4);
  std::printf("bench: hit = uses found in the cache (prefetched ones included); missed = uses not in the cache "
              "before prefetch, in MiB/token; read = what the store read (wasted prefetches included); bound = 1 / "
              "(missed at disk speed + the token's other weight bytes at RAM speed)\n");
  std::printf("bench: vs res = tok/s / (1 / (missed at disk speed + the resident row's time per token)): above 1 when "
              "reads overlap compute (needs the resident budget 1 first)\n");
  std::printf("%-10s %9s %8s %9s %9s %10s %8s %9s %9s %7s %7s %7s %10s %10s\n", "budget", "cache", "hit", "missed",
              "read", "read GB/s", "stall s", "tok/s", "bound", "ratio", "vs res", "", "peak RSS", "RSS limit");
  double resident_s = 0;  // seconds per token of a resident row, once run
  std::fflush(stdout);
  const int gen = a.gen > 0 ? a.gen : 16, warm = 4;
  const int64_t prompt = a.contexts.empty() ? 64 : engine::parse_context_list(a.contexts).front();
  for (double f : fractions) {
    reset_peak_rss();
    ModelLoadArgs la;
    model::ModelLoadOptions o;
    o.expert_cache_bytes = f == 1 ? total : int64_t(f * double(total));
    o.expert_force_streaming = f > 1;  // above 1: streamed anyway, every expert fits (the store's overhead)
    o.expert_io_threads = io_threads;
    auto m = model::Model::load(dir, o);
    model::ExpertStore& st = m->expert_store();
    const model::Config& c = m->config();
    model::ForwardPass fp(*m, num);
    if (!st.streaming()) {
      // Resident (mapped) row: all of the checkpoint read and mapped before timing, so that its
      // decode runs from RAM as its bound assumes (the warm-up tokens touch only their experts;
      // pages evicted from the page cache would be read from disk, first touches fault).
      double secs = 0, bytes = 0;
      for (const auto& file : m->checkpoint().files()) {
        secs += file->populate();
        bytes += double(file->size());
      }
      std::printf("bench: budget %g: the checkpoint's %.1f GB read and mapped before timing (%.1f s)\n", f,
                  bytes / 1e9, secs);
    }
    auto state = fp.new_state();
    std::vector<int32_t> ids;
    engine::bench_tokens(a.seed, 0, prompt + warm + gen, int32_t(c.vocab_size), ids);
    std::vector<float> logits;
    for (int64_t p = 0; p < prompt; p += a.chunk) {
      model::SeqChunk ch{state.get(), std::span<const int32_t>(ids.data() + p, size_t(std::min(a.chunk, prompt - p))), false};
      fp.forward(std::span<model::SeqChunk>(&ch, 1), logits);
    }
    for (int t = 0; t < warm; ++t) {
      model::SeqChunk ch{state.get(), std::span<const int32_t>(&ids[size_t(prompt + t)], 1), false};
      fp.forward(std::span<model::SeqChunk>(&ch, 1), logits);
    }
    st.reset_stats();
    struct rusage ru0 {}, ru1 {};
    ::getrusage(RUSAGE_SELF, &ru0);
    const MachineCpu cpu0 = machine_cpu();
    const auto t0 = std::chrono::steady_clock::now();
    for (int t = 0; t < gen; ++t) {
      model::SeqChunk ch{state.get(), std::span<const int32_t>(&ids[size_t(prompt + warm + t)], 1), false};
      fp.forward(std::span<model::SeqChunk>(&ch, 1), logits);
    }
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    ::getrusage(RUSAGE_SELF, &ru1);
    auto tv = [](const timeval& t) { return double(t.tv_sec) + double(t.tv_usec) / 1e6; };
    const double user_s = tv(ru1.ru_utime) - tv(ru0.ru_utime), sys_s = tv(ru1.ru_stime) - tv(ru0.ru_stime);
    const model::ExpertStoreStats s = st.stats();
    const double tok_s = gen / secs;
    // Bytes a non-speculative store would have read: the uses not in the cache before prefetch.
    const double miss = double(s.acquires - (s.hits - s.prefetch_used)) * (double(total) / double(n_ids)) /
                        double(std::max<uint64_t>(1, s.tokens));
    const double w = double(model::token_work(c).weight_bytes);
    const double bound_s = miss / disk_bw + std::max(0.0, w - miss) / ram_bw;
    const double bound = 1.0 / bound_s;
    const int64_t rss = peak_rss();
    const int64_t limit = int64_t(1.1 * double(other + st.cache_bytes() + int64_t(state->bytes())));
    char name[32];
    std::snprintf(name, sizeof name, "%.3g%s", f, f >= 1 ? " (all)" : "");
    if (!st.streaming()) resident_s = 1.0 / tok_s;
    const double vs_res = resident_s > 0 ? tok_s * (miss / disk_bw + resident_s) : 0;
    std::printf("%-10s %6.0f MiB %7.1f%% %9.1f %9.1f %10.2f %8.2f %9.2f %9.2f %7.3f %7.3f %7s %6.0f MiB %6.0f MiB\n", name,
                double(st.cache_bytes()) / 1048576.0, 100.0 * s.hit_rate(), miss / 1048576.0,
                s.bytes_per_token() / 1048576.0, s.read_gbps(),
                double(s.stall_us) / 1e6, tok_s, bound, tok_s / bound, vs_res, st.streaming() ? "stream" : "mapped",
                double(rss) / 1048576.0, double(limit) / 1048576.0);
    const std::string steal = steal_since(cpu0, machine_cpu());
    std::printf("    %s; CPU per token: user %.3f s, system %.3f s; wall %.3f s%s\n", model::expert_stats_summary(st).c_str(),
                user_s / gen, sys_s / gen, secs / gen, steal.c_str());
    std::fflush(stdout);
  }
  std::printf("bench: load average at end: %s\n", loadavg().c_str());
}

void run_bench(const BenchArgs& a) {
  if (!a.expert_budgets.empty()) return run_expert_bench(a);
  const model::Numerics num = parse_numerics(a.numerics);
  engine::FrontierBenchOptions opt;
  opt.contexts = frontiers(a);
  opt.gen = a.gen > 0 ? a.gen : (a.long_context ? 8 : 32);
  opt.chunk = a.chunk;
  opt.seed = a.seed;
  opt.synthetic_state = a.synthetic_state;
  const std::string dir =
      !a.model.empty() ? a.model : (a.long_context ? engine::preset_model_dir("long") : engine::default_model_dir());
  auto m = load_model(dir, a.load, "bench");
  model::ForwardPass fp(*m, num);
  const model::Config& c = m->config();
  // Decoding at the last frontier needs `gen` more positions: a frontier at the model's maximum
  // context (1M for --long) moves back by `gen` tokens so that every decoded position is valid.
  const int64_t limit = engine::context_limit(c, 0);
  if (!opt.contexts.empty() && opt.contexts.back() + opt.gen > limit && opt.contexts.back() <= limit) {
    const int64_t moved = limit - opt.gen;
    std::fprintf(stderr, "bench: last frontier %lld -> %lld (the %d decoded tokens must fit the context of %lld)\n",
                 (long long)opt.contexts.back(), (long long)moved, opt.gen, (long long)limit);
    opt.contexts.back() = moved;
  }
  if (a.synthetic_state)  // whole compressor windows: each frontier rounds down to a multiple of 128
    for (size_t i = 0; i < opt.contexts.size(); ++i) {
      const int64_t given = opt.contexts[i], f = given / 128 * 128;
      if (f == 0)
        throw Error("bench: --synthetic-state fills whole compressor windows of 128 tokens; frontier " +
                    std::to_string(given) + " is below one window (give 128 or more)");
      if (i && f <= opt.contexts[i - 1])
        throw Error("bench: --synthetic-state rounds frontiers down to multiples of 128; " + std::to_string(given) +
                    " rounds to " + std::to_string(f) + ", not above the previous frontier");
      if (f != given)
        std::fprintf(stderr, "bench: frontier %lld -> %lld (synthetic states hold whole windows of 128 tokens)\n",
                     (long long)given, (long long)f);
      opt.contexts[i] = f;
    }

  std::string sched;
  for (int l = 0; l < c.n_layers; ++l) sched += std::string(l ? "," : "") + model::attn_kind_name(c.attn_kind(l));
  std::printf("bench: model %s: D=%d, %d layers [%s], drafter %s (not run), H=%d, Dh=%d, R=%d, Hi=%d, Di=%d, topk=%d\n",
              dir.c_str(), c.dim, c.n_layers, sched.c_str(), model::drafter_kind_name(m->weights().drafter), c.n_heads, c.head_dim, c.rope_head_dim, c.index_n_heads,
              c.index_head_dim, c.index_topk);
  std::printf("bench: machine: %s, %u hardware threads, %d compute threads, MemTotal %s\n",
              proc_field("/proc/cpuinfo", "model name").c_str(), std::thread::hardware_concurrency(),
              kernels::default_backend().threads(), proc_field("/proc/meminfo", "MemTotal").c_str());
  if (a.synthetic_state)
    std::printf("bench: SYNTHETIC STATE: no prefill; each frontier's state is filled with random compressed entries, "
                "indexer keys and window rows of the right count and format, then decoded\n");
  std::printf("bench: numerics %s, prefill chunk %lld, %d decode tokens per frontier, synthetic prompt seed %llu\n",
              model::numerics_name(num), (long long)opt.chunk, opt.gen, (unsigned long long)opt.seed);
  // Rooflines measured in this run (issue 11): every speed below is also given as a ratio.
  const MachineCpu roof0 = machine_cpu();
  const double bw = kernels::measure_read_bandwidth(), peak = kernels::measure_fma_peak();
  const std::string roof_steal = steal_since(roof0, machine_cpu());
  const model::TokenWork work = model::token_work(c);
  std::printf("bench: rooflines measured now: read bandwidth %.1f GB/s (%d threads), multiply-add peak %.1f G/s%s\n",
              bw / 1e9, kernels::default_backend().threads(), peak / 1e9, roof_steal.c_str());
  std::printf("bench: per token the main model's matmuls read %.1f MB of weights (K of E experts) and do %.2f G "
              "multiply-adds\n",
              double(work.weight_bytes) / 1e6, double(work.weight_macs) / 1e9);
  // Warm-up (as llama-bench's warm-up run): a throwaway state prefilled with other tokens and one
  // decode step, so the timed runs do not pay the first touch of the mapped weights' pages (~10% of a
  // 512-token prefill on one real-shape layer) or of the buffers. Also before synthetic states: their
  // first decode steps would otherwise fault in the routed experts' pages (~6 ms of a ~19 ms step on
  // one real-shape layer), which made 1M / 1K look flatter than it is.
  const int64_t warm_tokens = a.warmup >= 0 ? a.warmup : opt.chunk;
  if (warm_tokens > 0) {
    const auto t0 = std::chrono::steady_clock::now();
    auto st = fp.new_state();
    std::vector<int32_t> ids;
    std::vector<float> logits;
    engine::bench_tokens(a.seed + 1, 0, warm_tokens + 1, int32_t(c.vocab_size), ids);
    engine::prefill(fp, *st, std::span<const int32_t>(ids.data(), size_t(warm_tokens)), logits, opt.chunk);
    engine::decode_step(fp, *st, ids.back(), logits);
    std::printf("bench: warm-up: %lld tokens prefilled and 1 decoded on a throwaway state, %.1f s (not timed below)\n",
                (long long)warm_tokens,
                std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    m->expert_store().reset_stats();  // the summary at the end counts the timed runs
  }
  std::printf("%s", engine::frontier_table_header().c_str());
  std::fflush(stdout);

  std::ofstream csv;
  if (!a.csv.empty()) {
    csv.open(a.csv, std::ios::trunc);
    if (!csv) throw Error(a.csv + ": cannot write");
    csv << engine::frontier_csv_header() << std::flush;
  }
  PrefillProgressPrinter progress("bench", a.long_context ? 10.0 : 2.0);
  // Expert parallelism (issue 15, `mpirun -np N dsv4 bench`): the exchange's traffic and time per
  // token since the previous frontier, and what the formula of the README expects.
  model::ExpertExchange& ex = model::expert_exchange();
  model::ExchangeStats last = ex.stats();
  if (ex.ranks() > 1) {
    int64_t lo = INT64_MAX, hi = 0;
    for (int r = 1; r < ex.ranks(); ++r) {
      lo = std::min(lo, ex.placement().experts_of(r));
      hi = std::max(hi, ex.placement().experts_of(r));
    }
    std::printf("bench: expert parallel over %d ranks: rank 0 holds %lld routed experts, the others %lld..%lld\n",
                ex.ranks(), (long long)ex.placement().experts_of(0), (long long)lo, (long long)hi);
  }
  auto print_exchange = [&](int64_t context) {
    if (ex.ranks() <= 1) return;
    const model::ExchangeStats now = ex.stats();
    auto line = [&](const char* kind, const model::ExchangeStats::Part& a, const model::ExchangeStats::Part& b) {
      const int64_t tok = a.tokens - b.tokens, passes = a.passes - b.passes;
      if (tok <= 0) return;
      const double sent = double(a.bytes_sent - b.bytes_sent) / double(tok);
      const double recv = double(a.bytes_received - b.bytes_received) / double(tok);
      const double formula = model::exchange_bytes_per_token(c, ex.placement(), double(tok) / double(passes));
      std::printf("bench: exchange at %lld %s: %lld tokens, %.0f bytes/token sent + %.0f received, formula %.0f "
                  "(%+.1f%%), %.1f messages/token, %.1f us/token in the exchange\n",
                  (long long)context, kind, (long long)tok, sent, recv, formula, 100 * (sent + recv - formula) / formula,
                  double(a.messages - b.messages) / double(tok), 1e6 * (a.seconds - b.seconds) / double(tok));
    };
    line("prefill", now.prefill, last.prefill);
    line("decode", now.decode, last.decode);
    last = now;
  };
  MachineCpu cpu_before = machine_cpu();
  engine::run_frontier_bench(
      fp, opt,
      [&](const engine::FrontierRow& r) {
        std::printf("%s", engine::frontier_table_line(r).c_str());
        print_exchange(r.context);
        const double dec_bps = double(work.weight_bytes) * r.decode_tok_s();
        const double pre_macs = double(work.weight_macs) * r.prefill_tok_s();
        const MachineCpu cpu_now = machine_cpu();
        const std::string steal = steal_since(cpu_before, cpu_now);
        cpu_before = cpu_now;
        std::printf("    roofline at %lld: decode reads weights at %.2f GB/s = %.3f of read bandwidth; prefill "
                    "%.2f G multiply-adds/s = %.3f of peak%s\n",
                    (long long)r.context, dec_bps / 1e9, dec_bps / bw, pre_macs / 1e9, pre_macs / peak, steal.c_str());
        std::fflush(stdout);
        if (csv.is_open()) {
          csv << engine::frontier_csv_line(r) << std::flush;
          if (!csv) throw Error(a.csv + ": write failed");
        }
      },
      [&](const engine::PrefillProgress& p) { progress(p); });
  const auto mem = ex.memory();
  for (size_t r = 0; r < mem.size(); ++r)
    std::printf("bench: rank %zu RSS %.1f MB (peak %.1f MB)\n", r, double(mem[r].rss_kb) / 1024,
                double(mem[r].peak_kb) / 1024);
  std::printf("bench: %s\n", model::expert_stats_summary(m->expert_store()).c_str());
}

}  // namespace

void register_bench(CLI::App& app) {
  auto a = std::make_shared<BenchArgs>();
  auto* cmd = app.add_subcommand("bench", "End-to-end prefill/decode speed and state bytes at context frontiers");
  cmd->add_option("--model", a->model, "checkpoint directory (default: the embedded model; --long: the long preset)");
  add_model_load_options(cmd, a->load);
  cmd->add_option("--contexts", a->contexts, "frontiers, ascending (default 128,512,2048; --long: 1K,32K,256K,1M)");
  cmd->add_option("--gen", a->gen, "decoded tokens per frontier (default 32; --long: 8)");
  cmd->add_option("--csv", a->csv, "also write the rows as CSV to FILE");
  cmd->add_option("--warmup", a->warmup,
                  "tokens prefilled on a throwaway state before timing (default: one --chunk; 0: none)");
  cmd->add_flag("--long", a->long_context, "long-context benchmark (issue 3): up to --max-context tokens");
  cmd->add_option("--max-context", a->max_context, "--long: last frontier")->capture_default_str();
  cmd->add_option("--chunk", a->chunk, "prefill chunk (tokens per forward pass)")->capture_default_str();
  cmd->add_option("--numerics", a->numerics, "reference | f32")->capture_default_str();
  cmd->add_flag("--synthetic-state", a->synthetic_state,
                "decode only: fill the state to each frontier with synthetic entries/keys of the right count and "
                "format instead of prefilling (frontiers rounded down to multiples of 128)");
  cmd->add_option("--seed", a->seed, "seed of the synthetic prompt tokens")->capture_default_str();
  add_expert_parallel_options(cmd);
  cmd->add_option("--expert-budgets", a->expert_budgets,
                  "issue 14: decode with the routed experts under these budgets, fractions of their bytes "
                  "(e.g. 1/8,1/3,1; 1 = resident, above 1 = streamed although every expert fits), against the bound from disk and RAM bandwidth measured in the same "
                  "run; --contexts' first value is the prompt length (default 64), --gen the decode tokens (16)");
  cmd->callback([a] { run_bench(*a); });
}

}  // namespace dsv4::cli
