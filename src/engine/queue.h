// dsv4 engine: the only place with locks (DESIGN.md). Front ends push jobs into a bounded
// RequestQueue and read their job's EventChannel (waiting on it, or woken by its notify hook:
// the HTTP server's I/O thread); the scheduler thread pops jobs and pushes events. A job's cancel flag is an atomic the front end sets when its client goes away; the
// scheduler frees the sequence before its next step. (Stop strings are the engine's own.)
#pragma once
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "engine/request.h"

namespace dsv4::engine {

// Scheduler -> one front-end thread.
class EventChannel {
 public:
  // Called (on the pushing thread, after the event is queued) for every push: an event-driven
  // front end posts a wake-up to its own loop here. Set before the job is submitted.
  void set_notify(std::function<void()> fn) { notify_ = std::move(fn); }
  void push(TokenEvent e);
  // Moves every pending event into *out (appends). Waits up to `timeout` when none is pending.
  // Returns false on timeout (nothing appended).
  bool wait_pop(std::vector<TokenEvent>* out, std::chrono::milliseconds timeout);

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<TokenEvent> events_;
  std::function<void()> notify_;
};

struct Job {
  GenRequest req;
  EventChannel events;
  std::atomic<bool> cancelled{false};
  void cancel() { cancelled.store(true, std::memory_order_relaxed); }
  bool is_cancelled() const { return cancelled.load(std::memory_order_relaxed); }
};

// Front ends -> the scheduler. Bounded: a full queue is an overload the server answers with 503.
class RequestQueue {
 public:
  explicit RequestQueue(size_t capacity) : capacity_(capacity) {}
  bool try_push(std::shared_ptr<Job> job);  // false: full or closed
  // Moves every queued job into *out. When `wait` > 0 and the queue is empty, waits that long.
  void pop_all(std::vector<std::shared_ptr<Job>>* out, std::chrono::milliseconds wait);
  // Puts jobs the scheduler could not admit yet back at the front, in order.
  void push_front(std::vector<std::shared_ptr<Job>>* jobs);
  size_t depth() const;
  size_t capacity() const { return capacity_; }
  void close();  // wakes the scheduler; later pushes fail
  bool closed() const;

 private:
  size_t capacity_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::shared_ptr<Job>> jobs_;
  bool closed_ = false;
};

// Exact token ids of text runs the model sampled, keyed by their text, shared by every HTTP
// thread. When a client sends an earlier assistant turn back, the prompt renderer asks here
// before re-encoding a plain-text run, so the history is the very tokens the model produced and
// the prefix cache matches past them (BPE of the decoded text often tokenises differently).
// Bounded, least recently used out.
class TokenRunCache {
 public:
  explicit TokenRunCache(size_t max_entries = 4096) : max_entries_(max_entries) {}
  void put(const std::string& text, std::vector<int32_t> ids);
  bool get(std::string_view text, std::vector<int32_t>* ids);
  size_t size() const;

 private:
  struct Run {
    std::string text;
    std::vector<int32_t> ids;
    uint64_t last_used = 0;
  };
  size_t max_entries_;
  mutable std::mutex mu_;
  std::vector<Run> runs_;
  uint64_t clock_ = 0;
};

// Reasoning text of assistant turns that made tool calls, keyed by tool-call id. Clients often
// drop `reasoning_content` / thinking blocks when they send a tool round back; the V4 template
// keeps reasoning of tool-call turns, so the server restores it (the prompt then matches what
// the model produced and the prefix cache holds). Bounded, oldest out.
class ReasoningMemo {
 public:
  explicit ReasoningMemo(size_t max_entries = 4096) : max_entries_(max_entries) {}
  void put(const std::string& tool_call_id, const std::string& reasoning);
  bool get(const std::string& tool_call_id, std::string* reasoning) const;

 private:
  size_t max_entries_;
  mutable std::mutex mu_;
  std::deque<std::pair<std::string, std::string>> items_;
};

}  // namespace dsv4::engine
