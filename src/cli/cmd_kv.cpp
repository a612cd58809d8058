// `dsv4 kv --model DIR --context N`: bytes of per-sequence state at context N by layer type, in
// this engine's storage formats (V4-ARCH §3.2, cache/kv_format.h), and the same for an
// equivalent V3.2 stack (V4-ARCH §3.3: one MLA layer per V4 layer, FP8 FlashMLA entry of 656 B
// + FP8 indexer key of 132 B per token) as a ratio.
#include <cstdio>

#include "cache/seq_state.h"
#include "cli/commands.h"
#include "cli/common.h"
#include "core/error.h"
#include "model/config.h"
#include "model/forward.h"

namespace dsv4::cli {

namespace {
struct KvArgs {
  std::string model, config, numerics = "reference";
  int64_t context = 1 << 20;
};

cache::StateShape shape_from_config(const model::Config& c, bool native) {
  return model::state_shape_for(c, native ? model::Numerics::reference : model::Numerics::f32);
}

std::string human(double b) {
  char buf[64];
  if (b >= double(1ull << 30)) std::snprintf(buf, sizeof buf, "%.2f GiB", b / double(1ull << 30));
  else if (b >= double(1ull << 20)) std::snprintf(buf, sizeof buf, "%.2f MiB", b / double(1ull << 20));
  else if (b >= 1024) std::snprintf(buf, sizeof buf, "%.2f KiB", b / 1024);
  else std::snprintf(buf, sizeof buf, "%.0f B", b);
  return buf;
}
}  // namespace

void register_kv(CLI::App& app) {
  auto a = std::make_shared<KvArgs>();
  auto* cmd = app.add_subcommand("kv", "Per-sequence state bytes at a context length, vs a V3.2 stack");
  cmd->add_option("--model", a->model, "checkpoint directory (config only is read)");
  cmd->add_option("--config", a->config, "config.json instead of a checkpoint");
  cmd->add_option("--context", a->context, "context length in tokens")->capture_default_str();
  cmd->add_option("--numerics", a->numerics, "reference (FP8/FP4 rows) | f32 (fp32 rows)")->capture_default_str();
  cmd->callback([a] {
    if (a->model.empty() == a->config.empty()) throw Error("kv: give exactly one of --model or --config");
    if (a->context < 0) throw Error("kv: --context must be >= 0");
    const model::Numerics num = parse_numerics(a->numerics);
    model::Config c = a->model.empty() ? model::config_from_file(a->config) : model::config_from_model_dir(a->model);
    const int64_t L = a->context;
    std::printf("context %lld tokens, numerics %s (KV row %zu B, index key %zu B)\n", (long long)L, a->numerics.c_str(),
                shape_from_config(c, num == model::Numerics::reference).kv_codec().bytes(),
                shape_from_config(c, num == model::Numerics::reference).index_codec().bytes());
    std::printf("%-6s %6s %14s %14s %14s %14s %14s\n", "kind", "layers", "window", "compressor", "kv_compressed",
                "index_keys", "total");
    const cache::StateBytes all = cache::state_bytes_at(shape_from_config(c, num == model::Numerics::reference), L);
    size_t grand = 0;  // KV state by layer type; the token ids come on top
    for (auto kind : {model::AttnKind::swa, model::AttnKind::csa, model::AttnKind::hca}) {
      cache::StateShape s = shape_from_config(c, num == model::Numerics::reference);
      std::vector<int> keep;
      for (int r : s.ratios)
        if ((r == 0 && kind == model::AttnKind::swa) || (r == 4 && kind == model::AttnKind::csa) ||
            (r == 128 && kind == model::AttnKind::hca))
          keep.push_back(r);
      s.ratios = keep;
      s.n_layers = int(keep.size());
      auto b = cache::state_bytes_at(s, L);
      b.tokens = 0;  // per sequence, not per layer
      grand += b.total();
      std::printf("%-6s %6zu %14s %14s %14s %14s %14s\n", model::attn_kind_name(kind), keep.size(),
                  human(double(b.window)).c_str(), human(double(b.compressor)).c_str(),
                  human(double(b.kv_compressed)).c_str(), human(double(b.index_keys)).c_str(),
                  human(double(b.total())).c_str());
    }
    const double v32 = double(c.n_layers) * 788.0 * double(L);
    std::printf("total  %6d %14s   (%lld bytes, %.1f B/token)\n", c.n_layers, human(double(grand)).c_str(),
                (long long)grand, L ? double(grand) / double(L) : 0.0);
    std::printf("+ token ids %s: state of one sequence %s (%zu bytes; admission reserves it with compressed rows in\n"
                "  whole pages of %lld and the snapshots the sequence may hold)\n",
                human(double(all.tokens)).c_str(), human(double(all.total())).c_str(), all.total(),
                (long long)cache::PagedRows::kPageRows);
    std::printf("V3.2-equivalent stack (%d MLA layers x 788 B/token: 656 B FP8 latent + 132 B FP8 index key): %s\n",
                c.n_layers, human(v32).c_str());
    if (L > 0) std::printf("ratio V4 / V3.2-equivalent: %.2f %%\n", 100.0 * double(grand) / v32);
    const double v32_real = 61.0 * 788.0 * double(L);  // DeepSeek-V3.2 itself: 61 layers, 48,068 B/token
    std::printf("DeepSeek-V3.2 (61 layers, 48068 B/token): %s", human(v32_real).c_str());
    if (L > 0) std::printf(", ratio %.2f %%", 100.0 * double(grand) / v32_real);
    std::printf("\n");
  });
}

}  // namespace dsv4::cli
