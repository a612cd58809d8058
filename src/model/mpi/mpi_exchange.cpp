#include "model/mpi/mpi_exchange.h"

// The C API only (OpenMPI and MPICH otherwise pull in their deprecated C++ bindings).
#define OMPI_SKIP_MPICXX 1
#define MPICH_SKIP_MPICXX 1
#include <mpi.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "core/alloc_guard.h"
#include "core/error.h"
#include "kernels/backend.h"
#include "model/batch.h"
#include "model/expert_parallel.h"
#include "model/expert_store.h"
#include "model/moe.h"
#include "model/weights.h"

// Wire protocol (MPI_COMM_WORLD, point to point, so a silent rank can be named). Rank 0 sends
// commands (tag kTagCmd) as bytes: 8 int64 header words, then the payload; the other ranks answer
// with tag kTagReply.
//   attach  {1, D, layers, E, K, I, V, |dir|} + bytes per rank [R] i64 + map [layers, E] i32 + dir
//           -> {status, VmRSS kB, bytes read} + error text (status != 0)
//   layer   {2, layer, rows, ref, D, K, slots, 0} + xn rows [rows, D] f32 + their expert ids
//           [rows, K] i32 + their weights [rows, K] f32  (only the rows with a slot on that rank,
//           in row order; only ranks with a slot get one)
//           -> [slots, D] f32: the rank's slot outputs in (row, k) order
//   memory  {3, ...} -> {VmRSS, VmHWM} kB
//   quit    {4, ...} (no answer; the rank calls MPI_Finalize and exits 0)
namespace dsv4::model {

namespace {

using Clock = std::chrono::steady_clock;

enum Cmd : int64_t { kAttach = 1, kLayer = 2, kMemory = 3, kQuit = 4 };
constexpr int kTagCmd = 11, kTagReply = 12;
constexpr int kHeader = 8;  // int64 words before every command's payload

double now_s() { return std::chrono::duration<double>(Clock::now().time_since_epoch()).count(); }

int64_t proc_status_kb(const char* key) {
  std::ifstream f("/proc/self/status");
  std::string line;
  const size_t n = std::strlen(key);
  while (std::getline(f, line))
    if (line.compare(0, n, key) == 0) return std::atoll(line.c_str() + n + 1);
  return -1;
}



[[noreturn]] void die(int rank, const std::string& msg) {
  std::fprintf(stderr, "dsv4: error: expert parallel (rank %d): %s\n", rank, msg.c_str());
  std::fflush(stderr);
  MPI_Abort(MPI_COMM_WORLD, 1);
  std::_Exit(1);
}

void check(int rc, int rank, const std::string& what) {
  if (rc == MPI_SUCCESS) return;
  char s[MPI_MAX_ERROR_STRING];
  int n = 0;
  MPI_Error_string(rc, s, &n);
  die(rank, what + ": " + std::string(s, size_t(n)));
}

// Waits for every request (spinning with yields, then short sleeps); after `limit` seconds names
// the peers whose requests are still open and ends the job.
void wait_all(std::vector<MPI_Request>& reqs, const std::vector<int>& peer, int rank, const std::string& what,
              double limit) {
  const double t0 = now_s();
  int64_t spins = 0;
  for (;;) {
    int done = 0;
    check(MPI_Testall(int(reqs.size()), reqs.data(), &done, MPI_STATUSES_IGNORE), rank, what);
    if (done) return;
    if (++spins < 20000) {
      sched_yield();
      continue;
    }
    if (now_s() - t0 > limit) {
      std::string who;
      for (size_t i = 0; i < reqs.size(); ++i) {
        int one = 0;
        MPI_Test(&reqs[i], &one, MPI_STATUS_IGNORE);
        if (!one) who += (who.empty() ? "" : ", ") + std::to_string(peer[i]);
      }
      die(rank, what + ": no answer from rank(s) " + who + " within " + std::to_string(int(limit)) +
                    " s (--ep-timeout); the rank is hung, overloaded or gone");
    }
    std::this_thread::sleep_for(std::chrono::microseconds(50));
  }
}

struct Attached {  // a worker's model
  std::string dir;
  std::unique_ptr<Model> model;
};

}  // namespace

class MpiExchange final : public ExpertExchange {
 public:
  MpiExchange(int rank, int size) : rank_(rank), size_(size) {}
  int rank() const override { return rank_; }
  int ranks() const override { return size_; }
  const ExpertPlacement& placement() const override { return placement_; }
  ExchangeStats stats() const override { return stats_; }

  // ---- rank 0 ------------------------------------------------------------------------------
  void attach(const Model& m) override {
    if (attached_ == &m && attached_dir_ == m.dir()) return;
    const Config& c = m.config();
    const ExpertParallelOptions& opt = expert_parallel_options();
    timeout_ = opt.timeout_s;
    placement_ = placement_for(m, size_, opt);
    // Payload: config fingerprint, bytes per rank, the flat map, the directory (absolute: the
    // other ranks may start elsewhere).
    const std::vector<int32_t> flat = placement_.flat();
    const std::string dir = std::filesystem::absolute(m.dir()).lexically_normal().string();
    std::vector<int64_t> words = {kAttach, c.dim, c.n_layers, c.n_routed_experts, c.n_activated_experts,
                                  c.moe_inter_dim, c.vocab_size, int64_t(dir.size())};
    std::vector<char> buf(words.size() * 8 + size_t(size_) * 8 + flat.size() * 4 + dir.size());
    char* p = buf.data();
    std::memcpy(p, words.data(), words.size() * 8), p += words.size() * 8;
    for (int r = 0; r < size_; ++r) {
      const int64_t b = placement_.bytes_of(r);
      std::memcpy(p, &b, 8), p += 8;
    }
    std::memcpy(p, flat.data(), flat.size() * 4), p += flat.size() * 4;
    std::memcpy(p, dir.data(), dir.size());
    for (int r = 1; r < size_; ++r)
      check(MPI_Send(buf.data(), int(buf.size()), MPI_BYTE, r, kTagCmd, MPI_COMM_WORLD), 0, "attach: send to rank " + std::to_string(r));
    const int64_t mine = prefault_experts(m, placement_, 0);
    // Replies: status, RSS, bytes touched, message.
    std::string failures;
    for (int r = 1; r < size_; ++r) {
      std::vector<char> reply = recv_reply(r, "attach: answer of rank " + std::to_string(r),
                                           expert_parallel_options().load_timeout_s, "--ep-load-timeout");
      int64_t status = 0, rss = 0, touched = 0;
      std::memcpy(&status, reply.data(), 8);
      std::memcpy(&rss, reply.data() + 8, 8);
      std::memcpy(&touched, reply.data() + 16, 8);
      const std::string msg(reply.data() + 24, reply.size() - 24);
      if (status != 0)
        failures += (failures.empty() ? "" : "; ") + std::string("rank ") + std::to_string(r) +
                    " cannot load its share: " + msg;
      else
        std::fprintf(stderr, "dsv4: expert parallel: rank %d holds %lld experts (%.1f MB read), RSS %.1f MB\n", r,
                     (long long)placement_.experts_of(r), double(touched) / 1e6, double(rss) / 1024);
    }
    if (!failures.empty()) die(0, failures);
    std::fprintf(stderr, "dsv4: expert parallel: rank 0 holds %lld experts (%.1f MB read) + the rest of the model "
                 "(%.1f MB), RSS %.1f MB; %d ranks\n",
                 (long long)placement_.experts_of(0), double(mine) / 1e6, double(replicated_bytes(m)) / 1e6,
                 double(proc_status_kb("VmRSS:")) / 1024, size_);
    attached_ = &m;
    attached_dir_ = m.dir();
    K_ = c.n_activated_experts;
  }

  void post_layer(int layer, bool ref, bool decode, const float* xn, int64_t N, int64_t D,
                  const MoeRouting& rt) override {
    active_ = layer >= 0 && layer < placement_.n_layers() && attached_ != nullptr;
    if (!active_) return;
    AllowAllocScope allow;  // network buffers (kept between layers; grow once)
    const double t0 = now_s();
    const int64_t K = K_;
    ExchangeStats::Part& st = decode ? stats_.decode : stats_.prefill;
    if (layer == 0) {
      ++st.passes;
      st.tokens += N;
    }
    part_ = &st;
    send_buf_.resize(size_t(size_));
    recv_buf_.resize(size_t(size_));
    slots_.assign(size_t(size_), 0);
    reqs_.clear();
    peers_.clear();
    for (int q = 1; q < size_; ++q) {
      // Rows with a slot on q, in ascending order, with their whole routing rows.
      int64_t rows = 0, slots = 0;
      for (int64_t r = 0; r < N; ++r) {
        int64_t s = 0;
        for (int64_t k = 0; k < K; ++k) s += placement_.owner(layer, rt.experts[size_t(r * K + k)]) == q;
        rows += s > 0;
        slots += s;
      }
      slots_[size_t(q)] = slots;
      if (slots == 0) continue;
      std::vector<char>& b = send_buf_[size_t(q)];
      b.resize(size_t(kHeader * 8 + rows * (D * 4 + K * 8)));
      const int64_t h[kHeader] = {kLayer, layer, rows, ref ? 1 : 0, D, K, slots, 0};
      std::memcpy(b.data(), h, sizeof h);
      float* x = reinterpret_cast<float*>(b.data() + kHeader * 8);
      int32_t* ex = reinterpret_cast<int32_t*>(x + rows * D);
      float* wt = reinterpret_cast<float*>(ex + rows * K);
      int64_t j = 0;
      for (int64_t r = 0; r < N; ++r) {
        bool need = false;
        for (int64_t k = 0; k < K; ++k) need = need || placement_.owner(layer, rt.experts[size_t(r * K + k)]) == q;
        if (!need) continue;
        std::memcpy(x + j * D, xn + r * D, size_t(D) * 4);
        std::memcpy(ex + j * K, &rt.experts[size_t(r * K)], size_t(K) * 4);
        std::memcpy(wt + j * K, &rt.weights[size_t(r * K)], size_t(K) * 4);
        ++j;
      }
      MPI_Request rq;
      check(MPI_Isend(b.data(), int(b.size()), MPI_BYTE, q, kTagCmd, MPI_COMM_WORLD, &rq), 0,
            "layer " + std::to_string(layer) + ": send to rank " + std::to_string(q));
      reqs_.push_back(rq);
      peers_.push_back(q);
      std::vector<float>& in = recv_buf_[size_t(q)];
      in.resize(size_t(slots * D));
      check(MPI_Irecv(in.data(), int(in.size()), MPI_FLOAT, q, kTagReply, MPI_COMM_WORLD, &rq), 0,
            "layer " + std::to_string(layer) + ": receive from rank " + std::to_string(q));
      reqs_.push_back(rq);
      peers_.push_back(q);
      st.bytes_sent += int64_t(b.size());
      st.bytes_received += int64_t(in.size() * 4);
      st.messages += 2;
    }
    st.seconds += now_s() - t0;
  }

  void collect_layer(int layer, int64_t N, int64_t D, const MoeRouting& rt, float* outs) override {
    if (!active_) return;
    AllowAllocScope allow;
    const double t0 = now_s();
    wait_all(reqs_, peers_, 0, "layer " + std::to_string(layer), timeout_);
    const int64_t K = K_;
    std::vector<int64_t>& at = at_;
    at.assign(size_t(size_), 0);
    for (int64_t i = 0; i < N * K; ++i) {
      const int q = placement_.owner(layer, rt.experts[size_t(i)]);
      if (q == 0) continue;
      std::memcpy(outs + i * D, recv_buf_[size_t(q)].data() + at[size_t(q)] * D, size_t(D) * 4);
      ++at[size_t(q)];
    }
    for (int q = 1; q < size_; ++q)
      if (at[size_t(q)] != slots_[size_t(q)]) die(0, "layer " + std::to_string(layer) + ": slot count mismatch");
    part_->seconds += now_s() - t0;
    active_ = false;
  }

  // Rank 0: resident memory of every rank (kB): {VmRSS, VmHWM} per rank.
  std::vector<RankMemory> memory() override {
    std::vector<RankMemory> out{{proc_status_kb("VmRSS:"), proc_status_kb("VmHWM:")}};
    const int64_t h[kHeader] = {kMemory, 0, 0, 0, 0, 0, 0, 0};
    for (int r = 1; r < size_; ++r) {
      check(MPI_Send(h, int(sizeof h), MPI_BYTE, r, kTagCmd, MPI_COMM_WORLD), 0, "memory query");
      std::vector<char> reply = recv_reply(r, "memory of rank " + std::to_string(r), timeout_, "--ep-timeout");
      int64_t v[2] = {0, 0};
      std::memcpy(v, reply.data(), std::min(reply.size(), sizeof v));
      out.push_back({v[0], v[1]});
    }
    return out;
  }

  void quit() {
    const int64_t h[kHeader] = {kQuit, 0, 0, 0, 0, 0, 0, 0};
    for (int r = 1; r < size_; ++r) MPI_Send(h, int(sizeof h), MPI_BYTE, r, kTagCmd, MPI_COMM_WORLD);
  }

  // ---- ranks > 0 ---------------------------------------------------------------------------
  int serve() {
    std::vector<char> msg;
    std::vector<float> outs, packed;
    PassScratch ws;
    kernels::Backend& be = kernels::default_backend();
    double last = now_s();
    for (;;) {
      // Idle wait for rank 0: spin (yielding) while layers are coming, sleep when idle.
      MPI_Status st;
      int flag = 0;
      for (;;) {
        check(MPI_Iprobe(0, kTagCmd, MPI_COMM_WORLD, &flag, &st), rank_, "waiting for rank 0");
        if (flag) break;
        if (now_s() - last < 0.005) sched_yield();
        else std::this_thread::sleep_for(std::chrono::microseconds(now_s() - last < 1.0 ? 50 : 1000));
      }
      int n = 0;
      MPI_Get_count(&st, MPI_BYTE, &n);
      msg.resize(size_t(n));
      check(MPI_Recv(msg.data(), n, MPI_BYTE, 0, kTagCmd, MPI_COMM_WORLD, MPI_STATUS_IGNORE), rank_, "receive from rank 0");
      int64_t h[kHeader] = {};
      std::memcpy(h, msg.data(), std::min(sizeof h, msg.size()));
      if (h[0] == kQuit) return 0;
      if (h[0] == kMemory) {
        const int64_t v[2] = {proc_status_kb("VmRSS:"), proc_status_kb("VmHWM:")};
        check(MPI_Send(v, int(sizeof v), MPI_BYTE, 0, kTagReply, MPI_COMM_WORLD), rank_, "memory answer");
      } else if (h[0] == kAttach) {
        worker_attach(msg);
      } else if (h[0] == kLayer) {
        if (!work_.model) die(rank_, "layer request before the model was attached");
        const int64_t layer = h[1], rows = h[2], D = h[4], K = h[5], slots = h[6];
        const bool ref = h[3] != 0;
        const Model& m = *work_.model;
        const Config& c = m.config();
        if (D != c.dim || K != c.n_activated_experts || layer < 0 || layer >= c.n_layers)
          die(rank_, "malformed layer request");
        const float* x = reinterpret_cast<const float*>(msg.data() + kHeader * 8);
        MoeRouting& rt = ws.routing;
        rt.experts.resize(size_t(rows * K));
        rt.weights.resize(size_t(rows * K));
        std::memcpy(rt.experts.data(), x + rows * D, size_t(rows * K) * 4);
        std::memcpy(rt.weights.data(), x + rows * D + rows * K, size_t(rows * K) * 4);
        outs.resize(size_t(rows * K * D));
        try {
          moe_run_experts(m.weights().layers[size_t(layer)].ffn, x, rows, rt, placement_, int(layer), rank_, c, ref,
                          be, ws, outs.data(), &m.expert_store());  // a rank may stream its share (issue 14)
        } catch (const std::exception& e) {
          die(rank_, std::string("layer ") + std::to_string(layer) + ": " + e.what());
        }
        packed.resize(size_t(slots * D));
        int64_t j = 0;
        for (int64_t i = 0; i < rows * K; ++i)
          if (placement_.owner(int(layer), rt.experts[size_t(i)]) == rank_) {
            if (j >= slots) die(rank_, "layer request: more slots than announced");
            std::memcpy(&packed[size_t(j * D)], &outs[size_t(i * D)], size_t(D) * 4);
            ++j;
          }
        if (j != slots) die(rank_, "layer request: fewer slots than announced");
        check(MPI_Send(packed.data(), int(packed.size()), MPI_FLOAT, 0, kTagReply, MPI_COMM_WORLD), rank_,
              "send layer " + std::to_string(layer) + " to rank 0");
      } else {
        die(rank_, "unknown command " + std::to_string(h[0]) + " from rank 0");
      }
      last = now_s();
    }
  }

 private:
  std::vector<char> recv_reply(int from, const std::string& what, double limit, const char* knob) {
    MPI_Status st;
    MPI_Request rq;
    // Probe with a deadline, then receive the whole reply.
    const double t0 = now_s();
    int flag = 0;
    for (;;) {
      check(MPI_Iprobe(from, kTagReply, MPI_COMM_WORLD, &flag, &st), 0, what);
      if (flag) break;
      if (now_s() - t0 > limit)
        die(0, what + ": no answer from rank " + std::to_string(from) + " within " + std::to_string(int(limit)) +
                   " s (" + knob + ")");
      std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
    int n = 0;
    MPI_Get_count(&st, MPI_BYTE, &n);
    std::vector<char> b(static_cast<size_t>(n));
    check(MPI_Irecv(b.data(), n, MPI_BYTE, from, kTagReply, MPI_COMM_WORLD, &rq), 0, what);
    check(MPI_Wait(&rq, MPI_STATUS_IGNORE), 0, what);
    return b;
  }

  void worker_attach(const std::vector<char>& msg) {
    int64_t w[8];
    std::memcpy(w, msg.data(), sizeof w);
    const int64_t dim = w[1], layers = w[2], E = w[3], K = w[4], I = w[5], V = w[6], dir_len = w[7];
    const char* p = msg.data() + sizeof w;
    std::vector<int64_t> bytes(static_cast<size_t>(size_));
    std::memcpy(bytes.data(), p, bytes.size() * 8), p += bytes.size() * 8;
    std::vector<int32_t> flat(size_t(layers * E));
    std::memcpy(flat.data(), p, flat.size() * 4), p += flat.size() * 4;
    std::string dir(p, size_t(dir_len));
    if (const char* o = std::getenv("DSV4_EP_MODEL"); o && *o) dir = o;
    int64_t status = 0, touched = 0;
    std::string err;
    try {
      work_.model.reset();
      placement_ = ExpertPlacement::from_flat(size_, int(layers), int(E), flat, bytes);
      auto m = Model::load(dir);
      const Config& c = m->config();
      if (c.dim != dim || c.n_layers != layers || c.n_routed_experts != E || c.n_activated_experts != K ||
          c.moe_inter_dim != I || c.vocab_size != V)
        throw Error(dir + ": not the model rank 0 runs (config differs: dim " + std::to_string(c.dim) + " vs " +
                    std::to_string(dim) + ", layers " + std::to_string(c.n_layers) + " vs " + std::to_string(layers) +
                    ", experts " + std::to_string(c.n_routed_experts) + " vs " + std::to_string(E) + ")");
      touched = prefault_experts(*m, placement_, rank_);
      work_.model = std::move(m);
      work_.dir = dir;
    } catch (const std::exception& e) {
      status = 1;
      err = e.what();
    }
    char host[256] = {};
    gethostname(host, sizeof host - 1);
    if (status) err = std::string("on host ") + host + ": " + err;
    const int64_t head[3] = {status, proc_status_kb("VmRSS:"), touched};
    std::vector<char> reply(sizeof head + err.size());
    std::memcpy(reply.data(), head, sizeof head);
    std::memcpy(reply.data() + sizeof head, err.data(), err.size());
    check(MPI_Send(reply.data(), int(reply.size()), MPI_BYTE, 0, kTagReply, MPI_COMM_WORLD), rank_, "attach answer");
  }

  int rank_, size_;
  ExpertPlacement placement_;
  const Model* attached_ = nullptr;
  std::string attached_dir_;
  int64_t K_ = 0;
  double timeout_ = 120;
  bool active_ = false;
  ExchangeStats stats_;
  ExchangeStats::Part* part_ = nullptr;
  std::vector<std::vector<char>> send_buf_;
  std::vector<std::vector<float>> recv_buf_;
  std::vector<int64_t> slots_, at_;
  std::vector<MPI_Request> reqs_;
  std::vector<int> peers_;
  Attached work_;
};

// ---- MpiJob --------------------------------------------------------------------------------------

namespace {
bool launched_by_mpirun() {
  for (const char* v : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK"})
    if (std::getenv(v)) return true;
  return false;
}
}  // namespace

MpiJob::MpiJob(int* argc, char*** argv) {
  if (!launched_by_mpirun()) return;
  // The MPI library starts threads of its own in MPI_Init: they must not take SIGINT/SIGTERM,
  // which belong to the main thread (and `dsv4 serve`'s signal thread) on rank 0. Workers keep
  // them blocked for good: they stop when rank 0 says quit, or are ended by mpirun.
  sigset_t stop, old;
  sigemptyset(&stop);
  sigaddset(&stop, SIGINT);
  sigaddset(&stop, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop, &old);
  int provided = 0;
  if (MPI_Init_thread(argc, argv, MPI_THREAD_SERIALIZED, &provided) != MPI_SUCCESS) {
    std::fprintf(stderr, "dsv4: error: MPI_Init_thread failed\n");
    std::exit(1);
  }
  initialized_ = true;
  MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
  MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
  MPI_Comm_size(MPI_COMM_WORLD, &size_);
  if (!(size_ > 1 && rank_ > 0)) pthread_sigmask(SIG_SETMASK, &old, nullptr);
  if (size_ > 1 && provided < MPI_THREAD_SERIALIZED) {
    std::fprintf(stderr, "dsv4: error: the MPI library gives thread level %d, dsv4 needs MPI_THREAD_SERIALIZED\n", provided);
    MPI_Abort(MPI_COMM_WORLD, 1);
  }
  if (size_ > 1) {
    exchange_ = std::make_unique<MpiExchange>(rank_, size_);
    if (rank_ == 0) {
      set_expert_exchange(exchange_.get());
    }
  }
}

int MpiJob::run_worker() { return exchange_->serve(); }

MpiJob::~MpiJob() {
  if (!initialized_) return;
  if (active() && rank_ == 0) {
    exchange_->quit();
    set_expert_exchange(nullptr);
  }
  MPI_Finalize();
}

}  // namespace dsv4::model
