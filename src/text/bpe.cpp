// dsv4 text: BPE merge loops and the word cache (see bpe.h).
#include "text/bpe.h"

#include <algorithm>
#include <climits>
#include <cstring>
#include <queue>

namespace dsv4::text {

// ---------------------------------------------------------------------------------------------
// MergeTable

void MergeTable::reserve(size_t n_merges) {
  size_t cap = 16;
  while (cap < n_merges * 2) cap <<= 1;
  if (cap <= slots_.size()) return;
  std::vector<Slot> old = std::move(slots_);
  slots_.assign(cap, Slot{});
  size_ = 0;
  for (const Slot& s : old)
    if (s.key != kEmpty) add(int32_t(s.key >> 32), int32_t(uint32_t(s.key)), s.merge.rank, s.merge.merged);
}

void MergeTable::grow() { reserve(std::max<size_t>(size_ + 1, slots_.size())); }

bool MergeTable::add(int32_t left, int32_t right, int32_t rank, int32_t merged) {
  if ((size_ + 1) * 2 > slots_.size()) grow();
  uint64_t key = pack(left, right);
  size_t mask = slots_.size() - 1;
  for (size_t i = mix(key) & mask;; i = (i + 1) & mask) {
    Slot& s = slots_[i];
    if (s.key == key) return false;
    if (s.key == kEmpty) {
      s.key = key;
      s.merge = Merge{rank, merged};
      ++size_;
      return true;
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Merge loops

namespace {
constexpr int32_t kNoRank = INT32_MAX;
constexpr size_t kSmallWord = 48;  // above this, the heap version wins
}  // namespace

void bpe_merge_small(const MergeTable& merges, std::vector<int32_t>& syms) {
  size_t n = syms.size();
  if (n < 2) return;
  // rank[i] / merged[i]: the pair (syms[i], syms[i+1]).
  int32_t rank[kSmallWord * 2], merged[kSmallWord * 2];
  std::vector<int32_t> big_rank, big_merged;
  int32_t* r = rank;
  int32_t* m = merged;
  if (n > kSmallWord * 2) {  // callers normally route long words to the heap version
    big_rank.resize(n);
    big_merged.resize(n);
    r = big_rank.data();
    m = big_merged.data();
  }
  auto look = [&](size_t i) {
    const MergeTable::Merge* mg = merges.find(syms[i], syms[i + 1]);
    r[i] = mg ? mg->rank : kNoRank;
    m[i] = mg ? mg->merged : -1;
  };
  for (size_t i = 0; i + 1 < n; ++i) look(i);
  while (n > 1) {
    size_t best = 0;
    for (size_t i = 1; i + 1 < n; ++i)
      if (r[i] < r[best]) best = i;  // strict: the leftmost of equal ranks wins
    if (r[best] == kNoRank) break;
    syms[best] = m[best];
    // Drop symbol best+1 and pair best+1 (pair best is recomputed below).
    for (size_t i = best + 1; i + 1 < n; ++i) syms[i] = syms[i + 1];
    for (size_t i = best + 1; i + 2 < n; ++i) {
      r[i] = r[i + 1];
      m[i] = m[i + 1];
    }
    --n;
    if (best + 1 < n) look(best);
    if (best > 0) look(best - 1);
  }
  syms.resize(n);
}

void bpe_merge_heap(const MergeTable& merges, std::vector<int32_t>& syms) {
  const size_t n = syms.size();
  if (n < 2) return;
  // Linked list over the original positions; a merged-away symbol gets id -1.
  std::vector<int32_t> prev(n), next(n);
  for (size_t i = 0; i < n; ++i) {
    prev[i] = int32_t(i) - 1;
    next[i] = i + 1 < n ? int32_t(i + 1) : -1;
  }
  struct Cand {
    int32_t rank, pos, left, right, merged;
    // priority_queue pops the largest: make (lower rank, lower pos) the largest.
    bool operator<(const Cand& o) const { return rank != o.rank ? rank > o.rank : pos > o.pos; }
  };
  std::priority_queue<Cand> heap;
  auto push = [&](int32_t pos) {
    if (pos < 0) return;
    int32_t nx = next[pos];
    if (nx < 0) return;
    if (const MergeTable::Merge* mg = merges.find(syms[pos], syms[nx]))
      heap.push(Cand{mg->rank, pos, syms[pos], syms[nx], mg->merged});
  };
  for (size_t i = 0; i + 1 < n; ++i) push(int32_t(i));
  while (!heap.empty()) {
    Cand c = heap.top();
    heap.pop();
    // Stale when either side changed since the candidate was pushed.
    if (syms[c.pos] != c.left) continue;
    int32_t nx = next[c.pos];
    if (nx < 0 || syms[nx] != c.right) continue;
    syms[c.pos] = c.merged;
    syms[nx] = -1;
    next[c.pos] = next[nx];
    if (next[nx] >= 0) prev[next[nx]] = c.pos;
    push(prev[c.pos]);
    push(c.pos);
  }
  size_t w = 0;
  for (size_t i = 0; i < n; ++i)
    if (syms[i] >= 0) syms[w++] = syms[i];
  syms.resize(w);
}

void bpe_merge(const MergeTable& merges, std::vector<int32_t>& syms) {
  if (syms.size() <= kSmallWord)
    bpe_merge_small(merges, syms);
  else
    bpe_merge_heap(merges, syms);
}

// ---------------------------------------------------------------------------------------------
// Word cache

uint64_t hash_bytes(std::string_view s) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  size_t n = s.size();
  uint64_t h = 0x9E3779B97F4A7C15ULL ^ (uint64_t(n) * 0xC2B2AE3D27D4EB4FULL);
  auto mix_in = [&](uint64_t v) {
    h ^= v * 0x87C37B91114253D5ULL;
    h = (h << 31) | (h >> 33);
    h *= 0x4CF5AD432745937FULL;
  };
  while (n >= 8) {
    uint64_t v;
    std::memcpy(&v, p, 8);
    mix_in(v);
    p += 8;
    n -= 8;
  }
  if (n > 0) {
    uint64_t v = 0;
    std::memcpy(&v, p, n);
    mix_in(v);
  }
  h ^= h >> 33;
  h *= 0xff51afd7ed558ccdULL;
  h ^= h >> 33;
  return h;
}

namespace {
constexpr size_t kCacheSlots = size_t{1} << 16;  // power of two
constexpr size_t kCacheMaxEntries = kCacheSlots / 2;
}  // namespace

WordCache::WordCache() : slots_(kCacheSlots) {}

void WordCache::clear() {
  std::fill(slots_.begin(), slots_.end(), Slot{});
  keys_.clear();
  vals_.clear();
  used_ = 0;
}

bool WordCache::lookup(std::string_view key, uint64_t hash, std::vector<int32_t>* out) const {
  uint64_t h = hash | 1;
  size_t mask = slots_.size() - 1;
  for (size_t i = (hash >> 1) & mask;; i = (i + 1) & mask) {
    const Slot& s = slots_[i];
    if (s.hash == 0) return false;
    if (s.hash == h && s.key_len == key.size() &&
        std::memcmp(keys_.data() + s.key_off, key.data(), key.size()) == 0) {
      out->insert(out->end(), vals_.begin() + s.val_off, vals_.begin() + s.val_off + s.val_len);
      return true;
    }
  }
}

void WordCache::insert(std::string_view key, uint64_t hash, const int32_t* ids, size_t n) {
  if (key.size() > kMaxKeyLen) return;
  if (used_ >= kCacheMaxEntries) clear();
  uint64_t h = hash | 1;
  size_t mask = slots_.size() - 1;
  size_t i = (hash >> 1) & mask;
  while (slots_[i].hash != 0) {
    const Slot& s = slots_[i];
    if (s.hash == h && s.key_len == key.size() &&
        std::memcmp(keys_.data() + s.key_off, key.data(), key.size()) == 0)
      return;  // already present
    i = (i + 1) & mask;
  }
  Slot& s = slots_[i];
  s.hash = h;
  s.key_off = uint32_t(keys_.size());
  s.key_len = uint32_t(key.size());
  s.val_off = uint32_t(vals_.size());
  s.val_len = uint32_t(n);
  keys_.append(key);
  vals_.insert(vals_.end(), ids, ids + n);
  ++used_;
}

WordCache& thread_word_cache(uint64_t owner) {
  struct Holder {
    uint64_t owner = 0;
    WordCache cache;
  };
  thread_local Holder holder;
  if (holder.owner != owner) {
    if (holder.cache.size() > 0) holder.cache.clear();
    holder.owner = owner;
  }
  return holder.cache;
}

}  // namespace dsv4::text
