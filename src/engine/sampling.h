// dsv4 engine: token sampling and stop handling. Pure code over one logits row; no model state.
//
// Sampler pipeline, in this order (one call = one token):
//   1. penalties over `history` (the caller passes the generated tokens, OpenAI semantics):
//        repetition (llama.cpp / HF: logit > 0 ? logit / r : logit * r), then
//        logit -= count * frequency_penalty + (count > 0) * presence_penalty   (OpenAI)
//   2. logit_bias added (after penalties, so -inf always excludes and +100 always forces)
//   3. temperature: logits / T; T <= kGreedyTemperature means greedy (argmax, ties to lowest id)
//   4. truncation: top_k, then top_p (over the top-k renormalised mass), then min_p
//      (keep p >= min_p * p_max) — the HF / llama.cpp order
//   5. draw from the renormalised survivors with the Sampler's own PRNG (xoshiro256**)
//
// Reported logprobs (OpenAI semantics: the model's processed distribution) are the log-softmax of
// the logits after steps 1-3, before truncation. Greedy reports them at T = 1 (the T -> 0 limit is
// degenerate). Sampled tokens always survived truncation, but their logprob is not renormalised
// over the survivors.
//
// Reproducibility: with has_seed, the same params, logits and history give the same tokens on
// every platform. The PRNG, the uniform draw, the exp used for weights and every sum are written
// here in a fixed order (no std::uniform_real_distribution, no libm in the draw path); truncation
// uses a strict total order (logit desc, id asc) and our own quickselect, so no standard-library
// arrangement leaks into the draw. (Caveat: a compiler that contracts a*b+c into FMA, as GCC does
// by default on aarch64, can move a weight by an ulp; the x86-64 baseline build has no FMA.)
//
// Cost over 129280 logits: O(vocab) passes (copy, temperature, max, exp, sum) plus partial
// selection only: top_k <= 1024 by a heap then a sort of k; larger top_k and top_p by
// quickselect (top_p by mass), after a sound pre-filter that drops tokens too light to matter.
// Never a full sort. Hot path: sample() never throws and, after its first call, never allocates
// (buffers are sized to the vocab once and reused).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "engine/finish_reason.h"

namespace dsv4::engine {

inline constexpr float kGreedyTemperature = 1e-5f;  // temperature <= this samples greedily
inline constexpr int kMaxTopLogprobs = 20;           // OpenAI's limit on top_logprobs
inline constexpr int32_t kNoToken = -1;              // every token excluded (all -inf / NaN)

struct SamplingParams {
  float temperature = 1.0f;  // <= kGreedyTemperature: greedy
  int top_k = 0;             // 0: off
  float top_p = 1.0f;        // [0, 1]; 1: off, 0: only the most likely token
  float min_p = 0.0f;        // [0, 1]; 0: off
  float presence_penalty = 0.0f;    // OpenAI, [-2, 2]
  float frequency_penalty = 0.0f;   // OpenAI, [-2, 2]
  float repetition_penalty = 1.0f;  // llama.cpp / HF, > 0; 1: off
  std::vector<std::pair<int32_t, float>> logit_bias;  // (token id, bias); bias may be -inf
  uint64_t seed = 0;
  bool has_seed = false;  // false: seeded from std::random_device
  int top_logprobs = 0;   // 0..kMaxTopLogprobs alternatives per token
  bool logprobs = false;  // compute SampleResult::logprob even when greedy (sampling always does)

  // Throws dsv4::Error naming the field and the expected range. vocab: ids must be < vocab.
  void validate(int32_t vocab) const;
};

struct TokenLogprob {
  int32_t token = kNoToken;
  float logprob = 0.0f;
};

// Plain value: no heap, so returning it per token allocates nothing.
struct SampleResult {
  int32_t token = kNoToken;  // kNoToken only when every logit is -inf or NaN after processing
  float logprob = 0.0f;      // log p(token) under the processed distribution (see file comment);
                             // NaN for greedy with neither logprobs nor top_logprobs asked (the
                             // softmax is skipped: it is most of greedy's cost)
  std::array<TokenLogprob, kMaxTopLogprobs> top{};  // first n_top used, logprob desc, id asc
  int n_top = 0;             // == min(params.top_logprobs, vocab)

  std::span<const TokenLogprob> top_logprobs() const { return {top.data(), size_t(n_top)}; }
};

// xoshiro256** (Blackman & Vigna), seeded through splitmix64: small, fast, same output everywhere.
class Rng {
 public:
  explicit Rng(uint64_t seed);
  uint64_t next_u64();
  double next_double();  // uniform in [0, 1), 53 random bits

 private:
  std::array<uint64_t, 4> s_;
};

class Sampler {
 public:
  explicit Sampler(SamplingParams params);  // validates ranges not needing the vocab

  // logits: [vocab] f32 of the next position; history: the tokens penalties count (ids outside
  // [0, vocab) are ignored). Never throws; allocates only on the first call (or a larger vocab).
  SampleResult sample(std::span<const float> logits, std::span<const int32_t> history);

  const SamplingParams& params() const { return params_; }
  bool greedy() const { return params_.temperature <= kGreedyTemperature; }

  struct Cand {     // one truncation candidate (internal)
    uint64_t key;   // processed logit (order-preserving bits) << 32 | (2^32 - 1 - id)
    float w;        // exp(logit - max)
  };

 private:

  void ensure_buffers(size_t vocab);
  void apply_penalties(std::span<const int32_t> history);
  int32_t pick_from_all(float min_p);
  int32_t pick_from_candidates(double z, float min_p);
  void fill_top_logprobs(SampleResult& r, float max_logit, double log_z) const;

  SamplingParams params_;
  Rng rng_;
  std::vector<float> work_;     // [vocab] processed logits (after penalties, bias, temperature)
  std::vector<float> w_;        // [vocab] exp(work_ - max), unnormalised probabilities
  std::vector<uint32_t> counts_;  // [vocab] history counts; all zero between calls
  std::vector<Cand> cands_;     // [vocab] truncation candidates (only the used prefix is valid)
};

// Stop conditions for one sequence: stop token ids, stop strings over the streamed text (which
// may span token boundaries), and a token budget. The caller feeds each generated token with its
// detokenised text (complete UTF-8; the streaming detokenizer holds partial sequences back) and
// emits exactly `emit`, so the text of a stop string is never sent. Text that could still be the
// start of a stop string is held back until it can no longer match. The reason it reports is the
// engine's FinishReason (engine/finish_reason.h): eos for a stop token id (its text is not
// emitted), stop_string (neither it nor anything after it is emitted), max_tokens.
struct StopParams {
  std::vector<int32_t> stop_token_ids;
  std::vector<std::string> stop_strings;  // non-empty
  int max_tokens = 0;                     // <= 0: no limit

  void validate() const;  // throws dsv4::Error
};

struct StopStatus {
  std::string_view emit;  // text now safe to emit; valid until the next call on the checker
  FinishReason reason = FinishReason::none;
  int stop_string_index = -1;  // which stop string matched (stop_string only)
  size_t stop_offset = 0;      // stop_string: byte offset of the match in the whole generated text
};

class StopChecker {
 public:
  explicit StopChecker(StopParams params);

  // One generated token and its text. After a reason other than none the sequence is finished and
  // further calls return an empty emit with the same reason.
  StopStatus on_token(int32_t token, std::string_view text);
  // Generation ended for another reason (context full, cancel): releases the held-back text.
  std::string_view flush();

  int n_tokens() const { return n_tokens_; }
  size_t n_emitted() const { return n_emitted_; }  // bytes of text emitted so far

 private:
  size_t held_start(std::string_view buf) const;  // start of the longest stop-prefix suffix

  StopParams params_;
  size_t max_stop_len_ = 0;
  std::string buf_;       // held-back text, then (during a call) the new chunk
  size_t consumed_ = 0;   // prefix of buf_ returned by the previous call, dropped on the next
  int n_tokens_ = 0;
  size_t n_emitted_ = 0;
  StopStatus final_;      // set once stopped
};

}  // namespace dsv4::engine
