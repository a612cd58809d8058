// dsv4 engine: the prefix cache. A pool of sequence states keyed by their tokens, owned by the
// scheduler thread (no locks). A new request forks the entry sharing the longest prefix with its
// prompt and prefills only the rest. Entries are snapshots taken at the end of a prompt and the
// final states of finished sequences, each with the logits row that predicts its next token (so a
// prompt the cache holds entirely needs no forward at all). RAM budget, LRU eviction.
//
// An entry longer than the shared prefix needs truncate_state, which today replays the kept
// prefix (model/forward.h): no cheaper than a cold prefill, so such entries are used only when
// `allow_truncate` is set (for when truncation gets its snapshot fast path).
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "cache/seq_state.h"

namespace dsv4::engine {

class PrefixCache {
 public:
  PrefixCache(size_t budget_bytes, bool allow_truncate) : budget_(budget_bytes), allow_truncate_(allow_truncate) {}

  struct Match {
    int entry = -1;       // -1: nothing usable
    int64_t common = 0;   // tokens of the prompt the entry provides
    bool exact = false;   // the entry's tokens are exactly that prefix (no truncation needed)
  };
  Match find(std::span<const int32_t> prompt) const;
  // A private copy of entry `m.entry` holding the first m.common tokens (the caller truncates
  // when !m.exact). `logits` receives the entry's next-token logits when m.exact.
  std::unique_ptr<cache::SeqState> fork(const Match& m, std::vector<float>* logits);
  // Stores a state (moved in) with the logits predicting its next token. An entry with the same
  // tokens is replaced. Evicts least recently used entries past the budget.
  void insert(std::unique_ptr<cache::SeqState> state, std::vector<float> logits);
  // Same, copying the state (used for the snapshot at the end of a prompt).
  void insert_copy(const cache::SeqState& state, std::span<const float> logits);

  size_t bytes() const { return bytes_; }
  size_t size() const { return entries_.size(); }
  size_t budget() const { return budget_; }

 private:
  struct Entry {
    std::unique_ptr<cache::SeqState> state;
    std::vector<float> logits;
    size_t bytes = 0;
    uint64_t last_used = 0;
  };
  void evict();

  size_t budget_;
  bool allow_truncate_;
  std::vector<Entry> entries_;
  size_t bytes_ = 0;
  uint64_t clock_ = 0;
};

}  // namespace dsv4::engine
