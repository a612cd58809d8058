// topk_indices (the CSA indexer's selection) against a full sort under (score desc, index asc),
// with heavy ties (bf16-rounded scores tie often), k at and around the edges.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>
#include <vector>

#include "core/dtype.h"
#include "model/indexer.h"

namespace dsv4::model {
namespace {

std::vector<int32_t> naive_topk(const std::vector<float>& s, int64_t k) {
  std::vector<int32_t> idx(s.size());
  std::iota(idx.begin(), idx.end(), 0);
  std::sort(idx.begin(), idx.end(), [&](int32_t a, int32_t b) { return s[a] > s[b] || (s[a] == s[b] && a < b); });
  idx.resize(size_t(std::min<int64_t>(k, int64_t(s.size()))));
  std::sort(idx.begin(), idx.end());
  return idx;
}

TEST(TopkIndices, MatchesFullSortWithTies) {
  std::mt19937 rng(5);
  for (int n : {1, 2, 7, 64, 65, 300, 4096}) {
    for (int levels : {2, 5, 1000}) {  // few distinct values: many ties at the k-th score
      std::vector<float> s(static_cast<size_t>(n));
      for (auto& x : s) x = float(int(rng() % unsigned(levels))) * 0.25f - 1.f;
      if (n > 3) s[1] = -0.f, s[2] = 0.f;  // signed zeros tie
      for (int64_t k : {int64_t(1), int64_t(3), int64_t(64), int64_t(n - 1), int64_t(n), int64_t(n + 5)}) {
        if (k < 1) continue;
        std::vector<int32_t> got;
        topk_indices(s.data(), n, k, got);
        EXPECT_EQ(got, naive_topk(s, k)) << "n=" << n << " levels=" << levels << " k=" << k;
      }
    }
  }
}

TEST(TopkIndices, MatchesFullSortOnIndexerLikeScores) {
  // Continuous scores over many binades (ReLU zeros, bf16 rounding, negatives from negative head
  // weights) at the sizes the indexer sees at long context.
  std::mt19937 rng(9);
  std::normal_distribution<float> nd(0.f, 1.f);
  for (int n : {5000, 70000, 262144}) {
    std::vector<float> s(static_cast<size_t>(n));
    for (auto& x : s) {
      const float v = nd(rng) * std::exp(nd(rng) * 3.f);
      x = round_bf16(rng() % 3 == 0 ? 0.f : v);
    }
    for (int64_t k : {int64_t(1), int64_t(512), int64_t(2048), int64_t(n / 2), int64_t(n - 3)}) {
      std::vector<int32_t> got;
      topk_indices(s.data(), n, k, got);
      EXPECT_EQ(got, naive_topk(s, k)) << "n=" << n << " k=" << k;
    }
  }
}

}  // namespace
}  // namespace dsv4::model
