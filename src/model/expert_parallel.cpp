#include "model/expert_parallel.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>
#include <numeric>

#include "core/error.h"
#include "core/json_file.h"
#include "model/expert_store.h"
#include "model/model_stats.h"
#include "model/weights.h"

namespace dsv4::model {

namespace {
int64_t linear_bytes(const Linear& l) { return int64_t(l.w.nbytes() + (l.scale.valid() ? l.scale.nbytes() : 0)); }

ExpertExchange*& installed() {
  static ExpertExchange* ex = nullptr;
  return ex;
}
}  // namespace

ExpertExchange& expert_exchange() {
  static LocalExchange local;
  ExpertExchange* ex = installed();
  return ex ? *ex : local;
}

void set_expert_exchange(ExpertExchange* ex) { installed() = ex; }

ExpertParallelOptions& expert_parallel_options() {
  static ExpertParallelOptions o;
  return o;
}

ExpertPlacement placement_for(const Model& m, int ranks, const ExpertParallelOptions& o) {
  ExpertPlacement p = o.map_file.empty() ? ExpertPlacement::balanced(m, ranks, o.balance_bytes)
                                         : ExpertPlacement::from_json_file(o.map_file, m, ranks);
  if (!o.map_out.empty()) {
    std::ofstream f(o.map_out, std::ios::trunc);
    f << p.to_json() << "\n";
    if (!f) throw Error(o.map_out + ": cannot write the expert map");
  }
  return p;
}

int64_t expert_bytes(const Model& m, int layer, int e) {
  const ExpertWeights& ew = m.weights().layers[size_t(layer)].ffn.experts[size_t(e)];
  return linear_bytes(ew.w1) + linear_bytes(ew.w2) + linear_bytes(ew.w3);
}

int64_t replicated_bytes(const Model& m) {
  const Config& c = m.config();
  int64_t experts = 0;
  for (int l = 0; l < c.n_layers; ++l)
    for (int e = 0; e < c.n_routed_experts; ++e) experts += expert_bytes(m, l, e);
  return std::max<int64_t>(0, expected_tensor_totals(c, false).bytes - experts);
}

ExpertPlacement ExpertPlacement::balanced(const Model& m, int ranks, bool count_replicated) {
  DSV4_CHECK(ranks >= 1, "placement: ranks must be positive");
  const Config& c = m.config();
  ExpertPlacement p;
  p.ranks_ = ranks;
  p.bytes_.assign(size_t(ranks), 0);
  const int E = c.n_routed_experts;
  // Each rank's share of the routed experts: equal, or (count_replicated) such that rank 0's
  // experts plus the replicated rest of the model weigh what every other rank's experts weigh.
  int64_t total = 0;
  for (int l = 0; l < c.n_layers; ++l)
    for (int e = 0; e < E; ++e) total += expert_bytes(m, l, e);
  std::vector<double> share(static_cast<size_t>(ranks), 1.0);
  if (count_replicated && ranks > 1) {
    const double X = double(replicated_bytes(m)), per = (double(total) + X) / ranks;
    share[0] = std::max(0.0, per - X) / per;
  }
  std::vector<int> order(static_cast<size_t>(E));
  std::vector<int64_t> eb(static_cast<size_t>(E));
  std::vector<int> count(static_cast<size_t>(ranks));
  for (int l = 0; l < c.n_layers; ++l) {
    for (int e = 0; e < E; ++e) eb[size_t(e)] = expert_bytes(m, l, e);
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return eb[size_t(a)] > eb[size_t(b)]; });
    std::fill(count.begin(), count.end(), 0);
    std::vector<int32_t> own(size_t(E), 0);
    // Each expert of the layer (heaviest first) to the rank furthest below its share of this
    // layer (so every rank works on every layer in proportion), then the rank furthest below its
    // share of the bytes so far, then in turn (ranks rotate across layers).
    for (int e : order) {
      int best = -1;
      double best_k = 0, best_b = 0;
      for (int i = 0; i < ranks; ++i) {
        const int r = (i + l) % ranks;
        if (share[size_t(r)] <= 0) continue;
        const double k = (count[size_t(r)] + 1) / share[size_t(r)];
        const double bb = double(p.bytes_[size_t(r)]) / share[size_t(r)];
        if (best < 0 || k < best_k - 1e-9 || (std::abs(k - best_k) <= 1e-9 && bb < best_b)) {
          best = r;
          best_k = k;
          best_b = bb;
        }
      }
      own[size_t(e)] = best;
      ++count[size_t(best)];
      p.bytes_[size_t(best)] += eb[size_t(e)];
    }
    p.owner_.push_back(std::move(own));
  }
  return p;
}

ExpertPlacement ExpertPlacement::from_json_file(const std::string& path, const Model& m, int ranks) {
  const Config& c = m.config();
  const nlohmann::json j = read_json_file(path, "expert map");
  if (!j.is_object() || !j.contains("layers") || !j["layers"].is_array())
    throw Error(path + ": expected {\"ranks\": R, \"layers\": [[rank, ...], ...]}");
  if (j.contains("ranks") && (!j["ranks"].is_number_integer() || j["ranks"].get<int>() != ranks))
    throw Error(path + ": the map is for " + j["ranks"].dump() + " ranks, the job has " + std::to_string(ranks));
  const auto& L = j["layers"];
  if (int(L.size()) != c.n_layers)
    throw Error(path + ": " + std::to_string(L.size()) + " layers in the map, the model has " +
                std::to_string(c.n_layers));
  ExpertPlacement p;
  p.ranks_ = ranks;
  for (int l = 0; l < c.n_layers; ++l) {
    const auto& row = L[size_t(l)];
    if (!row.is_array() || int(row.size()) != c.n_routed_experts)
      throw Error(path + ": layers[" + std::to_string(l) + "] must list " + std::to_string(c.n_routed_experts) +
                  " ranks, one per routed expert");
    std::vector<int32_t> own;
    for (size_t e = 0; e < row.size(); ++e) {
      if (!row[e].is_number_integer() || row[e].get<int64_t>() < 0 || row[e].get<int64_t>() >= ranks)
        throw Error(path + ": layers[" + std::to_string(l) + "][" + std::to_string(e) + "] = " + row[e].dump() +
                    " is not a rank in [0, " + std::to_string(ranks) + ")");
      own.push_back(row[e].get<int32_t>());
    }
    p.owner_.push_back(std::move(own));
  }
  p.bytes_.assign(size_t(ranks), 0);
  for (int l = 0; l < c.n_layers; ++l)
    for (int e = 0; e < c.n_routed_experts; ++e) p.bytes_[size_t(p.owner(l, e))] += expert_bytes(m, l, e);
  return p;
}

std::string ExpertPlacement::to_json() const {
  nlohmann::json j;
  j["ranks"] = ranks_;
  j["layers"] = owner_;
  return j.dump();
}

int64_t ExpertPlacement::experts_of(int rank) const {
  int64_t n = 0;
  for (const auto& row : owner_) n += std::count(row.begin(), row.end(), rank);
  return n;
}

std::vector<int32_t> ExpertPlacement::flat() const {
  std::vector<int32_t> v;
  for (const auto& row : owner_) v.insert(v.end(), row.begin(), row.end());
  return v;
}

ExpertPlacement ExpertPlacement::from_flat(int ranks, int layers, int experts, const std::vector<int32_t>& v,
                                           std::vector<int64_t> bytes) {
  DSV4_CHECK(int64_t(v.size()) == int64_t(layers) * experts, "placement: flat map of the wrong size");
  ExpertPlacement p;
  p.ranks_ = ranks;
  for (int l = 0; l < layers; ++l) p.owner_.emplace_back(v.begin() + int64_t(l) * experts, v.begin() + int64_t(l + 1) * experts);
  p.bytes_ = std::move(bytes);
  return p;
}

double exchange_bytes_per_token(const Config& c, const ExpertPlacement& p, double rows_per_pass) {
  const double D = c.dim, K = c.n_activated_experts, E = c.n_routed_experts;
  double total = 0;
  for (int l = 0; l < p.n_layers(); ++l)
    for (int q = 1; q < p.ranks(); ++q) {
      int Eq = 0;
      for (int e = 0; e < c.n_routed_experts; ++e) Eq += p.owner(l, e) == q;
      double none = 1;  // C(E - Eq, K) / C(E, K)
      for (int k = 0; k < int(K); ++k) none *= std::max(0.0, (E - Eq - k) / (E - k));
      const double pq = 1 - none;
      total += K * Eq / E * D * 4 + pq * (D * 4 + K * 8) +
               double(kExchangeHeaderBytes) * (1 - std::pow(none, rows_per_pass)) / rows_per_pass;
    }
  return total;
}

int64_t prefault_experts(const Model& m, const ExpertPlacement& p, int rank) {
  if (m.expert_store().streaming()) return 0;  // the store reads them (issue 14): nothing mapped to touch
  int64_t touched = 0;
  volatile uint8_t sink = 0;
  auto touch = [&](const TensorView& t) {
    if (!t.valid()) return;
    const uint8_t* b = static_cast<const uint8_t*>(t.data);
    const size_t n = t.nbytes();
    uint8_t acc = 0;
    for (size_t i = 0; i < n; i += 4096) acc ^= b[i];
    if (n) acc ^= b[n - 1];
    sink = sink ^ acc;
    touched += int64_t(n);
  };
  const auto& layers = m.weights().layers;
  for (int l = 0; l < int(layers.size()) && l < p.n_layers(); ++l)
    for (int e = 0; e < int(layers[size_t(l)].ffn.experts.size()); ++e) {
      if (p.owner(l, e) != rank) continue;
      const ExpertWeights& ew = layers[size_t(l)].ffn.experts[size_t(e)];
      for (const Linear* w : {&ew.w1, &ew.w2, &ew.w3}) {
        touch(w->w);
        touch(w->scale);
      }
    }
  return touched;
}

}  // namespace dsv4::model
