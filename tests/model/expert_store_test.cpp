// Issue 14: routed experts streamed from disk under a budget (model/expert_store.h). The logits at
// any budget (1 slot, 2 slots, most experts, with and without prefetch) are bit-identical to the
// all-resident run, for batched prefill, two sequences decoding together and single decode steps,
// in both numerics; eviction follows decayed use counts (not recency); a batch step reads each
// expert it needs once; a shard truncated or modified while in use fails with a clear error; a
// streamed decode step allocates nothing.
#include <gtest/gtest.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <memory>
#include <set>
#include <span>
#include <vector>

#include "core/alloc_guard.h"
#include "core/error.h"
#include "kernels/cpu/cpu_backend.h"
#include "model/expert_store.h"
#include "model/forward.h"
#include "tiny_fixture.h"

namespace dsv4 {
namespace {

namespace fs = std::filesystem;

std::unique_ptr<model::Model> load(const std::string& dir, int64_t budget, bool prefetch = true,
                                   uint64_t read_bytes = 2 << 20) {
  model::ModelLoadOptions o;
  o.expert_read_bytes = read_bytes;
  o.expert_force_streaming = budget >= 0;
  o.expert_cache_bytes = budget;
  o.expert_prefetch = prefetch;
  o.expert_io_threads = 3;
  return model::Model::load(dir, o);
}

// Prefill of two sequences in one batch (all logits), then decode steps of both together, then of
// the first alone.
std::vector<float> run(const model::Model& m, model::Numerics num, kernels::Backend& be,
                       std::vector<std::vector<int32_t>>* experts = nullptr) {
  model::ForwardPass fp(m, num, &be);
  auto a = fp.new_state(), b = fp.new_state();
  std::vector<int32_t> ids(80);
  for (size_t i = 0; i < ids.size(); ++i) ids[i] = int32_t((i * 7919 + 13) % 120000);
  std::vector<float> all, logits;
  std::vector<model::SeqChunk> two{{a.get(), std::span<const int32_t>(ids.data(), 30), true},
                                   {b.get(), std::span<const int32_t>(ids.data() + 30, 20), true}};
  fp.debug_experts = experts;
  fp.forward(std::span<model::SeqChunk>(two), logits);
  fp.debug_experts = nullptr;
  all.insert(all.end(), logits.begin(), logits.end());
  for (int t = 0; t < 6; ++t) {
    two[0] = {a.get(), std::span<const int32_t>(&ids[size_t(50 + t)], 1), false};
    two[1] = {b.get(), std::span<const int32_t>(&ids[size_t(60 + t)], 1), false};
    fp.forward(std::span<model::SeqChunk>(two), logits);
    all.insert(all.end(), logits.begin(), logits.end());
  }
  for (int t = 0; t < 6; ++t) {
    model::SeqChunk ch{a.get(), std::span<const int32_t>(&ids[size_t(70 + t)], 1), false};
    fp.forward(std::span<model::SeqChunk>(&ch, 1), logits);
    all.insert(all.end(), logits.begin(), logits.end());
  }
  return all;
}

size_t n_diff(const std::vector<float>& a, const std::vector<float>& b) {
  if (a.size() != b.size()) return std::max(a.size(), b.size());
  size_t d = 0;
  for (size_t i = 0; i < a.size(); ++i) d += std::memcmp(&a[i], &b[i], 4) != 0;
  return d;
}

TEST(ExpertStore, ResidentByDefaultWhenTheCheckpointFits) {
  auto m = model::Model::load(test::tiny_checkpoint_dir());
  const model::ExpertStore& st = m->expert_store();
  EXPECT_FALSE(st.streaming());
  const model::Config& c = m->config();
  EXPECT_GT(st.total_expert_bytes(), 0);
  // FP4 experts: w1, w3 [I, D], w2 [D, I] packed two per byte, plus 1x32 e8m0 scales.
  const int64_t per = 3 * c.moe_inter_dim * c.dim / 2 + 3 * c.moe_inter_dim * c.dim / 32;
  EXPECT_EQ(st.total_expert_bytes(), per * c.n_routed_experts * c.n_layers);
  EXPECT_NE(st.describe().find("resident"), std::string::npos);
}

TEST(ExpertStore, AutoBudgetStreamsWhatDoesNotFitInRam) {
  std::string why;
  EXPECT_LT(model::auto_expert_budget(int64_t(1) << 20, int64_t(1) << 20, &why), 0);  // 2 MiB fit: resident
  EXPECT_NE(why.find("fits in RAM"), std::string::npos) << why;
  const int64_t pb = int64_t(1) << 50;  // a petabyte of experts does not
  const int64_t b = model::auto_expert_budget(pb, int64_t(1) << 20, &why);
  EXPECT_GE(b, 0);
  EXPECT_LT(b, pb);
  EXPECT_NE(why.find("does not fit"), std::string::npos) << why;
}

TEST(ExpertStore, LogitsAreBitIdenticalAtEveryBudget) {
  const std::string dir = test::tiny_checkpoint_dir();
  auto resident = model::Model::load(dir);
  ASSERT_FALSE(resident->expert_store().streaming());
  const int64_t slot = load(dir, 0)->expert_store().slot_bytes();
  const int64_t all_slots = int64_t(resident->config().n_layers) * resident->config().n_routed_experts;
  kernels::CpuBackend be(2);
  for (auto num : {model::Numerics::reference, model::Numerics::f32}) {
    SCOPED_TRACE(model::numerics_name(num));
    const std::vector<float> want = run(*resident, num, be);
    ASSERT_FALSE(want.empty());
    struct Case {
      int64_t slots;
      bool prefetch;
      uint64_t read_bytes = 2 << 20;
    };
    // read_bytes 4096: every expert is read in several pieces, on several I/O threads.
    for (Case k : {Case{1, true}, Case{2, false}, Case{2, true, 4096}, Case{5, true}, Case{all_slots / 3, true},
                   Case{all_slots - 1, true, 4096}}) {
      SCOPED_TRACE("slots " + std::to_string(k.slots) + (k.prefetch ? " prefetch" : " no prefetch") + ", reads of " +
                   std::to_string(k.read_bytes));
      auto m = load(dir, k.slots * slot, k.prefetch, k.read_bytes);
      const model::ExpertStore& st = m->expert_store();
      ASSERT_TRUE(st.streaming());
      EXPECT_EQ(st.cache_bytes(), k.slots * slot);
      EXPECT_EQ(st.n_slots(), k.slots);
      EXPECT_EQ(st.stats().bytes_read, 0u) << "opening reads no expert bytes";
      const std::vector<float> got = run(*m, num, be);
      EXPECT_EQ(n_diff(want, got), 0u);
      const model::ExpertStoreStats s = st.stats();
      EXPECT_GT(s.reads, 0u);
      EXPECT_GT(s.bytes_read, 0u);
      EXPECT_EQ(s.tokens, 50u + 12u + 6u);
      if (k.slots <= 2 && !k.prefetch) EXPECT_LT(s.hit_rate(), 0.5) << "a cache of " << k.slots << " slots evicts nearly every use";
      if (!k.prefetch) EXPECT_EQ(s.prefetch_reads, 0u);
    }
  }
}

// Every (layer, expert) a cold batch step needs is read exactly once when the cache holds them.
TEST(ExpertStore, ABatchStepReadsEachNeededExpertOnce) {
  const std::string dir = test::tiny_checkpoint_dir();
  auto probe = load(dir, 0);
  const model::Config& c = probe->config();
  const int64_t all_slots = int64_t(c.n_layers) * c.n_routed_experts;
  auto m = load(dir, all_slots * probe->expert_store().slot_bytes(), /*prefetch=*/false);
  kernels::CpuBackend be(1);
  model::ForwardPass fp(*m, model::Numerics::f32, &be);
  auto a = fp.new_state(), b = fp.new_state();
  std::vector<int32_t> ids(40);
  for (size_t i = 0; i < ids.size(); ++i) ids[i] = int32_t((i * 104729 + 7) % 120000);
  std::vector<model::SeqChunk> two{{a.get(), std::span<const int32_t>(ids.data(), 25), false},
                                   {b.get(), std::span<const int32_t>(ids.data() + 25, 15), false}};
  std::vector<std::vector<int32_t>> experts;
  fp.debug_experts = &experts;
  std::vector<float> logits;
  fp.forward(std::span<model::SeqChunk>(two), logits);
  ASSERT_EQ(int(experts.size()), c.n_layers);
  size_t distinct = 0, uses = 0;
  for (const auto& l : experts) {
    distinct += std::set<int32_t>(l.begin(), l.end()).size();
    uses += l.size();
  }
  ASSERT_GT(uses, distinct);  // experts are shared by rows: reading per row would read more
  const model::ExpertStoreStats s = m->expert_store().stats();
  EXPECT_EQ(s.reads, distinct);
  EXPECT_EQ(s.acquires, distinct);
  EXPECT_EQ(s.hits, 0u);
  EXPECT_EQ(s.tokens, 40u);
  // The same step again: everything is cached now.
  auto a2 = fp.new_state(), b2 = fp.new_state();
  two[0].state = a2.get();
  two[1].state = b2.get();
  fp.forward(std::span<model::SeqChunk>(two), logits);
  EXPECT_EQ(m->expert_store().stats().reads, distinct);
  EXPECT_EQ(m->expert_store().stats().hits, distinct);
}

// Hash layers' experts follow from the token ids: with prefetch, a decode step's hash-layer experts
// (layers 1..) were read before their layer started, and some prefetches are used.
TEST(ExpertStore, PrefetchReadsAheadAndWrongGuessesOnlyCostReads) {
  const std::string dir = test::tiny_checkpoint_dir();
  auto probe = load(dir, 0);
  const model::Config& c = probe->config();
  const int64_t all_slots = int64_t(c.n_layers) * c.n_routed_experts;
  auto m = load(dir, (all_slots / 2) * probe->expert_store().slot_bytes(), true);
  kernels::CpuBackend be(1);
  const std::vector<float> got = run(*m, model::Numerics::f32, be);
  const model::ExpertStoreStats s = m->expert_store().stats();
  EXPECT_GT(s.prefetch_reads, 0u);
  EXPECT_GT(s.prefetch_used, 0u);
  EXPECT_LE(s.prefetch_used, s.prefetch_reads);
  // Guesses of experts that no layer uses: read, never used, and the logits do not change.
  auto m2 = load(dir, (all_slots / 2) * probe->expert_store().slot_bytes(), true);
  model::ExpertStore& st2 = m2->expert_store();
  std::vector<int32_t> every(size_t(c.n_routed_experts));
  for (int e = 0; e < c.n_routed_experts; ++e) every[size_t(e)] = e;
  st2.begin_layer(0, 1, nullptr, 0);
  st2.prefetch(1, every.data(), int(every.size()));
  EXPECT_EQ(st2.stats().prefetch_reads, uint64_t(c.n_routed_experts));
  EXPECT_EQ(n_diff(run(*m2, model::Numerics::f32, be), got), 0u);
  EXPECT_EQ(n_diff(run(*load(dir, -1), model::Numerics::f32, be), got), 0u);
}

// Eviction by decayed use count: an expert used often survives newer experts used once, which
// plain LRU would evict first.
TEST(ExpertStore, EvictionKeepsFrequentlyUsedExperts) {
  const std::string dir = test::tiny_checkpoint_dir();
  auto probe = load(dir, 0);
  auto m = load(dir, 2 * probe->expert_store().slot_bytes(), false);
  model::ExpertStore& st = m->expert_store();
  ASSERT_EQ(st.n_slots(), 2);
  auto use = [&](int e) {
    const int32_t one[1] = {e};
    st.begin_layer(0, 1, one, 1);
    const model::ExpertWeights& w = st.acquire(0, e);
    EXPECT_NE(w.w1.w.data, nullptr);
    st.release(0, e);
  };
  for (int i = 0; i < 5; ++i) use(1);
  use(2);
  EXPECT_GE(st.slot_of(0, 1), 0);
  EXPECT_GE(st.slot_of(0, 2), 0);
  use(3);  // LRU would evict 1 (used before 2); by use count 2 goes
  EXPECT_GE(st.slot_of(0, 1), 0);
  EXPECT_LT(st.slot_of(0, 2), 0);
  EXPECT_GE(st.slot_of(0, 3), 0);
  EXPECT_EQ(st.stats().reads, 3u);
  EXPECT_EQ(st.stats().hits, 4u);
}

TEST(ExpertStore, StreamedWeightsAreTheCheckpointBytes) {
  const std::string dir = test::tiny_checkpoint_dir();
  auto probe = load(dir, 0);
  ASSERT_GT(probe->expert_store().slot_bytes(), 4096) << "an expert takes several 4096-byte reads";
  auto m = load(dir, 3 * probe->expert_store().slot_bytes(), false, 4096);
  model::ExpertStore& st = m->expert_store();
  const model::Config& c = m->config();
  for (int l = 0; l < c.n_layers; ++l)
    for (int e = 0; e < c.n_routed_experts; ++e) {
      const int32_t one[1] = {e};
      st.begin_layer(l, 1, one, 1);
      const model::ExpertWeights& got = st.acquire(l, e);
      const model::ExpertWeights& want = m->weights().layers[size_t(l)].ffn.experts[size_t(e)];
      for (auto [g, w] : {std::pair{&got.w1, &want.w1}, {&got.w2, &want.w2}, {&got.w3, &want.w3}}) {
        ASSERT_NE(g->w.data, w->w.data);
        ASSERT_EQ(g->w.nbytes(), w->w.nbytes());
        EXPECT_EQ(std::memcmp(g->w.data, w->w.data, size_t(w->w.nbytes())), 0) << l << "/" << e;
        ASSERT_EQ(g->scale.nbytes(), w->scale.nbytes());
        EXPECT_EQ(std::memcmp(g->scale.data, w->scale.data, size_t(w->scale.nbytes())), 0) << l << "/" << e;
        EXPECT_EQ(g->nan_codes, w->nan_codes);
        EXPECT_EQ(g->fmt, w->fmt);
      }
      st.release(l, e);
    }
}

fs::path copy_checkpoint(const std::string& name) {
  const fs::path dst = fs::temp_directory_path() / ("dsv4-expert-store-" + std::to_string(::getpid()) + "-" + name);
  fs::remove_all(dst);
  fs::copy(test::tiny_checkpoint_dir(), dst, fs::copy_options::recursive);
  return dst;
}

// The shard holding layer 0's first routed expert, and that tensor's file offset.
std::pair<std::string, int64_t> first_expert(const model::Model& m) {
  const auto* e = m.checkpoint().find("layers.0.ffn.experts.0.w1.weight");
  for (const auto& f : m.checkpoint().files())
    if (f->path() == e->file) return {e->file, static_cast<const uint8_t*>(e->view.data) - f->base()};
  return {"", -1};
}

// A copy of the tiny checkpoint streamed through a 1-slot store (no prefetch), one step already
// run on it: the setup of the corrupted-shard tests. The copy is removed at the end.
struct StreamedCopy {
  fs::path dir;
  std::unique_ptr<model::Model> probe, m;
  kernels::CpuBackend be{1};
  std::unique_ptr<model::ForwardPass> fp;
  std::unique_ptr<cache::SeqState> st;
  std::vector<int32_t> ids{5, 17, 33};
  std::vector<float> logits;
  StreamedCopy(const std::string& name, uint64_t read_bytes = 2 << 20) : dir(copy_checkpoint(name)) {
    probe = load(dir.string(), 0);
    m = load(dir.string(), 1 * probe->expert_store().slot_bytes(), false, read_bytes);
    fp = std::make_unique<model::ForwardPass>(*m, model::Numerics::f32, &be);
    st = fp->new_state();
    model::SeqChunk ch{st.get(), std::span<const int32_t>(ids.data(), 2), false};
    fp->forward(std::span<model::SeqChunk>(&ch, 1), logits);  // fine before the file changes
  }
  void next() {
    model::SeqChunk ch{st.get(), std::span<const int32_t>(ids.data() + 2, 1), false};
    fp->forward(std::span<model::SeqChunk>(&ch, 1), logits);
  }
  ~StreamedCopy() {
    fp.reset();
    m.reset();
    probe.reset();
    fs::remove_all(dir);
  }
};

TEST(ExpertStore, TruncatedShardIsAClearError) {
  StreamedCopy c("trunc", 4096);
  // Cut the shard inside layer 0's experts: every routed expert of every layer is gone (layer 0's
  // attention and router live before them; the 1 slot holds a layer the step reaches after).
  const auto [path, off] = first_expert(*c.m);
  ASSERT_GT(off, 0);
  ASSERT_EQ(::truncate(path.c_str(), off + 100), 0);
  try {
    c.next();
    ADD_FAILURE() << "no error after the shard was truncated";
  } catch (const Error& e) {
    const std::string w = e.what();
    EXPECT_NE(w.find(path), std::string::npos) << w;
    EXPECT_TRUE(w.find("truncated") != std::string::npos || w.find("changed on disk") != std::string::npos) << w;
  }
  // And it stays failed (no weights of a half-read expert are used).
  EXPECT_THROW(c.next(), Error);
}

TEST(ExpertStore, ModifiedShardIsAClearError) {
  StreamedCopy c("mtime");
  const auto [path, off] = first_expert(*c.m);
  // Rewrite a byte of an expert in place (same size, new mtime).
  {
    FILE* f = std::fopen(path.c_str(), "r+b");
    ASSERT_NE(f, nullptr);
    std::fseek(f, long(off), SEEK_SET);
    const int ch = std::fgetc(f);
    std::fseek(f, long(off), SEEK_SET);
    std::fputc(ch ^ 0x11, f);
    std::fclose(f);
    struct timespec ts[2] = {{0, UTIME_NOW}, {1, 0}};  // mtime far in the past: surely different
    ASSERT_EQ(::utimensat(AT_FDCWD, path.c_str(), ts, 0), 0);
  }
  try {
    c.next();
    ADD_FAILURE() << "no error after the shard was modified";
  } catch (const Error& e) {
    const std::string w = e.what();
    EXPECT_NE(w.find(path), std::string::npos) << w;
    EXPECT_NE(w.find("changed on disk"), std::string::npos) << w;
  }
}

TEST(ExpertStore, StreamedDecodeStepsDoNotAllocate) {
  const std::string dir = test::tiny_checkpoint_dir();
  auto probe = load(dir, 0);
  auto m = load(dir, 4 * probe->expert_store().slot_bytes(), true);
  kernels::CpuBackend be(2);
  model::ForwardPass fp(*m, model::Numerics::reference, &be);
  auto a = fp.new_state(), b = fp.new_state();
  std::vector<int32_t> ids(120);
  for (size_t i = 0; i < ids.size(); ++i) ids[i] = int32_t((i * 7919 + 13) % 120000);
  std::vector<float> logits;
  model::SeqChunk pa{a.get(), std::span<const int32_t>(ids.data(), 40), false};
  model::SeqChunk pb{b.get(), std::span<const int32_t>(ids.data() + 40, 30), false};
  fp.forward(std::span<model::SeqChunk>(&pa, 1), logits);
  fp.forward(std::span<model::SeqChunk>(&pb, 1), logits);
  std::vector<model::SeqChunk> step(2);
  const uint64_t reads0 = m->expert_store().stats().reads;
  for (int t = 0; t < 24; ++t) {
    step[0] = {a.get(), std::span<const int32_t>(&ids[size_t(70 + t)], 1), false};
    step[1] = {b.get(), std::span<const int32_t>(&ids[size_t(t)], 1), false};
    set_alloc_guard_enabled(t >= 4);
    fp.forward(std::span<model::SeqChunk>(step), logits);
  }
  set_alloc_guard_enabled(false);
  EXPECT_GT(m->expert_store().stats().reads, reads0) << "the guarded steps streamed experts";
}

}  // namespace
}  // namespace dsv4
