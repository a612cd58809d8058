// `dsv4 bench`: end-to-end prefill and decode speed at context frontiers
// (engine/frontier_bench.h), as an aligned table on stdout and optionally CSV.
//   dsv4 bench [--model DIR] [--contexts 128,512,2048] [--gen 32] [--csv FILE]
//   dsv4 bench --long [--model DIR] [--max-context 1048576]   (issue 3; not run in CI)
// --long defaults to the narrow `long` preset (model/tiny_checkpoint.h) and the frontiers 1K,
// 32K, 256K and 1M. Rows are printed (and the CSV flushed) as each frontier completes, so a long
// run that is stopped early keeps what it measured.

#include <cstdio>
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
#include "kernels/backend.h"
#include "kernels/roofline.h"
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
  uint64_t seed = 0;
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

void run_bench(const BenchArgs& a) {
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
  if (a.synthetic_state)
    for (int64_t& f : opt.contexts) f = f / 128 * 128;  // whole compressor windows

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
  const double bw = kernels::measure_read_bandwidth(), peak = kernels::measure_fma_peak();
  const model::TokenWork work = model::token_work(c);
  std::printf("bench: rooflines measured now: read bandwidth %.1f GB/s (%d threads), multiply-add peak %.1f G/s\n",
              bw / 1e9, kernels::default_backend().threads(), peak / 1e9);
  std::printf("bench: per token the main model's matmuls read %.1f MB of weights (K of E experts) and do %.2f G "
              "multiply-adds\n",
              double(work.weight_bytes) / 1e6, double(work.weight_macs) / 1e9);
  std::printf("%s", engine::frontier_table_header().c_str());
  std::fflush(stdout);

  std::ofstream csv;
  if (!a.csv.empty()) {
    csv.open(a.csv, std::ios::trunc);
    if (!csv) throw Error(a.csv + ": cannot write");
    csv << engine::frontier_csv_header() << std::flush;
  }
  PrefillProgressPrinter progress("bench", a.long_context ? 10.0 : 2.0);
  engine::run_frontier_bench(
      fp, opt,
      [&](const engine::FrontierRow& r) {
        std::printf("%s", engine::frontier_table_line(r).c_str());
        const double dec_bps = double(work.weight_bytes) * r.decode_tok_s();
        const double pre_macs = double(work.weight_macs) * r.prefill_tok_s();
        std::printf("    roofline at %lld: decode reads weights at %.2f GB/s = %.3f of read bandwidth; prefill "
                    "%.2f G multiply-adds/s = %.3f of peak\n",
                    (long long)r.context, dec_bps / 1e9, dec_bps / bw, pre_macs / 1e9, pre_macs / peak);
        std::fflush(stdout);
        if (csv.is_open()) {
          csv << engine::frontier_csv_line(r) << std::flush;
          if (!csv) throw Error(a.csv + ": write failed");
        }
      },
      [&](const engine::PrefillProgress& p) { progress(p); });
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
  cmd->add_flag("--long", a->long_context, "long-context benchmark (issue 3): up to --max-context tokens");
  cmd->add_option("--max-context", a->max_context, "--long: last frontier")->capture_default_str();
  cmd->add_option("--chunk", a->chunk, "prefill chunk (tokens per forward pass)")->capture_default_str();
  cmd->add_option("--numerics", a->numerics, "reference | f32")->capture_default_str();
  cmd->add_flag("--synthetic-state", a->synthetic_state,
                "decode only: fill the state to each frontier with synthetic entries/keys of the right count and "
                "format instead of prefilling (frontiers rounded down to multiples of 128)");
  cmd->add_option("--seed", a->seed, "seed of the synthetic prompt tokens")->capture_default_str();
  cmd->callback([a] { run_bench(*a); });
}

}  // namespace dsv4::cli
