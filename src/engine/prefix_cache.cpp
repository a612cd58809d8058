#include "engine/prefix_cache.h"

#include <algorithm>

namespace dsv4::engine {

namespace {
int64_t common_prefix(std::span<const int32_t> a, const std::vector<int32_t>& b) {
  const size_t n = std::min(a.size(), b.size());
  size_t i = 0;
  while (i < n && a[i] == b[i]) ++i;
  return int64_t(i);
}
}  // namespace

PrefixCache::Match PrefixCache::find(std::span<const int32_t> prompt) const {
  Match best;
  for (size_t i = 0; i < entries_.size(); ++i) {
    const auto& toks = entries_[i].state->tokens();
    const int64_t c = common_prefix(prompt, toks);
    if (c == 0) continue;
    const bool exact = c == int64_t(toks.size());
    if (!exact && !allow_truncate_) continue;
    // Prefer more shared tokens; on a tie prefer an exact entry.
    if (c > best.common || (c == best.common && exact && !best.exact)) best = {int(i), c, exact};
  }
  return best;
}

std::unique_ptr<cache::SeqState> PrefixCache::fork(const Match& m, std::vector<float>* logits) {
  Entry& e = entries_[size_t(m.entry)];
  e.last_used = ++clock_;
  if (m.exact && logits) *logits = e.logits;
  return e.state->clone();
}

void PrefixCache::insert(std::unique_ptr<cache::SeqState> state, std::vector<float> logits) {
  if (!state || state->n_past() == 0) return;
  const size_t b = state->bytes() + logits.size() * sizeof(float) + state->tokens().size() * sizeof(int32_t);
  if (b > budget_) return;
  for (size_t i = 0; i < entries_.size(); ++i) {
    if (entries_[i].state->tokens() == state->tokens()) {
      bytes_ -= entries_[i].bytes;
      entries_.erase(entries_.begin() + long(i));
      break;
    }
  }
  entries_.push_back({std::move(state), std::move(logits), b, ++clock_});
  bytes_ += b;
  evict();
}

void PrefixCache::insert_copy(const cache::SeqState& state, std::span<const float> logits) {
  for (auto& e : entries_) {
    if (e.state->tokens() == state.tokens()) {  // already held: just touch it
      e.last_used = ++clock_;
      return;
    }
  }
  insert(state.clone(), std::vector<float>(logits.begin(), logits.end()));
}

void PrefixCache::evict() {
  while (bytes_ > budget_ && !entries_.empty()) {
    auto it = std::min_element(entries_.begin(), entries_.end(),
                               [](const Entry& a, const Entry& b) { return a.last_used < b.last_used; });
    bytes_ -= it->bytes;
    entries_.erase(it);
  }
}

}  // namespace dsv4::engine
