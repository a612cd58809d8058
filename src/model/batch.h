// Internal to the forward pass: how the rows of a batch map to sequences and positions.
#pragma once
#include <cstdint>
#include <vector>

#include "cache/seq_state.h"
#include "core/aligned.h"
#include "kernels/backend.h"
#include "model/config.h"
#include "model/forward.h"

namespace dsv4::model {

struct BatchRow {
  int item;       // index into BatchLayout::items
  int64_t pos;    // absolute position
  int32_t token;
};

struct BatchItem {
  cache::SeqState* state;
  int64_t row0;      // first row of this item in the batch
  int64_t n;         // rows
  int64_t start;     // absolute position of the first row (= state's n_past before the pass)
};

// The pass's context for the ops: the batch, the backend that runs it and the pass's scratch.
struct PassScratch;
class ExpertStore;
struct BatchLayout {
  const Config* config;
  kernels::Backend* backend;
  PassScratch* scratch;
  ExpertStore* experts = nullptr;  // routed experts by (layer, expert); null: the bound views
  Numerics numerics;
  bool ref() const { return numerics == Numerics::reference; }
  int layer = -1;       // main-model layer being run (expert placement); -1 outside the layer loop
  bool decode = false;  // every chunk of the pass is one token (exchange statistics)
  std::vector<BatchRow> rows;
  std::vector<BatchItem> items;
  std::vector<int64_t> positions;  // [rows] absolute position of each row (RoPE)
  int64_t n_rows() const { return int64_t(rows.size()); }
};

struct MoeRouting {
  std::vector<int32_t> experts;  // [N, K]
  std::vector<float> weights;    // [N, K], renormalised and scaled by route_scale
};

// Every buffer of a forward pass, kept between passes (ForwardPass owns it): a decode step reuses
// what the previous one grew and allocates nothing (core/alloc_guard.h checks it). Grouped by
// the op that fills them.
struct PassScratch {
  BatchLayout layout;
  // forward loop
  std::vector<float> X, xn, y, xh, hn;
  std::vector<kernels::HcMix> mix;
  std::vector<int64_t> out_rows;
  // attention
  std::vector<float> qr, ca, cg, entry, z;
  CacheAlignedVector<float> q, kv, o;          // rows of Dh floats: 64-byte aligned for the attention kernels
  std::vector<std::vector<int32_t>> selected;  // per row, ascending
  std::vector<CacheAlignedVector<float>> decoded;  // cache rows decoded per item (aligned as q, kv)
  std::vector<const float*> keys;              // every row's keys
  std::vector<int64_t> key_begin, slot;
  // lightning indexer
  std::vector<float> ica, icg, key, qi, wi;
  std::vector<int64_t> need, n_elig;
  // MoE
  MoeRouting routing;
  std::vector<float> router_logits, s, biased, outs, xg, wg, og, shared, g, u;
  std::vector<int32_t> order;
  std::vector<std::vector<int64_t>> by_expert;
  std::vector<int32_t> needed;    // the layer's experts, in the order they run
  MoeRouting guess;               // the next layer's router on this layer's input (prefetch)
  std::vector<int32_t> guess_set; // its distinct experts

  // After a prefill chunk: the buffers that scale with the chunk's context (the cache rows all of
  // its rows see) go back to the allocator, as the sequence state is what should hold memory;
  // decode steps keep theirs, which stay small and steady.
  void release_context_buffers() {
    std::vector<CacheAlignedVector<float>>().swap(decoded);
    std::vector<const float*>().swap(keys);
    std::vector<int64_t>().swap(slot);
  }
};

}  // namespace dsv4::model
