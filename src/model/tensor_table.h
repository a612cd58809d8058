// V4-ARCH §4.2 as data: every tensor a Config implies, by official name, with its stored dtype
// and shape, how `dsv4 tiny` fills it with random values, and how it counts as parameters.
// One walk of the layout (walk_layout, weights.h) serves the loader (each tensor bound to its
// field and checked), the random-checkpoint writer, `dsv4 inspect` (expected tensor counts/bytes
// and parameter counts) and tests.
//
// Letters: D hidden, H heads, Dh head dim, Q q rank, G o groups, Ro o rank, E experts,
// K experts per token, I expert width, V vocab, Hi/Di indexer heads/dim, hc mHC streams.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "kernels/linear.h"
#include "model/config.h"

namespace dsv4::model {

// Stored format of a linear weight (V4-ARCH §4.3).
enum class WeightQuant : uint8_t {
  none,          // plain dtype (bf16 / f32 / i64 ...)
  fp8_block128,  // e4m3 [O, I] + e8m0 "<prefix>.scale" [ceil(O/128), ceil(I/128)]
  fp4_block32,   // e2m1 packed in i8 [O, I/2] (low nibble first) + e8m0 "<prefix>.scale" [O, I/32]
};

// How a random checkpoint fills a tensor (values before quantisation). The scales follow the
// oracle/case-a recipe so activations stay O(1) and logits have a std of ~2.8.
enum class Fill : uint8_t {
  linear,     // N(0, 1/fan_in), fan_in = logical input columns
  embed,      // N(0, 1)
  head,       // N(0, (2.8/sqrt(D))^2): unit-RMS inputs give logits with std ~2.8
  norm,       // 1 + N(0, 0.1^2)
  sink,       // N(0, 1)
  ape,        // N(0, 0.5^2)
  hc_base,    // N(0, 0.5^2)
  hc_scale,   // U(0.5, 1.5)
  gate_bias,  // N(0, 0.1^2)
  tid2eid,    // every row: K distinct random experts in [0, E)
};

// What a tensor is, for parameter counting.
enum class ParamGroup : uint8_t {
  embed,          // embed.weight (one row is read per token)
  head,           // head.weight
  dense,          // everything else every token uses (attention, router, norms, mHC, ...)
  shared_expert,  // ffn.shared_experts.*
  routed_expert,  // ffn.experts.E.* (K of E are active per token)
  table,          // tid2eid: a frozen lookup table, not a parameter
};

struct TensorSpec {
  std::string name;             // stored name, e.g. "layers.3.attn.wq_a.weight"
  Dtype dtype = Dtype::f32;     // stored dtype (fp4: i8)
  std::vector<int64_t> shape;   // stored shape (fp4: [O, I/2])
  int64_t rows = 0, cols = 0;   // logical [O, I] (cols = fan_in); 1-D tensors: rows = 1
  WeightQuant quant = WeightQuant::none;
  Fill fill = Fill::linear;
  ParamGroup group = ParamGroup::dense;
  int layer = -1;               // -1 top level, 0..N-1 decoder layers, N.. drafter blocks
  std::optional<Dtype> alt_dtype;  // plain tensors: a second accepted dtype (tid2eid: i32)
  std::vector<kernels::WeightFormat> accepts;  // linear weights: stored formats the loader accepts

  bool has_scale() const { return quant != WeightQuant::none; }
  std::string scale_name() const;           // "<prefix>.scale" (name ends in ".weight")
  std::vector<int64_t> scale_shape() const;
  int64_t numel() const;                    // stored elements of the main tensor
  int64_t bytes() const;                    // stored bytes incl. the scale tensor
  int n_stored() const { return has_scale() ? 2 : 1; }
  int64_t params() const;                   // logical weights (0 for tables)
  bool is_drafter(const Config& c) const { return layer >= c.n_layers; }
};

// Every tensor of a checkpoint for `c`, in a stable order: embed, decoder layers 0..N-1, the
// drafter c.drafter_kind() describes (when with_drafter: the April MTP block, or the DSpark
// stages with their extras), then norm, hc_head and head. The expert weight format follows
// c.expert_dtype ("fp4" | "fp8" | "bf16").
std::vector<TensorSpec> tensor_table(const Config& c, bool with_drafter = true);

}  // namespace dsv4::model
