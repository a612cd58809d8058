#include "kernels/topk.h"

#include <algorithm>
#include <limits>
#include <numeric>

#include "core/alloc_guard.h"

namespace dsv4::kernels {

// The top k under (score desc, index asc), in ascending index order. index_topk calls it only
// on the few candidates its RunningTopks keep (at most 4k per thread), never on all L/4 scores.
void topk_indices(const float* scores, int64_t n, int64_t k, std::vector<int32_t>& out) {
  resize_with_context(out, size_t(n));
  std::iota(out.begin(), out.end(), 0);
  if (k < n) {
    const int64_t kk = std::max<int64_t>(k, 0);
    std::nth_element(out.begin(), out.begin() + kk, out.end(), [&](int32_t a, int32_t b) {
      return scores[a] > scores[b] || (scores[a] == scores[b] && a < b);
    });
    resize_with_context(out, size_t(kk));
  }
  std::sort(out.begin(), out.end());
}

void RunningTopk::reset(int64_t k) {
  k_ = k;
  n_ = 0;
  threshold_ = -std::numeric_limits<float>::infinity();
  resize_with_context(entries_, size_t(std::max<int64_t>(4 * k, 1)));
}

void RunningTopk::prune() {
  if (k_ <= 0) {  // nothing can be selected
    n_ = 0;
    threshold_ = std::numeric_limits<float>::infinity();
    return;
  }
  if (n_ <= k_) return;
  std::nth_element(entries_.begin(), entries_.begin() + (k_ - 1), entries_.begin() + n_,
                   [](const Entry& x, const Entry& y) { return x.score > y.score || (x.score == y.score && x.index < y.index); });
  threshold_ = entries_[size_t(k_ - 1)].score;
  n_ = k_;
}

}  // namespace dsv4::kernels
