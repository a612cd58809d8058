#include "model/expert_store.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>

#include "core/alloc_guard.h"
#include "core/error.h"

namespace dsv4::model {

namespace {

constexpr uint64_t kAlign = 4096;  // O_DIRECT: file offset, length and buffer
constexpr uint64_t kMergeGap = 64 * 1024;  // tensors of one expert closer than this: one read

uint64_t now_us() {
  return uint64_t(std::chrono::duration_cast<std::chrono::microseconds>(
                      std::chrono::steady_clock::now().time_since_epoch())
                      .count());
}

int64_t meminfo_bytes(const char* key) {
  std::ifstream f("/proc/meminfo");
  std::string k;
  int64_t v = 0;
  std::string unit;
  while (f >> k >> v) {
    std::getline(f, unit);
    if (k == key) return v * 1024;
  }
  return -1;
}

std::string mb(double bytes) {
  char b[64];
  const double m = bytes / double(1 << 20);
  std::snprintf(b, sizeof b, m < 10 ? "%.3f MiB" : "%.0f MiB", m);
  return b;
}

int64_t stat_mtime_ns(const struct stat& st) { return int64_t(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec; }

}  // namespace

int64_t auto_expert_budget(int64_t expert_bytes, int64_t other_bytes, std::string* why) {
  const int64_t total = meminfo_bytes("MemTotal:"), avail = meminfo_bytes("MemAvailable:");
  if (total < 0 || expert_bytes + other_bytes <= total * 9 / 10) {
    if (why) *why = "the checkpoint fits in RAM (MemTotal " + mb(double(total)) + ")";
    return -1;
  }
  const int64_t budget = std::max<int64_t>(0, (std::max<int64_t>(avail, 0) * 8) / 10 - other_bytes);
  if (why)
    *why = "the checkpoint (" + mb(double(expert_bytes + other_bytes)) + ") does not fit in RAM (MemTotal " +
           mb(double(total)) + "): 80% of MemAvailable " + mb(double(avail)) + " less the non-expert weights";
  return budget;
}

ExpertStore::ExpertStore(const Model& m, const ExpertStoreOptions& opt) : model_(m), opt_(opt) {
  const Config& c = m.config();
  const ModelWeights& W = m.weights();
  L_ = int(W.layers.size());
  E_ = c.n_routed_experts;
  const int n_ids = L_ * E_;
  const auto& shards = m.checkpoint().files();
  read_bytes_ = std::max<uint64_t>(kAlign, (opt.read_bytes + kAlign - 1) / kAlign * kAlign);
  auto file_of = [&](const uint8_t* p, uint64_t* off) -> int {
    for (size_t f = 0; f < shards.size(); ++f)
      if (shards[f]->file_offset(p, off)) return int(f);
    throw Error("expert store: a routed expert's tensor lies outside every shard of " + m.dir());
  };

  // Where each expert's bytes are: its tensors sorted by file offset, merged into aligned extents.
  ext_begin_.assign(size_t(n_ids) + 1, 0);
  rel_.assign(size_t(n_ids), {});
  expert_bytes_.assign(size_t(n_ids), 0);
  struct Piece {
    int file;
    uint64_t off, len;
    int k;
  };
  for (int l = 0; l < L_; ++l)
    for (int e = 0; e < E_; ++e) {
      const int32_t i = id(l, e);
      const ExpertWeights& ew = W.layers[size_t(l)].ffn.experts[size_t(e)];
      std::vector<Piece> pieces;
      const Linear* lin[3] = {&ew.w1, &ew.w2, &ew.w3};
      for (int j = 0; j < 3; ++j) {
        const TensorView* tv[2] = {&lin[j]->w, &lin[j]->scale};
        for (int s = 0; s < 2; ++s) {
          if (!tv[s]->data || tv[s]->nbytes() == 0) continue;
          const uint8_t* p = static_cast<const uint8_t*>(tv[s]->data);
          uint64_t off = 0;
          const int f = file_of(p, &off);
          pieces.push_back(Piece{f, off, uint64_t(tv[s]->nbytes()), j * 2 + s});
          expert_bytes_[size_t(i)] += int64_t(tv[s]->nbytes());
        }
      }
      total_bytes_ += expert_bytes_[size_t(i)];
      std::sort(pieces.begin(), pieces.end(),
                [](const Piece& a, const Piece& b) { return a.file != b.file ? a.file < b.file : a.off < b.off; });
      ext_begin_[size_t(i)] = uint32_t(extents_.size());
      uint64_t dst = 0;
      for (size_t p = 0; p < pieces.size();) {
        size_t q = p + 1;
        uint64_t end = pieces[p].off + pieces[p].len;
        while (q < pieces.size() && pieces[q].file == pieces[p].file && pieces[q].off <= end + kMergeGap) {
          end = std::max(end, pieces[q].off + pieces[q].len);
          ++q;
        }
        const uint64_t off = pieces[p].off / kAlign * kAlign;
        const uint64_t len = (end + kAlign - 1) / kAlign * kAlign - off, need = end - off;
        for (size_t r = p; r < q; ++r) rel_[size_t(i)][size_t(pieces[r].k)] = dst + (pieces[r].off - off);
        for (uint64_t c = 0; c < len; c += read_bytes_) {  // one read per read_bytes_
          Extent x;
          x.file = pieces[p].file;
          x.off = off + c;
          x.len = std::min<uint64_t>(read_bytes_, len - c);
          x.need = need > c ? std::min<uint64_t>(x.len, need - c) : 0;
          x.dst = dst + c;
          extents_.push_back(x);
        }
        dst += len;
        p = q;
      }
      slot_bytes_ = std::max<int64_t>(slot_bytes_, int64_t(dst));
    }
  ext_begin_[size_t(n_ids)] = uint32_t(extents_.size());

  int64_t budget = opt.budget_bytes;
  std::string why;
  if (budget < 0) {
    int64_t files = 0;
    for (const auto& f : shards) files += int64_t(f->size());
    budget = auto_expert_budget(total_bytes_, files - total_bytes_, &why);
    if (budget < 0) budget = total_bytes_;
  } else {
    why = "--expert-cache-mb";
  }
  why_ = why;
  if (n_ids == 0 || (budget >= total_bytes_ && !opt.force_streaming)) return;  // resident: the mmap'd views as bound

  streaming_ = true;
  n_slots_ = std::max<int64_t>(1, budget / std::max<int64_t>(slot_bytes_, 1));
  n_slots_ = std::min<int64_t>(n_slots_, n_ids);
  for (const auto& sf : shards) {
    File& f = files_.emplace_back();
    f.path = sf->path();
    f.fd_buffered = ::open(f.path.c_str(), O_RDONLY | O_CLOEXEC);
    if (f.fd_buffered < 0) throw Error(f.path + ": cannot open for expert reads: " + std::strerror(errno));
    struct stat st {};
    if (::fstat(f.fd_buffered, &st) != 0) throw Error(f.path + ": cannot stat: " + std::strerror(errno));
    f.size = int64_t(st.st_size);
    f.mtime_ns = stat_mtime_ns(st);
    if (f.size != int64_t(sf->size()))
      throw Error(f.path + ": changed on disk since it was mapped (" + std::to_string(sf->size()) + " -> " +
                  std::to_string(f.size) + " bytes)");
    f.fd = -1;
    if (opt.direct) f.fd = ::open(f.path.c_str(), O_RDONLY | O_CLOEXEC | O_DIRECT);
    f.direct = f.fd >= 0;
    if (f.fd < 0) f.fd = f.fd_buffered;
    // Buffered fallback: tell the kernel not to read ahead around expert reads.
    ::posix_fadvise(f.fd_buffered, 0, 0, POSIX_FADV_RANDOM);
  }
  direct_ = std::all_of(files_.begin(), files_.end(), [](const File& f) { return f.direct.load(); });

  arena_bytes_ = size_t(slot_bytes_) * size_t(n_slots_);
  // Populated now: the cache is resident from the start (what start-up says it takes), and reads
  // into it never stop on first-touch page faults.
  void* a = ::mmap(nullptr, arena_bytes_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
  if (a == MAP_FAILED)
    throw Error("expert store: cannot allocate " + mb(double(arena_bytes_)) + " of expert cache: " +
                std::strerror(errno));
  arena_ = static_cast<uint8_t*>(a);
  slots_.resize(size_t(n_slots_));
  for (int64_t s = 0; s < n_slots_; ++s) slots_[size_t(s)].mem = arena_ + size_t(s) * size_t(slot_bytes_);
  where_.assign(size_t(n_ids), -1);
  score_.assign(size_t(n_ids), 0.f);
  last_.assign(size_t(n_ids), 0);
  planned_.assign(size_t(n_ids), UINT64_MAX);
  plan_.reserve(size_t(E_));
  uint32_t max_reads = 0;
  for (int32_t i = 0; i < n_ids; ++i) max_reads = std::max(max_reads, ext_begin_[size_t(i) + 1] - ext_begin_[size_t(i)]);
  demand_q_.assign(size_t(n_slots_) * max_reads, Job{-1, 0});
  prefetch_q_.assign(size_t(n_slots_) * max_reads, Job{-1, 0});
  const int nt = std::max(1, opt.io_threads);
  for (int t = 0; t < nt; ++t) io_.emplace_back([this] { io_main(); });
}

ExpertStore::~ExpertStore() {
  {
    std::lock_guard<std::mutex> lk(mu_);
    stop_ = true;
  }
  cv_work_.notify_all();
  for (auto& t : io_) t.join();
  for (auto& f : files_) {
    if (f.fd >= 0 && f.fd != f.fd_buffered) ::close(f.fd);
    if (f.fd_buffered >= 0) ::close(f.fd_buffered);
  }
  if (arena_) ::munmap(arena_, arena_bytes_);
}

std::string ExpertStore::describe() const {
  char b[512];
  if (!streaming_)
    std::snprintf(b, sizeof b, "experts: resident (mapped), %s of routed experts (%d layers x %d) (%s)",
                  mb(double(total_bytes_)).c_str(), L_, E_, why_.c_str());
  else
    std::snprintf(b, sizeof b,
                  "experts: streamed from disk, cache %s = %lld slots of %.3f MiB (%s), of %s of routed experts "
                  "(%d layers x %d); %s reads, %d I/O threads, prefetch %s",
                  mb(double(cache_bytes())).c_str(), (long long)n_slots_, double(slot_bytes_) / double(1 << 20), why_.c_str(),
                  mb(double(total_bytes_)).c_str(), L_, E_, direct_ ? "O_DIRECT" : "buffered (O_DIRECT refused)",
                  int(io_.size()), opt_.prefetch ? "on" : "off");
  return b;
}

double ExpertStore::score(int32_t i) const {
  const double age = double(step_ - last_[size_t(i)]);
  return double(score_[size_t(i)]) * std::exp2(-age / (kHalfLifeSteps * std::max(1, L_)));
}

void ExpertStore::touch(int32_t i) {
  score_[size_t(i)] = float(score(i) + 1.0);
  last_[size_t(i)] = step_;
}

int ExpertStore::pick_victim(bool for_prefetch, double worth) const {
  int best = -1;
  double best_score = 0;
  bool best_planned = true;
  for (int s = 0; s < int(n_slots_); ++s) {
    const Slot& x = slots_[size_t(s)];
    if (x.pins > 0 || x.state == Slot::loading) continue;
    if (x.state == Slot::empty) return s;
    const bool planned = planned_[size_t(x.id)] == step_;  // the running layer needs it later
    if (for_prefetch && (planned || x.protect_until >= step_)) continue;
    const double sc = score(x.id);
    if (for_prefetch && sc >= worth) continue;
    if (best < 0 || (best_planned && !planned) || (planned == best_planned && sc < best_score)) {
      best = s;
      best_score = sc;
      best_planned = planned;
    }
  }
  return best;
}

void ExpertStore::queue_read(int s, int32_t i, bool prefetch) {
  Slot& x = slots_[size_t(s)];
  if (x.id >= 0 && where_[size_t(x.id)] == s) where_[size_t(x.id)] = -1;
  x.id = i;
  x.state = Slot::loading;
  x.prefetched = prefetch;
  x.demand = !prefetch;
  x.protect_until = prefetch ? step_ + 1 : 0;
  where_[size_t(i)] = s;
  // The slot's weights: the bound ones with every view moved into the slot.
  const int l = i / E_, e = i % E_;
  x.ew = model_.weights().layers[size_t(l)].ffn.experts[size_t(e)];
  Linear* lin[3] = {&x.ew.w1, &x.ew.w2, &x.ew.w3};
  for (int j = 0; j < 3; ++j) {
    if (lin[j]->w.data) lin[j]->w.data = x.mem + rel_[size_t(i)][size_t(2 * j)];
    if (lin[j]->scale.data && lin[j]->scale.nbytes()) lin[j]->scale.data = x.mem + rel_[size_t(i)][size_t(2 * j + 1)];
  }
  x.pending = int(ext_begin_[size_t(i) + 1] - ext_begin_[size_t(i)]);
  for (uint32_t k = ext_begin_[size_t(i)]; k < ext_begin_[size_t(i) + 1]; ++k) {
    if (prefetch) {
      prefetch_q_[(pq_head_ + pq_n_) % prefetch_q_.size()] = Job{int32_t(s), k};
      ++pq_n_;
    } else {
      demand_q_[(dq_head_ + dq_n_) % demand_q_.size()] = Job{int32_t(s), k};
      ++dq_n_;
    }
  }
  if (prefetch) prefetch_reads_.fetch_add(1, std::memory_order_relaxed);
  if (x.pending == 0) x.state = Slot::ready;
  cv_work_.notify_all();
}

bool ExpertStore::extend_plan() {
  const int32_t i = id(plan_layer_, plan_[size_t(plan_queued_)]);
  int s = where_[size_t(i)];
  if (s < 0) {
    s = pick_victim(false, 0);
    if (s < 0) return false;
    queue_read(s, i, false);
  }
  ++slots_[size_t(s)].pins;
  ++plan_queued_;
  return true;
}

void ExpertStore::begin_layer(int layer, int64_t rows, const int32_t* experts, int n) {
  if (layer == 0) tokens_.fetch_add(uint64_t(rows), std::memory_order_relaxed);
  acquires_.fetch_add(uint64_t(n), std::memory_order_relaxed);
  if (!streaming_) {
    hits_.fetch_add(uint64_t(n), std::memory_order_relaxed);
    return;
  }
  std::unique_lock<std::mutex> lk(mu_);
  if (failed_) throw_failure();
  // Unpin what an interrupted plan (an exception mid-layer) left pinned.
  for (int k = 0; k < plan_queued_; ++k) {
    const int s = where_[size_t(id(plan_layer_, plan_[size_t(k)]))];
    if (s >= 0 && slots_[size_t(s)].pins > 0) --slots_[size_t(s)].pins;
  }
  ++step_;
  plan_.assign(experts, experts + n);  // capacity E reserved
  plan_layer_ = layer;
  plan_queued_ = 0;
  for (int k = 0; k < n; ++k) planned_[size_t(id(layer, experts[k]))] = step_;
  while (plan_queued_ < n && extend_plan()) {
  }
}

const ExpertWeights& ExpertStore::acquire(int layer, int e) {
  if (!streaming_) return model_.weights().layers[size_t(layer)].ffn.experts[size_t(e)];
  std::unique_lock<std::mutex> lk(mu_);
  if (failed_) throw_failure();
  DSV4_CHECK(layer == plan_layer_, "expert store: acquire outside the running layer's plan");
  // The planned position of e: acquisitions follow the plan, so it is at or after the first pinned.
  int k = 0;
  while (k < int(plan_.size()) && plan_[size_t(k)] != e) ++k;
  DSV4_CHECK(k < int(plan_.size()), "expert store: acquire of an expert the layer did not plan");
  uint64_t t0 = 0;
  while (plan_queued_ <= k) {
    if (extend_plan()) continue;
    if (!t0) t0 = now_us();
    cv_done_.wait(lk);  // a read finishes and frees a slot
    if (failed_) throw_failure();
  }
  const int32_t i = id(layer, e);
  const int s = where_[size_t(i)];
  Slot& x = slots_[size_t(s)];
  if (!x.demand) hits_.fetch_add(1, std::memory_order_relaxed);
  if (x.prefetched) {
    prefetch_used_.fetch_add(1, std::memory_order_relaxed);
    x.prefetched = false;
  }
  while (x.state != Slot::ready) {
    if (!t0) t0 = now_us();
    cv_done_.wait(lk);
    if (failed_) throw_failure();
  }
  if (failed_) throw_failure();  // a piece of this expert may have failed after the others
  if (t0) stall_us_.fetch_add(now_us() - t0, std::memory_order_relaxed);
  touch(i);
  return x.ew;
}

void ExpertStore::release(int layer, int e) {
  if (!streaming_) return;
  std::lock_guard<std::mutex> lk(mu_);
  const int s = where_[size_t(id(layer, e))];
  if (s < 0) return;
  Slot& x = slots_[size_t(s)];
  if (x.pins > 0) --x.pins;
  x.demand = false;
  // Done with e: keep the window of queued reads full.
  if (!failed_)
    while (plan_queued_ < int(plan_.size()) && extend_plan()) {
    }
}

void ExpertStore::prefetch(int layer, const int32_t* experts, int n) {
  if (!streaming_ || layer < 0 || layer >= L_) return;
  std::lock_guard<std::mutex> lk(mu_);
  if (failed_) return;
  for (int k = 0; k < n; ++k) {
    const int32_t i = id(layer, experts[k]);
    const int s = where_[size_t(i)];
    if (s >= 0) {
      slots_[size_t(s)].protect_until = std::max(slots_[size_t(s)].protect_until, step_ + 1);
      continue;
    }
    const int v = pick_victim(true, score(i) + 1.0);
    if (v < 0) continue;
    queue_read(v, i, true);
  }
}

void ExpertStore::io_main() {
  for (;;) {
    std::unique_lock<std::mutex> lk(mu_);
    cv_work_.wait(lk, [&] { return stop_ || dq_n_ > 0 || pq_n_ > 0; });
    if (stop_) return;
    Job j;
    if (dq_n_ > 0) {
      j = demand_q_[dq_head_];
      dq_head_ = (dq_head_ + 1) % demand_q_.size();
      --dq_n_;
    } else {
      j = prefetch_q_[pq_head_];
      pq_head_ = (pq_head_ + 1) % prefetch_q_.size();
      --pq_n_;
    }
    if (in_flight_++ == 0) busy_since_us_ = now_us();
    lk.unlock();
    std::string err;
    uint64_t got = 0;
    try {
      got = read_extent(j.slot, extents_[j.extent]);
    } catch (const std::exception& ex) {
      err = ex.what();
    }
    lk.lock();
    if (--in_flight_ == 0) io_busy_us_.fetch_add(now_us() - busy_since_us_, std::memory_order_relaxed);
    bytes_read_.fetch_add(got, std::memory_order_relaxed);
    Slot& x = slots_[size_t(j.slot)];
    if (!err.empty()) fail(err);
    if (--x.pending == 0) {
      // A failed store stays failed: acquire throws before it looks at a slot's bytes.
      x.state = Slot::ready;
      reads_.fetch_add(1, std::memory_order_relaxed);
      cv_done_.notify_all();
    } else if (!err.empty()) {
      cv_done_.notify_all();
    }
  }
}

uint64_t ExpertStore::read_extent(int s, const Extent& ex) {
  uint8_t* mem = slots_[size_t(s)].mem;
  {
    File& f = files_[size_t(ex.file)];
    uint64_t got = 0;
    while (got < ex.len) {
      const bool direct = f.direct.load(std::memory_order_relaxed);
      const ssize_t r = ::pread(direct ? f.fd : f.fd_buffered, mem + ex.dst + got, ex.len - got, off_t(ex.off + got));
      if (r < 0) {
        if (errno == EINTR) continue;
        if (errno == EINVAL && direct) {  // the file system refuses O_DIRECT here: buffered from now on
          f.direct.store(false);
          continue;
        }
        throw Error(f.path + ": read of " + std::to_string(ex.len) + " bytes at offset " + std::to_string(ex.off) +
                    " failed: " + std::strerror(errno));
      }
      if (r == 0) break;
      got += uint64_t(r);  // a short read before EOF: go on; at EOF the next pread returns 0
    }
    if (got < ex.need)
      throw Error(f.path + ": truncated while in use: an expert's bytes end at offset " +
                  std::to_string(ex.off + ex.need) + " but the file ends at " + std::to_string(ex.off + got));
    struct stat st {};
    if (::fstat(f.fd_buffered, &st) != 0) throw Error(f.path + ": cannot stat: " + std::strerror(errno));
    if (int64_t(st.st_size) != f.size || stat_mtime_ns(st) != f.mtime_ns)
      throw Error(f.path + ": the checkpoint file changed on disk while in use (size " + std::to_string(f.size) +
                  " -> " + std::to_string(int64_t(st.st_size)) +
                  (stat_mtime_ns(st) != f.mtime_ns ? ", modified" : "") + "); restart dsv4 to load it again");
  }
  return ex.need;
}

double ExpertStore::measure_disk_read_bandwidth(double seconds, int threads) const {
  if (!streaming_) return 0;
  // The store's pattern: whole experts in a random order, their pieces taken in turn by the threads.
  std::vector<uint32_t> order;
  uint64_t x = 0x9e3779b97f4a7c15ull;
  for (int n = 0; n < 4096; ++n) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    const int32_t i = int32_t(x % uint64_t(int64_t(L_) * E_));
    for (uint32_t k = ext_begin_[size_t(i)]; k < ext_begin_[size_t(i) + 1]; ++k) order.push_back(k);
  }
  std::atomic<uint64_t> bytes{0}, next{0};
  const uint64_t t0 = now_us();
  std::vector<std::thread> ts;
  std::string err;
  std::mutex err_mu;
  for (int t = 0; t < std::max(1, threads); ++t)
    ts.emplace_back([&] {
      void* buf = std::aligned_alloc(kAlign, size_t(read_bytes_));
      while (double(now_us() - t0) < seconds * 1e6) {
        const Extent& ex = extents_[order[next.fetch_add(1) % order.size()]];
        const File& f = files_[size_t(ex.file)];
        const ssize_t r = ::pread(f.direct ? f.fd : f.fd_buffered, buf, ex.len, off_t(ex.off));
        if (r < 0) {
          std::lock_guard<std::mutex> lk(err_mu);
          err = f.path + ": read failed: " + std::strerror(errno);
          break;
        }
        bytes += uint64_t(r);
      }
      std::free(buf);
    });
  for (auto& t : ts) t.join();
  if (!err.empty()) throw Error(err);
  return double(bytes.load()) / (double(now_us() - t0) / 1e6);
}

void ExpertStore::fail(const std::string& msg) {
  if (!failed_) failure_ = msg;
  failed_ = true;
}

void ExpertStore::throw_failure() {
  AllowAllocScope a;  // the message is built inside a decode step
  throw Error("expert store: " + failure_);
}

int ExpertStore::slot_of(int layer, int e) const {
  if (!streaming_) return -1;
  std::lock_guard<std::mutex> lk(mu_);
  return where_[size_t(id(layer, e))];
}

ExpertStoreStats ExpertStore::stats() const {
  ExpertStoreStats s;
  s.acquires = acquires_.load();
  s.hits = hits_.load();
  s.prefetch_reads = prefetch_reads_.load();
  s.prefetch_used = prefetch_used_.load();
  s.reads = reads_.load();
  s.bytes_read = bytes_read_.load();
  s.io_busy_us = io_busy_us_.load();
  s.stall_us = stall_us_.load();
  s.tokens = tokens_.load();
  return s;
}

void ExpertStore::reset_stats() {
  for (auto* a : {&acquires_, &hits_, &prefetch_reads_, &prefetch_used_, &reads_, &bytes_read_, &io_busy_us_,
                  &stall_us_, &tokens_})
    a->store(0);
}

std::string expert_stats_summary(const ExpertStore& st) {
  const ExpertStoreStats s = st.stats();
  char b[320];
  if (!st.streaming()) {
    std::snprintf(b, sizeof b, "experts: resident (mapped), %llu expert uses, nothing read", (unsigned long long)s.acquires);
    return b;
  }
  std::snprintf(b, sizeof b,
                "experts: streamed, hit rate %.1f%% of %llu uses, %.1f MiB read per token (%llu reads, %llu by prefetch, "
                "%llu prefetches used), read %.2f GB/s, %.3f s stalled on I/O",
                100.0 * s.hit_rate(), (unsigned long long)s.acquires, s.bytes_per_token() / double(1 << 20),
                (unsigned long long)s.reads, (unsigned long long)s.prefetch_reads, (unsigned long long)s.prefetch_used,
                s.read_gbps(), double(s.stall_us) / 1e6);
  return b;
}

std::string ExpertStore::metrics_text() const {
  const ExpertStoreStats s = stats();
  std::ostringstream o;
  auto metric = [&](const char* name, const char* type, const char* help, double v) {
    o << "# HELP " << name << ' ' << help << "\n# TYPE " << name << ' ' << type << '\n' << name << ' ' << v << '\n';
  };
  metric("dsv4_expert_cache_bytes", "gauge", "bytes of routed-expert cache (resident mode: every expert)",
         double(cache_bytes()));
  metric("dsv4_expert_streaming", "gauge", "1 when routed experts are streamed from disk", streaming_ ? 1.0 : 0.0);
  metric("dsv4_expert_uses_total", "counter", "routed-expert uses (layer, expert, step)", double(s.acquires));
  metric("dsv4_expert_hits_total", "counter", "expert uses found in the cache", double(s.hits));
  metric("dsv4_expert_hit_ratio", "gauge", "hits / uses since start", s.hit_rate());
  metric("dsv4_expert_read_bytes_total", "counter", "expert bytes read from disk", double(s.bytes_read));
  metric("dsv4_expert_read_bytes_per_token", "gauge", "expert bytes read per token since start", s.bytes_per_token());
  metric("dsv4_expert_read_gigabytes_per_second", "gauge", "expert bytes read / time with reads in flight",
         s.read_gbps());
  metric("dsv4_expert_io_stall_seconds_total", "counter", "time the forward pass waited for expert reads",
         double(s.stall_us) / 1e6);
  metric("dsv4_expert_prefetch_reads_total", "counter", "expert reads issued by prefetch", double(s.prefetch_reads));
  metric("dsv4_expert_prefetch_used_total", "counter", "prefetched experts used", double(s.prefetch_used));
  return o.str();
}

}  // namespace dsv4::model
