// V4-ARCH §2.4: MoE FFN of one layer over a batch: sqrt-softplus router (fp32, bias for
// selection only; hash layers route through tid2eid), routed FP4 experts, shared expert,
// clamped SwiGLU.
#pragma once
#include <vector>

#include "model/batch.h"
#include "model/weights.h"

namespace dsv4::model {

// MoeRouting (batch.h): experts and weights per row.
// Router only (exposed for tests).
void moe_route(const MoeWeights& w, bool hash, const float* xn, const BatchLayout& b, MoeRouting& out);
// xn: [N, D] FFN input (after ffn_norm); y: [N, D]. The routing stays in b.scratch->routing.
// `layer`: the main model's layer index, for b.experts (the expert store, model/expert_store.h);
// -1 or a null b.experts: the experts bound in w.
void moe_forward(const MoeWeights& w, bool hash, int layer, const float* xn, const BatchLayout& b, float* y);

}  // namespace dsv4::model
