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

// The pass's context for the ops: the batch and the backend that runs it.
struct BatchLayout {
  const Config* config;
  kernels::Backend* backend;
  Numerics numerics;
  bool ref() const { return numerics == Numerics::reference; }
  std::vector<BatchRow> rows;
  std::vector<BatchItem> items;
  std::vector<int64_t> positions;  // [rows] absolute position of each row (RoPE)
  int64_t n_rows() const { return int64_t(rows.size()); }
};

}  // namespace dsv4::model
