// dsv4 engine: the prefix cache. A pool of sequence states keyed by their tokens, owned by the
// scheduler thread (no locks). A new request forks the entry sharing the longest prefix with its
// prompt and prefills only the rest. Entries are snapshots taken at the end of a prompt and the
// final states of finished sequences, each with the logits row that predicts its next token (so a
// prompt the cache holds entirely needs no forward at all). RAM budget, LRU eviction.
//
// An entry longer than the shared prefix is cut back with truncate_state, which restores the
// newest state snapshot at or before the cut and replays the rest (model/forward.h). The cache
// only cuts at a position where the entry's state holds a snapshot (taken at the request's
// snapshot_at points, engine/request.h: where the prompt's renderer expects a later prompt to
// diverge), so a cut costs no replay.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "cache/seq_state.h"

namespace dsv4::engine {

class PrefixCache {
 public:
  explicit PrefixCache(size_t budget_bytes) : budget_(budget_bytes) {}

  struct Match {
    int entry = -1;       // -1: nothing usable
    int64_t common = 0;   // tokens of the prompt the entry provides
    bool exact = false;   // the entry's tokens are exactly that prefix (no truncation needed)
  };
  Match find(std::span<const int32_t> prompt) const;
  // Snapshots a fork of `m` cut to m.common tokens keeps (the entry's at positions <= m.common).
  size_t snapshots_kept(const Match& m) const;
  // A private copy of entry `m.entry` (its snapshots included) holding the first m.common tokens
  // (the caller truncates when !m.exact). `logits` receives the entry's next-token logits when
  // m.exact.
  std::unique_ptr<cache::SeqState> fork(const Match& m, std::vector<float>* logits);
  // Stores a state (moved in) with the logits predicting its next token. An entry with the same
  // tokens is replaced. Evicts least recently used entries past the budget.
  void insert(std::unique_ptr<cache::SeqState> state, std::vector<float> logits);
  // Same, copying the state (used for the state at the end of a prompt).
  void insert_copy(const cache::SeqState& state, std::span<const float> logits);

  // --cache-dir: every entry is also written to `dir` (the state, snapshots included, via
  // SeqState::save, plus a checksummed sidecar with the logits; both written atomically) and
  // removed with it; entries found there are loaded back (newest first, within the budget).
  // Returns the number loaded. Unreadable or mismatching files are skipped with a warning;
  // files of an older format are removed. At start, anything that is not a regular file is
  // skipped (logged), temporary files and orphan halves of an entry are removed, and entries
  // beyond the budget (oldest first) are deleted: the directory holds at most the budget.
  // `fsync`: each committed entry is fsynced (files and directory) before it counts.
  size_t open_dir(const std::string& dir, const cache::StateShape& shape, bool fsync = true);

  size_t bytes() const { return bytes_; }
  size_t size() const { return entries_.size(); }
  size_t budget() const { return budget_; }

 private:
  struct Entry {
    std::unique_ptr<cache::SeqState> state;
    std::vector<float> logits;
    size_t bytes = 0;
    uint64_t last_used = 0;
    std::string file;  // base path in the cache dir ("" = not persisted)
  };
  void evict();
  void persist(Entry& e);
  void unpersist(const Entry& e);
  std::string dir_;
  bool fsync_ = true;

  size_t budget_;
  std::vector<Entry> entries_;
  size_t bytes_ = 0;
  uint64_t clock_ = 0;
};

}  // namespace dsv4::engine
