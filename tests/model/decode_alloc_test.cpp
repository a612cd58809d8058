// Issue 11: a decode step of warm sequences allocates nothing. Two sequences are prefilled past
// 4 x top-k (so the CSA indexer scores and selects) and warmed by a few decode steps; then 40
// more decode steps of the pair run under the allocation guard (core/alloc_guard.h), on a 2-thread
// CPU backend, crossing compressor windows (new entries and index keys) and an HCA window. Any
// heap allocation inside a step aborts the process, failing the test.
#include <gtest/gtest.h>

#include <span>
#include <vector>

#include "core/alloc_guard.h"
#include "kernels/cpu/cpu_backend.h"
#include "model/forward.h"
#include "tiny_fixture.h"

namespace dsv4 {
namespace {

TEST(DecodeAlloc, WarmDecodeStepsDoNotAllocate) {
  auto m = model::Model::load(test::tiny_checkpoint_dir());
  kernels::CpuBackend be(2);
  for (auto num : {model::Numerics::reference, model::Numerics::f32}) {
    model::ForwardPass fp(*m, num, &be);
    auto a = fp.new_state(), b = fp.new_state();
    const int prompt = 4 * m->config().index_topk + 100;
    std::vector<int32_t> ids(static_cast<size_t>(prompt + 64));
    for (size_t i = 0; i < ids.size(); ++i) ids[i] = int32_t((i * 7919 + 13) % 120000);
    std::vector<float> logits;
    model::SeqChunk pa{a.get(), std::span<const int32_t>(ids.data(), size_t(prompt)), false};
    model::SeqChunk pb{b.get(), std::span<const int32_t>(ids.data() + 3, size_t(prompt - 40)), false};
    fp.forward(std::span<model::SeqChunk>(&pa, 1), logits);
    fp.forward(std::span<model::SeqChunk>(&pb, 1), logits);
    std::vector<model::SeqChunk> step(2);
    int64_t guarded = 0;
    for (int t = 0; t < 44; ++t) {
      step[0] = {a.get(), std::span<const int32_t>(&ids[size_t(prompt + t)], 1), false};
      step[1] = {b.get(), std::span<const int32_t>(&ids[size_t(t)], 1), false};
      set_alloc_guard_enabled(t >= 4);  // 4 warm-up steps, then guarded
      fp.forward(std::span<model::SeqChunk>(step), logits);
      guarded += t >= 4;
    }
    set_alloc_guard_enabled(false);
    EXPECT_EQ(guarded, 40);
    EXPECT_EQ(logits.size(), size_t(2 * m->config().vocab_size));
    EXPECT_EQ(a->n_past(), prompt + 44);
  }
}

// `dsv4 run` / the scheduler: a short prompt, then every decode step guarded from the first one,
// while the context grows past 4 x top-k (the indexer starts scoring in a decode step, and the
// kernels' and scratch buffers meet their first decode sizes there). Growth that scales with the
// context goes through the guard's growth scope (resize_with_context); anything else aborts.
TEST(DecodeAlloc, DecodeFromAShortPromptDoesNotAllocate) {
  auto m = model::Model::load(test::tiny_checkpoint_dir());
  kernels::CpuBackend be(2);
  model::ForwardPass fp(*m, model::Numerics::f32, &be);
  auto a = fp.new_state();
  const int steps = int(4 * m->config().index_topk + 40);
  std::vector<int32_t> ids(static_cast<size_t>(steps + 2));
  for (size_t i = 0; i < ids.size(); ++i) ids[i] = int32_t((i * 7919 + 13) % 120000);
  std::vector<float> logits;
  model::SeqChunk p{a.get(), std::span<const int32_t>(ids.data(), 2), false};
  fp.forward(std::span<model::SeqChunk>(&p, 1), logits);
  set_alloc_guard_enabled(true);
  for (int t = 0; t < steps; ++t) {
    model::SeqChunk s{a.get(), std::span<const int32_t>(&ids[size_t(2 + t)], 1), false};
    fp.forward(std::span<model::SeqChunk>(&s, 1), logits);
  }
  set_alloc_guard_enabled(false);
  EXPECT_EQ(a->n_past(), steps + 2);
  EXPECT_GT(a->n_past() / 4, m->config().index_topk) << "the indexer scored in the guarded steps";
}

}  // namespace
}  // namespace dsv4
