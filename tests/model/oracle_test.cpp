// The forward pass against oracle/case-a (llama.cpp deepseek4, exact f32; README there gives
// the tolerance: |dlogit| <= 1e-3 everywhere, identical argmax except at near-tie positions).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <map>
#include <set>

#include "model/forward.h"
#include "model/safetensors.h"
#include "model/tiny_checkpoint.h"
#include "model/weights.h"
#include "test_util.h"

using namespace dsv4;
namespace fs = std::filesystem;

namespace {

struct Oracle {
  std::string dir;
  std::vector<int32_t> ids;
  std::unique_ptr<model::SafetensorsFile> prefill, decode;
  std::set<int64_t> near_tie_positions;  // any layer
};

Oracle* oracle() {
  static std::unique_ptr<Oracle> o;
  if (o) return o.get();
  std::string dir = test::testdata_path("oracle/case-a");
  if (!fs::exists(dir + "/tokens.json")) return nullptr;
  o = std::make_unique<Oracle>();
  o->dir = dir;
  auto j = nlohmann::json::parse(test::read_file(dir + "/tokens.json"));
  for (auto& v : j["eval_ids"]) o->ids.push_back(v.get<int32_t>());
  o->prefill = std::make_unique<model::SafetensorsFile>(dir + "/oracle_prefill.safetensors");
  o->decode = std::make_unique<model::SafetensorsFile>(dir + "/oracle_decode.safetensors");
  auto nt = nlohmann::json::parse(test::read_file(dir + "/near_ties.json"));
  for (auto& [kind, list] : nt.items())
    for (auto& e : list) o->near_tie_positions.insert(e["pos"].get<int64_t>());
  return o.get();
}

const TensorView& tensor(const model::SafetensorsFile& f, const std::string& name) {
  return f.tensors().at(name);
}

std::vector<float> read_floats(const std::string& path) {
  std::string b = test::read_file(path);
  std::vector<float> v(b.size() / 4);
  std::memcpy(v.data(), b.data(), v.size() * 4);
  return v;
}

// Compares [n, V] logits with an oracle file: argmax everywhere, top-32 logits, full rows.
void check_logits(const std::vector<float>& L, const model::SafetensorsFile& of, const Oracle& o, double tol,
                  double* max_abs_out) {
  const int64_t V = 129280, n = int64_t(o.ids.size());
  ASSERT_EQ(int64_t(L.size()), n * V);
  const int32_t* am = tensor(of, "argmax").as<int32_t>();
  int mismatches = 0;
  for (int64_t t = 0; t < n; ++t) {
    const float* row = &L[size_t(t * V)];
    int64_t a = std::max_element(row, row + V) - row;
    if (a != am[t]) {
      ++mismatches;
      EXPECT_TRUE(o.near_tie_positions.count(t)) << "argmax differs at position " << t << ": " << a << " vs " << am[t];
    }
  }
  EXPECT_LE(mismatches, 2);
  double mx = 0;
  if (of.tensors().count("top32_ids")) {
    const int32_t* ti = tensor(of, "top32_ids").as<int32_t>();
    const float* tl = tensor(of, "top32_logits").as<float>();
    for (int64_t t = 0; t < n; ++t)
      for (int k = 0; k < 32; ++k) mx = std::max(mx, double(std::fabs(L[size_t(t * V + ti[t * 32 + k])] - tl[t * 32 + k])));
  }
  // Log-sum-exp of every full row: the whole distribution, not only the top entries.
  const float* lse = tensor(of, "logsumexp").as<float>();
  for (int64_t t = 0; t < n; ++t) {
    const float* row = &L[size_t(t * V)];
    const float m = *std::max_element(row, row + V);
    double s = 0;
    for (int64_t v = 0; v < V; ++v) s += std::exp(double(row[v] - m));
    mx = std::max(mx, std::fabs(double(m) + std::log(s) - double(lse[t])));
  }
  const TensorView& rows = tensor(of, "logits_rows");
  const TensorView& rpos = tensor(of, "logits_row_positions");
  for (int64_t i = 0; i < rows.dim(0); ++i) {
    int64_t t = rpos.dtype == Dtype::i64 ? rpos.as<int64_t>()[i] : rpos.as<int32_t>()[i];
    for (int64_t v = 0; v < V; ++v)
      mx = std::max(mx, double(std::fabs(L[size_t(t * V + v)] - rows.as<float>()[i * V + v])));
  }
  EXPECT_LE(mx, tol);
  *max_abs_out = mx;
}

}  // namespace

// A V4-Flash-0731- or V4-Pro-0813-layout copy of the oracle checkpoint (issue 17): the April MTP block removed
// from the shards and the index, three random DSpark stages added in a shard of their own, and
// the config extended (compress_ratios N+3, dspark_* keys). Built once per process and release.
std::string oracle_release_dir(const std::string& release) {
  static std::map<std::string, std::string> dirs;
  static struct Cleanup {
    std::vector<std::string> roots;
    ~Cleanup() {
      std::error_code ec;
      for (const auto& r : roots) fs::remove_all(r, ec);
    }
  } cleanup;
  std::string& dir = dirs[release];
  if (!dir.empty()) return dir;
  Oracle* o = oracle();
  if (!o) return "";
  const std::string src = o->dir + "/ckpt";
  const std::string d = cleanup.roots.emplace_back(test::make_temp_dir("dsv4oracle" + release)) + "/ckpt";
  fs::create_directories(d);
  for (const auto& e : fs::directory_iterator(src)) {
    const std::string name = e.path().filename().string();
    if (e.path().extension() == ".safetensors") {
      // Same data region, header without the mtp.* entries.
      const std::string b = test::read_file(e.path().string());
      uint64_t n = 0;
      std::memcpy(&n, b.data(), 8);
      nlohmann::ordered_json h = nlohmann::ordered_json::parse(b.substr(8, n));
      for (auto it = h.begin(); it != h.end();) it = it.key().rfind("mtp.", 0) == 0 ? h.erase(it) : std::next(it);
      std::string hs = h.dump();
      while (hs.size() % 8) hs.push_back(' ');
      const uint64_t m = hs.size();
      std::ofstream f(d + "/" + name, std::ios::binary);
      f.write(reinterpret_cast<const char*>(&m), 8);
      f << hs << b.substr(8 + n);
    } else if (name == "model.safetensors.index.json") {
      nlohmann::ordered_json j = nlohmann::ordered_json::parse(test::read_file(e.path().string()));
      auto& wm = j["weight_map"];
      for (auto it = wm.begin(); it != wm.end();) it = it.key().rfind("mtp.", 0) == 0 ? wm.erase(it) : std::next(it);
      std::ofstream(d + "/" + name) << j.dump(2);
    } else {
      fs::copy(e.path(), d + "/" + name);
    }
  }
  model::Config c = model::config_from_model_dir(d);
  model::set_drafter(c, model::DrafterKind::dspark, release);
  model::add_random_drafter(c, d, 11);
  return dir = d;
}

// Runs `dsv4 logits --numerics f32 --mode MODE` on the oracle tokens and checks the result
// against the oracle file produced the same way.
void check_cli_logits(const std::string& mode, std::string ckpt = "") {
  Oracle* o = oracle();
  if (!o) GTEST_SKIP() << "oracle data missing under " << test::testdata_path();
  if (ckpt.empty()) ckpt = o->dir + "/ckpt";
  std::string tmp = test::make_temp_dir();
  std::ofstream(tmp + "/ids.json") << nlohmann::json(o->ids).dump();
  std::string out;
  int rc = test::run_command(test::dsv4_binary() + " logits --model " + ckpt + " --tokens " + tmp +
                                 "/ids.json --out " + tmp + "/l.bin --numerics f32 --mode " + mode,
                             &out);
  ASSERT_EQ(rc, 0) << out;
  double mx = 0;
  check_logits(read_floats(tmp + "/l.bin"), mode == "decode" ? *o->decode : *o->prefill, *o, 1e-3, &mx);
  std::printf("[oracle] %s f32 max |dlogit| = %.3g\n", mode.c_str(), mx);
  fs::remove_all(tmp);
}

TEST(Oracle, PrefillF32MatchesLlamaCpp) { check_cli_logits("prefill"); }

// Tokens fed one at a time through the sequence state (window ring, streaming compressors).
TEST(Oracle, DecodeF32MatchesLlamaCppDecode) { check_cli_logits("decode"); }

// The same comparison on the 0731-layout copy: the DSpark drafter loads and changes nothing.
TEST(Oracle, Layout0731PrefillF32MatchesLlamaCpp) {
  if (!oracle()) GTEST_SKIP();
  const std::string d = oracle_release_dir("flash-0731");
  auto m = model::Model::load(d);
  EXPECT_EQ(m->weights().drafter, model::DrafterKind::dspark);
  EXPECT_EQ(m->weights().dspark.stages.size(), 3u);
  EXPECT_EQ(m->config().n_blocks(), m->config().n_layers + 3);
  EXPECT_TRUE(m->unused_tensors().empty());
  std::string out;
  ASSERT_EQ(test::run_command(test::dsv4_binary() + " inspect --model " + d, &out), 0) << out;
  EXPECT_NE(out.find("DSpark (0731/0813), 3 stages"), std::string::npos) << out;
  EXPECT_NE(out.find("(loaded)"), std::string::npos) << out;
  check_cli_logits("prefill", d);
}
TEST(Oracle, Layout0731DecodeF32MatchesLlamaCppDecode) {
  if (!oracle()) GTEST_SKIP();
  check_cli_logits("decode", oracle_release_dir("flash-0731"));
}
TEST(Oracle, Layout0813PrefillF32MatchesLlamaCpp) {
  if (!oracle()) GTEST_SKIP();
  const std::string d = oracle_release_dir("pro-0813");
  auto m = model::Model::load(d);
  EXPECT_EQ(m->weights().drafter, model::DrafterKind::dspark);
  EXPECT_EQ(m->config().dspark.markov_rank, 2 * model::Model::load(oracle_release_dir("flash-0731"))->config().dspark.markov_rank);
  check_cli_logits("prefill", d);
}

TEST(Oracle, InternalsMatchLlamaCpp) {
  Oracle* o = oracle();
  if (!o) GTEST_SKIP();
  auto m = model::Model::load(o->dir + "/ckpt");
  model::ForwardPass fp(*m, model::Numerics::f32);
  std::vector<std::vector<float>> streams;
  std::vector<std::vector<int32_t>> experts, csa;
  fp.debug_layer_streams = &streams;
  fp.debug_experts = &experts;
  fp.debug_csa_selected = &csa;
  auto st = fp.new_state();
  model::SeqChunk ch{st.get(), o->ids, true};
  std::vector<float> logits;
  fp.forward(std::span<model::SeqChunk>(&ch, 1), logits);
  const int64_t n = int64_t(o->ids.size()), D = m->config().dim;
  // Layer output streams within ~1e-4.
  const TensorView& ls = tensor(*o->prefill, "layer_out_streams");
  ASSERT_EQ(streams.size(), size_t(ls.dim(0)));
  for (size_t l = 0; l < streams.size(); ++l) {
    double mx = 0;
    for (int64_t i = 0; i < n * 4 * D; ++i)
      mx = std::max(mx, double(std::fabs(streams[l][size_t(i)] - ls.as<float>()[int64_t(l) * n * 4 * D + i])));
    EXPECT_LE(mx, 2e-4) << "layer " << l;
  }
  // Routing identical except at near ties.
  const TensorView& me = tensor(*o->prefill, "moe_experts");
  const int64_t K = m->config().n_activated_experts;
  for (size_t l = 0; l < experts.size(); ++l)
    for (int64_t t = 0; t < n; ++t) {
      std::set<int32_t> a(experts[l].begin() + t * K, experts[l].begin() + (t + 1) * K);
      std::set<int32_t> b(me.as<int32_t>() + (int64_t(l) * n + t) * K, me.as<int32_t>() + (int64_t(l) * n + t + 1) * K);
      if (a != b) EXPECT_TRUE(o->near_tie_positions.count(t)) << "experts differ at layer " << l << " pos " << t;
    }
  // Indexer selections identical except at near ties.
  const TensorView& cs = tensor(*o->prefill, "csa_selected_entries");
  const int64_t topk = m->config().index_topk;
  ASSERT_EQ(csa.size(), size_t(cs.dim(0)));
  int diffs = 0;
  for (size_t l = 0; l < csa.size(); ++l)
    for (int64_t t = 0; t < n; ++t)
      for (int64_t k = 0; k < topk; ++k)
        if (csa[l][size_t(t * topk + k)] != cs.as<int32_t>()[(int64_t(l) * n + t) * topk + k]) {
          ++diffs;
          EXPECT_TRUE(o->near_tie_positions.count(t)) << "CSA selection differs at csa layer " << l << " pos " << t;
          break;
        }
  EXPECT_LE(diffs, 2);
}

// Reference numerics (the default: FP8 activations into FP8/FP4 GEMMs, FP8 KV, FP4 indexer q/k,
// bf16 rounding) against the exact oracle. The oracle README warns that this random tiny model is
// chaotic once a top-k choice flips, and with every GEMM input in FP8 a routing choice already
// flips at position 0 (layer 4). Layers 0 and 1 cannot flip before position 67: they route by
// token hash, and layer 1's indexer selects nothing until (t+1)/4 > index_topk = 16. There the
// streams must stay within FP8 rounding of the exact ones (a few per cent RMS); a wrong scale,
// rounding mode or quantised tensor shows up as tens of per cent.
TEST(Oracle, ReferenceNumericsWithinFp8OfExactBeforeAnyChoice) {
  Oracle* o = oracle();
  if (!o) GTEST_SKIP();
  auto m = model::Model::load(o->dir + "/ckpt");
  model::ForwardPass fp(*m, model::Numerics::reference);
  std::vector<std::vector<float>> streams;
  fp.debug_layer_streams = &streams;
  auto st = fp.new_state();
  model::SeqChunk ch{st.get(), o->ids, true};
  std::vector<float> L;
  fp.forward(std::span<model::SeqChunk>(&ch, 1), L);
  const int64_t n = int64_t(o->ids.size()), V = 129280, D = m->config().dim;
  ASSERT_EQ(m->config().n_hash_layers, 2);
  ASSERT_EQ(m->config().index_topk, 16);
  const TensorView& ls = tensor(*o->prefill, "layer_out_streams");
  for (size_t l = 0; l < 2; ++l) {
    double worst = 0, total = 0;
    for (int64_t t = 0; t < 67; ++t) {
      double num = 0, den = 0;
      for (int64_t i = 0; i < 4 * D; ++i) {
        const double a = streams[l][size_t(t * 4 * D + i)], b = ls.as<float>()[(int64_t(l) * n + t) * 4 * D + i];
        num += (a - b) * (a - b);
        den += b * b;
      }
      const double rel = std::sqrt(num / den);
      worst = std::max(worst, rel);
      total += rel;
    }
    std::printf("[oracle] reference numerics, layer %zu streams, positions 0..66: RMS rel. error mean %.3g, max %.3g\n",
                l, total / 67, worst);
    EXPECT_LE(worst, 0.10) << "layer " << l;
    EXPECT_GE(worst, 1e-3) << "layer " << l << ": no FP8 effect at all, reference numerics not applied?";
  }
  // Whole-model figures, for the record (chaotic past the first flip; the oracle README measured
  // 5.5 max and 83% argmax for a numpy model with only the KV and indexer simulation).
  const int32_t* am = tensor(*o->prefill, "argmax").as<int32_t>();
  const int32_t* ti = tensor(*o->prefill, "top32_ids").as<int32_t>();
  const float* tl = tensor(*o->prefill, "top32_logits").as<float>();
  double mx = 0;
  int same = 0;
  for (int64_t t = 0; t < n; ++t) {
    const float* row = &L[size_t(t * V)];
    same += (std::max_element(row, row + V) - row) == am[t];
    for (int k = 0; k < 32; ++k) mx = std::max(mx, double(std::fabs(row[ti[t * 32 + k]] - tl[t * 32 + k])));
  }
  std::printf("[oracle] reference numerics, all 687 positions: max |dlogit| (top-32) %.3g, argmax same at %d\n", mx,
              same);
  EXPECT_GE(same, n / 2);
}
