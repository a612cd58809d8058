#include "model/mhc.h"

#include "core/error.h"

namespace dsv4::model {

kernels::HcSite hc_site(const HcParams& p, const Config& c) {
  DSV4_CHECK(c.hc_mult >= 1 && c.hc_mult <= kernels::kMaxHc, "hc_mult " + std::to_string(c.hc_mult) +
                                                                  " outside what the backend supports");
  kernels::HcSite s;
  s.fn = p.fn.as<float>();
  s.base = p.base.as<float>();
  s.scale = p.scale.as<float>();
  s.hc = c.hc_mult;
  s.dim = c.dim;
  s.sinkhorn_iters = c.hc_sinkhorn_iters;
  s.hc_eps = c.hc_eps;
  s.norm_eps = c.norm_eps;
  return s;
}

}  // namespace dsv4::model
