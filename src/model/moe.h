// V4-ARCH §2.4: MoE FFN of one layer over a batch: sqrt-softplus router (fp32, bias for
// selection only; hash layers route through tid2eid), routed FP4 experts, shared expert,
// clamped SwiGLU.
#pragma once
#include <vector>

#include "model/batch.h"
#include "model/expert_parallel.h"
#include "model/weights.h"

namespace dsv4::model {

// MoeRouting (batch.h): experts and weights per row.
// Router only (exposed for tests).
void moe_route(const MoeWeights& w, bool hash, const float* xn, const BatchLayout& b, MoeRouting& out);
// The routed experts that `placement` gives to `rank` in `layer`, over xn [N, D] routed by rt: each
// writes its slots of outs [N, K, D], other slots are left as they are. moe_forward runs it for
// this process's experts; an expert-parallel worker (model/mpi/) for its own. `store` (the expert
// store, model/expert_store.h; null: the experts bound in w) provides the experts; with
// `prefetch_from` (the pass's layout) it also prefetches the next layer's experts of this rank.
void moe_run_experts(const MoeWeights& w, const float* xn, int64_t N, const MoeRouting& rt,
                     const ExpertPlacement& placement, int layer, int rank, const Config& c, bool ref,
                     kernels::Backend& be, PassScratch& ws, float* outs, ExpertStore* store = nullptr,
                     const BatchLayout* prefetch_from = nullptr);
// xn: [N, D] FFN input (after ffn_norm); y: [N, D]. The routing stays in b.scratch->routing.
// b.layer: the main model's layer index (for b.experts and the exchange); -1: the experts bound in w.
void moe_forward(const MoeWeights& w, bool hash, const float* xn, const BatchLayout& b, float* y);

}  // namespace dsv4::model
