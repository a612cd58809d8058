// `dsv4 logits`: logits of every position of a token sequence, the interface every correctness
// check uses. Output: little-endian float32 [n_tokens, vocab], row-major.
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "cli/common.h"
#include "core/error.h"
#include "core/json_file.h"
#include "model/forward.h"

namespace dsv4::cli {

namespace {
struct LogitsArgs {
  std::string model, tokens, out, numerics = "reference", mode = "prefill";
  ModelLoadArgs load;
};
}  // namespace

std::vector<int32_t> read_token_ids(const std::string& path) {
  nlohmann::json j = read_json_file(path, "token file");
  if (j.is_object() && j.contains("eval_ids")) j = j["eval_ids"];
  if (!j.is_array()) throw Error(path + ": expected a JSON array of token ids");
  std::vector<int32_t> ids;
  for (const auto& v : j) {
    if (!v.is_number_integer()) throw Error(path + ": token ids must be integers, got " + v.dump());
    int64_t x = v.get<int64_t>();
    if (x < 0 || x > INT32_MAX) throw Error(path + ": token id out of range: " + std::to_string(x));
    ids.push_back(int32_t(x));
  }
  return ids;
}

// Runs tokens through a fresh state in the given mode; returns [n, V] logits.
std::vector<float> compute_logits(model::ForwardPass& fp, const std::vector<int32_t>& ids, const std::string& mode) {
  const int64_t V = fp.model().config().vocab_size;
  int64_t chunk = 0;
  if (mode == "prefill") chunk = int64_t(ids.size());
  else if (mode == "decode") chunk = 1;
  else if (mode.rfind("chunked:", 0) == 0) {
    try {
      chunk = std::stoll(mode.substr(8));
    } catch (...) {
      chunk = 0;
    }
    if (chunk <= 0) throw Error("--mode " + mode + ": chunk size must be a positive integer");
  } else {
    throw Error("--mode must be prefill, decode or chunked:N, got '" + mode + "'");
  }
  auto st = fp.new_state();
  std::vector<float> all(ids.size() * size_t(V)), part;
  for (size_t i = 0; i < ids.size(); i += size_t(chunk)) {
    size_t n = std::min(ids.size() - i, size_t(chunk));
    model::SeqChunk ch{st.get(), std::span<const int32_t>(ids.data() + i, n), true};
    fp.forward(std::span<model::SeqChunk>(&ch, 1), part);
    std::copy(part.begin(), part.end(), all.begin() + int64_t(i) * V);
  }
  return all;
}

void register_logits(CLI::App& app) {
  auto args = std::make_shared<LogitsArgs>();
  auto* cmd = app.add_subcommand("logits", "Compute the logits of every position of a token sequence");
  cmd->add_option("--model", args->model, "checkpoint directory")->required();
  add_model_load_options(cmd, args->load);
  cmd->add_option("--tokens", args->tokens, "JSON array of token ids")->required();
  cmd->add_option("--out", args->out, "output file: float32 LE [n_tokens, vocab]")->required();
  cmd->add_option("--numerics", args->numerics, "reference | f32")->capture_default_str();
  cmd->add_option("--mode", args->mode, "prefill | decode | chunked:N")->capture_default_str();
  add_expert_parallel_options(cmd);
  cmd->callback([args] {
    const model::Numerics num = parse_numerics(args->numerics);
    auto ids = read_token_ids(args->tokens);
    if (ids.empty()) throw Error(args->tokens + ": no token ids");
    auto model = load_model(args->model, args->load, "logits");
    model::ForwardPass fp(*model, num);
    auto t0 = std::chrono::steady_clock::now();
    auto logits = compute_logits(fp, ids, args->mode);
    double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::ofstream f(args->out, std::ios::binary | std::ios::trunc);
    if (!f) throw Error(args->out + ": cannot write");
    f.write(reinterpret_cast<const char*>(logits.data()), std::streamsize(logits.size() * sizeof(float)));
    if (!f) throw Error(args->out + ": write failed");
    const int64_t V = model->config().vocab_size;
    const float* last = logits.data() + (ids.size() - 1) * size_t(V);
    int64_t am = std::max_element(last, last + V) - last;
    std::printf("logits: %zu tokens x %lld vocab, numerics=%s mode=%s, %.3f s (%.1f tok/s), last argmax=%lld -> %s\n",
                ids.size(), (long long)V, args->numerics.c_str(), args->mode.c_str(), secs, double(ids.size()) / secs,
                (long long)am, args->out.c_str());
  });
}

}  // namespace dsv4::cli
