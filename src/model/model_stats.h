// Figures derived from a Config alone: parameter counts (V4-ARCH §1.2, from the §4.2 shapes),
// expected tensor counts/bytes, and KV-cache bytes per token and per sequence (V4-ARCH §3.3).
// Used by `dsv4 inspect` and `dsv4 kv`.
#pragma once
#include <cstdint>
#include <map>
#include <string>

#include "model/config.h"

namespace dsv4::model {

// ---- parameters -------------------------------------------------------------------------------
// Logical weights (an FP4 byte holds two; block scales and the tid2eid tables are not counted).
struct ParamCounts {
  // Main model (excluding the drafter).
  int64_t embed = 0;          // embed.weight
  int64_t head = 0;           // head.weight
  int64_t dense = 0;          // attention, router, norms, mHC, compressors, indexers
  int64_t shared_expert = 0;  // shared experts of all layers
  int64_t routed_expert = 0;  // routed experts of all layers
  int64_t drafter = 0;        // the drafter's own tensors (MTP block or DSpark stages; embed/head shared)
  int64_t tid2eid = 0;        // entries of the hash-routing tables (not parameters)
  // Per token in the main model: dense + shared + K/E of the routed experts + head + one
  // embedding row (the table is only looked up).
  int64_t active = 0;
  int64_t total_main() const { return embed + head + dense + shared_expert + routed_expert; }
  int64_t total_with_drafter() const { return total_main() + drafter; }
};
ParamCounts count_params(const Config& c);

// ---- per-token work ---------------------------------------------------------------------------
// What one decoded token reads and computes in the main model's weights (a roofline's numerator):
// stored bytes incl. scales of every dense, shared-expert and head tensor, K/E of the routed
// experts' bytes (K experts per layer per token), one embedding row; multiply-adds of the same
// matmuls (attention scores over the context and the indexer scan come on top and grow with it).
struct TokenWork {
  int64_t weight_bytes = 0;
  int64_t weight_macs = 0;
};
TokenWork token_work(const Config& c);

// ---- tensors ----------------------------------------------------------------------------------
struct TensorTotals {
  struct Entry {
    int64_t count = 0, bytes = 0;
  };
  std::map<std::string, Entry> by_dtype;  // keyed by safetensors dtype name ("F8_E4M3", ...)
  int64_t count = 0, bytes = 0;
};
// What a checkpoint for `c` holds (tensor_table), incl. the drafter when with_drafter.
TensorTotals expected_tensor_totals(const Config& c, bool with_drafter = true);

// ---- KV cache (V4-ARCH §3.2, §3.3) ------------------------------------------------------------
enum class KvFormat : uint8_t {
  native,         // paper format: entry = Dn e4m3 + R bf16 (576 B); index key = Di e2m1 (64 B)
  native_scales,  // the same plus explicit e8m0 scales (1 per 64 / per 32): 583 B / 68 B
  bf16,           // everything bf16 (the reference's buffers): 1024 B / 256 B
};
const char* kv_format_name(KvFormat f);

struct KvLayout {
  int64_t entry_bytes = 0;      // one KV vector: a window slot or a compressed entry
  int64_t index_key_bytes = 0;  // one CSA indexer key
};
KvLayout kv_layout(const Config& c, KvFormat f);

// Growing KV bytes per token of context for ONE layer of kind k: CSA entry/4 + key/4, HCA
// entry/128, SWA 0 (its window is fixed).
double kv_bytes_per_token(const Config& c, AttnKind k, KvFormat f);
// Summed over the main layers (drafter blocks are sliding-window only and do not grow).
double kv_bytes_per_token(const Config& c, KvFormat f);

struct KvStateBytes {
  int64_t window = 0;      // min(n, W) slots per layer
  int64_t compressed = 0;  // floor(n / m) entries per CSA/HCA layer
  int64_t index_keys = 0;  // floor(n / 4) keys per CSA layer
  int64_t total() const { return window + compressed + index_keys; }
};
// KV bytes of one sequence of n_tokens in format f (main layers; + the drafter blocks' windows if
// include_drafter).
KvStateBytes kv_state_bytes(const Config& c, KvFormat f, int64_t n_tokens, bool include_drafter = false);

// Per-sequence compressor states (fp32, fixed size; V4-ARCH §3.1): per CSA layer kv + score of
// 8 rows x 2*Dh (+ the indexer's 8 x 2*Di), per HCA layer 128 rows x Dh. Both are
// cache::state_bytes_at, the engine's one state accounting.
int64_t compressor_state_bytes(const Config& c);

}  // namespace dsv4::model
