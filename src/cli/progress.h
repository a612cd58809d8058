// Prefill progress on stderr for `dsv4 run` and `dsv4 bench`: one line per update, at most one
// per `interval` seconds (plus the last chunk), with the recent rate.
#pragma once
#include <cstdio>

#include "engine/generate.h"

namespace dsv4::cli {

class PrefillProgressPrinter {
 public:
  explicit PrefillProgressPrinter(const char* label, double interval = 2.0) : label_(label), interval_(interval) {}

  void operator()(const engine::PrefillProgress& p) {
    if (p.done < p.total && p.seconds - last_s_ < interval_) return;
    const double dt = p.seconds - last_s_, rate = dt > 0 ? double(p.done - last_done_) / dt : 0;
    std::fprintf(stderr, "%s: prefill %lld/%lld tokens (%.1f%%), context %lld, %.1f tok/s, %.1f s\n", label_,
                 (long long)p.done, (long long)p.total, 100.0 * double(p.done) / double(p.total),
                 (long long)p.n_past, rate, p.seconds);
    std::fflush(stderr);
    last_s_ = p.done < p.total ? p.seconds : 0;
    last_done_ = p.done < p.total ? p.done : 0;
  }

 private:
  const char* label_;
  double interval_;
  double last_s_ = 0;
  int64_t last_done_ = 0;
};

}  // namespace dsv4::cli
