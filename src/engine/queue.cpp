#include "engine/queue.h"

#include <algorithm>

namespace dsv4::engine {

void EventChannel::push(TokenEvent e) {
  {
    std::lock_guard<std::mutex> lk(mu_);
    events_.push_back(std::move(e));
  }
  cv_.notify_one();
  if (notify_) notify_();
}

bool EventChannel::wait_pop(std::vector<TokenEvent>* out, std::chrono::milliseconds timeout) {
  std::unique_lock<std::mutex> lk(mu_);
  if (!cv_.wait_for(lk, timeout, [&] { return !events_.empty(); })) return false;
  while (!events_.empty()) {
    out->push_back(std::move(events_.front()));
    events_.pop_front();
  }
  return true;
}

bool RequestQueue::try_push(std::shared_ptr<Job> job) {
  {
    std::lock_guard<std::mutex> lk(mu_);
    if (closed_ || jobs_.size() >= capacity_) return false;
    jobs_.push_back(std::move(job));
  }
  cv_.notify_one();
  return true;
}

void RequestQueue::pop_all(std::vector<std::shared_ptr<Job>>* out, std::chrono::milliseconds wait) {
  std::unique_lock<std::mutex> lk(mu_);
  if (jobs_.empty() && wait.count() > 0) cv_.wait_for(lk, wait, [&] { return !jobs_.empty() || closed_; });
  while (!jobs_.empty()) {
    out->push_back(std::move(jobs_.front()));
    jobs_.pop_front();
  }
}

void RequestQueue::push_front(std::vector<std::shared_ptr<Job>>* jobs) {
  std::lock_guard<std::mutex> lk(mu_);
  for (auto it = jobs->rbegin(); it != jobs->rend(); ++it) jobs_.push_front(std::move(*it));
  jobs->clear();
}

size_t RequestQueue::depth() const {
  std::lock_guard<std::mutex> lk(mu_);
  return jobs_.size();
}

void RequestQueue::close() {
  {
    std::lock_guard<std::mutex> lk(mu_);
    closed_ = true;
  }
  cv_.notify_all();
}

bool RequestQueue::closed() const {
  std::lock_guard<std::mutex> lk(mu_);
  return closed_;
}

void TokenRunCache::put(const std::string& text, std::vector<int32_t> ids) {
  if (text.empty() || ids.empty()) return;
  std::lock_guard<std::mutex> lk(mu_);
  for (auto& r : runs_) {
    if (r.text == text) {
      r.ids = std::move(ids);
      r.last_used = ++clock_;
      return;
    }
  }
  if (runs_.size() >= max_entries_) {
    auto oldest = std::min_element(runs_.begin(), runs_.end(),
                                   [](const Run& a, const Run& b) { return a.last_used < b.last_used; });
    runs_.erase(oldest);
  }
  runs_.push_back({text, std::move(ids), ++clock_});
}

bool TokenRunCache::get(std::string_view text, std::vector<int32_t>* ids) {
  std::lock_guard<std::mutex> lk(mu_);
  for (auto& r : runs_) {
    if (r.text == text) {
      *ids = r.ids;
      r.last_used = ++clock_;
      return true;
    }
  }
  return false;
}

size_t TokenRunCache::size() const {
  std::lock_guard<std::mutex> lk(mu_);
  return runs_.size();
}

void ReasoningMemo::put(const std::string& tool_call_id, const std::string& reasoning) {
  if (tool_call_id.empty() || reasoning.empty()) return;
  std::lock_guard<std::mutex> lk(mu_);
  items_.emplace_back(tool_call_id, reasoning);
  if (items_.size() > max_entries_) items_.pop_front();
}

bool ReasoningMemo::get(const std::string& tool_call_id, std::string* reasoning) const {
  std::lock_guard<std::mutex> lk(mu_);
  for (auto it = items_.rbegin(); it != items_.rend(); ++it) {
    if (it->first == tool_call_id) {
      *reasoning = it->second;
      return true;
    }
  }
  return false;
}

}  // namespace dsv4::engine
