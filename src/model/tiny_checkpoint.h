// Random-weight checkpoints in the exact official layout (`dsv4 tiny`, the embedded default
// model, test fixtures). Whatever the Config implies is written (tensor_table.h): config.json
// (HF keys) + inference/config.json (ModelArgs keys, V4-ARCH §1.2), sharded safetensors with
// model.safetensors.index.json, official names/dtypes/scale layouts (FP8 e4m3 + 128x128 e8m0,
// FP4 e2m1 packed in I8 low nibble first + 1x32 e8m0, BF16, F32, I64 tid2eid) and the drafter.
// The tokenizer files come from the text layer (text/embedded_tokenizer.h); a complete preset
// checkpoint with both is engine/default_model.h.
//
// Weights are drawn from a seeded generator of our own (splitmix64 + Box-Muller; no std
// distributions), one stream per (tensor, 128-row block), so the bytes depend only on the config
// and the seed, never on thread count. FP8/FP4 weights are quantised for real: power-of-two
// scales 2^ceil(log2(amax/qmax)) and round-to-nearest-even codes (core/dtype.h).
#pragma once
#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

#include "model/config.h"

namespace dsv4::model {

// "tiny": D=64, 5 layers [swa, csa, hca, csa, swa] + MTP, index_topk 8, 1 hash layer, 8 experts
//   (~35 MB, nearly all of it the 129280-row embed and head) - unit tests, the default model.
// "small": D=512, 8 layers, 16 experts, ~230 M parameters - benchmarks.
// "long": D=64, 2 layers [csa, hca] + MTP, H=2, Dh=64, R=32, Hi=1, Di=32 - the 1M-token
//   long-context benchmark (`dsv4 bench --long`), where the O(L^2) indexer scan dominates.
// "flash" / "pro": the real V4-Flash / V4-Pro config (every shape real, no drafter); with
//   layers = 1..N-1 a window of the real schedule from its first CSA layer (real layer 2), so
//   `--layers 1` is one real-shape CSA layer - the benchmark models of issue 11.
// Throws dsv4::Error for another name.
Config preset_config(const std::string& preset, int layers = 0);

// Gives `c` the drafter of a release layout (issue 17), rewriting compress_ratios' drafter
// entries and the drafter keys: none; mtp (April: one MTP block, num_nextn_predict_layers 1);
// dspark (0731/0813: 3 stages on the last three layers, block 5, noise token 128799, Markov
// rank 256 for "flash-0731" and 512 for "pro-0813" at real width, width/4 and twice that for the
// small presets). `release` is "april", "flash-0731" or "pro-0813".
void set_drafter(Config& c, DrafterKind kind, const std::string& release = "flash-0731");

// The two config files of a checkpoint (V4-ARCH §1.1, §1.2).
nlohmann::ordered_json config_to_hf_json(const Config& c);
nlohmann::ordered_json config_to_model_args_json(const Config& c);

struct RandomCheckpointOptions {
  uint64_t seed = 0;
  int min_shards = 2;                        // the official layout is always sharded
  int64_t max_shard_bytes = int64_t(1) << 30;
  std::string name_or_path;  // config.json "_name_or_path" when not empty (names the release layout)
};

struct RandomCheckpointInfo {
  int64_t n_tensors = 0;   // stored tensors (weights + scales)
  int64_t bytes = 0;       // tensor data bytes (index.json total_size)
  int64_t params = 0;      // main model + drafter, logical
  int n_shards = 0;
};

// Writes a random checkpoint for `c` into out_dir (created if needed). Every file is written
// under a temporary name and renamed into place. Throws dsv4::Error naming the file.
RandomCheckpointInfo write_random_checkpoint(const Config& c, const std::string& out_dir,
                                             const RandomCheckpointOptions& opts = {});

// Adds the random drafter `c` describes (c = the checkpoint's own config after set_drafter) to
// the checkpoint in out_dir, which must have no drafter tensors: its tensors go into a new shard
// model-drafter.safetensors (same generator as write_random_checkpoint), the index lists them,
// and config.json / inference/config.json get c's compress_ratios and drafter keys. Used to make
// 0731-layout copies of existing checkpoints (the oracle) for tests.
RandomCheckpointInfo add_random_drafter(const Config& c, const std::string& out_dir, uint64_t seed = 0);

}  // namespace dsv4::model
