// V4-ARCH §2.4: MoE FFN of one layer over a batch: sqrt-softplus router (fp32, bias for
// selection only; hash layers route through tid2eid), routed FP4 experts, shared expert,
// clamped SwiGLU.
#pragma once
#include <vector>

#include "model/batch.h"
#include "model/weights.h"

namespace dsv4::model {

struct MoeRouting {
  std::vector<int32_t> experts;  // [N, K]
  std::vector<float> weights;    // [N, K], renormalised and scaled by route_scale
};

// Router only (exposed for tests).
void moe_route(const MoeWeights& w, bool hash, const float* xn, const BatchLayout& b, MoeRouting& out);
// xn: [N, D] FFN input (after ffn_norm); y: [N, D].
void moe_forward(const MoeWeights& w, bool hash, const float* xn, const BatchLayout& b, float* y,
                 MoeRouting* routing_out = nullptr);

}  // namespace dsv4::model
