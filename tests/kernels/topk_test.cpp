// topk_indices (the CSA indexer's selection) against a full sort under (score desc, index asc),
// with heavy ties (bf16-rounded scores tie often), k at and around the edges.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>
#include <vector>

#include "core/dtype.h"
#include "kernels/topk.h"

namespace dsv4::kernels {
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

TEST(RunningTopk, EqualsTopkIndicesWhenMergedAcrossRanges) {
  // The indexer splits the keys into contiguous ranges (one per thread), pushes each range in
  // ascending order into its own RunningTopk, then takes the top k of the union.
  std::mt19937 rng(21);
  std::normal_distribution<float> nd(0.f, 1.f);
  for (int n : {70, 1000, 20000}) {
    for (int levels : {3, 50, 0}) {  // 0: continuous
      std::vector<float> s(static_cast<size_t>(n));
      for (auto& x : s) x = levels ? float(int(rng() % unsigned(levels))) - 1.f : round_bf16(nd(rng));
      for (int64_t k : {int64_t(1), int64_t(8), int64_t(64)}) {
        for (int parts : {1, 2, 3}) {
          std::vector<RunningTopk> tops(static_cast<size_t>(parts));
          std::vector<RunningTopk::Entry> merged;
          for (int p = 0; p < parts; ++p) {
            tops[size_t(p)].reset(k);
            const int64_t j0 = int64_t(n) * p / parts, j1 = int64_t(n) * (p + 1) / parts;
            for (int64_t j = j0; j < j1; ++j) tops[size_t(p)].push(s[size_t(j)], int32_t(j));
            EXPECT_LE(tops[size_t(p)].end() - tops[size_t(p)].begin(), 4 * k);
            merged.insert(merged.end(), tops[size_t(p)].begin(), tops[size_t(p)].end());
          }
          std::sort(merged.begin(), merged.end(), [](const auto& a, const auto& b) { return a.index < b.index; });
          std::vector<float> ms;
          for (const auto& e : merged) ms.push_back(e.score);
          std::vector<int32_t> pos, got;
          topk_indices(ms.data(), int64_t(ms.size()), k, pos);
          for (int32_t p : pos) got.push_back(merged[size_t(p)].index);
          EXPECT_EQ(got, naive_topk(s, k)) << "n=" << n << " levels=" << levels << " k=" << k << " parts=" << parts;
        }
      }
    }
  }
}

}  // namespace
}  // namespace dsv4::kernels
