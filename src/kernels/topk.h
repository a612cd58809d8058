// dsv4 kernels: top-k under (score desc, index asc), as the lightning indexer selects compressed
// entries (V4-ARCH §2.3.6).
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

namespace dsv4::kernels {

// Top-k of scores[0..n) by (score desc, index asc); returns ascending indices.
void topk_indices(const float* scores, int64_t n, int64_t k, std::vector<int32_t>& out);

// Running top-k of (score, index) pairs pushed in ascending index order, under (score desc, index
// asc), in O(k) memory however many pairs come: candidates collect until 4k, then the best k are
// kept and only scores above the k-th kept one are taken from then on (a later equal score has a
// higher index, so it loses the tie). The CPU backend's index_topk keeps one per query row and thread, so its
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

}  // namespace dsv4::kernels
