// V4-ARCH §4.2 tensor table, enforced: the layout walk (walk_layout) binds each tensor after
// checking its presence, dtype and shape, and each scale against its weight. Errors name the shard
// and the tensor.
#include "model/weights.h"

#include <algorithm>
#include <set>

#include "core/error.h"
#include "model/expert_store.h"

namespace dsv4::model {

using kernels::WeightFormat;

class WeightBinder : public TensorSink {
 public:
  WeightBinder(Model& m) : m_(m), c_(m.config_) {}

  const TensorEntry& entry(const std::string& name) {
    const TensorEntry* e = m_.ckpt_->find(name);
    if (!e) throw Error(m_.dir_ + ": missing tensor '" + name + "'");
    m_.used_.push_back(name);
    return *e;
  }
  bool has(const std::string& name) const { return m_.ckpt_->find(name) != nullptr; }

  [[noreturn]] void bad(const TensorEntry& e, const std::string& name, const std::string& what) {
    throw Error(e.file + ": tensor '" + name + "': " + what);
  }

  void expect_shape(const TensorEntry& e, const std::string& name, const std::vector<int64_t>& shape) {
    bool ok = int(shape.size()) == e.view.ndim;
    for (size_t i = 0; ok && i < shape.size(); ++i) ok = shape[i] == e.view.shape[i];
    if (!ok)
      bad(e, name, "shape " + e.view.shape_str() + ", expected " + shape_to_string(shape.data(), int(shape.size())));
  }

  void plain(const TensorSpec& t, TensorView* dst) override {
    const TensorEntry& e = entry(t.name);
    if (e.view.dtype != t.dtype && !(t.alt_dtype && e.view.dtype == *t.alt_dtype))
      bad(e, t.name, std::string("dtype ") + dtype_name(e.view.dtype) + ", expected " + dtype_name(t.dtype) +
                         (t.alt_dtype ? std::string(" or ") + dtype_name(*t.alt_dtype) : std::string()));
    expect_shape(e, t.name, t.shape);
    if (t.fill == Fill::tid2eid) check_tid2eid(e, t.name);
    *dst = e.view;
  }

  // A linear weight [rows, cols] in whichever format of t.accepts it is stored in, plus its
  // `prefix.scale` when quantised.
  void linear(const TensorSpec& t, Linear* dst) override {
    const std::string& wn = t.name;
    const int64_t out = t.rows, in = t.cols;
    const TensorEntry& e = entry(wn);
    Linear l;
    l.out = out;
    l.in = in;
    l.ld = in;
    l.w = e.view;
    switch (e.view.dtype) {
      case Dtype::f32: l.fmt = WeightFormat::f32; break;
      case Dtype::bf16: l.fmt = WeightFormat::bf16; break;
      case Dtype::e4m3: l.fmt = WeightFormat::fp8_block128; break;
      case Dtype::i8:
      case Dtype::u8: l.fmt = WeightFormat::fp4_block32; break;
      default:
        bad(e, wn, std::string("dtype ") + dtype_name(e.view.dtype) + " is not a supported weight format");
    }
    if (std::find(t.accepts.begin(), t.accepts.end(), l.fmt) == t.accepts.end()) {
      std::string exp;
      for (auto f : t.accepts) exp += std::string(exp.empty() ? "" : " or ") + kernels::weight_format_name(f);
      bad(e, wn, std::string("dtype ") + dtype_safetensors_name(e.view.dtype) + ", expected " + exp);
    }
    if (l.fmt == WeightFormat::fp8_block128) l.nan_codes = &m_.fp8_nan_.emplace_back(int8_t(-1));
    const std::string sn = t.scale_name();
    if (l.fmt == WeightFormat::fp4_block32) {
      if (in % 32) bad(e, wn, "FP4 weight input dim " + std::to_string(in) + " is not a multiple of 32");
      expect_shape(e, wn, {out, in / 2});
      if (!has(sn)) throw Error(e.file + ": tensor '" + wn + "' is FP4 but its scale '" + sn + "' is missing");
      const TensorEntry& s = entry(sn);
      if (s.view.dtype != Dtype::e8m0)
        bad(s, sn, std::string("dtype ") + dtype_name(s.view.dtype) + ", expected e8m0 (F8_E8M0)");
      if (s.view.ndim != 2 || s.view.dim(0) != out || s.view.dim(1) != in / 32)
        bad(s, sn, "scale shape " + s.view.shape_str() + " does not match FP4 weight " + e.view.shape_str() +
                       " (expected [" + std::to_string(out) + ", " + std::to_string(in / 32) + "])");
      l.scale = s.view;
    } else if (l.fmt == WeightFormat::fp8_block128) {
      expect_shape(e, wn, {out, in});
      if (!has(sn)) throw Error(e.file + ": tensor '" + wn + "' is FP8 but its scale '" + sn + "' is missing");
      const TensorEntry& s = entry(sn);
      if (s.view.dtype != Dtype::e8m0)
        bad(s, sn, std::string("dtype ") + dtype_name(s.view.dtype) + ", expected e8m0 (F8_E8M0)");
      int64_t so = (out + 127) / 128, si = (in + 127) / 128;
      if (s.view.ndim != 2 || s.view.dim(0) != so || s.view.dim(1) != si)
        bad(s, sn, "scale shape " + s.view.shape_str() + " does not match FP8 weight " + e.view.shape_str() +
                       " with 128x128 blocks (expected [" + std::to_string(so) + ", " + std::to_string(si) + "])");
      l.scale = s.view;
    } else {
      expect_shape(e, wn, {out, in});
    }
    *dst = l;
  }

  void check_tid2eid(const TensorEntry& e, const std::string& name) {
    const int64_t n = e.view.numel();
    for (int64_t i = 0; i < n; ++i) {
      int64_t v = e.view.dtype == Dtype::i64 ? e.view.as<int64_t>()[i] : e.view.as<int32_t>()[i];
      if (v < 0 || v >= c_.n_routed_experts)
        throw Error(e.file + ": tensor '" + name + "': row " + std::to_string(i / c_.n_activated_experts) +
                    " names expert " + std::to_string(v) + ", outside [0, " + std::to_string(c_.n_routed_experts) + ")");
    }
  }

  void bind_all() {
    walk_layout(c_, drafter_in_checkpoint(), m_.weights_, *this);
    // A compressor next to a ratio-0 block contradicts the config; name both.
    for (int il = 0; il < c_.n_blocks(); ++il) {
      const std::string a = (il < c_.n_layers ? "layers." + std::to_string(il) : "mtp." + std::to_string(il - c_.n_layers)) +
                            ".attn.compressor.wkv.weight";
      if (c_.compress_ratio(il) == 0 && has(a))
        throw Error(m_.ckpt_->find(a)->file + ": tensor '" + a + "' present but compress_ratios[" +
                    std::to_string(il) + "] is 0");
    }
  }

  // The drafter the checkpoint carries, recognised by its tensors and checked against the config;
  // a checkpoint without `mtp.*` tensors simply has none.
  DrafterKind drafter_in_checkpoint() {
    std::string first;  // some drafter tensor, for messages
    for (const auto& [name, e] : m_.ckpt_->entries())
      if (name.rfind("mtp.", 0) == 0) {
        first = name;
        break;
      }
    if (first.empty()) return DrafterKind::none;
    DrafterKind kind = DrafterKind::none;
    int n_blocks = 0;
    if (has("mtp.0.e_proj.weight")) {
      if (c_.drafter_kind() != DrafterKind::mtp)
        bad(*m_.ckpt_->find("mtp.0.e_proj.weight"), "mtp.0.e_proj.weight",
            "an April MTP block is present but the config describes " +
                std::string(c_.drafter_kind() == DrafterKind::dspark ? "a DSpark drafter (dspark_* keys)"
                                                                     : "no MTP block (num_nextn_predict_layers and "
                                                                       "an MTP entry in compress_ratios)"));
      kind = DrafterKind::mtp;
      n_blocks = 1;
    } else if (has("mtp.0.main_proj.weight")) {
      if (c_.drafter_kind() != DrafterKind::dspark)
        bad(*m_.ckpt_->find("mtp.0.main_proj.weight"), "mtp.0.main_proj.weight",
            "a DSpark drafter is present but the config has no dspark_* keys "
            "(dspark_block_size, dspark_noise_token_id, dspark_target_layer_ids, dspark_markov_rank)");
      kind = DrafterKind::dspark;
      n_blocks = c_.dspark.n_stages();
    } else {
      bad(*m_.ckpt_->find(first), first,
          "drafter tensor of no known layout: neither mtp.0.e_proj.weight (April MTP block) nor "
          "mtp.0.main_proj.weight (DSpark stages) is present");
    }
    // Every mtp.K tensor must belong to a block the config describes.
    for (const auto& [name, e] : m_.ckpt_->entries()) {
      if (name.rfind("mtp.", 0) != 0) continue;
      const size_t dot = name.find('.', 4);
      const std::string k = name.substr(4, dot == std::string::npos ? std::string::npos : dot - 4);
      const bool numeric = !k.empty() && k.size() < 6 && std::all_of(k.begin(), k.end(), ::isdigit);
      if (!numeric || std::stoi(k) >= n_blocks)
        bad(e, name, "drafter block 'mtp." + k + "' is not in the config (" + std::to_string(n_blocks) + " " +
                         drafter_kind_name(kind) + " block(s))");
    }
    return kind;
  }

 private:
  Model& m_;
  const Config& c_;
};

std::unique_ptr<Model> Model::load(const std::string& dir, const ModelLoadOptions& opt) {
  std::unique_ptr<Model> m(new Model());
  m->dir_ = dir;
  m->config_ = config_from_model_dir(dir);
  m->ckpt_ = std::make_unique<Checkpoint>(dir);
  WeightBinder b(*m);
  b.bind_all();
  ExpertStoreOptions so;
  so.budget_bytes = opt.expert_cache_bytes;
  so.io_threads = opt.expert_io_threads;
  so.direct = opt.expert_direct_io;
  so.prefetch = opt.expert_prefetch;
  so.force_streaming = opt.expert_force_streaming;
  so.read_bytes = opt.expert_read_bytes;
  m->experts_ = std::make_unique<ExpertStore>(*m, so);
  return m;
}

Model::~Model() = default;

std::vector<std::string> Model::unused_tensors() const {
  std::set<std::string> used(used_.begin(), used_.end());
  std::vector<std::string> r;
  for (const auto& [name, e] : ckpt_->entries())
    if (!used.count(name)) r.push_back(name);
  return r;
}

}  // namespace dsv4::model
