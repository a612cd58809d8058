#include "engine/prefix_cache.h"

#include "cache/durable_file.h"

#include <algorithm>
#include <set>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "core/error.h"
#include "core/log.h"

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
    int64_t c = common_prefix(prompt, toks);
    if (c == 0) continue;
    const bool exact = c == int64_t(toks.size());
    if (!exact) {
      // Cut back to the newest recorded snapshot inside the shared prefix, short of the whole
      // prompt (the last prompt token must run to give logits).
      const int64_t limit = std::min<int64_t>(c, int64_t(prompt.size()) - 1);
      int64_t at = 0;
      for (int64_t p : entries_[i].state->snapshot_positions())
        if (p <= limit) at = std::max(at, p);
      c = at;
      if (c == 0) continue;
    }
    // Prefer more shared tokens; on a tie prefer an exact entry.
    if (c > best.common || (c == best.common && exact && !best.exact)) best = {int(i), c, exact};
  }
  return best;
}

size_t PrefixCache::snapshots_kept(const Match& m) const {
  if (m.entry < 0) return 0;
  const auto pos = entries_[size_t(m.entry)].state->snapshot_positions();
  return size_t(std::count_if(pos.begin(), pos.end(), [&](int64_t p) { return p <= m.common; }));
}

std::unique_ptr<cache::SeqState> PrefixCache::fork(const Match& m, std::vector<float>* logits) {
  Entry& e = entries_[size_t(m.entry)];
  e.last_used = ++clock_;
  if (m.exact && logits) *logits = e.logits;
  return e.state->clone();
}

void PrefixCache::insert(std::unique_ptr<cache::SeqState> state, std::vector<float> logits) {
  if (!state || state->n_past() == 0) return;
  const size_t b = state->bytes() + logits.size() * sizeof(float);  // bytes(): token ids included
  if (b > budget_) return;
  for (size_t i = 0; i < entries_.size(); ++i) {
    if (entries_[i].state->tokens() == state->tokens()) {
      bytes_ -= entries_[i].bytes;
      unpersist(entries_[i]);
      entries_.erase(entries_.begin() + long(i));
      break;
    }
  }
  entries_.push_back({std::move(state), std::move(logits), b, ++clock_, ""});
  bytes_ += b;
  if (!dir_.empty()) persist(entries_.back());
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
    unpersist(*it);
    entries_.erase(it);
  }
}

// ---- --cache-dir ----------------------------------------------------------------------------
// <key>.state: SeqState::save (snapshots included). <key>.meta: "DSV4PCM2", u64 n_logits,
// f32[n], u64 FNV-1a 64 of everything before it. key = FNV-1a 64 of the token ids (hex).
// Format 1 ("DSV4PCM1") also listed the snapshot positions in the .meta file; its files are
// removed at load.

namespace {
constexpr char kMetaMagic[8] = {'D', 'S', 'V', '4', 'P', 'C', 'M', '2'};
constexpr char kMetaMagicV1[8] = {'D', 'S', 'V', '4', 'P', 'C', 'M', '1'};

uint64_t fnv1a64(const void* data, size_t n, uint64_t h = 1469598103934665603ull) {
  const auto* p = static_cast<const uint8_t*>(data);
  for (size_t i = 0; i < n; ++i) {
    h ^= p[i];
    h *= 1099511628211ull;
  }
  return h;
}

template <class T>
void put(std::string& buf, const T& v) {
  buf.append(reinterpret_cast<const char*>(&v), sizeof v);
}
}  // namespace

void PrefixCache::persist(Entry& e) {
  const auto& toks = e.state->tokens();
  char key[32];
  std::snprintf(key, sizeof key, "%016llx", (unsigned long long)fnv1a64(toks.data(), toks.size() * sizeof(int32_t)));
  const std::string base = dir_ + "/" + key;
  try {
    e.state->save(base + ".state", fsync_);
    std::string buf(kMetaMagic, 8);
    put(buf, uint64_t(e.logits.size()));
    buf.append(reinterpret_cast<const char*>(e.logits.data()), e.logits.size() * sizeof(float));
    put(buf, fnv1a64(buf.data(), buf.size()));
    cache::write_file_atomic(base + ".meta", buf, fsync_);  // the .meta last: it commits the entry
    e.file = base;
  } catch (const std::exception& ex) {
    log::warn("prefix cache: cannot persist %s: %s", base.c_str(), ex.what());
  }
}

void PrefixCache::unpersist(const Entry& e) {
  if (e.file.empty()) return;
  std::error_code ec;
  std::filesystem::remove(e.file + ".state", ec);
  std::filesystem::remove(e.file + ".meta", ec);
}

size_t PrefixCache::open_dir(const std::string& dir, const cache::StateShape& shape, bool fsync) {
  namespace fs = std::filesystem;
  fs::create_directories(dir);
  dir_ = dir;
  fsync_ = fsync;
  // Hygiene first. Only regular files are ever opened (a FIFO would block the start, a dangling
  // symlink used to end it); temporary files a crash left and orphans (a .state without its
  // .meta, which commits an entry, or the reverse) are removed. Other names are left alone.
  std::vector<std::pair<fs::file_time_type, std::string>> found;
  std::set<std::string> metas, states;
  std::error_code ec;
  for (auto it = fs::directory_iterator(dir, ec); !ec && it != fs::directory_iterator(); it.increment(ec)) {
    const fs::path& p = it->path();
    const std::string name = p.filename().string();
    const std::string ext = p.extension().string();
    const bool ours = cache::is_temp_name(name) || ext == ".meta" || ext == ".state";
    if (!ours) continue;
    std::error_code e2;
    const fs::file_status st = it->symlink_status(e2);
    if (e2 || !fs::is_regular_file(st)) {
      log::warn("prefix cache: skipping %s: not a regular file", p.string().c_str());
      continue;
    }
    if (cache::is_temp_name(name)) {
      log::info("prefix cache: removing %s (temporary file left by an interrupted write)", p.string().c_str());
      fs::remove(p, e2);
      continue;
    }
    std::string base = p.string();
    base.resize(base.size() - ext.size());
    (ext == ".meta" ? metas : states).insert(base);
  }
  for (const std::string& base : states)
    if (!metas.count(base)) {
      log::info("prefix cache: removing %s.state (no .meta: its write never completed)", base.c_str());
      fs::remove(base + ".state", ec);
    }
  for (const std::string& base : metas) {
    if (!states.count(base)) {
      log::info("prefix cache: removing %s.meta (its .state is gone)", base.c_str());
      fs::remove(base + ".meta", ec);
      continue;
    }
    std::error_code e2;
    const auto when = fs::last_write_time(base + ".meta", e2);
    if (!e2) found.emplace_back(when, base);
  }
  std::sort(found.begin(), found.end(), [](const auto& a, const auto& b) { return a.first > b.first; });
  size_t loaded = 0;
  bool over_budget = false;
  for (const auto& [when, base] : found) {
    try {
      std::ifstream f(base + ".meta", std::ios::binary);
      std::string buf((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
      if (buf.size() >= 8 && std::memcmp(buf.data(), kMetaMagicV1, 8) == 0) {
        log::info("prefix cache: removing %s (older file format)", base.c_str());
        std::error_code ec;
        fs::remove(base + ".state", ec);
        fs::remove(base + ".meta", ec);
        continue;
      }
      if (buf.size() < 8 + 8 + 8 || std::memcmp(buf.data(), kMetaMagic, 8) != 0) throw Error("bad header");
      uint64_t stored;
      std::memcpy(&stored, buf.data() + buf.size() - 8, 8);
      if (fnv1a64(buf.data(), buf.size() - 8) != stored) throw Error("checksum mismatch");
      size_t off = 8;
      auto get_u64 = [&] {
        if (off + 8 > buf.size() - 8) throw Error("truncated");
        uint64_t v;
        std::memcpy(&v, buf.data() + off, 8);
        off += 8;
        return v;
      };
      const uint64_t nl = get_u64();
      if (nl > (buf.size() - 8 - off) / sizeof(float)) throw Error("truncated logits");
      std::vector<float> logits(nl);
      std::memcpy(logits.data(), buf.data() + off, nl * sizeof(float));
      off += nl * sizeof(float);
      if (off != buf.size() - 8) throw Error("trailing bytes");
      if (bytes_ >= budget_) over_budget = true;
      if (over_budget) {  // --cache-mb holds on disk too: what does not fit is evicted
        log::info("prefix cache: removing %s (beyond the cache budget)", base.c_str());
        std::error_code e2;
        fs::remove(base + ".meta", e2);
        fs::remove(base + ".state", e2);
        continue;
      }
      auto st = cache::SeqState::load(base + ".state", shape);
      const size_t b = st->bytes() + logits.size() * sizeof(float);
      if (bytes_ + b > budget_) {
        over_budget = true;
        log::info("prefix cache: removing %s (beyond the cache budget)", base.c_str());
        std::error_code e2;
        fs::remove(base + ".meta", e2);
        fs::remove(base + ".state", e2);
        continue;
      }
      entries_.push_back({std::move(st), std::move(logits), b, ++clock_, base});
      bytes_ += b;
      ++loaded;
    } catch (const std::exception& ex) {
      log::warn("prefix cache: skipping %s: %s", base.c_str(), ex.what());
    }
  }
  return loaded;
}

}  // namespace dsv4::engine

