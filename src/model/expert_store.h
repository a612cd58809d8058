// Issue 14: the routed experts of the main model's layers, by (layer, expert), under a memory
// budget. The one seam MoE uses to get an expert's weights (model/moe.cpp):
//
//   store.begin_layer(layer, rows, needed, n)     the experts this layer runs, in the order it runs them
//   const ExpertWeights& ew = store.acquire(layer, e);   ... compute ...   store.release(layer, e);
//
// Resident mode (the budget holds every expert; the default when the checkpoint fits in RAM):
// acquire returns the mmap'd views bound at load, exactly as before; nothing is read or copied.
//
// Streamed mode: a fixed cache of `n_slots` slots, each big enough for the largest expert, is
// allocated once (page-aligned, so reads can use O_DIRECT). A missing expert is read from its shard
// into a free or evicted slot by a pool of pread threads (O_DIRECT when the file system takes it,
// else buffered), so reads overlap compute: begin_layer queues every missing expert of the layer
// at once, acquire waits only for the one it needs. prefetch() queues guesses for the next layer
// behind the demand reads. An expert is read in pieces of at most read_bytes, so the reads in
// flight serve the first expert a layer needs before the next one. Eviction: the slot whose expert has the lowest use count with
// exponential decay (half-life kHalfLifeSteps forward steps), never one pinned by the running
// layer. The slot's ExpertWeights are the resident ones with the data pointers moved into the
// slot, so the kernels and their order are the same and the logits are bit-identical.
//
// Integrity: every read checks that it got all its bytes and that the shard's size and mtime are
// those seen at open; otherwise the store fails with an Error naming the file, and every later
// acquire throws it (no garbage weights reach the kernels).
//
// One forward pass at a time per store (the ForwardPass of a Model runs passes sequentially); the
// counters may be read from any thread.
#pragma once
#include <array>
#include <atomic>
#include <condition_variable>
#include <deque>
#include <cstdint>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "model/weights.h"

namespace dsv4::model {

struct ExpertStoreOptions {
  // Bytes of expert cache: < 0 auto (resident when the checkpoint fits in RAM, else a budget from
  // MemAvailable); >= every expert's bytes: resident; else streamed with budget / slot_bytes slots
  // (at least 1).
  int64_t budget_bytes = -1;
  int io_threads = 4;      // pread threads (the I/O queue depth)
  bool direct = true;      // O_DIRECT when the file system accepts it
  bool prefetch = true;    // MoE prefetches the next layer's experts (model/moe.cpp)
  bool force_streaming = false;  // stream even when the budget holds every expert (tests, benches)
  uint64_t read_bytes = 2 << 20;  // bytes per pread (rounded up to 4096): an expert is read in pieces
};

// Cumulative since open (or reset_stats).
struct ExpertStoreStats {
  uint64_t acquires = 0;        // expert uses (one per layer, expert, step)
  uint64_t hits = 0;            // of which found in memory (resident mode: all)
  uint64_t prefetch_reads = 0;  // reads issued by prefetch
  uint64_t prefetch_used = 0;   // ... whose expert was then used before it was evicted
  uint64_t reads = 0;           // expert reads completed
  uint64_t bytes_read = 0;
  uint64_t io_busy_us = 0;      // wall time with at least one read in flight
  uint64_t stall_us = 0;        // time acquire waited for a read
  uint64_t tokens = 0;          // rows run through layer 0
  double hit_rate() const { return acquires ? double(hits) / double(acquires) : 1.0; }
  double read_gbps() const { return io_busy_us ? double(bytes_read) / double(io_busy_us) / 1e3 : 0.0; }
  double bytes_per_token() const { return tokens ? double(bytes_read) / double(tokens) : 0.0; }
};

class ExpertStore {
 public:
  static constexpr double kHalfLifeSteps = 64;

  ExpertStore(const Model& m, const ExpertStoreOptions& opt);
  ~ExpertStore();
  ExpertStore(const ExpertStore&) = delete;
  ExpertStore& operator=(const ExpertStore&) = delete;

  const Model& model() const { return model_; }
  bool streaming() const { return streaming_; }
  bool direct_io() const { return direct_; }
  bool prefetching() const { return streaming_ && opt_.prefetch; }
  int64_t total_expert_bytes() const { return total_bytes_; }  // routed experts of the main layers
  int64_t slot_bytes() const { return slot_bytes_; }
  uint64_t read_bytes() const { return read_bytes_; }
  int64_t n_slots() const { return n_slots_; }
  int64_t cache_bytes() const { return streaming_ ? slot_bytes_ * n_slots_ : total_bytes_; }
  // One line for start-up: the mode, the budget and how it was chosen.
  std::string describe() const;

  // The experts layer `layer` runs this step (distinct, in the order it will acquire them) for a
  // batch of `rows` rows. Queues reads for the missing ones (as many as the cache can pin).
  void begin_layer(int layer, int64_t rows, const int32_t* experts, int n);
  // The weights of expert e of `layer` (waits for its read); valid until release.
  const ExpertWeights& acquire(int layer, int e);
  void release(int layer, int e);
  // A guess of the experts a later layer will use: read them if the cache has room that is worth
  // less than them. Never evicts an expert pinned by the running layer.
  void prefetch(int layer, const int32_t* experts, int n);

  ExpertStoreStats stats() const;
  void reset_stats();
  // Prometheus text of the counters (for /metrics), names prefixed dsv4_expert_.
  std::string metrics_text() const;

  // Streamed mode: the shards' read bandwidth in bytes/s the way the store reads them (whole
  // experts at random, `threads` reads in flight, O_DIRECT when the store uses it) for about
  // `seconds`. Not while a forward pass runs.
  double measure_disk_read_bandwidth(double seconds, int threads) const;

  // Tests: the slot holding (layer, e), or -1.
  int slot_of(int layer, int e) const;

 private:
  struct Extent {
    int file;
    uint64_t off, len;  // aligned file range
    uint64_t need;      // bytes of it that hold tensor data (a read shorter than this is truncated)
    uint64_t dst;       // offset in the slot
  };
  struct Slot {
    int32_t id = -1;         // layer * E + expert
    enum State : uint8_t { empty, loading, ready } state = empty;
    int pins = 0;
    int pending = 0;         // reads of the slot's extents not finished yet
    bool prefetched = false; // loaded by prefetch and not used yet
    bool demand = false;     // read because the running layer needed it (a miss)
    uint64_t protect_until = 0;  // prefetched for the next layer: other prefetches leave it until then
    ExpertWeights ew;        // views into the slot
    uint8_t* mem = nullptr;
  };
  struct File {
    std::string path;
    int fd = -1;             // O_DIRECT (or buffered when refused)
    int fd_buffered = -1;
    std::atomic<bool> direct{false};
    int64_t size = 0;
    int64_t mtime_ns = 0;
  };

  int32_t id(int layer, int e) const { return int32_t(layer) * E_ + e; }
  double score(int32_t id) const;
  void touch(int32_t id);
  // A slot for a new read (lock held): empty, else the lowest score unpinned ready slot; for a
  // prefetch only one worth less than `worth` and not protected. -1 if none.
  int pick_victim(bool for_prefetch, double worth) const;
  bool extend_plan();                    // lock held: pin/queue the next planned expert if there is room
  void queue_read(int slot, int32_t id, bool prefetch);  // lock held
  void io_main();
  uint64_t read_extent(int slot, const Extent& ex);  // I/O thread, no lock: tensor bytes read
  [[noreturn]] void throw_failure();
  void fail(const std::string& msg);        // lock held

  const Model& model_;
  ExpertStoreOptions opt_;
  bool streaming_ = false, direct_ = false;
  std::string why_;
  int L_ = 0, E_ = 0;
  int64_t total_bytes_ = 0, slot_bytes_ = 0, n_slots_ = 0;
  uint64_t read_bytes_ = 0;

  std::deque<File> files_;
  std::vector<Extent> extents_;          // per expert id: extents_[ext_begin_[id] .. ext_begin_[id+1])
  std::vector<uint32_t> ext_begin_;
  std::vector<std::array<uint64_t, 6>> rel_;  // per id: slot offsets of w1, w1.scale, w2, ... w3.scale
  std::vector<int64_t> expert_bytes_;    // per id: tensor bytes
  uint8_t* arena_ = nullptr;
  size_t arena_bytes_ = 0;
  std::vector<Slot> slots_;
  std::vector<int32_t> where_;           // per id: slot or -1
  std::vector<float> score_;             // per id: decayed use count at last_
  std::vector<uint64_t> last_;
  std::vector<uint64_t> planned_;        // per id: step_ of the last plan that named it
  uint64_t step_ = 0;                    // begin_layer calls so far (the decay clock)

  // The running layer's plan (in the order of acquire) and how far reads were queued.
  std::vector<int32_t> plan_;
  int plan_layer_ = -1, plan_queued_ = 0;

  mutable std::mutex mu_;
  std::condition_variable cv_work_, cv_done_;
  struct Job {
    int32_t slot;
    uint32_t extent;  // index into extents_
  };
  std::vector<Job> demand_q_, prefetch_q_;  // rings of reads
  size_t dq_head_ = 0, dq_n_ = 0, pq_head_ = 0, pq_n_ = 0;
  bool stop_ = false;
  bool failed_ = false;
  std::string failure_;
  int in_flight_ = 0;
  uint64_t busy_since_us_ = 0;
  std::vector<std::thread> io_;

  std::atomic<uint64_t> acquires_{0}, hits_{0}, prefetch_reads_{0}, prefetch_used_{0}, reads_{0}, bytes_read_{0},
      io_busy_us_{0}, stall_us_{0}, tokens_{0};
};

// One line: "experts: hit rate .., .. MB read per token, .. GB/s, .. s stalled on I/O".
std::string expert_stats_summary(const ExpertStore& st);

// The budget the auto mode picks for `m` (< 0: resident) and why, for messages and tests.
int64_t auto_expert_budget(int64_t expert_bytes, int64_t other_bytes, std::string* why);

}  // namespace dsv4::model
