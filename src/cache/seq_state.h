// V4-ARCH §3.1: everything a sequence needs to continue, per layer: the window KV ring, the
// compressor state(s), the compressed KV entries and (CSA) the indexer keys. Memory grows with
// context only through compressed entries, which live in fixed-size pages (no reallocation of
// the whole cache, no maximum context baked in).
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace dsv4::cache {

// Rows of fixed width appended in pages of kPageRows rows; stable addresses, O(1) append.
class PagedRows {
 public:
  static constexpr int64_t kPageRows = 256;
  PagedRows() = default;
  explicit PagedRows(int width) : width_(width) {}
  int width() const { return width_; }
  int64_t size() const { return n_; }
  float* append();                       // returns the new row to fill
  const float* row(int64_t i) const { return pages_[size_t(i / kPageRows)].get() + (i % kPageRows) * width_; }
  float* row(int64_t i) { return pages_[size_t(i / kPageRows)].get() + (i % kPageRows) * width_; }
  void truncate(int64_t n);              // keep the first n rows (frees whole pages past them)
  size_t bytes_reserved() const { return pages_.size() * size_t(kPageRows) * size_t(width_) * sizeof(float); }
  size_t bytes_used() const { return size_t(n_) * size_t(width_) * sizeof(float); }
  PagedRows clone() const;

 private:
  int width_ = 0;
  int64_t n_ = 0;
  std::vector<std::unique_ptr<float[]>> pages_;
};

// Streaming compressor state (V4-ARCH §3.1 "Streaming compressor algorithm").
// ratio 4 (CSA, overlapping): rows 0..3 = previous window, rows 4..7 = current, each c*width=2*width.
// ratio 128 (HCA): rows 0..127 = current window, width wide.
struct CompressorState {
  int ratio = 0, width = 0, c = 0;
  std::vector<float> kv;     // [rows, c*width] fp32
  std::vector<float> score;  // [rows, c*width] fp32, includes ape; -inf = empty
  void init(int ratio, int width);
  void reset();
  int rows() const { return ratio == 4 ? 2 * ratio : ratio; }
  int cols() const { return c * width; }
  size_t bytes() const { return (kv.size() + score.size()) * sizeof(float); }
};

struct LayerState {
  int ratio = 0;
  int window = 0;
  std::vector<float> kv_window;   // [W, Dh] ring, slot p mod W
  CompressorState compressor;     // ratio != 0
  PagedRows kv_compressed;        // [n_entries, Dh]
  CompressorState index_compressor;  // ratio 4
  PagedRows index_keys;           // [n_entries, Di]
};

struct StateShape {
  int n_layers = 0, window = 0, head_dim = 0, index_head_dim = 0;
  std::vector<int> ratios;  // per main layer
};

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
  // Bytes held: window rings + compressor states + compressed entries (+ index keys).
  size_t bytes() const;

 private:
  SeqState() = default;
  StateShape shape_;
  std::vector<int32_t> tokens_;
  std::vector<LayerState> layers_;
};

}  // namespace dsv4::cache
