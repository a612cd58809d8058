// V4-ARCH §2.3.1: RoPE on the last R dims of each vector, interleaved pairs, per-layer base:
// ratio-0 layers theta=rope_theta without YaRN; ratio!=0 layers compress_rope_theta with YaRN
// (frequency ramp only, no mscale anywhere).
#pragma once
#include <vector>

#include "kernels/backend.h"
#include "model/config.h"

namespace dsv4::model {

class RopeTable {
 public:
  RopeTable() = default;
  RopeTable(const Config& c, bool compressed_layer);
  int npairs() const { return int(omega_.size()); }
  const std::vector<float>& omega() const { return omega_; }
  // The frequencies as the backend's rope op takes them (kernels/backend.h).
  kernels::RopeFreqs freqs() const { return {omega_.data(), npairs()}; }

 private:
  std::vector<float> omega_;
};

// YaRN-adjusted frequencies (exposed for the §7 known-answer test).
std::vector<float> rope_frequencies(int rope_dim, float theta, float factor, int64_t original_seq_len,
                                    float beta_fast, float beta_slow, bool yarn);

}  // namespace dsv4::model
