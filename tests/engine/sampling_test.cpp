// Sampler and StopChecker: reproducibility, truncation sets against a naive reference (full
// sort, libm exp in double), penalties, bias, logprobs, and stop strings across chunk boundaries.
#include "engine/sampling.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <map>
#include <new>
#include <numeric>
#include <string>
#include <vector>

#include "core/alloc_guard.h"
#include "core/error.h"

// Counts every global allocation, to check sample() allocates nothing after its first call.

namespace dsv4::engine {
namespace {

constexpr int32_t kVocab = 129280;
constexpr float kNegInf = -std::numeric_limits<float>::infinity();

// Deterministic test logits: N(0, sigma) by Box-Muller over the sampler's own Rng.
std::vector<float> gaussian_logits(size_t n, uint64_t seed, float sigma) {
  Rng rng(seed);
  std::vector<float> v(n);
  for (size_t i = 0; i < n; ++i) {
    const double u1 = 1.0 - rng.next_double(), u2 = rng.next_double();
    v[i] = static_cast<float>(sigma * std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2));
  }
  return v;
}

std::vector<float> log_of(const std::vector<double>& probs) {
  std::vector<float> v;
  for (double p : probs) v.push_back(p > 0 ? static_cast<float>(std::log(p)) : kNegInf);
  return v;
}

SamplingParams seeded(uint64_t seed) {
  SamplingParams p;
  p.seed = seed;
  p.has_seed = true;
  return p;
}

// Naive reference of the distribution the sampler draws from (sampling.h pipeline).
std::vector<double> reference_probs(std::vector<float> l, const SamplingParams& p,
                                    const std::vector<int32_t>& history = {}) {
  std::map<int32_t, int> counts;
  for (int32_t t : history) ++counts[t];
  for (auto [t, c] : counts) {
    float x = l[t];
    x = x <= 0 ? x * p.repetition_penalty : x / p.repetition_penalty;
    l[t] = x - (c * p.frequency_penalty + p.presence_penalty);
  }
  for (auto [t, b] : p.logit_bias) l[t] += b;
  std::vector<int32_t> order(l.size());
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(), [&](int32_t a, int32_t b) {
    return l[a] > l[b] || (l[a] == l[b] && a < b);
  });
  const double m = l[order[0]] / p.temperature;
  std::vector<double> w(l.size());
  for (size_t i = 0; i < l.size(); ++i) w[i] = std::exp(l[i] / p.temperature - m);
  size_t len = order.size();
  if (p.top_k > 0) len = std::min<size_t>(len, p.top_k);
  if (p.top_p < 1) {
    double zk = 0, cum = 0;
    for (size_t j = 0; j < len; ++j) zk += w[order[j]];
    for (size_t j = 0; j < len; ++j) {
      cum += w[order[j]];
      if (cum >= p.top_p * zk) {
        len = j + 1;
        break;
      }
    }
  }
  while (len > 1 && w[order[len - 1]] < p.min_p) --len;
  std::vector<double> probs(l.size(), 0.0);
  double total = 0;
  for (size_t j = 0; j < len; ++j) total += w[order[j]];
  for (size_t j = 0; j < len; ++j) probs[order[j]] = w[order[j]] / total;
  return probs;
}

// Draws n tokens and checks the empirical distribution against the reference: excluded ids
// never appear, allowed ids within 5 sigma (+ a small floor).
void expect_matches_reference(const std::vector<float>& logits, const SamplingParams& params,
                              int draws, const std::vector<int32_t>& history = {}) {
  const std::vector<double> ref = reference_probs(logits, params, history);
  Sampler s(params);
  std::map<int32_t, int> hits;
  for (int i = 0; i < draws; ++i) ++hits[s.sample(logits, history).token];
  for (auto [t, c] : hits) EXPECT_GT(ref[t], 0.0) << "token " << t << " drawn " << c << " times";
  for (size_t t = 0; t < ref.size(); ++t) {
    if (ref[t] == 0) continue;
    const double f = double(hits[static_cast<int32_t>(t)]) / draws;
    const double tol = 5 * std::sqrt(ref[t] * (1 - ref[t]) / draws) + 2e-3;
    EXPECT_NEAR(f, ref[t], tol) << "token " << t;
  }
}

std::vector<int32_t> draw_sequence(const SamplingParams& p, const std::vector<float>& logits, int n) {
  Sampler s(p);
  std::vector<int32_t> out;
  for (int i = 0; i < n; ++i) out.push_back(s.sample(logits, out).token);
  return out;
}

// ---------------------------------------------------------------------------------------------
// Rng and reproducibility

TEST(Rng, GoldenSequence) {
  // Guards portability: these values must never change on any platform or compiler. They
  // match an independent Python transcription of splitmix64 + xoshiro256** (seed 42).
  Rng rng(42);
  const uint64_t a = rng.next_u64(), b = rng.next_u64();
  Rng again(42);
  EXPECT_EQ(again.next_u64(), a);
  EXPECT_EQ(again.next_u64(), b);
  EXPECT_EQ(a, 0x15780b2e0c2ec716ULL) << std::hex << a;
  EXPECT_EQ(b, 0x6104d9866d113a7eULL) << std::hex << b;
  for (int i = 0; i < 1000; ++i) {
    const double u = rng.next_double();
    ASSERT_GE(u, 0.0);
    ASSERT_LT(u, 1.0);
  }
}

TEST(Sampler, FixedSeedReproduces) {
  const auto logits = gaussian_logits(kVocab, 1, 2.0f);
  SamplingParams p = seeded(1234);
  p.top_p = 0.9f;
  p.temperature = 0.8f;
  p.presence_penalty = 0.3f;
  const auto a = draw_sequence(p, logits, 64);
  const auto b = draw_sequence(p, logits, 64);
  EXPECT_EQ(a, b);
  // Golden: the first tokens for this seed on any platform (xoshiro + own exp + fixed sums).
  EXPECT_EQ(std::vector<int32_t>(a.begin(), a.begin() + 4), (std::vector<int32_t>{6856, 118424, 96498, 121272}));
}

TEST(Sampler, DifferentSeedsDiffer) {
  const auto logits = gaussian_logits(kVocab, 2, 1.0f);
  const auto a = draw_sequence(seeded(1), logits, 32);
  const auto b = draw_sequence(seeded(2), logits, 32);
  EXPECT_NE(a, b);
}

TEST(Sampler, UnseededSamplersDiffer) {
  const auto logits = gaussian_logits(kVocab, 3, 0.5f);
  EXPECT_NE(draw_sequence(SamplingParams{}, logits, 32), draw_sequence(SamplingParams{}, logits, 32));
}

// ---------------------------------------------------------------------------------------------
// Greedy

TEST(Sampler, TemperatureZeroIsArgmax) {
  const auto logits = gaussian_logits(kVocab, 4, 2.0f);
  const int32_t argmax = static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
  for (float t : {0.0f, 1e-6f, 1e-5f}) {
    SamplingParams p = seeded(7);
    p.temperature = t;
    Sampler s(p);
    for (int i = 0; i < 5; ++i) EXPECT_EQ(s.sample(logits, {}).token, argmax) << "T=" << t;
  }
}

TEST(Sampler, GreedySkipsSoftmaxUnlessLogprobsAsked) {
  const std::vector<float> logits = {0.0f, 2.0f, 1.0f};
  SamplingParams p;
  p.temperature = 0;
  SampleResult r = Sampler(p).sample(logits, {});
  EXPECT_EQ(r.token, 1);
  EXPECT_TRUE(std::isnan(r.logprob));
  p.logprobs = true;
  r = Sampler(p).sample(logits, {});
  EXPECT_EQ(r.token, 1);
  EXPECT_NEAR(r.logprob, 2.0 - std::log(1 + std::exp(2.0) + std::exp(1.0)), 1e-6);
}

TEST(Sampler, GreedyTiesGoToLowestId) {
  std::vector<float> logits(16, 0.0f);
  logits[9] = 3.0f;
  logits[5] = 3.0f;
  logits[12] = 3.0f;
  SamplingParams p;
  p.temperature = 0;
  EXPECT_EQ(Sampler(p).sample(logits, {}).token, 5);
  p = seeded(3);
  p.top_k = 1;  // top_k == 1 keeps the same first token
  EXPECT_EQ(Sampler(p).sample(logits, {}).token, 5);
}

TEST(Sampler, TopKOneIsGreedy) {
  for (uint64_t seed = 0; seed < 8; ++seed) {
    const auto logits = gaussian_logits(kVocab, 100 + seed, 1.0f);
    const int32_t argmax = static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
    SamplingParams p = seeded(seed);
    p.top_k = 1;
    p.temperature = 1.5f;
    Sampler s(p);
    for (int i = 0; i < 4; ++i) EXPECT_EQ(s.sample(logits, {}).token, argmax);
  }
}

// ---------------------------------------------------------------------------------------------
// Truncation sets and distributions

TEST(Sampler, NoTruncationMatchesSoftmax) {
  const auto logits = log_of({0.4, 0.3, 0.2, 0.1, 0.0, 0.0});
  expect_matches_reference(logits, seeded(11), 20000);
}

TEST(Sampler, TopPKeepsSmallestSetReachingP) {
  const auto logits = log_of({0.1, 0.4, 0.05, 0.3, 0.15});
  SamplingParams p = seeded(12);
  p.top_p = 0.65f;  // 0.4 + 0.3 = 0.7 >= 0.65: ids {1, 3}
  auto ref = reference_probs(logits, p);
  EXPECT_EQ(ref[0] + ref[2] + ref[4], 0.0);
  EXPECT_NEAR(ref[1], 0.4 / 0.7, 1e-6);
  EXPECT_NEAR(ref[3], 0.3 / 0.7, 1e-6);
  expect_matches_reference(logits, p, 20000);
  p.top_p = 0.75f;  // + 0.15: ids {1, 3, 4}
  EXPECT_GT(reference_probs(logits, p)[4], 0.0);
  expect_matches_reference(logits, p, 20000);
  p.top_p = 0.0f;  // always at least one token
  expect_matches_reference(logits, p, 200);
}

TEST(Sampler, TopPOverFullVocab) {
  // Five strong tokens over a flat floor of 129275 tokens; top_p cuts inside the strong ones,
  // then (at 0.99) deep into the floor, which exercises the chunked partial selection.
  std::vector<float> logits(kVocab, 0.0f);
  const int32_t strong[5] = {77777, 3, 129279, 50000, 12};
  const float value[5] = {13.0f, 12.3f, 11.5f, 11.0f, 10.0f};
  for (int i = 0; i < 5; ++i) logits[strong[i]] = value[i];
  SamplingParams p = seeded(13);
  p.top_p = 0.6f;
  const auto ref = reference_probs(logits, p);
  int kept = 0;
  for (double r : ref) kept += r > 0;
  EXPECT_EQ(kept, 2);  // 0.36 + 0.18 of a total that the floor dilutes
  expect_matches_reference(logits, p, 3000);

  p.top_p = 0.99f;
  const auto ref99 = reference_probs(logits, p);
  kept = 0;
  for (double r : ref99) kept += r > 0;
  EXPECT_GT(kept, 100000);
  Sampler s(p);
  for (int i = 0; i < 300; ++i) EXPECT_GT(ref99[s.sample(logits, {}).token], 0.0);
}

TEST(Sampler, TopKKeepsKHighest) {
  const auto logits = log_of({0.05, 0.3, 0.1, 0.25, 0.2, 0.1});
  SamplingParams p = seeded(14);
  p.top_k = 3;  // ids {1, 3, 4}
  const auto ref = reference_probs(logits, p);
  EXPECT_GT(ref[4], 0.0);
  EXPECT_EQ(ref[2] + ref[5] + ref[0], 0.0);
  expect_matches_reference(logits, p, 20000);
}

TEST(Sampler, LargeTopKQuickselectPath) {
  // top_k above the heap limit goes through quickselect; the kept set must still be exact.
  const auto logits = gaussian_logits(kVocab, 40, 1.0f);
  for (float top_p : {1.0f, 0.3f}) {
    SamplingParams p = seeded(41);
    p.top_k = 5000;
    p.top_p = top_p;
    const auto ref = reference_probs(logits, p);
    Sampler s(p);
    for (int i = 0; i < 200; ++i) {
      const int32_t t = s.sample(logits, {}).token;
      ASSERT_GT(ref[t], 0.0) << "token " << t << " top_p " << top_p;
    }
  }
  SamplingParams p = seeded(42);
  p.top_k = 1500;
  p.temperature = 0.8f;
  expect_matches_reference(gaussian_logits(3000, 43, 1.0f), p, 200);  // exclusion only, mostly
}

TEST(Sampler, MinPKeepsRelativeToMax) {
  const auto logits = log_of({0.5, 0.25, 0.2, 0.05});
  SamplingParams p = seeded(15);
  p.min_p = 0.3f;  // keep p >= 0.15: ids {0, 1, 2}
  const auto ref = reference_probs(logits, p);
  EXPECT_EQ(ref[3], 0.0);
  EXPECT_NEAR(ref[0], 0.5 / 0.95, 1e-6);
  expect_matches_reference(logits, p, 20000);
  p.min_p = 1.0f;  // only the max
  expect_matches_reference(logits, p, 200);
}

TEST(Sampler, CombinedTruncationMatchesReference) {
  const auto logits = gaussian_logits(64, 16, 1.5f);
  for (int k : {0, 5, 20}) {
    for (float top_p : {1.0f, 0.8f, 0.5f}) {
      for (float min_p : {0.0f, 0.05f, 0.3f}) {
        SamplingParams p = seeded(17);
        p.top_k = k;
        p.top_p = top_p;
        p.min_p = min_p;
        p.temperature = 0.7f;
        SCOPED_TRACE("top_k=" + std::to_string(k) + " top_p=" + std::to_string(top_p) +
                     " min_p=" + std::to_string(min_p));
        expect_matches_reference(logits, p, 6000);
      }
    }
  }
}

TEST(Sampler, TemperatureScalesDistribution) {
  const auto logits = log_of({0.6, 0.3, 0.1});
  for (float t : {0.5f, 2.0f}) {
    SamplingParams p = seeded(18);
    p.temperature = t;
    expect_matches_reference(logits, p, 20000);
  }
}

// ---------------------------------------------------------------------------------------------
// Penalties and bias

TEST(Sampler, PresenceAndFrequencyPenalties) {
  std::vector<float> logits(6, 0.0f);
  SamplingParams p;
  p.temperature = 0;
  p.top_logprobs = 6;
  p.presence_penalty = 1.0f;
  p.frequency_penalty = 0.5f;
  const std::vector<int32_t> history = {1, 1, 2, 1, -5, 999};  // out-of-range ids are ignored
  const SampleResult r = Sampler(p).sample(logits, history);
  std::map<int32_t, float> lp;
  for (auto t : r.top_logprobs()) lp[t.token] = t.logprob;
  EXPECT_NEAR(lp[0] - lp[1], 1.0 + 3 * 0.5, 1e-5);  // count 3
  EXPECT_NEAR(lp[0] - lp[2], 1.0 + 1 * 0.5, 1e-5);  // count 1
  EXPECT_NEAR(lp[0] - lp[5], 0.0, 1e-6);
  EXPECT_EQ(r.token, 0);
}

TEST(Sampler, RepetitionPenaltyDividesPositiveMultipliesNegative) {
  std::vector<float> logits = {2.0f, -2.0f, 1.0f, 0.5f};
  SamplingParams p;
  p.temperature = 0;
  p.top_logprobs = 4;
  p.repetition_penalty = 2.0f;
  const SampleResult r = Sampler(p).sample(logits, std::vector<int32_t>{0, 1, 0});
  std::map<int32_t, float> lp;
  for (auto t : r.top_logprobs()) lp[t.token] = t.logprob;
  EXPECT_NEAR(lp[2] - lp[0], 1.0 - 1.0, 1e-6);   // 2 / 2 = 1 (once, whatever the count)
  EXPECT_NEAR(lp[2] - lp[1], 1.0 + 4.0, 1e-5);   // -2 * 2 = -4
  EXPECT_EQ(r.token, 0);                         // 1 vs 1: tie to the lowest id
  EXPECT_EQ(r.top[0].token, 0);
  EXPECT_EQ(r.top[1].token, 2);
}

TEST(Sampler, PenaltiesChangeGreedyChoice) {
  const std::vector<float> logits = {1.0f, 0.9f, 0.1f};
  SamplingParams p;
  p.temperature = 0;
  EXPECT_EQ(Sampler(p).sample(logits, std::vector<int32_t>{0}).token, 0);
  p.presence_penalty = 0.5f;
  EXPECT_EQ(Sampler(p).sample(logits, std::vector<int32_t>{0}).token, 1);
  EXPECT_EQ(Sampler(p).sample(logits, std::vector<int32_t>{}).token, 0);
  // Penalised sampling matches the reference distribution too.
  SamplingParams q = seeded(19);
  q.frequency_penalty = 0.4f;
  q.repetition_penalty = 1.3f;
  expect_matches_reference(logits, q, 20000, {0, 0, 2});
}

TEST(Sampler, LogitBiasForcesAndExcludes) {
  const auto logits = gaussian_logits(kVocab, 20, 1.0f);
  const int32_t argmax = static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
  SamplingParams p = seeded(21);
  p.temperature = 0;
  p.logit_bias = {{argmax, -std::numeric_limits<float>::infinity()}};
  EXPECT_NE(Sampler(p).sample(logits, {}).token, argmax);

  p.temperature = 1.0f;
  p.logit_bias = {{4242, 100.0f}};
  Sampler forced(p);
  for (int i = 0; i < 50; ++i) EXPECT_EQ(forced.sample(logits, {}).token, 4242);

  // Exclude all but two tokens: only those two are ever drawn, at their softmax ratio.
  std::vector<float> small = log_of({0.25, 0.25, 0.25, 0.25});
  p.logit_bias = {{0, kNegInf}, {2, kNegInf}};
  p.top_logprobs = 4;
  const SampleResult r = Sampler(p).sample(small, {});
  EXPECT_EQ(r.top[3].logprob, kNegInf);
  EXPECT_EQ(r.top[2].logprob, kNegInf);
  p.top_logprobs = 0;
  expect_matches_reference(small, p, 10000);
}

TEST(Sampler, AllExcludedReturnsNoToken) {
  std::vector<float> logits(8, std::numeric_limits<float>::quiet_NaN());
  logits[3] = kNegInf;
  const SampleResult r = Sampler(seeded(1)).sample(logits, {});
  EXPECT_EQ(r.token, kNoToken);
  EXPECT_EQ(r.logprob, kNegInf);
}

TEST(Sampler, NanIsNeverSampledAndInfIsForced) {
  std::vector<float> logits(32, 0.0f);
  logits[4] = std::numeric_limits<float>::quiet_NaN();
  SamplingParams p = seeded(22);
  Sampler s(p);
  for (int i = 0; i < 500; ++i) EXPECT_NE(s.sample(logits, {}).token, 4);
  logits[9] = std::numeric_limits<float>::infinity();
  for (int i = 0; i < 50; ++i) EXPECT_EQ(s.sample(logits, {}).token, 9);
}

// ---------------------------------------------------------------------------------------------
// Logprobs

TEST(Sampler, LogprobsAreNormalisedAndMatchReference) {
  const auto logits = gaussian_logits(kVocab, 23, 2.0f);
  for (float t : {0.0f, 0.5f, 1.0f}) {
    SamplingParams p = seeded(24);
    p.temperature = t;
    p.top_p = 0.9f;
    p.logprobs = true;
    const double temp = t == 0.0f ? 1.0 : t;  // greedy reports at T = 1
    double m = -1e30, z = 0;
    for (float l : logits) m = std::max(m, l / temp);
    for (float l : logits) z += std::exp(l / temp - m);
    Sampler s(p);
    for (int i = 0; i < 5; ++i) {
      const SampleResult r = s.sample(logits, {});
      const double ref = logits[r.token] / temp - m - std::log(z);
      EXPECT_NEAR(r.logprob, ref, 2e-5 * std::max(1.0, std::abs(ref))) << "T=" << t;
    }
  }
  // Small vocab: all alternatives sum to 1.
  SamplingParams p = seeded(25);
  p.top_logprobs = 12;
  p.temperature = 0.7f;
  const SampleResult r = Sampler(p).sample(gaussian_logits(12, 26, 3.0f), {});
  double sum = 0;
  for (auto t : r.top_logprobs()) sum += std::exp(double(t.logprob));
  EXPECT_NEAR(sum, 1.0, 1e-5);
}

TEST(Sampler, TopLogprobsExactlyNSortedDescending) {
  auto logits = gaussian_logits(kVocab, 27, 2.0f);
  logits[100] = logits[200] = logits[50] = 20.0f;  // a three-way tie at the top
  for (int n : {1, 5, 20}) {
    SamplingParams p = seeded(28);
    p.top_logprobs = n;
    p.temperature = 1.0f;
    const SampleResult r = Sampler(p).sample(logits, {});
    ASSERT_EQ(r.n_top, n);
    ASSERT_EQ(r.top_logprobs().size(), size_t(n));
    // Reference: full sort by (logit desc, id asc).
    std::vector<int32_t> order(logits.size());
    std::iota(order.begin(), order.end(), 0);
    std::partial_sort(order.begin(), order.begin() + n, order.end(), [&](int32_t a, int32_t b) {
      return logits[a] > logits[b] || (logits[a] == logits[b] && a < b);
    });
    for (int j = 0; j < n; ++j) {
      EXPECT_EQ(r.top[j].token, order[j]) << "rank " << j;
      if (j > 0) EXPECT_GE(r.top[j - 1].logprob, r.top[j].logprob);
    }
    EXPECT_EQ(r.top[0].token, 50);
    if (n >= 3) EXPECT_EQ(r.top[2].token, 200);
    // The chosen token's logprob is consistent with the alternatives.
    for (auto t : r.top_logprobs())
      if (t.token == r.token) EXPECT_FLOAT_EQ(t.logprob, r.logprob);
  }
  SamplingParams p;
  p.top_logprobs = 20;
  EXPECT_EQ(Sampler(p).sample(std::vector<float>{1, 2, 3}, {}).n_top, 3);  // capped by vocab
}

// ---------------------------------------------------------------------------------------------
// Hot path and validation

TEST(Sampler, NoAllocationAfterFirstCall) {
  const auto logits = gaussian_logits(kVocab, 29, 1.0f);
  const std::vector<int32_t> history = {1, 2, 3, 2, 1};
  for (int mode = 0; mode < 4; ++mode) {
    SamplingParams p = seeded(30);
    p.top_logprobs = 5;
    p.presence_penalty = 0.5f;
    if (mode == 0) p.temperature = 0;
    if (mode == 1) p.top_p = 0.9f;
    if (mode == 2) p.top_k = 40;
    if (mode == 3) p.min_p = 0.05f;
    Sampler s(p);
    s.sample(logits, history);
    const size_t before = thread_allocations();
    for (int i = 0; i < 10; ++i) s.sample(logits, history);
    EXPECT_EQ(thread_allocations(), before) << "mode " << mode;
  }
}

TEST(Sampler, ValidateRejectsOutOfRange) {
  auto throws = [](auto edit) {
    SamplingParams p;
    edit(p);
    EXPECT_THROW(Sampler{p}, Error);
  };
  throws([](SamplingParams& p) { p.temperature = -1; });
  throws([](SamplingParams& p) { p.top_k = -1; });
  throws([](SamplingParams& p) { p.top_p = 1.5f; });
  throws([](SamplingParams& p) { p.min_p = -0.1f; });
  throws([](SamplingParams& p) { p.repetition_penalty = 0; });
  throws([](SamplingParams& p) { p.top_logprobs = 21; });
  throws([](SamplingParams& p) { p.logit_bias = {{-1, 1.0f}}; });
  throws([](SamplingParams& p) { p.logit_bias = {{1, std::numeric_limits<float>::infinity()}}; });
  SamplingParams p;
  p.logit_bias = {{kVocab, 1.0f}};
  EXPECT_THROW(p.validate(kVocab), Error);
  p.logit_bias = {{kVocab - 1, kNegInf}};
  EXPECT_NO_THROW(p.validate(kVocab));
}

// ---------------------------------------------------------------------------------------------
// StopChecker

struct Fed {
  std::string text;
  StopStatus last;
};

Fed feed(StopChecker& sc, const std::vector<std::string>& chunks, int32_t token = 1) {
  Fed f;
  for (const auto& c : chunks) {
    f.last = sc.on_token(token, c);
    f.text += f.last.emit;
    if (f.last.reason != FinishReason::none) break;
  }
  return f;
}

TEST(StopChecker, StopStringAcrossChunks) {
  StopChecker sc({{}, {"STOP"}, 0});
  StopStatus st = sc.on_token(1, "Hel");
  EXPECT_EQ(st.emit, "Hel");
  st = sc.on_token(1, "lo S");
  EXPECT_EQ(st.emit, "lo ");  // "S" may start "STOP": held
  st = sc.on_token(1, "TO");
  EXPECT_EQ(st.emit, "");
  st = sc.on_token(1, "P and more");
  EXPECT_EQ(st.emit, "");
  EXPECT_EQ(st.reason, FinishReason::stop_string);
  EXPECT_EQ(st.stop_string_index, 0);
  EXPECT_EQ(st.stop_offset, 6u);
  EXPECT_EQ(sc.n_emitted(), 6u);
  // Finished: later calls emit nothing and repeat the reason.
  st = sc.on_token(1, "x");
  EXPECT_EQ(st.emit, "");
  EXPECT_EQ(st.reason, FinishReason::stop_string);
}

TEST(StopChecker, FalseStartIsReleased) {
  StopChecker sc({{}, {"STOP"}, 0});
  const Fed f = feed(sc, {"ST", "O", "RE"});
  EXPECT_EQ(f.text, "STORE");
  EXPECT_EQ(f.last.reason, FinishReason::none);
  StopChecker sc2({{}, {"aab"}, 0});
  const Fed g = feed(sc2, {"a", "a", "a", "b", "c"});
  EXPECT_EQ(g.text, "a");
  EXPECT_EQ(g.last.stop_offset, 1u);
}

TEST(StopChecker, EarliestOfSeveralStopStrings) {
  StopChecker sc({{}, {"world", "lo w", "o"}, 0});
  const Fed f = feed(sc, {"hel", "lo world"});
  EXPECT_EQ(f.text, "hel");
  EXPECT_EQ(f.last.stop_string_index, 1);  // "lo w" at 3 precedes "o" at 4
}

TEST(StopChecker, StopTokenFlushesHeldTextAndDropsOwnText) {
  StopChecker sc({{7, 9}, {"END"}, 0});
  Fed f = feed(sc, {"abc E"});
  EXPECT_EQ(f.text, "abc ");
  const StopStatus st = sc.on_token(9, "</s>");
  EXPECT_EQ(st.reason, FinishReason::eos);
  EXPECT_EQ(st.emit, "E");
}

TEST(StopChecker, MaxTokensFlushes) {
  StopChecker sc({{}, {"xyz"}, 3});
  const Fed f = feed(sc, {"a", "b", "cx", "d"});
  EXPECT_EQ(f.text, "abcx");
  EXPECT_EQ(f.last.reason, FinishReason::max_tokens);
  EXPECT_EQ(sc.n_tokens(), 3);
}

TEST(StopChecker, FlushReleasesHeldText) {
  StopChecker sc({{}, {"</answer>"}, 0});
  const Fed f = feed(sc, {"42 </ans"});
  EXPECT_EQ(f.text, "42 ");
  EXPECT_EQ(sc.flush(), "</ans");
  EXPECT_EQ(sc.n_emitted(), 8u);
}

TEST(StopChecker, Utf8StopString) {
  StopChecker sc({{}, {"。\n"}, 0});
  const Fed f = feed(sc, {"你好", "。", "\n再见"});
  EXPECT_EQ(f.text, "你好");
  EXPECT_EQ(f.last.reason, FinishReason::stop_string);
}

// Property: for any chunking, the emitted text is the text up to the earliest stop match.
TEST(StopChecker, AnyChunkingEmitsPrefixBeforeFirstMatch) {
  const std::vector<std::string> stops = {"abab", "bba", "ca"};
  Rng rng(31);
  for (int trial = 0; trial < 2000; ++trial) {
    std::string text;
    const size_t len = 1 + rng.next_u64() % 24;
    for (size_t i = 0; i < len; ++i) text += "abc"[rng.next_u64() % 3];
    size_t first = std::string::npos;
    for (const auto& s : stops) first = std::min(first, text.find(s));
    StopChecker sc({{}, stops, 0});
    std::string out;
    StopStatus st;
    for (size_t pos = 0; pos < text.size() && st.reason == FinishReason::none;) {
      const size_t n = std::min<size_t>(1 + rng.next_u64() % 4, text.size() - pos);
      st = sc.on_token(1, std::string_view(text).substr(pos, n));
      out += st.emit;
      pos += n;
    }
    if (st.reason == FinishReason::none) out += sc.flush();
    ASSERT_EQ(out, text.substr(0, first)) << "text '" << text << "'";
    ASSERT_EQ(st.reason == FinishReason::stop_string, first != std::string::npos) << text;
    if (first != std::string::npos) ASSERT_EQ(st.stop_offset, first) << text;
  }
}

TEST(StopChecker, RejectsEmptyStopString) {
  EXPECT_THROW(StopChecker({{}, {"a", ""}, 0}), Error);
}

}  // namespace
}  // namespace dsv4::engine
