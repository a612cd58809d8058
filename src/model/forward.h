// The forward pass over a batch of (sequence state, new tokens) chunks (DESIGN.md "batch-first").
// Prefill chunks and decode steps of many sequences run in one pass; a prompt is a batch of one.
#pragma once
#include <memory>
#include <span>
#include <vector>

#include "cache/seq_state.h"
#include "kernels/backend.h"
#include "model/rope.h"
#include "model/weights.h"

namespace dsv4::model {

// `reference`: the official fake-quantisation points of V4-ARCH §2.7 and bf16 activations.
// `f32`: dequantised weights, everything fp32, no activation/KV quantisation.
enum class Numerics { reference, f32 };
const char* numerics_name(Numerics n);
bool numerics_from_string(const std::string& s, Numerics* out);

// The per-sequence state layout a config implies under the given numerics.
cache::StateShape state_shape_for(const Config& c, Numerics n);

struct SeqChunk {
  cache::SeqState* state = nullptr;
  std::span<const int32_t> tokens;  // appended at positions state->n_past() ...
  bool all_logits = false;          // logits for every token, else only for the last one
};

struct PassScratch;  // batch.h

class ForwardPass {
 public:
  // backend null: kernels::default_backend() (the process's CPU backend).
  ForwardPass(const Model& model, Numerics numerics, kernels::Backend* backend = nullptr);
  ~ForwardPass();
  const Model& model() const { return model_; }
  kernels::Backend& backend() const { return *backend_; }
  Numerics numerics() const { return numerics_; }
  cache::StateShape state_shape() const;
  std::unique_ptr<cache::SeqState> new_state() const;
  // Runs the batch; appends each chunk's tokens to its state. `logits` receives, chunk by chunk,
  // [rows, vocab] fp32 where rows = tokens.size() (all_logits) or 1 (0 for an empty chunk).
  void forward(std::span<SeqChunk> batch, std::vector<float>& logits);
  // Hook for tests: streams after each layer [n_rows, hc, D] (null = off).
  std::vector<std::vector<float>>* debug_layer_streams = nullptr;
  std::vector<std::vector<int32_t>>* debug_experts = nullptr;      // per layer [n_rows * K]
  std::vector<std::vector<int32_t>>* debug_csa_selected = nullptr; // per layer [n_rows * topk], -1 pad

 private:
  const Model& model_;
  Numerics numerics_;
  kernels::Backend* backend_;
  RopeTable rope_swa_, rope_comp_;          // per layer kind (V4-ARCH §2.3.1)
  std::unique_ptr<PassScratch> scratch_;    // every buffer of a pass, kept between passes
};

// Truncates a state back to its first n tokens, restoring window ring, compressor states,
// compressed entries and indexer keys exactly (logits after truncate+replay are bit-identical to
// an uninterrupted run). Requires n <= state.n_past().
void truncate_state(ForwardPass& fp, cache::SeqState& state, int64_t n);

}  // namespace dsv4::model
