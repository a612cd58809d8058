// Helpers shared by CLI commands (declared in cli/common.h).
#include "cli/common.h"

#include <cstdio>
#include <fstream>
#include <iostream>
#include <iterator>
#include <sstream>

#include <CLI/CLI.hpp>

#include "core/error.h"
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

}  // namespace dsv4::cli
