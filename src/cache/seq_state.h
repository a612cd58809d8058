// V4-ARCH §3.1: everything a sequence needs to continue, per layer: the window KV ring, the
// compressor state(s), the compressed KV entries and (CSA) the indexer keys. Memory grows with
// context only through compressed entries, which live in fixed-size pages (no reallocation of
// the whole cache, no maximum context baked in). Rows are stored in the format of
// cache/kv_format.h: native FP8/FP4 (reference numerics) or fp32 (f32 numerics).
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "cache/kv_format.h"

namespace dsv4::cache {

// Encoded rows appended in pages of kPageRows rows; stable addresses, O(1) append.
class PagedRows {
 public:
  static constexpr int64_t kPageRows = 256;
  PagedRows() = default;
  explicit PagedRows(RowCodec codec) : codec_(codec), row_bytes_(codec.bytes()) {}
  const RowCodec& codec() const { return codec_; }
  int64_t size() const { return n_; }
  void append(const float* x);  // encodes x[0..width)
  void decode(int64_t i, float* out) const { codec_.decode(raw(i), out); }
  const uint8_t* raw(int64_t i) const { return pages_[size_t(i / kPageRows)].get() + size_t(i % kPageRows) * row_bytes_; }
  void truncate(int64_t n);  // keep the first n rows (frees whole pages past them)
  size_t row_bytes() const { return row_bytes_; }
  size_t bytes_reserved() const { return pages_.size() * size_t(kPageRows) * row_bytes_; }
  size_t bytes_used() const { return size_t(n_) * row_bytes_; }
  PagedRows clone() const;
  // Raw bytes of rows [0, n) appended to out / read back (serialisation).
  void dump(std::string& out) const;
  void load_raw(const uint8_t* data, int64_t n);

 private:
  uint8_t* raw_mut(int64_t i) { return pages_[size_t(i / kPageRows)].get() + size_t(i % kPageRows) * row_bytes_; }
  RowCodec codec_;
  size_t row_bytes_ = 0;
  int64_t n_ = 0;
  std::vector<std::unique_ptr<uint8_t[]>> pages_;
};

// Streaming compressor state (V4-ARCH §3.1 "Streaming compressor algorithm"), fp32.
// ratio 4 (CSA, overlapping): rows 0..3 = previous window, rows 4..7 = current, each 2*width.
// ratio 128 (HCA): rows 0..127 = current window, width wide.
struct CompressorState {
  int ratio = 0, width = 0, c = 0;
  std::vector<float> kv;     // [rows, c*width]
  std::vector<float> score;  // [rows, c*width], includes ape; -inf = empty
  void init(int ratio, int width);
  void reset();
  static int rows_for(int ratio) { return ratio == 4 ? 2 * ratio : ratio; }
  static int cols_for(int ratio, int width) { return (ratio == 4 ? 2 : 1) * width; }
  // kv + score of a state for (ratio, width), without building one.
  static size_t bytes_for(int ratio, int width) {
    return 2 * size_t(rows_for(ratio)) * size_t(cols_for(ratio, width)) * sizeof(float);
  }
  int rows() const { return rows_for(ratio); }
  int cols() const { return c * width; }
  size_t bytes() const { return (kv.size() + score.size()) * sizeof(float); }  // what it holds
};

struct LayerState {
  int ratio = 0;
  std::vector<uint8_t> kv_window;    // [W] encoded rows, slot p mod W
  CompressorState compressor;        // ratio != 0
  PagedRows kv_compressed;           // [n_entries] encoded rows
  CompressorState index_compressor;  // ratio 4
  PagedRows index_keys;              // [n_entries] encoded keys
};

struct StateShape {
  int n_layers = 0, window = 0, head_dim = 0, rope_dim = 0, index_head_dim = 0;
  bool native = false;      // reference numerics: FP8/FP4 rows; else fp32 rows
  std::vector<int> ratios;  // per main layer
  RowCodec kv_codec() const { return native ? RowCodec::kv(head_dim, rope_dim) : RowCodec::f32_rows(head_dim); }
  RowCodec index_codec() const {
    return native ? RowCodec::index_key(index_head_dim) : RowCodec::f32_rows(index_head_dim);
  }
  bool operator==(const StateShape&) const = default;
};

// Bytes of one sequence's state at a context length (V4-ARCH §3.1-3.3, in this engine's storage
// formats). The one accounting of it: SeqState::bytes() is this at the state's length and
// snapshot count, admission (engine/scheduler.h) reserves this at a request's final length,
// `dsv4 kv` prints it, and model_stats counts the spec's other row formats with it.
struct StateBytes {
  size_t tokens = 0;         // token ids, 4 B each
  size_t window = 0;         // window rings: W slots per layer (allocated whole)
  size_t compressor = 0;     // fp32 compressor states: CSA 2 x 8 x 2Dh + indexer 2 x 8 x 2Di, HCA 2 x 128 x Dh
  size_t kv_compressed = 0;  // compressed KV entries: floor(n / m) per CSA/HCA layer
  size_t index_keys = 0;     // CSA indexer keys: floor(n / 4) per CSA layer
  size_t snapshots = 0;      // snapshots: window rings + compressor states each
  size_t total() const { return tokens + window + compressor + kv_compressed + index_keys + snapshots; }
};
struct StateBytesOptions {
  bool per_page = false;  // compressed rows in whole PagedRows pages, as a SeqState allocates them
  size_t snapshots = 0;   // snapshots held
  // Other row formats (model_stats' paper / bf16 figures): these row sizes instead of the shape's
  // codecs (0 = the codec's), and windows counted by the slots holding a token, min(n, W).
  size_t kv_row_bytes = 0, index_row_bytes = 0;
  bool filled_window_only = false;
};
StateBytes state_bytes_at(const StateShape& s, int64_t context, const StateBytesOptions& o = {});
inline StateBytes state_bytes_at(const StateShape& s, int64_t context, bool per_page) {
  return state_bytes_at(s, context, StateBytesOptions{.per_page = per_page});
}

class SeqState {
 public:
  explicit SeqState(const StateShape& shape);
  SeqState(const SeqState&) = delete;
  SeqState& operator=(const SeqState&) = delete;
  std::unique_ptr<SeqState> clone() const;

  int64_t n_past() const { return int64_t(tokens_.size()); }
  const std::vector<int32_t>& tokens() const { return tokens_; }
  std::vector<int32_t>& tokens() { return tokens_; }
  LayerState& layer(int l) { return layers_[size_t(l)]; }
  const LayerState& layer(int l) const { return layers_[size_t(l)]; }
  const StateShape& shape() const { return shape_; }
  void reset();
  // Bytes held: state_bytes_at(shape, n_past) with whole pages and the snapshots held.
  size_t bytes() const;

  // Window rows: decode ring slot for absolute position p into out [head_dim].
  void window_decode(int l, int64_t p, float* out) const;
  void window_store(int l, int64_t p, const float* kv);

  // Snapshots (for exact truncation): the window rings and compressor states at n_past(). They
  // are part of the state: cloned, counted in bytes() and saved with it. At most kMaxSnapshots
  // (the oldest goes). Truncating to n restores the newest snapshot at or before n and replays
  // the rest.
  void snapshot();
  // Restores the newest snapshot with position <= n (dropping later ones); returns its position
  // (0 with a reset state if none). Tokens after it are removed; the caller replays up to n.
  int64_t restore_snapshot_at_or_before(int64_t n);
  size_t n_snapshots() const { return snapshots_.size(); }
  std::vector<int64_t> snapshot_positions() const;  // ascending
  static constexpr size_t kMaxSnapshots = 8;

  // Serialisation: a self-checking binary file (magic, version, shape, tokens, all rows,
  // snapshots, FNV-1a 64 checksum). Written atomically (temp file + rename).
  void save(const std::string& path, bool sync = false) const;  // atomic; sync: fsync file + dir (cache/durable_file.h)
  // Throws dsv4::Error if the file is malformed, truncated, fails its checksum or its shape
  // differs from `expected`.
  static std::unique_ptr<SeqState> load(const std::string& path, const StateShape& expected);

 private:
  struct LayerSnapshot {
    std::vector<uint8_t> kv_window;
    CompressorState compressor, index_compressor;
  };
  struct Snapshot {
    int64_t pos = 0;
    std::vector<LayerSnapshot> layers;
  };
  StateShape shape_;
  size_t window_row_bytes_ = 0;
  std::vector<int32_t> tokens_;
  std::vector<LayerState> layers_;
  std::vector<Snapshot> snapshots_;
};

}  // namespace dsv4::cache
