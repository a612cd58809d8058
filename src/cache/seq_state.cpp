#include "cache/seq_state.h"

#include <algorithm>
#include <cstring>
#include <limits>

namespace dsv4::cache {

float* PagedRows::append() {
  if (n_ % kPageRows == 0 && size_t(n_ / kPageRows) == pages_.size())
    pages_.emplace_back(new float[size_t(kPageRows) * size_t(width_)]);
  return row(n_++);
}

void PagedRows::truncate(int64_t n) {
  if (n >= n_) return;
  n_ = n;
  pages_.resize(size_t((n + kPageRows - 1) / kPageRows));
}

PagedRows PagedRows::clone() const {
  PagedRows r(width_);
  r.n_ = n_;
  for (const auto& p : pages_) {
    r.pages_.emplace_back(new float[size_t(kPageRows) * size_t(width_)]);
    std::memcpy(r.pages_.back().get(), p.get(), size_t(kPageRows) * size_t(width_) * sizeof(float));
  }
  return r;
}

void CompressorState::init(int r, int w) {
  ratio = r;
  width = w;
  c = r == 4 ? 2 : 1;
  kv.assign(size_t(rows()) * size_t(cols()), 0.f);
  score.assign(size_t(rows()) * size_t(cols()), -std::numeric_limits<float>::infinity());
}

void CompressorState::reset() {
  std::fill(kv.begin(), kv.end(), 0.f);
  std::fill(score.begin(), score.end(), -std::numeric_limits<float>::infinity());
}

SeqState::SeqState(const StateShape& s) : shape_(s) {
  layers_.resize(size_t(s.n_layers));
  for (int l = 0; l < s.n_layers; ++l) {
    LayerState& L = layers_[size_t(l)];
    L.ratio = s.ratios[size_t(l)];
    L.window = s.window;
    L.kv_window.assign(size_t(s.window) * size_t(s.head_dim), 0.f);
    if (L.ratio) {
      L.compressor.init(L.ratio, s.head_dim);
      L.kv_compressed = PagedRows(s.head_dim);
    }
    if (L.ratio == 4) {
      L.index_compressor.init(4, s.index_head_dim);
      L.index_keys = PagedRows(s.index_head_dim);
    }
  }
}

std::unique_ptr<SeqState> SeqState::clone() const {
  std::unique_ptr<SeqState> r(new SeqState());
  r->shape_ = shape_;
  r->tokens_ = tokens_;
  r->layers_.resize(layers_.size());
  for (size_t l = 0; l < layers_.size(); ++l) {
    const LayerState& a = layers_[l];
    LayerState& b = r->layers_[l];
    b.ratio = a.ratio;
    b.window = a.window;
    b.kv_window = a.kv_window;
    b.compressor = a.compressor;
    b.kv_compressed = a.kv_compressed.clone();
    b.index_compressor = a.index_compressor;
    b.index_keys = a.index_keys.clone();
  }
  return r;
}

void SeqState::reset() {
  tokens_.clear();
  for (auto& L : layers_) {
    std::fill(L.kv_window.begin(), L.kv_window.end(), 0.f);
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
  size_t b = tokens_.capacity() * sizeof(int32_t);
  for (const auto& L : layers_) {
    b += L.kv_window.size() * sizeof(float);
    b += L.compressor.bytes() + L.index_compressor.bytes();
    b += L.kv_compressed.bytes_reserved() + L.index_keys.bytes_reserved();
  }
  return b;
}

}  // namespace dsv4::cache
