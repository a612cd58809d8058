// dsv4 text: byte-pair merging on token ids, and the per-thread cache of merged words.
//
// A word (one pre-token) starts as one symbol per byte (the vocab id of that byte's byte-level
// character). Merging repeatedly joins the adjacent pair with the lowest merge rank, the leftmost
// one on ties, until no adjacent pair has a rank: the HF tokenizers BPE order. Pairs are looked up
// by (left id, right id) in an open-addressing table, never by string.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace dsv4::text {

// (left id, right id) -> (rank, merged id).
class MergeTable {
 public:
  struct Merge {
    int32_t rank;
    int32_t merged;
  };
  void reserve(size_t n_merges);
  // Returns false when the pair is already present (the earlier, lower rank is kept).
  bool add(int32_t left, int32_t right, int32_t rank, int32_t merged);
  // nullptr when the pair never merges.
  const Merge* find(int32_t left, int32_t right) const {
    if (slots_.empty()) return nullptr;
    uint64_t key = pack(left, right);
    size_t mask = slots_.size() - 1;
    for (size_t i = mix(key) & mask;; i = (i + 1) & mask) {
      const Slot& s = slots_[i];
      if (s.key == key) return &s.merge;
      if (s.key == kEmpty) return nullptr;
    }
  }
  size_t size() const { return size_; }

 private:
  static constexpr uint64_t kEmpty = ~uint64_t{0};
  struct Slot {
    uint64_t key = kEmpty;
    Merge merge{0, 0};
  };
  static uint64_t pack(int32_t l, int32_t r) {
    return (uint64_t(uint32_t(l)) << 32) | uint32_t(r);
  }
  static size_t mix(uint64_t k) {
    k ^= k >> 33;
    k *= 0xff51afd7ed558ccdULL;
    k ^= k >> 33;
    return size_t(k);
  }
  void grow();
  std::vector<Slot> slots_;
  size_t size_ = 0;
};

// Merges `syms` in place (the result replaces the content). Picks bpe_merge_small for short
// words and bpe_merge_heap for long ones; both give identical results.
void bpe_merge(const MergeTable& merges, std::vector<int32_t>& syms);
// O(n^2) scan, fastest for the short words of ordinary text.
void bpe_merge_small(const MergeTable& merges, std::vector<int32_t>& syms);
// O(n log n) with a binary heap over a linked list of symbols, for long words (runs of spaces,
// digits-free junk, 20k-character strings).
void bpe_merge_heap(const MergeTable& merges, std::vector<int32_t>& syms);

// 64-bit hash of a byte string (not cryptographic; for the word cache).
uint64_t hash_bytes(std::string_view s);

// Bounded cache word bytes -> merged ids. Not thread-safe: each thread owns one (see
// thread_word_cache). Cleared wholesale when full, so memory stays bounded.
class WordCache {
 public:
  static constexpr size_t kMaxKeyLen = 64;
  WordCache();
  // Appends the cached ids of `key` to *out and returns true, or returns false.
  bool lookup(std::string_view key, uint64_t hash, std::vector<int32_t>* out) const;
  void insert(std::string_view key, uint64_t hash, const int32_t* ids, size_t n);
  void clear();
  size_t size() const { return used_; }

 private:
  struct Slot {
    uint64_t hash = 0;  // 0 = empty; stored hashes have the low bit set
    uint32_t key_off = 0, key_len = 0, val_off = 0, val_len = 0;
  };
  std::vector<Slot> slots_;
  std::string keys_;
  std::vector<int32_t> vals_;
  size_t used_ = 0;
};

// The calling thread's cache for the tokenizer with serial number `owner` (cleared when the
// thread switches tokenizers).
WordCache& thread_word_cache(uint64_t owner);

}  // namespace dsv4::text
