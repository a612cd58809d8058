// Expert parallelism (issue 15) without MPI: the placement, the traffic formula, and moe_forward's
// seam driven by an in-process "loopback" exchange that plays the other ranks exactly as the MPI
// worker does (their rows packed, moe_run_experts on them, their slots unpacked in slot order).
// The MPI transport itself is tested by tests/mpi/ep_test.py (ctest mpi_*).
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "kernels/backend.h"
#include "model/batch.h"
#include "model/expert_parallel.h"
#include "model/forward.h"
#include "model/moe.h"
#include "model/weights.h"
#include "test_util.h"
#include "tiny_fixture.h"

using namespace dsv4;

namespace {

class LoopbackExchange final : public model::ExpertExchange {
 public:
  LoopbackExchange(const model::Model& m, model::ExpertPlacement p, bool drop_remote = false)
      : m_(m), p_(std::move(p)), drop_(drop_remote) {}
  int rank() const override { return 0; }
  int ranks() const override { return p_.ranks(); }
  const model::ExpertPlacement& placement() const override { return p_; }
  void attach(const model::Model&) override {}
  void post_layer(int layer, bool ref, bool, const float* xn, int64_t N, int64_t D, const model::MoeRouting& rt) override {
    layer_ = layer;
    ref_ = ref;
    xn_.assign(xn, xn + N * D);
    rt_ = rt;
  }
  void collect_layer(int layer, int64_t N, int64_t D, const model::MoeRouting& rt, float* outs) override {
    ASSERT_EQ(layer, layer_);
    if (drop_ || layer < 0) return;
    const model::Config& c = m_.config();
    const int64_t K = c.n_activated_experts;
    for (int q = 1; q < p_.ranks(); ++q) {
      // Worker q: the rows with a slot on q, in order, with their routing.
      std::vector<float> x;
      model::MoeRouting sub;
      std::vector<int64_t> rows;
      for (int64_t r = 0; r < N; ++r) {
        bool need = false;
        for (int64_t k = 0; k < K; ++k) need = need || p_.owner(layer, rt.experts[size_t(r * K + k)]) == q;
        if (!need) continue;
        rows.push_back(r);
        x.insert(x.end(), xn_.begin() + r * D, xn_.begin() + (r + 1) * D);
        sub.experts.insert(sub.experts.end(), rt.experts.begin() + r * K, rt.experts.begin() + (r + 1) * K);
        sub.weights.insert(sub.weights.end(), rt.weights.begin() + r * K, rt.weights.begin() + (r + 1) * K);
      }
      if (rows.empty()) continue;
      std::vector<float> o(rows.size() * size_t(K * D), std::nanf(""));
      model::moe_run_experts(m_.weights().layers[size_t(layer)].ffn, x.data(), int64_t(rows.size()), sub, p_, layer,
                             q, c, ref_, kernels::default_backend(), ws_, o.data());
      for (size_t j = 0; j < rows.size(); ++j)
        for (int64_t k = 0; k < K; ++k)
          if (p_.owner(layer, sub.experts[j * size_t(K) + size_t(k)]) == q) {
            ++remote_slots;
            std::memcpy(outs + (rows[j] * K + k) * D, &o[(j * size_t(K) + size_t(k)) * size_t(D)], size_t(D) * 4);
          }
    }
  }
  model::ExchangeStats stats() const override { return {}; }
  std::vector<RankMemory> memory() override { return {}; }
  int64_t remote_slots = 0;

 private:
  const model::Model& m_;
  model::ExpertPlacement p_;
  bool drop_;
  int layer_ = -2;
  bool ref_ = false;
  std::vector<float> xn_;
  model::MoeRouting rt_;
  model::PassScratch ws_;
};

std::vector<float> run_logits(const model::Model& m, model::Numerics num, const std::vector<int32_t>& ids, int chunk) {
  model::ForwardPass fp(m, num);
  auto st = fp.new_state();
  std::vector<float> all, part;
  for (size_t i = 0; i < ids.size(); i += size_t(chunk)) {
    const size_t n = std::min(ids.size() - i, size_t(chunk));
    model::SeqChunk ch{st.get(), std::span<const int32_t>(ids.data() + i, n), true};
    fp.forward(std::span<model::SeqChunk>(&ch, 1), part);
    all.insert(all.end(), part.begin(), part.end());
  }
  return all;
}

struct ExchangeGuard {
  explicit ExchangeGuard(model::ExpertExchange* ex) { model::set_expert_exchange(ex); }
  ~ExchangeGuard() { model::set_expert_exchange(nullptr); }
};

}  // namespace

TEST(ExpertParallel, BalancedPlacementSpreadsEveryLayerAndBalancesBytes) {
  auto m = model::Model::load(test::tiny_checkpoint_dir());
  const model::Config& c = m->config();
  for (int R : {1, 2, 3, 4}) {
    SCOPED_TRACE("ranks " + std::to_string(R));
    const auto p = model::ExpertPlacement::balanced(*m, R, false);
    ASSERT_EQ(p.n_layers(), c.n_layers);
    int64_t total = 0;
    for (int l = 0; l < c.n_layers; ++l) {
      std::vector<int> n(static_cast<size_t>(R));
      for (int e = 0; e < c.n_routed_experts; ++e) {
        ASSERT_GE(p.owner(l, e), 0);
        ASSERT_LT(p.owner(l, e), R);
        ++n[size_t(p.owner(l, e))];
        total += model::expert_bytes(*m, l, e);
      }
      const auto [lo, hi] = std::minmax_element(n.begin(), n.end());
      EXPECT_LE(*hi - *lo, 1) << "layer " << l;  // every rank works on every layer
    }
    int64_t sum = 0, mx = 0, mn = INT64_MAX;
    for (int r = 0; r < R; ++r) {
      sum += p.bytes_of(r);
      mx = std::max(mx, p.bytes_of(r));
      mn = std::min(mn, p.bytes_of(r));
    }
    EXPECT_EQ(sum, total);
    EXPECT_LE(mx - mn, model::expert_bytes(*m, 0, 0) * ((c.n_layers + R - 1) / R));
  }
  // Counting the replicated weights (the tiny model's 129,280-row embedding and head outweigh all
  // its experts): rank 0 gets none, the others share them equally.
  const auto p = model::ExpertPlacement::balanced(*m, 3, true);
  EXPECT_EQ(p.experts_of(0), 0);
  EXPECT_EQ(p.experts_of(1), p.experts_of(2));
  EXPECT_GT(model::replicated_bytes(*m), p.bytes_of(1) + p.bytes_of(2));
}

TEST(ExpertParallel, UserMapIsReadAndCheckedNamingTheEntry) {
  auto m = model::Model::load(test::tiny_checkpoint_dir());
  const model::Config& c = m->config();
  const std::string path = test::make_temp_dir("ep_map") + "/map.json";
  auto write = [&](const std::string& s) { std::ofstream(path, std::ios::trunc) << s; };
  const auto p = model::ExpertPlacement::balanced(*m, 2, false);
  write(p.to_json());
  const auto back = model::ExpertPlacement::from_json_file(path, *m, 2);
  EXPECT_EQ(back.flat(), p.flat());
  EXPECT_EQ(back.bytes_of(0) + back.bytes_of(1), p.bytes_of(0) + p.bytes_of(1));
  auto err = [&](int ranks) {
    try {
      model::ExpertPlacement::from_json_file(path, *m, ranks);
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  EXPECT_NE(err(3).find("the map is for 2 ranks, the job has 3"), std::string::npos) << err(3);
  std::string bad = p.to_json();
  nlohmann::json j = nlohmann::json::parse(bad);
  j["layers"][2][1] = 7;
  write(j.dump());
  EXPECT_NE(err(2).find("layers[2][1] = 7 is not a rank in [0, 2)"), std::string::npos) << err(2);
  j = nlohmann::json::parse(p.to_json());
  j["layers"][0].erase(0);
  write(j.dump());
  EXPECT_NE(err(2).find("layers[0] must list " + std::to_string(c.n_routed_experts)), std::string::npos) << err(2);
  std::filesystem::remove(path);
}

TEST(ExpertParallel, FormulaLimits) {
  auto m = model::Model::load(test::tiny_checkpoint_dir());
  const model::Config& c = m->config();
  const double D = c.dim, K = c.n_activated_experts;
  EXPECT_EQ(model::exchange_bytes_per_token(c, model::ExpertPlacement::balanced(*m, 1, false), 1), 0.0);
  // Everything on rank 1: every slot comes back, every row goes out, one header per message.
  const std::string path = test::make_temp_dir("ep_all1") + "/map.json";
  nlohmann::json j;
  j["ranks"] = 2;
  j["layers"] = std::vector<std::vector<int>>(size_t(c.n_layers), std::vector<int>(size_t(c.n_routed_experts), 1));
  std::ofstream(path, std::ios::trunc) << j.dump();
  const auto all1 = model::ExpertPlacement::from_json_file(path, *m, 2);
  std::filesystem::remove(path);
  for (double n : {1.0, 64.0}) {
    const double want = c.n_layers * (K * D * 4 + D * 4 + K * 8 + 64 / n);
    EXPECT_NEAR(model::exchange_bytes_per_token(c, all1, n), want, 1e-6 * want);
  }
}

// The seam: with the other ranks' experts run by the loopback exchange, logits equal one process
// bit for bit (both numerics, prefill, chunked, decode); with their slots dropped they do not, so
// rank 0 really skipped the experts it does not own.
TEST(ExpertParallel, LoopbackExchangeIsBitIdenticalAndRankZeroSkipsOthersExperts) {
  auto m = model::Model::load(test::tiny_checkpoint_dir());
  std::vector<int32_t> ids(24);
  for (size_t i = 0; i < ids.size(); ++i) ids[i] = int32_t((i * 7919 + 13) % 120000);
  for (auto num : {model::Numerics::f32, model::Numerics::reference})
    for (int chunk : {24, 5, 1}) {
      SCOPED_TRACE(std::string(model::numerics_name(num)) + " chunk " + std::to_string(chunk));
      const auto one = run_logits(*m, num, ids, chunk);
      for (int R : {2, 3}) {
        LoopbackExchange loop(*m, model::ExpertPlacement::balanced(*m, R, false));
        std::vector<float> got;
        {
          ExchangeGuard g(&loop);
          got = run_logits(*m, num, ids, chunk);
        }
        EXPECT_GT(loop.remote_slots, 0);
        ASSERT_EQ(got.size(), one.size());
        EXPECT_EQ(std::memcmp(got.data(), one.data(), one.size() * 4), 0) << R << " ranks";
      }
      LoopbackExchange drop(*m, model::ExpertPlacement::balanced(*m, 2, false), true);
      std::vector<float> dropped;
      {
        ExchangeGuard g(&drop);
        dropped = run_logits(*m, num, ids, chunk);
      }
      EXPECT_NE(std::memcmp(dropped.data(), one.data(), one.size() * 4), 0);
    }
}
