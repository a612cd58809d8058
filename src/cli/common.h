// Helpers shared by CLI commands.
#pragma once
#include <string>
#include <vector>

#include "model/forward.h"

namespace dsv4::cli {

// Reads a JSON array of token ids (or an object with "eval_ids").
std::vector<int32_t> read_token_ids(const std::string& path);
// Logits of every position of ids through a fresh state: mode prefill | decode | chunked:N.
std::vector<float> compute_logits(model::ForwardPass& fp, const std::vector<int32_t>& ids, const std::string& mode);

}  // namespace dsv4::cli
