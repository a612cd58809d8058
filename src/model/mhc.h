// V4-ARCH §2.2: Manifold-Constrained Hyper-Connections. hc streams of width D per token.
#pragma once
#include <vector>

#include "model/weights.h"

namespace dsv4::model {

struct HcMix {
  std::vector<float> post;  // [hc]
  std::vector<float> comb;  // [hc, hc] row-major comb[j][k]
};

// SinkhornSplit (exact order): row softmax + eps, column normalisation, then (iters-1) x
// (row, column). In place on C [hc, hc].
void sinkhorn_split(float* C, int hc, int iters, float eps);

// hc_pre for one token: X [hc, D] -> x_in [D] (rounded to bf16 when round_bf16), mix.
void hc_pre_one(const float* X, const HcParams& p, const Config& c, bool round_bf16, float* x_in, HcMix* mix);
// hc_post for one token: X_new[k] = post[k]*y + sum_j comb[j][k] * X_old[j]. In place on X.
void hc_post_one(float* X, const float* y, const HcMix& mix, const Config& c, bool round_bf16);
// hc_head for one token: X [hc, D] -> x [D].
void hc_head_one(const float* X, const HcParams& p, const Config& c, bool round_bf16, float* x);

}  // namespace dsv4::model
