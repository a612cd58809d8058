// Issue 17: the three checkpoint layouts (no drafter, the April MTP block, the 0731/0813 DSpark
// stages) load, their drafter tensors are recognised by kind and shape-checked, a drafter that
// does not match its config is an error naming the tensor, a missing drafter is fine, and the
// main model's logits never depend on the drafter.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "model/forward.h"
#include "model/model_stats.h"
#include "model/tiny_checkpoint.h"
#include "model/weights.h"
#include "test_util.h"

using namespace dsv4;
namespace fs = std::filesystem;
using model::DrafterKind;
using ojson = nlohmann::ordered_json;

namespace {

// Temporary directories of this process, removed at exit.
struct TempDirs {
  std::vector<std::string> roots;
  std::string make(const std::string& prefix) { return roots.emplace_back(test::make_temp_dir(prefix)); }
  ~TempDirs() {
    std::error_code ec;
    for (const auto& r : roots) fs::remove_all(r, ec);
  }
} temp_dirs;

// A tiny checkpoint with the drafter of (kind, release), written once per process.
std::string layout_dir(DrafterKind kind, const std::string& release) {
  static std::map<std::string, std::string> dirs;
  const std::string key = std::string(model::drafter_kind_name(kind)) + "-" + release;
  auto it = dirs.find(key);
  if (it != dirs.end()) return it->second;
  model::Config c = model::preset_config("tiny");
  model::set_drafter(c, kind, release);
  const std::string dir = temp_dirs.make("dsv4drafter") + "/" + key;
  model::RandomCheckpointOptions o;
  o.seed = 3;
  model::write_random_checkpoint(c, dir, o);
  return dirs[key] = dir;
}

// A writable copy whose config.json is edited by fn (hard links for the shards).
std::string edited_copy(const std::string& src, const std::function<void(ojson&)>& fn) {
  const std::string dir = temp_dirs.make("dsv4drafteredit") + "/ckpt";
  fs::copy(src, dir, fs::copy_options::recursive | fs::copy_options::create_hard_links);
  ojson j = ojson::parse(test::read_file(dir + "/config.json"));
  fn(j);
  fs::remove(dir + "/config.json");
  std::ofstream(dir + "/config.json") << j.dump(2);
  return dir;
}

std::string load_error(const std::string& dir) {
  try {
    model::Model::load(dir);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

std::vector<float> logits(const model::Model& m, model::Numerics num) {
  model::ForwardPass fp(m, num);
  auto st = fp.new_state();
  const std::vector<int32_t> ids{0, 4096, 17, 99, 128000, 5, 77, 1234, 42, 8};
  model::SeqChunk ch{st.get(), ids, true};
  std::vector<float> out;
  fp.forward(std::span<model::SeqChunk>(&ch, 1), out);
  return out;
}

}  // namespace

TEST(Drafter, EachLayoutLoadsWithEveryTensorBound) {
  struct Case {
    DrafterKind kind;
    std::string release;
    int blocks, rank;
  };
  for (const Case& k : {Case{DrafterKind::none, "april", 0, 0}, Case{DrafterKind::mtp, "april", 1, 0},
                        Case{DrafterKind::dspark, "flash-0731", 3, 16}, Case{DrafterKind::dspark, "pro-0813", 3, 32}}) {
    SCOPED_TRACE(model::drafter_kind_name(k.kind) + std::string(" ") + k.release);
    auto m = model::Model::load(layout_dir(k.kind, k.release));
    const auto& c = m->config();
    EXPECT_EQ(c.drafter_kind(), k.kind);
    EXPECT_EQ(m->weights().drafter, k.kind);
    EXPECT_EQ(c.n_blocks(), c.n_layers + k.blocks);
    EXPECT_TRUE(m->unused_tensors().empty());
    // Every tensor the table expects is in the files, no more.
    const model::TensorTotals want = model::expected_tensor_totals(c, true);
    EXPECT_EQ(int64_t(m->checkpoint().entries().size()), want.count);
    const model::ParamCounts p = model::count_params(c);
    if (k.kind == DrafterKind::none) EXPECT_EQ(p.drafter, 0);
    if (k.kind == DrafterKind::dspark) {
      const auto& d = m->weights().dspark;
      ASSERT_EQ(d.stages.size(), 3u);
      EXPECT_EQ(c.dspark.markov_rank, k.rank);
      EXPECT_EQ(d.markov_w1.dim(1), k.rank);
      EXPECT_EQ(d.markov_w2.in, k.rank);
      EXPECT_EQ(d.confidence.in, c.dim + k.rank);
      EXPECT_EQ(d.main_proj.in, 3 * c.dim);
      EXPECT_EQ(c.dspark.target_layer_ids, (std::vector<int>{2, 3, 4}));
      EXPECT_EQ(c.dspark.noise_token_id, 128799);
      // Three ordinary blocks (attention + MoE) plus the extras: more than 3 MTP-sized blocks'
      // worth of the April drafter minus its e/h projections.
      const model::ParamCounts mtp = model::count_params(model::Model::load(layout_dir(DrafterKind::mtp, "april"))->config());
      EXPECT_GT(p.drafter, 2 * mtp.drafter);
    }
  }
}

TEST(Drafter, MainLogitsDoNotDependOnTheDrafter) {
  // Tensors are generated per name, so the main weights are the same bytes in every layout.
  auto none = model::Model::load(layout_dir(DrafterKind::none, "april"));
  auto mtp = model::Model::load(layout_dir(DrafterKind::mtp, "april"));
  auto dspark = model::Model::load(layout_dir(DrafterKind::dspark, "flash-0731"));
  for (auto num : {model::Numerics::f32, model::Numerics::reference}) {
    const auto a = logits(*none, num);
    EXPECT_EQ(a, logits(*mtp, num));
    EXPECT_EQ(a, logits(*dspark, num));
  }
}

TEST(Drafter, MissingDrafterIsFine) {
  // A 0731 config (DSpark keys, 3 stage ratios) whose drafter files were not downloaded.
  const std::string dir = edited_copy(layout_dir(DrafterKind::none, "april"), [](ojson& j) {
    j["dspark_block_size"] = 5;
    j["dspark_noise_token_id"] = 128799;
    j["dspark_target_layer_ids"] = {2, 3, 4};
    j["dspark_markov_rank"] = 16;
    j["num_nextn_predict_layers"] = 1;
    for (int i = 0; i < 3; ++i) j["compress_ratios"].push_back(0);
  });
  auto m = model::Model::load(dir);
  EXPECT_EQ(m->config().drafter_kind(), DrafterKind::dspark);
  EXPECT_EQ(m->weights().drafter, DrafterKind::none);
}

TEST(Drafter, MismatchesNameTheTensorOrKey) {
  const std::string ds = layout_dir(DrafterKind::dspark, "flash-0731");
  // Markov rank in the config differs from the tensors.
  std::string e = load_error(edited_copy(ds, [](ojson& j) { j["dspark_markov_rank"] = 8; }));
  EXPECT_NE(e.find("mtp.2.markov_head.markov_w1.weight"), std::string::npos) << e;
  EXPECT_NE(e.find("shape"), std::string::npos) << e;
  // Two stages in the config, three in the files: stage 1 lacks the last-stage head.
  e = load_error(edited_copy(ds, [](ojson& j) {
    j["dspark_target_layer_ids"] = {3, 4};
    j["compress_ratios"].erase(j["compress_ratios"].size() - 1);
  }));
  EXPECT_NE(e.find("tensor 'mtp."), std::string::npos) << e;
  // DSpark tensors, no DSpark keys.
  e = load_error(edited_copy(ds, [](ojson& j) {
    for (const char* k : {"dspark_block_size", "dspark_noise_token_id", "dspark_target_layer_ids", "dspark_markov_rank"})
      j.erase(k);
    j["compress_ratios"].erase(j["compress_ratios"].size() - 1);
    j["compress_ratios"].erase(j["compress_ratios"].size() - 1);
  }));
  EXPECT_NE(e.find("mtp.0.main_proj.weight"), std::string::npos) << e;
  EXPECT_NE(e.find("no dspark_* keys"), std::string::npos) << e;
  // Config-level errors name the key.
  e = load_error(edited_copy(ds, [](ojson& j) { j["dspark_target_layer_ids"] = {2, 3, 9}; }));
  EXPECT_NE(e.find("dspark_target_layer_ids"), std::string::npos) << e;
  EXPECT_NE(e.find("config.json"), std::string::npos) << e;
  e = load_error(edited_copy(ds, [](ojson& j) { j["compress_ratios"].push_back(0); }));
  EXPECT_NE(e.find("compress_ratios"), std::string::npos) << e;
  EXPECT_NE(e.find("DSpark stages"), std::string::npos) << e;
  e = load_error(edited_copy(ds, [](ojson& j) { j["compress_ratios"][6] = 4; }));
  EXPECT_NE(e.find("drafter block 1"), std::string::npos) << e;
  e = load_error(edited_copy(ds, [](ojson& j) { j["dspark_noise_token_id"] = 200000; }));
  EXPECT_NE(e.find("dspark_noise_token_id"), std::string::npos) << e;
}

TEST(Drafter, ZeroSevenThirtyOneConfigOfTheRealFlash) {
  // The real Flash config with 0731's changes: 46 compress_ratios for 43 layers + 3 stages.
  const std::string cfg = test::testdata_path("configs/deepseek-v4-flash.config.json");
  if (!fs::exists(cfg)) GTEST_SKIP();
  ojson j = ojson::parse(test::read_file(cfg));
  j["compress_ratios"].push_back(0);
  j["compress_ratios"].push_back(0);
  j["dspark_block_size"] = 5;
  j["dspark_noise_token_id"] = 128799;
  j["dspark_target_layer_ids"] = {40, 41, 42};
  j["dspark_markov_rank"] = 256;
  const model::Config c = model::config_from_json(nlohmann::json::parse(j.dump()), "flash-0731 config");
  EXPECT_EQ(c.n_blocks(), 46);
  EXPECT_EQ(c.drafter_kind(), DrafterKind::dspark);
  const model::ParamCounts p = model::count_params(c);
  // The main model is unchanged; each stage is a full Flash MoE block (~6.6 B like April's MTP
  // block without e/h_proj) plus the fusion and the Markov/confidence heads.
  EXPECT_NEAR(double(p.total_main()) / 1e9, 284.33, 0.005);
  std::printf("[flash-0731] drafter %.2f B params\n", double(p.drafter) / 1e9);
  EXPECT_GT(double(p.drafter) / 1e9, 3 * 6.5);
  EXPECT_LT(double(p.drafter) / 1e9, 3 * 6.8);
}

TEST(Drafter, RealShapePresetSchedules) {
  const model::Config f = model::preset_config("flash", 1);
  EXPECT_EQ(f.n_layers, 1);
  EXPECT_EQ(f.dim, 4096);
  EXPECT_EQ(f.attn_kind(0), model::AttnKind::csa);
  EXPECT_EQ(f.drafter_kind(), DrafterKind::none);
  const model::Config p = model::preset_config("pro", 3);
  EXPECT_EQ(p.dim, 7168);
  EXPECT_EQ(p.attn_kind(0), model::AttnKind::csa);
  EXPECT_EQ(p.attn_kind(1), model::AttnKind::hca);
  EXPECT_EQ(p.n_routed_experts, 384);
  const model::Config full = model::preset_config("flash");
  EXPECT_EQ(full.n_layers, 43);
  EXPECT_EQ(full.count_layers(model::AttnKind::csa), 21);
  EXPECT_THROW(model::preset_config("tiny", 2), Error);
  EXPECT_THROW(model::preset_config("flash", 44), Error);
}
