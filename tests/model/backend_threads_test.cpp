// The backend seam (issue 11): the forward pass on CPU backends with 1, 2 and 3 threads gives the
// same logits bit for bit (threads split rows, heads and key groups, never a reduction), for a
// prefill long enough that the CSA indexer scores and selects (more than 4 x top-k tokens), in
// chunks, then decode steps, in both numerics.
#include <gtest/gtest.h>

#include <cstring>
#include <span>
#include <vector>

#include "kernels/cpu/cpu_backend.h"
#include "model/forward.h"
#include "tiny_fixture.h"

namespace dsv4 {
namespace {

std::vector<float> run(const model::Model& m, model::Numerics num, kernels::Backend& be, int prompt, int decode) {
  model::ForwardPass fp(m, num, &be);
  auto st = fp.new_state();
  std::vector<int32_t> ids(static_cast<size_t>(prompt + decode));
  for (size_t i = 0; i < ids.size(); ++i) ids[i] = int32_t((i * 7919 + 13) % 120000);
  std::vector<float> all, logits;
  for (int p = 0; p < prompt; p += 100) {  // chunks of 100, all logits
    const int n = std::min(100, prompt - p);
    model::SeqChunk ch{st.get(), std::span<const int32_t>(ids.data() + p, size_t(n)), true};
    fp.forward(std::span<model::SeqChunk>(&ch, 1), logits);
    all.insert(all.end(), logits.begin(), logits.end());
  }
  for (int t = 0; t < decode; ++t) {
    model::SeqChunk ch{st.get(), std::span<const int32_t>(ids.data() + prompt + t, 1), false};
    fp.forward(std::span<model::SeqChunk>(&ch, 1), logits);
    all.insert(all.end(), logits.begin(), logits.end());
  }
  return all;
}

TEST(BackendThreads, LogitsDoNotDependOnTheThreadCount) {
  auto m = model::Model::load(test::tiny_checkpoint_dir());
  const int prompt = 4 * m->config().index_topk + 150;  // the indexer selects (not all eligible)
  kernels::CpuBackend one(1), two(2), three(3);
  for (auto num : {model::Numerics::reference, model::Numerics::f32}) {
    SCOPED_TRACE(model::numerics_name(num));
    const std::vector<float> a = run(*m, num, one, prompt, 4);
    ASSERT_FALSE(a.empty());
    for (kernels::CpuBackend* be : {&two, &three}) {
      const std::vector<float> b = run(*m, num, *be, prompt, 4);
      ASSERT_EQ(a.size(), b.size());
      size_t diff = 0;
      for (size_t i = 0; i < a.size(); ++i) diff += std::memcmp(&a[i], &b[i], 4) != 0;
      EXPECT_EQ(diff, 0u) << be->threads() << " threads: " << diff << " of " << a.size() << " logits differ";
    }
  }
}

}  // namespace
}  // namespace dsv4
