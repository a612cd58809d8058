// V4-ARCH §2.3.5 / §3.1: the KV compressor (CSA ratio 4 overlapping, HCA ratio 128), streaming.
#pragma once
#include <vector>

#include "cache/seq_state.h"
#include "model/batch.h"
#include "model/weights.h"

namespace dsv4::model {

// a = wkv . x, g = wgate . x + ape[pos mod m] for every row of the batch (fp32). [N, c*width]
void compressor_project(const CompressorWeights& w, const float* xn, const BatchLayout& b, std::vector<float>& a,
                        std::vector<float>& g);

// Feeds one token's projections into the state. Returns true when the token completes a window;
// then `entry` [width] holds the pooled (pre-norm) entry for window pos div m.
// The pooling itself is the backend's softmax_pool.
bool compressor_push(kernels::Backend& be, cache::CompressorState& st, const float* a, const float* g, int64_t pos,
                     float* entry);

}  // namespace dsv4::model
