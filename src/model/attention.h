// V4-ARCH §2.3: attention block of one layer over a batch.
#pragma once
#include <vector>

#include "kernels/linear.h"
#include "model/batch.h"
#include "model/rope.h"
#include "model/weights.h"

namespace dsv4::model {

struct AttentionDebug {
  std::vector<std::vector<int32_t>> csa_selected;  // per row, ascending
};

// xn: [N, D] attention input (after attn_norm). y: [N, D] output. Updates each item's state
// (window ring, compressed entries, indexer keys) for this layer.
void attention_forward(const LayerWeights& L, const RopeTable& rope, const float* xn, BatchLayout& b, float* y,
                       AttentionDebug* dbg = nullptr);

// GEMM options for a weight under the given numerics (V4-ARCH §2.7).
kernels::MatmulOpts gemm_opts(const Linear& w, bool ref);
void round_if(bool ref, float* x, int64_t n);

}  // namespace dsv4::model
