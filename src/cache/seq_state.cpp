#include "cache/seq_state.h"

#include "cache/durable_file.h"

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <unistd.h>
#include <limits>

#include "core/error.h"

namespace dsv4::cache {

// ---- PagedRows --------------------------------------------------------------------------------

void PagedRows::append(const float* x) {
  if (n_ % kPageRows == 0 && size_t(n_ / kPageRows) == pages_.size())
    pages_.emplace_back(new uint8_t[size_t(kPageRows) * row_bytes_]());  // zeroed: resident = reserved
  codec_.encode(x, raw_mut(n_));
  ++n_;
}

void PagedRows::truncate(int64_t n) {
  if (n >= n_) return;
  n_ = n;
  pages_.resize(size_t((n + kPageRows - 1) / kPageRows));
}

PagedRows PagedRows::clone() const {
  PagedRows r(codec_);
  r.n_ = n_;
  for (const auto& p : pages_) {
    r.pages_.emplace_back(new uint8_t[size_t(kPageRows) * row_bytes_]());  // zeroed: resident = reserved
    std::memcpy(r.pages_.back().get(), p.get(), size_t(kPageRows) * row_bytes_);
  }
  return r;
}

void PagedRows::dump(std::string& out) const {
  for (int64_t i = 0; i < n_; ++i) out.append(reinterpret_cast<const char*>(raw(i)), row_bytes_);
}

void PagedRows::load_raw(const uint8_t* data, int64_t n) {
  truncate(0);
  for (int64_t i = 0; i < n; ++i) {
    if (n_ % kPageRows == 0 && size_t(n_ / kPageRows) == pages_.size())
      pages_.emplace_back(new uint8_t[size_t(kPageRows) * row_bytes_]());  // zeroed: resident = reserved
    std::memcpy(raw_mut(n_), data + size_t(i) * row_bytes_, row_bytes_);
    ++n_;
  }
}

// ---- CompressorState ----------------------------------------------------------------------------

void CompressorState::init(int r, int w) {
  ratio = r;
  width = w;
  c = cols_for(r, 1);
  kv.assign(size_t(rows()) * size_t(cols()), 0.f);
  score.assign(size_t(rows()) * size_t(cols()), -std::numeric_limits<float>::infinity());
}

void CompressorState::reset() {
  std::fill(kv.begin(), kv.end(), 0.f);
  std::fill(score.begin(), score.end(), -std::numeric_limits<float>::infinity());
}

// ---- accounting -------------------------------------------------------------------------------

StateBytes state_bytes_at(const StateShape& s, int64_t context, const StateBytesOptions& o) {
  StateBytes b;
  const size_t kvb = o.kv_row_bytes ? o.kv_row_bytes : s.kv_codec().bytes();
  const size_t ib = o.index_row_bytes ? o.index_row_bytes : s.index_codec().bytes();
  auto rows = [&](int64_t n) {
    if (!o.per_page) return n;
    return (n + PagedRows::kPageRows - 1) / PagedRows::kPageRows * PagedRows::kPageRows;
  };
  const int64_t window_slots = o.filled_window_only ? std::min<int64_t>(context, s.window) : s.window;
  size_t fixed = 0;  // window rings + compressor states: also what one snapshot holds
  b.tokens = size_t(context) * sizeof(int32_t);
  for (int r : s.ratios) {
    b.window += size_t(window_slots) * kvb;
    fixed += size_t(s.window) * kvb;
    if (r == 0) continue;
    const size_t cb = CompressorState::bytes_for(r, s.head_dim) + (r == 4 ? CompressorState::bytes_for(4, s.index_head_dim) : 0);
    b.compressor += cb;
    fixed += cb;
    b.kv_compressed += size_t(rows(context / r)) * kvb;
    if (r == 4) b.index_keys += size_t(rows(context / 4)) * ib;
  }
  b.snapshots = o.snapshots * fixed;
  return b;
}

// ---- SeqState ---------------------------------------------------------------------------------

SeqState::SeqState(const StateShape& s) : shape_(s) {
  window_row_bytes_ = s.kv_codec().bytes();
  layers_.resize(size_t(s.n_layers));
  for (int l = 0; l < s.n_layers; ++l) {
    LayerState& L = layers_[size_t(l)];
    L.ratio = s.ratios[size_t(l)];
    L.kv_window.assign(size_t(s.window) * window_row_bytes_, 0);
    if (L.ratio) {
      L.compressor.init(L.ratio, s.head_dim);
      L.kv_compressed = PagedRows(s.kv_codec());
    }
    if (L.ratio == 4) {
      L.index_compressor.init(4, s.index_head_dim);
      L.index_keys = PagedRows(s.index_codec());
    }
  }
}

std::unique_ptr<SeqState> SeqState::clone() const {
  auto r = std::make_unique<SeqState>(shape_);
  r->tokens_ = tokens_;
  for (size_t l = 0; l < layers_.size(); ++l) {
    const LayerState& a = layers_[l];
    LayerState& b = r->layers_[l];
    b.kv_window = a.kv_window;
    b.compressor = a.compressor;
    b.kv_compressed = a.kv_compressed.clone();
    b.index_compressor = a.index_compressor;
    b.index_keys = a.index_keys.clone();
  }
  r->snapshots_ = snapshots_;
  return r;
}

void SeqState::reset() {
  tokens_.clear();
  snapshots_.clear();
  for (auto& L : layers_) {
    std::fill(L.kv_window.begin(), L.kv_window.end(), 0);
    if (L.ratio) {
      L.compressor.reset();
      L.kv_compressed.truncate(0);
    }
    if (L.ratio == 4) {
      L.index_compressor.reset();
      L.index_keys.truncate(0);
    }
  }
}

size_t SeqState::bytes() const {
  return state_bytes_at(shape_, n_past(), StateBytesOptions{.per_page = true, .snapshots = snapshots_.size()}).total();
}

std::vector<int64_t> SeqState::snapshot_positions() const {
  std::vector<int64_t> r;
  for (const auto& s : snapshots_) r.push_back(s.pos);
  return r;
}

void SeqState::window_decode(int l, int64_t p, float* out) const {
  shape_.kv_codec().decode(layers_[size_t(l)].kv_window.data() + size_t(p % shape_.window) * window_row_bytes_, out);
}

void SeqState::window_store(int l, int64_t p, const float* kv) {
  shape_.kv_codec().encode(kv, layers_[size_t(l)].kv_window.data() + size_t(p % shape_.window) * window_row_bytes_);
}

void SeqState::snapshot() {
  if (!snapshots_.empty() && snapshots_.back().pos == n_past()) return;
  Snapshot s;
  s.pos = n_past();
  for (const auto& L : layers_) s.layers.push_back({L.kv_window, L.compressor, L.index_compressor});
  snapshots_.push_back(std::move(s));
  if (snapshots_.size() > kMaxSnapshots) snapshots_.erase(snapshots_.begin());
}

int64_t SeqState::restore_snapshot_at_or_before(int64_t n) {
  while (!snapshots_.empty() && snapshots_.back().pos > n) snapshots_.pop_back();
  if (snapshots_.empty()) {
    reset();
    return 0;
  }
  const Snapshot& s = snapshots_.back();
  tokens_.resize(size_t(s.pos));
  for (size_t l = 0; l < layers_.size(); ++l) {
    LayerState& L = layers_[l];
    L.kv_window = s.layers[l].kv_window;
    L.compressor = s.layers[l].compressor;
    L.index_compressor = s.layers[l].index_compressor;
    if (L.ratio) L.kv_compressed.truncate(s.pos / L.ratio);
    if (L.ratio == 4) L.index_keys.truncate(s.pos / 4);
  }
  return s.pos;
}

// ---- serialisation ----------------------------------------------------------------------------

namespace {
constexpr char kMagic[8] = {'D', 'S', 'V', '4', 'S', 'T', 'A', 'T'};
constexpr uint32_t kVersion = 1;

uint64_t fnv1a(const uint8_t* p, size_t n) {
  uint64_t h = 1469598103934665603ull;
  for (size_t i = 0; i < n; ++i) h = (h ^ p[i]) * 1099511628211ull;
  return h;
}

struct Writer {
  std::string buf;
  template <class T>
  void pod(const T& v) { buf.append(reinterpret_cast<const char*>(&v), sizeof v); }
  void bytes(const void* p, size_t n) { buf.append(static_cast<const char*>(p), n); }
  template <class T>
  void vec(const std::vector<T>& v) {
    pod(uint64_t(v.size()));
    bytes(v.data(), v.size() * sizeof(T));
  }
};

struct Reader {
  const uint8_t* p;
  size_t n, off = 0;
  const std::string& path;
  void need(size_t k) {
    if (off + k > n) throw Error(path + ": truncated state file");
  }
  template <class T>
  T pod() {
    need(sizeof(T));
    T v;
    std::memcpy(&v, p + off, sizeof v);
    off += sizeof v;
    return v;
  }
  template <class T>
  void vec(std::vector<T>& v, size_t expect) {
    uint64_t k = pod<uint64_t>();
    if (k != expect) throw Error(path + ": state file does not match the model (array of " + std::to_string(k) +
                                 " elements, expected " + std::to_string(expect) + ")");
    need(k * sizeof(T));
    v.resize(k);
    std::memcpy(v.data(), p + off, k * sizeof(T));
    off += k * sizeof(T);
  }
};

void write_shape(Writer& w, const StateShape& s) {
  w.pod(int32_t(s.n_layers));
  w.pod(int32_t(s.window));
  w.pod(int32_t(s.head_dim));
  w.pod(int32_t(s.rope_dim));
  w.pod(int32_t(s.index_head_dim));
  w.pod(uint8_t(s.native));
  for (int r : s.ratios) w.pod(int32_t(r));
}

StateShape read_shape(Reader& r) {
  StateShape s;
  s.n_layers = r.pod<int32_t>();
  s.window = r.pod<int32_t>();
  s.head_dim = r.pod<int32_t>();
  s.rope_dim = r.pod<int32_t>();
  s.index_head_dim = r.pod<int32_t>();
  s.native = r.pod<uint8_t>() != 0;
  if (s.n_layers < 0 || s.n_layers > 4096) throw Error(r.path + ": bad layer count in state file");
  for (int l = 0; l < s.n_layers; ++l) s.ratios.push_back(r.pod<int32_t>());
  return s;
}

void write_comp(Writer& w, const CompressorState& c) {
  w.vec(c.kv);
  w.vec(c.score);
}
void read_comp(Reader& r, CompressorState& c) {
  r.vec(c.kv, c.kv.size());
  r.vec(c.score, c.score.size());
}
}  // namespace

void SeqState::save(const std::string& path, bool sync) const {
  Writer w;
  w.bytes(kMagic, 8);
  w.pod(kVersion);
  write_shape(w, shape_);
  w.vec(tokens_);
  for (const auto& L : layers_) {
    w.vec(L.kv_window);
    if (L.ratio) {
      write_comp(w, L.compressor);
      std::string rows;
      L.kv_compressed.dump(rows);
      w.pod(int64_t(L.kv_compressed.size()));
      w.bytes(rows.data(), rows.size());
    }
    if (L.ratio == 4) {
      write_comp(w, L.index_compressor);
      std::string rows;
      L.index_keys.dump(rows);
      w.pod(int64_t(L.index_keys.size()));
      w.bytes(rows.data(), rows.size());
    }
  }
  w.pod(uint64_t(snapshots_.size()));
  for (const auto& s : snapshots_) {
    w.pod(s.pos);
    for (size_t l = 0; l < layers_.size(); ++l) {
      w.vec(s.layers[l].kv_window);
      if (layers_[l].ratio) write_comp(w, s.layers[l].compressor);
      if (layers_[l].ratio == 4) write_comp(w, s.layers[l].index_compressor);
    }
  }
  uint64_t h = fnv1a(reinterpret_cast<const uint8_t*>(w.buf.data()), w.buf.size());
  w.pod(h);
  write_file_atomic(path, w.buf, sync);
}

std::unique_ptr<SeqState> SeqState::load(const std::string& path, const StateShape& expected) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw Error(path + ": cannot open state file");
  std::string data((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  if (data.size() < 8 + 4 + 8 || std::memcmp(data.data(), kMagic, 8) != 0)
    throw Error(path + ": not a dsv4 state file");
  uint64_t stored;
  std::memcpy(&stored, data.data() + data.size() - 8, 8);
  if (fnv1a(reinterpret_cast<const uint8_t*>(data.data()), data.size() - 8) != stored)
    throw Error(path + ": state file checksum mismatch (corrupt or truncated)");
  Reader r{reinterpret_cast<const uint8_t*>(data.data()), data.size() - 8, 8, path};
  if (r.pod<uint32_t>() != kVersion) throw Error(path + ": unsupported state file version");
  StateShape s = read_shape(r);
  if (!(s == expected)) throw Error(path + ": state file was made for a different model or numerics");
  auto st = std::make_unique<SeqState>(s);
  uint64_t nt = r.pod<uint64_t>();
  if (nt > (r.n - r.off) / 4) throw Error(path + ": truncated state file");
  st->tokens_.resize(nt);
  std::memcpy(st->tokens_.data(), r.p + r.off, nt * 4);
  r.off += nt * 4;
  for (auto& L : st->layers_) {
    r.vec(L.kv_window, L.kv_window.size());
    auto rows = [&](PagedRows& pr, int64_t expect) {
      int64_t n = r.pod<int64_t>();
      if (n != expect) throw Error(path + ": bad row count");  // floor(n_past / m) entries
      r.need(size_t(n) * pr.row_bytes());
      pr.load_raw(r.p + r.off, n);
      r.off += size_t(n) * pr.row_bytes();
    };
    if (L.ratio) {
      read_comp(r, L.compressor);
      rows(L.kv_compressed, int64_t(nt) / L.ratio);
    }
    if (L.ratio == 4) {
      read_comp(r, L.index_compressor);
      rows(L.index_keys, int64_t(nt) / 4);
    }
  }
  uint64_t ns = r.pod<uint64_t>();
  if (ns > kMaxSnapshots) throw Error(path + ": bad snapshot count");
  for (uint64_t i = 0; i < ns; ++i) {
    Snapshot snap;
    snap.pos = r.pod<int64_t>();
    if (snap.pos < 0 || snap.pos > int64_t(nt) || (!st->snapshots_.empty() && snap.pos <= st->snapshots_.back().pos))
      throw Error(path + ": bad snapshot position");
    for (auto& L : st->layers_) {
      LayerSnapshot ls{L.kv_window, L.compressor, L.index_compressor};
      r.vec(ls.kv_window, ls.kv_window.size());
      if (L.ratio) read_comp(r, ls.compressor);
      if (L.ratio == 4) read_comp(r, ls.index_compressor);
      snap.layers.push_back(std::move(ls));
    }
    st->snapshots_.push_back(std::move(snap));
  }
  if (r.off != r.n) throw Error(path + ": trailing bytes in state file");
  return st;
}

}  // namespace dsv4::cache
