// dsv4 engine: the scheduler (continuous batching). One thread owns every sequence state; each
// step builds ONE forward batch from the decode token of every running sequence plus chunks of
// pending prefills (a per-step token budget, so a long prompt does not stall the others), samples
// per sequence, runs each sampled token through the sequence's OutputStage (detokenise, parse,
// stop strings: engine/output_stage.h), decides the finish reason and streams TokenEvents with
// the typed text to each job's channel. A cancelled job (client gone) is freed before the next
// step. Admission is bounded by `parallel` and by KV memory.
// Prompts are matched against the prefix cache first (engine/prefix_cache.h).
#pragma once
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "engine/constraint.h"
#include "engine/generate.h"
#include "engine/prefix_cache.h"
#include "engine/queue.h"
#include "engine/request.h"
#include "model/forward.h"

namespace dsv4::text {
class Tokenizer;
}

namespace dsv4::engine {

struct SchedulerConfig {
  int parallel = 4;                 // running sequences at most
  int64_t ctx = 4096;               // tokens per sequence (prompt + generated)
  int step_tokens = int(kDefaultPrefillChunk);  // forward rows per step (decode rows first, then prefill chunks)
  size_t queue_capacity = 64;       // requests not running (reserved, queued, waiting) before 503
  size_t kv_budget_bytes = size_t(8) << 30;     // states of running sequences
  size_t cache_budget_bytes = size_t(2) << 30;  // prefix cache
  std::string cache_dir;            // persist prefix-cache entries here ("" = RAM only)
  bool cache_fsync = true;          // fsync each cache file and the directory on commit
};

// Counters for /metrics and logs; written by the scheduler thread, read anywhere.
struct EngineStats {
  std::atomic<uint64_t> requests{0}, finished{0}, cancelled{0}, errors{0};
  std::atomic<uint64_t> prompt_tokens{0}, cached_tokens{0}, generated_tokens{0};
  std::atomic<uint64_t> prefill_tokens{0}, decode_tokens{0};  // rows actually run
  std::atomic<uint64_t> prefill_us{0}, decode_us{0};          // forward time split by rows
  std::atomic<uint64_t> steps{0};
  std::atomic<int64_t> running{0}, waiting{0};
  std::atomic<uint64_t> kv_bytes{0}, cache_bytes{0}, cache_entries{0};
};

// The default context window of `dsv4 serve`: the longest context (a multiple of 1024, at most
// model_max) at which `parallel` sequences, each reserved the way admission reserves a request
// that may fill the context (Scheduler::reservation: cache::state_bytes_at in whole pages, with
// the most snapshots a state holds), fit in kv_budget_bytes together. Never below 1024 (or
// model_max when that is smaller): a budget too small for that still admits one sequence at a
// time (admission always runs one).
int64_t context_for_budget(const cache::StateShape& shape, size_t kv_budget_bytes, int parallel, int64_t model_max);

class Scheduler {
 public:
  Scheduler(model::ForwardPass& fp, const text::Tokenizer& tok, SchedulerConfig cfg);
  ~Scheduler();
  Scheduler(const Scheduler&) = delete;
  Scheduler& operator=(const Scheduler&) = delete;

  void start();
  // Finishes nothing: running and waiting jobs end with FinishReason::cancelled, or with
  // FinishReason::error and `error_message` when one is given (a shutdown past its grace period).
  void stop(const std::string& error_message = "");
  // Shutdown, first half: no request is admitted or accepted any more; every request not running
  // ends with FinishReason::error, `refused` set (the front end answers 503). Running ones go on.
  void drain();
  bool draining() const { return draining_.load(); }

  // Admission: every request that is not running (reserved by a front end that is still
  // preparing it, queued, or waiting for a slot or memory) counts against queue_capacity;
  // stats().waiting is that count. try_reserve takes a place (false: full or draining, the
  // caller answers 503 + Retry-After); a reserved place is used by submit(req, true) or given
  // back with release_reservation().
  bool try_reserve();
  void release_reservation();
  // Enqueues a request (taking a place first unless `reserved`); null when the queue is full or
  // the scheduler drains. `notify` (may be empty) is installed on the job's event channel before
  // the scheduler can see the job.
  std::shared_ptr<Job> submit(GenRequest req, bool reserved = false, std::function<void()> notify = {});

  const EngineStats& stats() const { return stats_; }
  const model::Model& model() const { return fp_.model(); }  // (its expert store's counters: /metrics)
  const SchedulerConfig& config() const { return cfg_; }
  size_t queue_depth() const { return queue_.depth(); }
  // State bytes admission reserves for a request: cache::state_bytes_at at the request's longest
  // length (prompt + max_tokens, within ctx), in whole pages, with the snapshots the state may
  // hold. The running sequences' reservations stay within kv_budget_bytes (one always runs).
  size_t reservation(const GenRequest& req) const;

  // Runs one step on the calling thread (tests drive the scheduler without its thread).
  // Returns false when there was nothing to do.
  bool step_once(std::chrono::milliseconds wait);

 private:
  struct Sequence;
  void run();
  void take_new_jobs(std::chrono::milliseconds wait);
  void drop_cancelled();
  void refuse_waiting();  // drain(): every job not running ends refused
  void admit();
  size_t reservation(const GenRequest& req, const PrefixCache::Match& m) const;
  bool start_sequence(std::shared_ptr<Job> job, const PrefixCache::Match& m);
  void sample_and_emit(Sequence& s, std::span<const float> row);
  void end_event(Sequence& s, FinishReason why, TokenEvent& e);  // fills the final event
  void finish(Sequence& s, std::span<const float> last_row);

  model::ForwardPass& fp_;
  const text::Tokenizer& tok_;
  SchedulerConfig cfg_;
  int32_t vocab_;
  int32_t eos_;
  cache::StateShape shape_;
  std::shared_ptr<const ConstraintVocab> cvocab_;
  RequestQueue queue_;
  EngineStats stats_;
  std::atomic<bool> stop_{false};
  std::atomic<bool> draining_{false};
  std::string stop_error_;  // set before stop_
  std::thread thread_;

  // Owned by the scheduler thread:
  std::vector<std::shared_ptr<Job>> waiting_;
  std::vector<std::unique_ptr<Sequence>> running_;
  PrefixCache prefix_cache_;
  std::vector<float> logits_;
  std::vector<float> masked_;
};

}  // namespace dsv4::engine
