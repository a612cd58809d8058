// Helpers shared by CLI commands.
#pragma once
#include <string>
#include <vector>

#include "model/forward.h"

namespace CLI {
class App;
}

namespace dsv4::cli {

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
