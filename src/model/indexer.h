// V4-ARCH §2.3.6: the lightning indexer of CSA layers: index keys per compressed entry, index
// queries per token, ReLU-weighted head sum, top-k over causally eligible entries.
#pragma once
#include <vector>

#include "model/batch.h"
#include "model/rope.h"
#include "model/weights.h"

namespace dsv4::model {

// Emits index keys into each item's state (layer `il`) and returns, per batch row, the selected
// compressed entries in ascending order (all eligible ones when they are at most index_topk), in
// selected[0 .. rows) (selected may hold more, stale, entries).
void indexer_select(const IndexerWeights& w, int il, const RopeTable& rope, const float* xn, const float* qr,
                    BatchLayout& b, std::vector<std::vector<int32_t>>& selected);

}  // namespace dsv4::model
