// `dsv4 tiny --out DIR [--preset tiny|small] [--seed N]`: writes a random-weight checkpoint in the
// official layout (model/tiny_checkpoint.h). A new DIR appears atomically (written under a
// temporary name next to it, then renamed); into an existing DIR each file is replaced atomically.
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>

#include "cli/commands.h"
#include "core/error.h"
#include "model/tiny_checkpoint.h"

namespace dsv4::cli {

namespace {

struct TinyArgs {
  std::string out, preset = "tiny";
  uint64_t seed = 0;
};

void run_tiny(const TinyArgs& a) {
  namespace fs = std::filesystem;
  const model::Config c = model::preset_config(a.preset);
  model::RandomCheckpointOptions opts;
  opts.seed = a.seed;
  const auto t0 = std::chrono::steady_clock::now();
  model::RandomCheckpointInfo info;
  fs::path out(a.out);
  if (out.filename().empty()) out = out.parent_path();  // "dir/" -> "dir"
  std::error_code ec;
  if (fs::exists(out)) {
    if (!fs::is_directory(out)) throw Error(a.out + ": exists and is not a directory");
    info = model::write_random_checkpoint(c, out.string(), opts);
  } else {
    const fs::path tmp = out.string() + ".tmp." + std::to_string(::getpid());
    try {
      info = model::write_random_checkpoint(c, tmp.string(), opts);
    } catch (...) {
      fs::remove_all(tmp, ec);
      throw;
    }
    fs::rename(tmp, out, ec);
    if (ec) {
      fs::remove_all(tmp, ec);
      throw Error(a.out + ": cannot rename the new checkpoint into place");
    }
  }
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::string sched;
  for (int l = 0; l < c.n_layers; ++l) sched += std::string(l ? " " : "") + model::attn_kind_name(c.attn_kind(l));
  std::printf("tiny: wrote %s: preset %s, seed %llu, D=%d, %d layers [%s] + MTP, %lld tensors in %d shards, "
              "%.1f MB, %.2f M params, %.2f s\n",
              out.c_str(), a.preset.c_str(), (unsigned long long)a.seed, c.dim, c.n_layers, sched.c_str(),
              (long long)info.n_tensors, info.n_shards, double(info.bytes) / 1e6, double(info.params) / 1e6, secs);
}

}  // namespace

void register_tiny(CLI::App& app) {
  auto args = std::make_shared<TinyArgs>();
  auto* cmd = app.add_subcommand("tiny", "Write a random-weight checkpoint in the official DeepSeek-V4 layout");
  cmd->add_option("--out", args->out, "output directory")->required();
  cmd->add_option("--preset", args->preset, "tiny (unit tests, default model) | small (~230 M params, benchmarks) | long (bench --long)")
      ->capture_default_str()
      ->check(CLI::IsMember({"tiny", "small"}));
  cmd->add_option("--seed", args->seed, "random seed (same seed, same bytes)")->capture_default_str();
  cmd->callback([args] { run_tiny(*args); });
}

}  // namespace dsv4::cli
