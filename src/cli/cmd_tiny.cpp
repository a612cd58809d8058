// `dsv4 tiny --out DIR [--preset tiny|small|long|flash|pro] [--layers N] [--release R]
// [--drafter none|mtp|dspark] [--seed N]`: writes a random-weight checkpoint in the official
// layout (model/tiny_checkpoint.h) of the April, Flash-0731 or Pro-0813 release. A new DIR appears atomically (written under a
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
#include "text/embedded_tokenizer.h"

namespace dsv4::cli {

namespace {

struct TinyArgs {
  std::string out, preset = "tiny", release = "april", drafter = "auto";
  int layers = 0, vocab = 0;
  uint64_t seed = 0;
};

void run_tiny(const TinyArgs& a) {
  namespace fs = std::filesystem;
  model::Config c = model::preset_config(a.preset, a.layers);
  // The release picks the drafter unless --drafter names one: April carries the MTP block,
  // 0731/0813 the DSpark stages; the real-shape presets default to none (benchmarks).
  model::DrafterKind kind = a.release == "april" ? model::DrafterKind::mtp : model::DrafterKind::dspark;
  if (a.drafter == "auto" && (a.preset == "flash" || a.preset == "pro") && a.release == "april")
    kind = model::DrafterKind::none;
  else if (a.drafter == "none") kind = model::DrafterKind::none;
  else if (a.drafter == "mtp") kind = model::DrafterKind::mtp;
  else if (a.drafter == "dspark") kind = model::DrafterKind::dspark;
  if (a.vocab > 0) {  // e.g. 8192 for a peer benchmark: the head and embedding shrink, nothing else
    if (a.vocab < 1024) throw Error("--vocab: at least 1024 (the synthetic benchmark prompt uses ids from 1000)");
    c.vocab_size = a.vocab;
  }
  model::set_drafter(c, kind, a.release);
  model::RandomCheckpointOptions opts;
  opts.seed = a.seed;
  if (a.release != "april") opts.name_or_path = "dsv4-random/DeepSeek-V4-" + std::string(a.release == "pro-0813" ? "Pro-0813" : "Flash-0731") + "-layout";
  const auto t0 = std::chrono::steady_clock::now();
  model::RandomCheckpointInfo info;
  fs::path out(a.out);
  if (out.filename().empty()) out = out.parent_path();  // "dir/" -> "dir"
  std::error_code ec;
  if (fs::exists(out)) {
    if (!fs::is_directory(out)) throw Error(a.out + ": exists and is not a directory");
    info = model::write_random_checkpoint(c, out.string(), opts);
    text::write_embedded_v4_tokenizer(out.string());
  } else {
    const fs::path tmp = out.string() + ".tmp." + std::to_string(::getpid());
    try {
      info = model::write_random_checkpoint(c, tmp.string(), opts);
      text::write_embedded_v4_tokenizer(tmp.string());
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
  std::string drafter = "no drafter";
  if (c.drafter_kind() == model::DrafterKind::mtp) drafter = "MTP block";
  if (c.drafter_kind() == model::DrafterKind::dspark)
    drafter = std::to_string(c.dspark.n_stages()) + " DSpark stages (Markov rank " + std::to_string(c.dspark.markov_rank) + ")";
  std::printf("tiny: wrote %s: preset %s, release %s, seed %llu, D=%d, %d layers [%s] + %s, %lld tensors in %d shards, "
              "%.1f MB, %.2f M params, %.2f s\n",
              out.c_str(), a.preset.c_str(), a.release.c_str(), (unsigned long long)a.seed, c.dim, c.n_layers,
              sched.c_str(), drafter.c_str(),
              (long long)info.n_tensors, info.n_shards, double(info.bytes) / 1e6, double(info.params) / 1e6, secs);
}

}  // namespace

void register_tiny(CLI::App& app) {
  auto args = std::make_shared<TinyArgs>();
  auto* cmd = app.add_subcommand("tiny", "Write a random-weight checkpoint in the official DeepSeek-V4 layout");
  cmd->add_option("--out", args->out, "output directory")->required();
  cmd->add_option("--preset", args->preset,
                  "tiny (unit tests, default model) | small (~230 M params) | long (bench --long) | flash | pro "
                  "(real V4-Flash / V4-Pro layer shapes; with --layers)")
      ->capture_default_str()
      ->check(CLI::IsMember({"tiny", "small", "long", "flash", "pro"}));
  cmd->add_option("--layers", args->layers,
                  "flash/pro: this many real-shape layers, from the first CSA layer of the real schedule (0 = all)")
      ->capture_default_str();
  cmd->add_option("--vocab", args->vocab,
                  "vocabulary size instead of the real 129,280 (benchmarks only: the tokenizer stays the real one)")
      ->capture_default_str();
  cmd->add_option("--release", args->release,
                  "layout of: april (MTP block) | flash-0731 | pro-0813 (DSpark drafter, 0731 encoder)")
      ->capture_default_str()
      ->check(CLI::IsMember({"april", "flash-0731", "pro-0813"}));
  cmd->add_option("--drafter", args->drafter, "auto (the release's) | none | mtp | dspark")
      ->capture_default_str()
      ->check(CLI::IsMember({"auto", "none", "mtp", "dspark"}));
  cmd->add_option("--seed", args->seed, "random seed (same seed, same bytes)")->capture_default_str();
  cmd->callback([args] { run_tiny(*args); });
}

}  // namespace dsv4::cli
