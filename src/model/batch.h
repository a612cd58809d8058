// Internal to the forward pass: how the rows of a batch map to sequences and positions.
#pragma once
#include <cstdint>
#include <vector>

#include "cache/seq_state.h"
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

// Buffers of a forward pass kept between passes (ForwardPass owns them), so that a decode step
// does not allocate what the previous one already had.
struct PassScratch {
  std::vector<std::vector<float>> decoded;  // attention: cache rows decoded per item
  std::vector<const float*> keys;           // attention: every row's keys
  std::vector<int64_t> key_begin, slot;
};

// The pass's context for the ops: the batch, the backend that runs it and the pass's scratch.
struct BatchLayout {
  const Config* config;
  kernels::Backend* backend;
  PassScratch* scratch;
  Numerics numerics;
  bool ref() const { return numerics == Numerics::reference; }
  std::vector<BatchRow> rows;
  std::vector<BatchItem> items;
  std::vector<int64_t> positions;  // [rows] absolute position of each row (RoPE)
  int64_t n_rows() const { return int64_t(rows.size()); }
};

}  // namespace dsv4::model
