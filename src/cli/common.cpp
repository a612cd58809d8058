// Helpers shared by CLI commands (declared in cli/common.h).
#include "cli/common.h"

#include <cstdio>
#include <fstream>
#include <iostream>
#include <iterator>
#include <sstream>

#include <CLI/CLI.hpp>

#include "cli/commands.h"
#include "core/error.h"
#include "model/expert_parallel.h"
#include "model/expert_store.h"

namespace dsv4::cli {

void add_model_load_options(CLI::App* cmd, ModelLoadArgs& a) {
  cmd->add_option("--expert-cache-mb", a.expert_cache_mb,
                  "MiB of RAM for routed experts: less than the experts' size streams them from disk "
                  "(O_DIRECT) into a cache of that size; default: all resident when the checkpoint fits in RAM, "
                  "else a budget from free memory");
}

std::unique_ptr<model::Model> load_model(const std::string& dir, const ModelLoadArgs& a, const char* who) {
  model::ModelLoadOptions o;
  o.expert_cache_bytes = a.expert_cache_mb < 0 ? -1 : a.expert_cache_mb * (int64_t(1) << 20);
  auto m = model::Model::load(dir, o);
  if (who) std::fprintf(stderr, "%s: %s\n", who, m->expert_store().describe().c_str());
  return m;
}

std::string read_whole_file(const std::string& path) {
  if (path == "-") return std::string(std::istreambuf_iterator<char>(std::cin), {});
  std::ifstream f(path, std::ios::binary);
  if (!f) throw Error(path + ": cannot open file");
  std::ostringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

void write_stdout(const std::string& s) {
  if (!s.empty() && std::fwrite(s.data(), 1, s.size(), stdout) != s.size()) throw Error("cannot write to stdout");
}

model::Numerics parse_numerics(const std::string& s) {
  model::Numerics n;
  if (!model::numerics_from_string(s, &n)) throw Error("--numerics must be reference or f32, got '" + s + "'");
  return n;
}

void add_expert_parallel_options(CLI::App* cmd) {
  model::ExpertParallelOptions& o = model::expert_parallel_options();
  const char* g = "Expert parallelism (under mpirun)";
  cmd->add_option("--expert-map", o.map_file,
                  "JSON {\"ranks\": R, \"layers\": [[rank of expert 0, ...], ...]}: which rank holds each routed expert")
      ->group(g);
  cmd->add_option("--expert-map-out", o.map_out, "write the expert map in use to FILE")->group(g);
  cmd->add_option_function<std::string>(
         "--ep-balance", [&o](const std::string& v) { o.balance_bytes = v == "bytes"; },
         "default map: bytes (rank 0's share counts the replicated rest of the model) | experts (equal expert bytes)")
      ->check(CLI::IsMember({"bytes", "experts"}))
      ->group(g);
  cmd->add_option("--ep-timeout", o.timeout_s, "seconds to wait for a rank's answer to one layer before stopping the job")
      ->capture_default_str()
      ->check(CLI::PositiveNumber)
      ->group(g);
  cmd->add_option("--ep-load-timeout", o.load_timeout_s, "seconds for a rank to load and read its share at start-up")
      ->capture_default_str()
      ->check(CLI::PositiveNumber)
      ->group(g);
}

}  // namespace dsv4::cli
