// dsv4 CPU backend: the Backend ops (kernels/backend.h) on this machine's cores, with the one
// thread pool (core/thread_pool.h) created here, once, and scratch buffers kept between calls so
// a decode step does not go back to the allocator for them.
#pragma once
#include <memory>
#include <mutex>
#include <vector>

#include "core/thread_pool.h"
#include "kernels/backend.h"
#include "kernels/topk.h"

namespace dsv4::kernels {

class CpuBackend final : public Backend {
 public:
  explicit CpuBackend(int threads = 0);
  const char* name() const override { return "cpu"; }
  int threads() const override { return pool_.size(); }
  ThreadPool& pool() { return pool_; }

  void matmul(const Linear& W, const float* x, int64_t n, int64_t ldx, float* y, int64_t ldy,
              const MatmulOpts& opts = {}) override;
  void rms_norm(float* x, int64_t rows, int64_t dim, int64_t ld, const TensorView* w, float eps,
                bool round_bf16) override;
  void rope(float* x, int64_t rows, int64_t heads, int64_t dim, int64_t ld, const int64_t* pos, const RopeFreqs& f,
            bool inverse, bool round_bf16) override;
  void mhc_pre(const float* X, int64_t rows, const HcSite& s, bool round_bf16, float* x_in, HcMix* mix) override;
  void mhc_post(float* X, const float* y, int64_t rows, const HcMix* mix, int hc, int64_t dim,
                bool round_bf16) override;
  void mhc_head(const float* X, int64_t rows, const HcSite& s, bool round_bf16, float* x) override;
  void sink_attention(const float* q, int64_t rows, int64_t heads, int64_t dim, const float* const* keys,
                      const int64_t* key_begin, const float* sinks, float scale, bool round_probs, bool round_out,
                      float* out) override;
  void softmax_pool(const float* const* values, const float* const* scores, int slots, int64_t width,
                    float* out) override;
  void swiglu(float* g, const float* u, int64_t rows, int64_t inter, float limit, const float* row_weight,
              bool round_bf16) override;
  void index_topk(const RowSource& keys, const float* q, const float* w, int64_t rows, int64_t hi, int64_t di,
                  const int64_t* n_eligible, int64_t topk, bool round_bf16,
                  std::vector<int32_t>* selected) override;

 private:
  // Per-thread scratch, reused between calls (grown, never shrunk).
  struct Scratch {
    std::vector<float> a, b;
    std::vector<uint8_t> k8;  // integer key tiles (index_topk)
    std::vector<RunningTopk> tops;
    std::vector<RunningTopk::Entry> merged;
    std::vector<int32_t> pos;
  };
  ThreadPool pool_;
  std::vector<Scratch> scratch_;  // [thread]
  std::mutex scratch_mu_;         // ops using scratch_ from two caller threads take turns
  // index_topk's queries as integers (index_query_i8), for the rows of one block
  std::vector<int8_t> iq8_;
  std::vector<float> iqs_;
  std::vector<int32_t> iqc_;

};

// Matmul on an explicit pool (linear_cpu.cpp); kernels::matmul is this on the default backend's.
namespace cpu {
void matmul(ThreadPool& pool, const Linear& W, const float* x, int64_t n, int64_t ldx, float* y, int64_t ldy,
            const MatmulOpts& opts);
}

}  // namespace dsv4::kernels
