// V4-ARCH §2.3.6: the lightning indexer of CSA layers: index keys per compressed entry, index
// queries per token, ReLU-weighted head sum, top-k over causally eligible entries.
#pragma once
#include <vector>

#include "model/batch.h"
#include "model/rope.h"
#include "model/weights.h"

namespace dsv4::model {

// Emits index keys into each item's state (layer `il`) and returns, per batch row, the selected
// compressed entries in ascending order (all eligible ones when they are at most index_topk).
void indexer_select(const IndexerWeights& w, int il, const RopeTable& rope, const float* xn, const float* qr,
                    BatchLayout& b, std::vector<std::vector<int32_t>>& selected);

// Top-k of scores[0..n) by (score desc, index asc); returns ascending indices.
void topk_indices(const float* scores, int64_t n, int64_t k, std::vector<int32_t>& out);

// Running top-k of (score, index) pairs pushed in ascending index order, under (score desc, index
// asc), in O(k) memory however many pairs come: candidates collect until 4k, then the best k are
// kept and only scores above the k-th kept one are taken from then on (a later equal score has a
// higher index, so it loses the tie). The indexer keeps one per query row and thread, so its
// memory does not grow with the context.
class RunningTopk {
 public:
  struct Entry {
    float score;
    int32_t index;
  };
  void reset(int64_t k);
  void push(float score, int32_t index) {
    if (!(score > threshold_)) return;
    entries_[size_t(n_++)] = {score, index};
    if (n_ == int64_t(entries_.size())) prune();
  }
  // Candidates (unordered; a superset of the top k of what was pushed), at most 4k of them.
  const Entry* begin() const { return entries_.data(); }
  const Entry* end() const { return entries_.data() + n_; }

 private:
  void prune();
  std::vector<Entry> entries_;
  int64_t k_ = 0, n_ = 0;
  float threshold_ = 0;
};

}  // namespace dsv4::model
