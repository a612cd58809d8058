// V4-ARCH §4.2: every tensor of a checkpoint bound by its official name into named structs,
// checked for presence, dtype and shape at load. Weights stay views over the mmap'd shards.
//
// Letters: D hidden, H heads, Dh head dim, Q q rank, G o groups, Ro o rank, E experts,
// I expert width, V vocab, Hi/Di indexer heads/dim, hc mHC streams, m compress ratio.
#pragma once
#include <deque>
#include <memory>
#include <string>
#include <vector>

#include "kernels/linear.h"
#include "model/config.h"
#include "model/safetensors.h"
#include "model/tensor_table.h"

namespace dsv4::model {

using kernels::Linear;

struct HcParams {          // V4-ARCH §2.2
  TensorView fn;           // [(2+hc)*hc, hc*D] f32 (hc_head: [hc, hc*D])
  TensorView base;         // [(2+hc)*hc] f32
  TensorView scale;        // [3] f32 (hc_head: [1])
};

struct CompressorWeights { // V4-ARCH §2.3.5
  Linear wkv;              // [c*width, D] bf16
  Linear wgate;            // [c*width, D] bf16
  TensorView ape;          // [m, c*width] f32
  TensorView norm;         // [width] bf16
  int ratio = 0;           // m
  int width = 0;           // 512 (main) / Di (indexer)
  int c = 0;               // 2 for m=4 (overlapping), 1 for m=128
};

struct IndexerWeights {    // V4-ARCH §2.3.6
  Linear wq_b;             // [Hi*Di, Q] fp8
  Linear weights_proj;     // [Hi, D] bf16
  CompressorWeights compressor;
};

struct AttentionWeights {  // V4-ARCH §2.3
  TensorView attn_sink;    // [H] f32
  Linear wq_a;             // [Q, D] fp8
  TensorView q_norm;       // [Q] bf16
  Linear wq_b;             // [H*Dh, Q] fp8
  Linear wkv;              // [Dh, D] fp8
  TensorView kv_norm;      // [Dh] bf16
  Linear wo_a;             // [G*Ro, H*Dh/G] fp8
  Linear wo_b;             // [D, G*Ro] fp8
  bool has_compressor = false;
  CompressorWeights compressor;
  bool has_indexer = false;
  IndexerWeights indexer;
};

struct ExpertWeights {     // V4-ARCH §2.4
  Linear w1, w2, w3;       // w1,w3 [I, D]; w2 [D, I]
};

struct MoeWeights {
  Linear gate;             // [E, D] bf16 router
  TensorView gate_bias;    // [E] f32 (non-hash layers)
  TensorView tid2eid;      // [V, K] i64/i32 (hash layers)
  std::vector<ExpertWeights> experts;
  bool has_shared = false;
  ExpertWeights shared;
};

struct LayerWeights {
  int index = 0;
  AttnKind kind = AttnKind::swa;
  int ratio = 0;
  bool hash = false;
  TensorView attn_norm, ffn_norm;  // [D] bf16
  HcParams hc_attn, hc_ffn;
  AttentionWeights attn;
  MoeWeights ffn;
};

// The drafter next to the main model (Config::drafter_kind, issue 17). Bound as views over the
// mapped shards and shape-checked at load; nothing reads their pages unless drafting runs. The
// main model's forward pass never uses them.
struct MtpWeights {        // April release, V4-ARCH §2.6: one MTP block
  LayerWeights block;
  Linear e_proj, h_proj;   // [D, D] fp8
  TensorView enorm, hnorm, norm;
  HcParams hc_head;
};

struct DSparkWeights {     // V4-Flash-0731 / V4-Pro-0813: S stages `mtp.0..S-1`
  std::vector<LayerWeights> stages;  // ordinary ratio-0 blocks (attention + MoE + mHC)
  Linear main_proj;        // stage 0: [D, S*D] fp8, the target layers' outputs -> D
  TensorView main_norm;    // stage 0: [D] bf16
  TensorView norm;         // last stage: [D] bf16
  TensorView markov_w1;    // last stage: [V, rank] bf16, previous token -> Markov embedding
  Linear markov_w2;        // last stage: [V, rank] bf16, Markov embedding -> logit bias
  Linear confidence;       // last stage: [1, D + rank] (confidence_head.proj)
  HcParams hc_head;        // last stage's own mHC collapse
};

struct ModelWeights {
  TensorView embed;        // [V, D] bf16
  Linear head;             // [V, D] bf16
  TensorView norm;         // [D] bf16
  HcParams hc_head;
  std::vector<LayerWeights> layers;
  DrafterKind drafter = DrafterKind::none;  // what the checkpoint carries (none if absent)
  MtpWeights mtp;          // drafter == mtp
  DSparkWeights dspark;    // drafter == dspark
};

// The one walk over the layout (V4-ARCH §4.2, defined in tensor_table.cpp): every tensor of a
// checkpoint for `c` with the `drafter`, in table order, handed to the sink together with the
// field of `w` it binds to (w's non-tensor fields - layer index, ratio, kind, compressor sizes -
// are set from the config on the way). The loader binds through it, tensor_table() collects it.
struct TensorSink {
  virtual ~TensorSink() = default;
  virtual void plain(const TensorSpec& t, TensorView* dst) = 0;
  virtual void linear(const TensorSpec& t, Linear* dst) = 0;  // t.name = "<prefix>.weight"
};
void walk_layout(const Config& c, DrafterKind drafter, ModelWeights& w, TensorSink& sink);

class ExpertStore;  // model/expert_store.h

// How a model is loaded (issue 14: where the routed experts live).
struct ModelLoadOptions {
  // Bytes of routed-expert cache: < 0 auto (all resident when the checkpoint fits in RAM, else a
  // budget from free memory); >= the experts' bytes: resident (mapped, as bound); else streamed.
  int64_t expert_cache_bytes = -1;
  int expert_io_threads = 4;
  bool expert_direct_io = true;
  bool expert_prefetch = true;
  bool expert_force_streaming = false;  // tests and benches: stream even when the budget holds all
  uint64_t expert_read_bytes = 2 << 20;  // bytes per read (an expert is read in pieces)
};

// A loaded model: config + mapped checkpoint + bound weights + the expert store. Move-only.
class Model {
 public:
  // Loads config and every shard of `dir`, binds and checks every expected tensor. Reads no
  // routed-expert bytes (the experts are views, or streamed by the store).
  static std::unique_ptr<Model> load(const std::string& dir, const ModelLoadOptions& opt = {});
  ~Model();
  // The routed experts of the main layers (model/expert_store.h); one forward pass at a time.
  ExpertStore& expert_store() const { return *experts_; }
  const Config& config() const { return config_; }
  const ModelWeights& weights() const { return weights_; }
  const Checkpoint& checkpoint() const { return *ckpt_; }
  const std::string& dir() const { return dir_; }
  // Tensors in the files that no binding used (reported by inspect; ignored otherwise).
  std::vector<std::string> unused_tensors() const;

 private:
  Model() = default;
  std::string dir_;
  Config config_;
  std::unique_ptr<Checkpoint> ckpt_;
  ModelWeights weights_;
  std::deque<std::atomic<int8_t>> fp8_nan_;  // Linear::nan_codes of the FP8 weights (stable addresses)
  std::vector<std::string> used_;
  std::unique_ptr<ExpertStore> experts_;
  friend class WeightBinder;
};

}  // namespace dsv4::model
