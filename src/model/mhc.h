// V4-ARCH §2.2: Manifold-Constrained Hyper-Connections. hc streams of width D per token; the math
// (pre / post / head, SinkhornSplit) is the backend's (kernels/backend.h mhc_*); the model names
// each site's parameters.
#pragma once
#include "kernels/backend.h"
#include "model/weights.h"

namespace dsv4::model {

// The arrays of one mHC site (attention, FFN or head) for the backend.
kernels::HcSite hc_site(const HcParams& p, const Config& c);

}  // namespace dsv4::model
