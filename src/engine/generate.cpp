#include "engine/generate.h"

#include <algorithm>
#include <chrono>

#include "core/error.h"
#include "engine/sampling.h"

namespace dsv4::engine {

namespace {
using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }
}  // namespace

void prefill(model::ForwardPass& fp, cache::SeqState& st, std::span<const int32_t> tokens, std::vector<float>& logits,
             int64_t chunk, const PrefillProgressFn& progress) {
  DSV4_CHECK(chunk > 0, "prefill: chunk must be positive");
  const auto t0 = Clock::now();
  const int64_t n = int64_t(tokens.size());
  for (int64_t i = 0; i < n; i += chunk) {
    const int64_t len = std::min(chunk, n - i);
    model::SeqChunk ch{&st, tokens.subspan(size_t(i), size_t(len)), /*all_logits=*/false};
    fp.forward(std::span<model::SeqChunk>(&ch, 1), logits);
    if (progress) progress(PrefillProgress{i + len, n, st.n_past(), seconds_since(t0)});
  }
}

void decode_step(model::ForwardPass& fp, cache::SeqState& st, int32_t token, std::vector<float>& logits) {
  model::SeqChunk ch{&st, std::span<const int32_t>(&token, 1), false};
  fp.forward(std::span<model::SeqChunk>(&ch, 1), logits);
}

int32_t argmax(std::span<const float> logits) {
  if (logits.empty()) return kNoToken;
  return int32_t(std::max_element(logits.begin(), logits.end()) - logits.begin());
}

int64_t context_limit(const model::Config& c, int64_t requested) {
  const int64_t model_max = c.max_position_embeddings > 0 ? c.max_position_embeddings : INT64_MAX;
  if (requested < 0) throw Error("--ctx must be >= 0, got " + std::to_string(requested));
  if (requested > model_max)
    throw Error("--ctx " + std::to_string(requested) + " exceeds the model's max_position_embeddings " +
                std::to_string(model_max));
  return requested > 0 ? requested : model_max;
}

}  // namespace dsv4::engine
