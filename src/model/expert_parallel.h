// Expert parallelism (issue 15): the routed experts of one model spread over several processes.
// The model code sees two things only: an ExpertPlacement (which rank holds expert e of layer l)
// and an ExpertExchange, which moe_forward calls around its per-expert loop:
//
//   ex.post_layer(...)                      // hand the layer's rows to the ranks that need them
//   for e: if (ex.owns(layer, e)) run it    // this process's own experts
//   ex.collect_layer(...)                   // the other ranks' per-slot outputs into outs[N,K,D]
//
// then moe_forward sums the slots in slot order as always, so the result is bit-identical to one
// process. Single process: LocalExchange (owns everything, posts and collects nothing). Under
// `mpirun` the MPI exchange (model/mpi/, built only with DSV4_MPI) is installed by main.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace dsv4::model {

class Model;
struct Config;
struct MoeRouting;

// Which rank holds each routed expert of each main-model layer. Layers outside the map (the
// drafter's blocks) run wholly on rank 0.
class ExpertPlacement {
 public:
  ExpertPlacement() = default;  // one rank holds everything
  // Spreads each layer's experts over the ranks (every rank works on every layer) so that the
  // bytes each rank holds are balanced (greedy, heaviest expert first). count_replicated: rank 0
  // also holds the rest of the model (attention, embedding, head, shared experts), so it gets
  // fewer experts, none if the rest alone exceeds an equal share; else equal expert bytes.
  static ExpertPlacement balanced(const Model& m, int ranks, bool count_replicated = true);
  // A user map: JSON {"ranks": R, "layers": [[rank of expert 0, rank of expert 1, ...], ...]},
  // one list per main layer, each of length n_routed_experts. Throws naming the file and entry.
  static ExpertPlacement from_json_file(const std::string& path, const Model& m, int ranks);
  std::string to_json() const;

  int ranks() const { return ranks_; }
  int n_layers() const { return int(owner_.size()); }
  int owner(int layer, int e) const {
    return layer >= 0 && layer < int(owner_.size()) ? owner_[size_t(layer)][size_t(e)] : 0;
  }
  // Routed-expert bytes (weights + scales) the rank holds, and how many experts.
  int64_t bytes_of(int rank) const { return rank < int(bytes_.size()) ? bytes_[size_t(rank)] : 0; }
  int64_t experts_of(int rank) const;
  // Flattened owners, for sending: [layers][experts].
  std::vector<int32_t> flat() const;
  static ExpertPlacement from_flat(int ranks, int layers, int experts, const std::vector<int32_t>& v,
                                   std::vector<int64_t> bytes);

 private:
  int ranks_ = 1;
  std::vector<std::vector<int32_t>> owner_;  // [layer][expert] -> rank
  std::vector<int64_t> bytes_;               // per rank
};

// How a multi-process run places and watches the experts: flags of `logits`, `run`, `bench` and
// `serve` (cli/common.h add_expert_parallel_options), read by rank 0 when it attaches the other
// ranks; nothing reads them in one process.
struct ExpertParallelOptions {
  std::string map_file;          // --expert-map: a user map (ExpertPlacement::from_json_file)
  std::string map_out;           // --expert-map-out: write the map in use
  bool balance_bytes = true;     // --ep-balance bytes (count rank 0's replicated weights) | experts
  double timeout_s = 120;        // --ep-timeout: one layer's answer (the largest chunk's expert work)
  double load_timeout_s = 3600;  // --ep-load-timeout: a rank's start-up (reading its share)
};
// The process's options (set by the CLI before any ForwardPass is built).
ExpertParallelOptions& expert_parallel_options();
// The placement the options ask for: the user map, else the balanced one.
ExpertPlacement placement_for(const Model& m, int ranks, const ExpertParallelOptions& o);

// Bytes of what every placement leaves on rank 0: the main model's tensors except the routed
// experts (the drafter's are not counted: nothing reads them unless drafting runs).
int64_t replicated_bytes(const Model& m);
// Bytes of one routed expert (w1, w2, w3 with their scales).
int64_t expert_bytes(const Model& m, int layer, int e);
// Reads every page of the experts `rank` holds (so they are resident and a short file shows up at
// load, not mid-generation); returns the bytes touched.
int64_t prefault_experts(const Model& m, const ExpertPlacement& p, int rank);

// Traffic and time of the exchange, split by pass kind (decode: every chunk one token).
struct ExchangeStats {
  struct Part {
    int64_t passes = 0, tokens = 0;     // counted at the first MoE layer of a pass
    int64_t bytes_sent = 0, bytes_received = 0;
    int64_t messages = 0;
    double seconds = 0;                 // in post + collect (sending, waiting, unpacking)
  };
  Part prefill, decode;
};

// The exchange's expected bytes per token (sent + received by rank 0, all main layers) for passes
// of `rows_per_pass` tokens, if tokens pick their K experts uniformly (README "Expert
// parallelism"): per layer and rank q > 0 holding E_q of the E experts,
//   received  K * E_q/E * D * 4                      (q's slot outputs, fp32)
//   sent      p_q * (D * 4 + K * 8)                  (the row, its K expert ids and weights)
//             + 64 * (1 - (1 - p_q)^rows) / rows     (one 64-byte header per message)
// where p_q = 1 - C(E - E_q, K) / C(E, K) is the chance that a row has a slot on q.
double exchange_bytes_per_token(const Config& c, const ExpertPlacement& p, double rows_per_pass);
constexpr int64_t kExchangeHeaderBytes = 64;

class ExpertExchange {
 public:
  virtual ~ExpertExchange() = default;
  virtual int rank() const = 0;
  virtual int ranks() const = 0;
  virtual const ExpertPlacement& placement() const = 0;
  bool owns(int layer, int e) const { return placement().owner(layer, e) == rank(); }
  // Rank 0, once per model a ForwardPass is built on: the other ranks load the same checkpoint
  // and their share of it; throws naming the rank that could not.
  virtual void attach(const Model& m) = 0;
  // Rank 0, before its own experts of `layer`: xn [N, D] and the routing go to the ranks that
  // hold a routed slot of some row.
  virtual void post_layer(int layer, bool ref, bool decode, const float* xn, int64_t N, int64_t D,
                          const MoeRouting& rt) = 0;
  // Rank 0, after its own experts: the other ranks' slots into outs [N, K, D].
  virtual void collect_layer(int layer, int64_t N, int64_t D, const MoeRouting& rt, float* outs) = 0;
  virtual ExchangeStats stats() const = 0;
  // Resident memory of every rank, rank 0 first (kB: VmRSS now, VmHWM peak); empty in one process.
  struct RankMemory {
    int64_t rss_kb = 0, peak_kb = 0;
  };
  virtual std::vector<RankMemory> memory() = 0;
};

// One process: owns every expert, exchanges nothing.
class LocalExchange final : public ExpertExchange {
 public:
  int rank() const override { return 0; }
  int ranks() const override { return 1; }
  const ExpertPlacement& placement() const override { return placement_; }
  void attach(const Model&) override {}
  void post_layer(int, bool, bool, const float*, int64_t, int64_t, const MoeRouting&) override {}
  void collect_layer(int, int64_t, int64_t, const MoeRouting&, float*) override {}
  ExchangeStats stats() const override { return {}; }
  std::vector<RankMemory> memory() override { return {}; }

 private:
  ExpertPlacement placement_;
};

// The process's exchange: the one installed (by main, under mpirun), else a LocalExchange.
ExpertExchange& expert_exchange();
// Installs ex (not owned; null = back to local).
void set_expert_exchange(ExpertExchange* ex);

}  // namespace dsv4::model
