// Helpers shared by CLI commands.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "model/forward.h"

namespace CLI {
class App;
}

namespace dsv4::cli {

// The options of every command that loads a model (issue 14: --expert-cache-mb).
struct ModelLoadArgs {
  int64_t expert_cache_mb = -1;  // < 0: auto
};
void add_model_load_options(CLI::App* cmd, ModelLoadArgs& a);
// Model::load with those options; prints the expert store's mode and budget to stderr as
// "<who>: experts: ..." (who null: silent, for commands whose output is machine-read).
std::unique_ptr<model::Model> load_model(const std::string& dir, const ModelLoadArgs& a, const char* who);

// Whole file as bytes ("-" = stdin); throws naming the path.
std::string read_whole_file(const std::string& path);
// Writes s to stdout exactly (no newline added); throws if the write fails.
void write_stdout(const std::string& s);
// Parses --numerics (reference | f32); throws with the accepted values.
model::Numerics parse_numerics(const std::string& s);

// Reads a JSON array of token ids (or an object with "eval_ids").
std::vector<int32_t> read_token_ids(const std::string& path);
// Logits of every position of ids through a fresh state: mode prefill | decode | chunked:N.
std::vector<float> compute_logits(model::ForwardPass& fp, const std::vector<int32_t>& ids, const std::string& mode);

// Flags of a multi-process run (`mpirun -np N dsv4 ...`, issue 15) into
// model::expert_parallel_options(): --expert-map, --expert-map-out, --ep-balance, --ep-timeout,
// --ep-load-timeout. They do nothing in one process.
void add_expert_parallel_options(CLI::App* cmd);

}  // namespace dsv4::cli
