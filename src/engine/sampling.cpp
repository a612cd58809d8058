// dsv4 engine: token sampling and stop handling (see sampling.h for the pipeline and semantics).
#include "engine/sampling.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdio>
#include <limits>
#include <random>

#include "core/error.h"

namespace dsv4::engine {

namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();

// The per-vocab loops below select with integer masks rather than float `?:`: under GCC's
// default -ftrapping-math a float select around arithmetic is not if-converted, and the loop
// stays scalar (8x slower over 129280 logits).

// exp(x) for x <= 0 (Cephes expf: range reduction by ln2, degree-5 polynomial, rel. error ~2e-7).
// Pure float arithmetic, no libm, so the sampling weights are bit-identical on every platform
// and the loop over the vocab auto-vectorises. Exactly 1 at 0, exactly 0 below -87 and at -inf
// (an excluded token must have weight 0, not 1e-38).
inline float exp_nonpos(float x) {
  constexpr uint32_t kMinus87 = 0xc2ae0000u;  // bits of -87.0f
  const uint32_t xb = std::bit_cast<uint32_t>(x);
  const bool under = xb > kMinus87;  // x < -87 or -inf (for x <= 0, bits grow with |x|)
  const float xc = std::bit_cast<float>(under ? kMinus87 : xb);
  const float t = xc * 1.44269504088896341f;
  const float fx = (t + 12582912.0f) - 12582912.0f;  // round to nearest (1.5 * 2^23 trick)
  float r = xc - fx * 0.693359375f;
  r = r - fx * -2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  const float y = p * (r * r) + r + 1.0f;
  const float scale = std::bit_cast<float>((static_cast<int32_t>(fx) + 127) << 23);  // 2^fx
  const float v = y * scale;
  return std::bit_cast<float>(std::bit_cast<uint32_t>(v) & (under ? 0u : ~0u));
}

// NaN -> -inf (never sampled), +inf -> float max (so that max - max stays 0).
inline float sanitize(float x) {
  const uint32_t b = std::bit_cast<uint32_t>(x);
  const uint32_t a = b & 0x7fffffffu;
  return std::bit_cast<float>(a > 0x7f800000u ? 0xff800000u : (b == 0x7f800000u ? 0x7f7fffffu : b));
}

// Float bits -> int32 with the same order (for non-NaN; -0 < +0). An involution.
inline int32_t ordered_i32(int32_t b) { return b ^ ((b >> 31) & 0x7fffffff); }

// Sum in a fixed order (8 lanes, then a fixed tree), in double: deterministic whatever the
// compiler vectorises, and ~8x faster than one dependent chain.
double sum_fixed_order(const float* w, size_t n) {
  double acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  size_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int j = 0; j < 8; ++j) acc[j] += w[i + j];
  double tail = 0;
  for (; i < n; ++i) tail += w[i];
  return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7])) + tail;
}

// Max of non-NaN floats, on order-preserving integers (vectorisable, see above).
float max_of(const float* x, size_t n) {
  const int32_t lowest = ordered_i32(std::bit_cast<int32_t>(-kInf));
  int32_t acc[8] = {lowest, lowest, lowest, lowest, lowest, lowest, lowest, lowest};
  size_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int j = 0; j < 8; ++j) {
      const int32_t k = ordered_i32(std::bit_cast<int32_t>(x[i + j]));
      acc[j] = k > acc[j] ? k : acc[j];
    }
  int32_t m = lowest;
  for (; i < n; ++i) m = std::max(m, ordered_i32(std::bit_cast<int32_t>(x[i])));
  for (int32_t a : acc) m = std::max(m, a);
  return std::bit_cast<float>(ordered_i32(m));
}

uint64_t splitmix64(uint64_t& x) {
  uint64_t z = (x += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

std::string num(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", v);
  return buf;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Params

void SamplingParams::validate(int32_t vocab) const {
  auto bad = [](const char* key, double got, const char* expected) {
    throw Error(std::string("sampling: '") + key + "' is " + num(got) + ", expected " + expected);
  };
  if (!(temperature >= 0.0f) || !std::isfinite(temperature))
    bad("temperature", temperature, "a finite value >= 0");
  if (top_k < 0) bad("top_k", top_k, ">= 0 (0: off)");
  if (!(top_p >= 0.0f && top_p <= 1.0f)) bad("top_p", top_p, "in [0, 1]");
  if (!(min_p >= 0.0f && min_p <= 1.0f)) bad("min_p", min_p, "in [0, 1]");
  if (!std::isfinite(presence_penalty)) bad("presence_penalty", presence_penalty, "finite");
  if (!std::isfinite(frequency_penalty)) bad("frequency_penalty", frequency_penalty, "finite");
  if (!(repetition_penalty > 0.0f) || !std::isfinite(repetition_penalty))
    bad("repetition_penalty", repetition_penalty, "a finite value > 0");
  if (top_logprobs < 0 || top_logprobs > kMaxTopLogprobs)
    bad("top_logprobs", top_logprobs, "in [0, 20]");
  for (const auto& [id, bias] : logit_bias) {
    if (id < 0 || id >= vocab)
      throw Error("sampling: 'logit_bias' token id " + std::to_string(id) + " out of range, expected [0, " +
                  std::to_string(vocab) + ")");
    if (std::isnan(bias) || bias == kInf)
      throw Error("sampling: 'logit_bias' for token " + std::to_string(id) + " is " + num(bias) +
                  ", expected finite or -inf");
  }
}

// ---------------------------------------------------------------------------------------------
// Rng

Rng::Rng(uint64_t seed) {
  for (auto& s : s_) s = splitmix64(seed);
}

uint64_t Rng::next_u64() {
  const uint64_t result = std::rotl(s_[1] * 5, 7) * 9;
  const uint64_t t = s_[1] << 17;
  s_[2] ^= s_[0];
  s_[3] ^= s_[1];
  s_[1] ^= s_[2];
  s_[0] ^= s_[3];
  s_[2] ^= t;
  s_[3] = std::rotl(s_[3], 45);
  return result;
}

double Rng::next_double() { return static_cast<double>(next_u64() >> 11) * 0x1.0p-53; }

// ---------------------------------------------------------------------------------------------
// Sampler

namespace {
uint64_t seed_of(const SamplingParams& p) {
  if (p.has_seed) return p.seed;
  std::random_device rd;
  return (static_cast<uint64_t>(rd()) << 32) ^ rd();
}
}  // namespace

Sampler::Sampler(SamplingParams params) : params_(std::move(params)), rng_(seed_of(params_)) {
  params_.validate(std::numeric_limits<int32_t>::max());
}

void Sampler::ensure_buffers(size_t vocab) {
  if (work_.size() != vocab) {
    work_.resize(vocab);
    w_.resize(vocab);
    cands_.clear();
    counts_.clear();
  }
}

// Penalties over the history counts: repetition (llama.cpp / HF), then frequency and presence
// (OpenAI). counts_ is all zero on entry and on exit: each distinct token is penalised once, at
// its first occurrence, and its count is cleared there.
void Sampler::apply_penalties(std::span<const int32_t> history) {
  const float rep = params_.repetition_penalty;
  const float freq = params_.frequency_penalty;
  const float pres = params_.presence_penalty;
  if (rep == 1.0f && freq == 0.0f && pres == 0.0f) return;
  const size_t vocab = work_.size();
  if (counts_.size() != vocab) counts_.assign(vocab, 0);
  for (int32_t t : history)
    if (t >= 0 && static_cast<size_t>(t) < vocab) ++counts_[t];
  for (int32_t t : history) {
    if (t < 0 || static_cast<size_t>(t) >= vocab || counts_[t] == 0) continue;
    const uint32_t c = counts_[t];
    counts_[t] = 0;
    float l = work_[t];
    if (rep != 1.0f) l = l <= 0.0f ? l * rep : l / rep;
    work_[t] = l - (static_cast<float>(c) * freq + pres);
  }
}

// No top-k / top-p: draw over the whole vocab in id order (min_p zeroes weights first). The walk
// goes by blocks of 64 so that most of it is a vectorisable block sum.
int32_t Sampler::pick_from_all(float min_p) {
  float* w = w_.data();
  const size_t n = w_.size();
  if (min_p > 0.0f)
    for (size_t i = 0; i < n; ++i) w[i] = w[i] >= min_p ? w[i] : 0.0f;
  const double total = sum_fixed_order(w, n);
  const double u = rng_.next_double() * total;
  constexpr size_t kBlock = 64;
  double cum = 0;
  size_t i = 0;
  for (; i + kBlock <= n; i += kBlock) {
    const double b = sum_fixed_order(w + i, kBlock);
    if (u < cum + b) break;
    cum += b;
  }
  int32_t last = kNoToken;
  for (; i < n; ++i) {
    if (w[i] <= 0.0f) continue;
    cum += w[i];
    last = static_cast<int32_t>(i);
    if (u < cum) return last;
  }
  // Rounding put u past the last block's running sum: take the last token with weight.
  if (last == kNoToken)
    for (size_t j = n; j-- > 0;)
      if (w[j] > 0.0f) return static_cast<int32_t>(j);
  return last;
}

// Candidate order: logit desc, then id asc, packed into one key (larger key = earlier): a strict
// total order, so every selection below has one answer whatever the input arrangement.
namespace {
using Cand = Sampler::Cand;

inline uint64_t cand_key(float logit, size_t id) {
  const uint32_t b = std::bit_cast<uint32_t>(logit + 0.0f);  // -0 -> +0: equal logits tie on id
  const uint32_t ord = (b >> 31) ? ~b : (b | 0x80000000u);   // unsigned, order-preserving
  return (static_cast<uint64_t>(ord) << 32) | (0xffffffffu - static_cast<uint32_t>(id));
}
inline int32_t cand_id(const Cand& c) {
  return static_cast<int32_t>(0xffffffffu - static_cast<uint32_t>(c.key));
}

// One partition of c[lo, hi) around a pivot, branch-free Lomuto (unconditional swap): returns p
// with c[lo, p) before the pivot, the pivot at p, c(p, hi) after it; *upper = weight of
// c[lo, p). The pivot is the median of three pseudo-random positions drawn from the fixed hash
// stream h (median of first/middle/last went quadratic on the id-ordered floor of equal logits).
// Our own code, not std::nth_element, so the arrangement (hence the draw) is the same on every
// standard library.
template <bool kMass>
size_t partition_step(Cand* c, size_t lo, size_t hi, uint64_t& h, double* upper) {
  const size_t last = hi - 1;
  if (hi - lo >= 3) {
    const size_t a = lo + splitmix64(h) % (hi - lo);
    const size_t b = lo + splitmix64(h) % (hi - lo);
    const size_t d = lo + splitmix64(h) % (hi - lo);
    const uint64_t ka = c[a].key, kb = c[b].key, kd = c[d].key;
    const size_t med = ka > kb ? (kb > kd ? b : (ka > kd ? d : a)) : (ka > kd ? a : (kb > kd ? d : b));
    std::swap(c[med], c[last]);
  }
  const uint64_t pivot = c[last].key;
  size_t i = lo;
  double mass[2] = {0, 0};  // two chains: a double add's latency bounds this loop otherwise
  for (size_t j = lo; j < last; ++j) {
    const bool earlier = c[j].key > pivot;
    if constexpr (kMass) mass[j & 1] += earlier ? c[j].w : 0.0f;
    std::swap(c[i], c[j]);
    i += earlier;
  }
  std::swap(c[i], c[last]);
  if constexpr (kMass) *upper = mass[0] + mass[1];
  return i;
}

constexpr uint64_t kPivotSeed = 0x5eed5eed5eed5eedULL;
constexpr int kHeapTopK = 1024;  // top_k up to this goes through a heap, beyond it quickselect

// Quickselect: afterwards c[0, k) holds the k first candidates (in no particular order).
void select_count(Cand* c, size_t n, size_t k) {
  uint64_t h = kPivotSeed;
  size_t lo = 0, hi = n;
  double unused = 0;
  while (lo + 1 < hi) {
    const size_t p = partition_step<false>(c, lo, hi, h, &unused);
    if (p == k) return;
    if (p < k) lo = p + 1;
    else hi = p;
  }
}

// Weighted quickselect for the nucleus: arranges c so that c[0, len) is the shortest prefix of
// the candidate order whose weight reaches target, and returns len (the end of the last range
// known to hold the crossing if rounding never quite gets there). Expected O(n), no sort,
// however large the nucleus.
size_t select_mass(Cand* c, size_t n, double target) {
  uint64_t h = kPivotSeed;
  size_t lo = 0, hi = n;
  double acc = 0;  // weight of c[0, lo), all earlier than c[lo, hi)
  while (lo < hi) {
    double upper;
    const size_t p = partition_step<true>(c, lo, hi, h, &upper);
    if (acc + upper >= target) {  // the crossing lies before the pivot
      hi = p;
      continue;
    }
    acc += upper + c[p].w;
    if (acc >= target) return p + 1;
    lo = p + 1;
  }
  return lo;
}
}  // namespace

// top-k / top-p, then min_p, over the candidate order; z = sum of all weights. Partial selection
// only (quickselect by count, then by mass): never a sort, whatever top_k or the nucleus size.
int32_t Sampler::pick_from_candidates(double z, float min_p) {
  const size_t vocab = work_.size();
  if (cands_.size() != vocab) cands_.resize(vocab);
  const int top_k = params_.top_k;
  const double top_p = params_.top_p;
  const bool use_top_p = top_p < 1.0;

  // Pre-filter (weights, exact to the rounding of the sums):
  //  - top_p alone: tokens with w < tau = (1 - p) * z / vocab hold less than (1 - p) * z in all,
  //    so the tokens with w >= tau already carry >= p * z: the nucleus lies inside them.
  //  - min_p is a suffix cut applied last; it may go first unless top_p needs the full top-k mass.
  float thr = std::numeric_limits<float>::min();  // w > 0
  if (top_k == 0 && use_top_p)
    thr = std::max(thr, static_cast<float>((1.0 - top_p) * z / double(vocab) * 0.999));
  if (min_p > 0.0f && !(top_k > 0 && use_top_p)) thr = std::max(thr, min_p);
  Cand* c = cands_.data();
  size_t n = 0;
  size_t len = 0;
  if (top_k > 0 && top_k <= kHeapTopK) {
    // Small top_k: one pass keeping a min-heap of the k earliest (a compare per token, rare
    // pushes), then a sort of those k so that the arrangement does not depend on the heap code.
    const size_t k = static_cast<size_t>(top_k);
    auto later = [](const Cand& a, const Cand& b) { return a.key > b.key; };  // min-heap on key
    float floor_logit = -kInf;  // logit of the heap's latest member once full
    for (size_t i = 0; i < vocab; ++i) {
      if (work_[i] < floor_logit || !(w_[i] >= thr)) continue;
      const Cand cand{cand_key(work_[i], i), w_[i]};
      if (n < k) {
        c[n++] = cand;
        std::push_heap(c, c + n, later);
      } else if (cand.key > c[0].key) {
        std::pop_heap(c, c + n, later);
        c[n - 1] = cand;
        std::push_heap(c, c + n, later);
      } else {
        continue;
      }
      if (n == k) floor_logit = work_[cand_id(c[0])];
    }
    std::sort(c, c + n, later);
    len = n;
  } else {
    // Branchy gather when few pass (the usual top_p pre-filter), branch-free when many do (a
    // flat distribution would mispredict half the branches); a vectorised count decides.
    size_t passing = 0;
    for (size_t i = 0; i < vocab; ++i) passing += w_[i] >= thr;
    if (passing * 8 < vocab) {
      for (size_t i = 0; i < vocab; ++i)
        if (w_[i] >= thr) c[n++] = Cand{cand_key(work_[i], i), w_[i]};
    } else {
      for (size_t i = 0; i < vocab; ++i) {  // write always, advance if kept
        c[n] = Cand{cand_key(work_[i], i), w_[i]};
        n += w_[i] >= thr;
      }
    }
    len = n;
    if (top_k > 0 && static_cast<size_t>(top_k) < n) {
      len = static_cast<size_t>(top_k);
      select_count(c, n, len);
    }
  }
  // n >= 1: the argmax has w == 1 >= thr (z <= vocab, min_p <= 1).

  if (use_top_p) {
    double mass = z;  // top_p alone: the whole distribution
    if (top_k > 0) {
      mass = 0;
      for (size_t j = 0; j < len; ++j) mass += c[j].w;
    }
    len = std::max<size_t>(1, select_mass(c, len, top_p * mass));
  }

  // min_p keeps a prefix of the order that always holds the max (w == 1), so it is a filter
  // on the kept set; the draw walks c[0, len) in its (deterministic) arrangement.
  double total = 0;
  for (size_t j = 0; j < len; ++j) total += c[j].w >= min_p ? c[j].w : 0.0f;
  const double u = rng_.next_double() * total;
  double cum = 0;
  int32_t last = kNoToken;
  for (size_t j = 0; j < len; ++j) {
    if (c[j].w < min_p) continue;
    cum += c[j].w;
    last = cand_id(c[j]);
    if (u < cum) return last;
  }
  return last;  // rounding: u at the very top
}

// Top-n alternatives by processed logit (desc, ties to the lowest id) by insertion into a
// sorted array of n <= 20: one compare per token for almost the whole vocab.
void Sampler::fill_top_logprobs(SampleResult& r, float max_logit, double log_z) const {
  const int n = static_cast<int>(std::min<size_t>(params_.top_logprobs, work_.size()));
  std::array<float, kMaxTopLogprobs> val{};
  int cnt = 0;
  for (size_t i = 0; i < work_.size(); ++i) {
    const float l = work_[i];
    if (cnt == n && !(l > val[n - 1])) continue;
    int pos = cnt < n ? cnt : n - 1;
    if (cnt < n) ++cnt;
    while (pos > 0 && l > val[pos - 1]) {
      val[pos] = val[pos - 1];
      r.top[pos] = r.top[pos - 1];
      --pos;
    }
    val[pos] = l;
    r.top[pos].token = static_cast<int32_t>(i);
  }
  for (int j = 0; j < n; ++j)
    r.top[j].logprob = static_cast<float>(static_cast<double>(val[j] - max_logit) - log_z);
  r.n_top = n;
}

SampleResult Sampler::sample(std::span<const float> logits, std::span<const int32_t> history) {
  SampleResult r;
  const size_t vocab = logits.size();
  if (vocab == 0) return r;
  ensure_buffers(vocab);
  float* x = work_.data();
  std::copy(logits.begin(), logits.end(), x);

  // 1-2. penalties, bias
  apply_penalties(history);
  for (const auto& [id, bias] : params_.logit_bias)
    if (id >= 0 && static_cast<size_t>(id) < vocab) x[id] += bias;

  // 3. temperature, then NaN -> -inf, +inf -> float max
  const bool is_greedy = greedy();
  const float inv_t = is_greedy ? 1.0f : 1.0f / params_.temperature;
  for (size_t i = 0; i < vocab; ++i) x[i] = sanitize(x[i] * inv_t);
  const float m = max_of(x, vocab);
  if (m == -kInf) {  // every token excluded: nothing to sample
    r.logprob = -kInf;
    return r;
  }

  // Greedy without logprobs needs no softmax, which is otherwise most of its cost.
  if (is_greedy && !params_.logprobs && params_.top_logprobs == 0) {
    r.token = static_cast<int32_t>(std::find(x, x + vocab, m) - x);  // first max: lowest id
    r.logprob = std::numeric_limits<float>::quiet_NaN();
    return r;
  }

  // Unnormalised probabilities relative to the max, and their sum (for logprobs and top_p).
  float* w = w_.data();
  for (size_t i = 0; i < vocab; ++i) w[i] = exp_nonpos(x[i] - m);
  const double z = sum_fixed_order(w, vocab);
  const double log_z = std::log(z);

  if (is_greedy) {
    r.token = static_cast<int32_t>(std::find(x, x + vocab, m) - x);  // first max: lowest id
  } else if (params_.top_k == 0 && params_.top_p >= 1.0f) {
    r.token = pick_from_all(params_.min_p);
  } else {
    r.token = pick_from_candidates(z, params_.min_p);
  }
  r.logprob = static_cast<float>(static_cast<double>(x[r.token] - m) - log_z);
  if (params_.top_logprobs > 0) fill_top_logprobs(r, m, log_z);
  return r;
}

// ---------------------------------------------------------------------------------------------
// Stop conditions

void StopParams::validate() const {
  for (size_t i = 0; i < stop_strings.size(); ++i)
    if (stop_strings[i].empty())
      throw Error("stop: stop string " + std::to_string(i) + " is empty, expected non-empty");
}

StopChecker::StopChecker(StopParams params) : params_(std::move(params)) {
  params_.validate();
  for (const auto& s : params_.stop_strings) max_stop_len_ = std::max(max_stop_len_, s.size());
  buf_.reserve(2 * max_stop_len_ + 256);
}

// Start of the longest suffix of buf that is a proper prefix of some stop string (buf.size()
// when none). Such a suffix starts at a stop string's first byte, so with UTF-8 text the split
// falls on a character boundary.
size_t StopChecker::held_start(std::string_view buf) const {
  if (max_stop_len_ == 0) return buf.size();
  const size_t n = buf.size();
  const size_t from = n > max_stop_len_ - 1 ? n - (max_stop_len_ - 1) : 0;
  for (size_t s = from; s < n; ++s) {
    const std::string_view tail = buf.substr(s);
    for (const auto& stop : params_.stop_strings)
      if (stop.size() > tail.size() && std::string_view(stop).substr(0, tail.size()) == tail)
        return s;
  }
  return n;
}

StopStatus StopChecker::on_token(int32_t token, std::string_view text) {
  if (final_.reason != FinishReason::none) return final_;  // emit is empty in final_
  buf_.erase(0, consumed_);
  consumed_ = 0;
  ++n_tokens_;

  StopStatus st;
  auto finish = [&](FinishReason reason, size_t emit_len) {
    st.emit = std::string_view(buf_).substr(0, emit_len);
    st.reason = reason;
    consumed_ = buf_.size();
    n_emitted_ += emit_len;
    final_ = st;
    final_.emit = {};
    return st;
  };

  if (std::find(params_.stop_token_ids.begin(), params_.stop_token_ids.end(), token) !=
      params_.stop_token_ids.end())
    return finish(FinishReason::eos, buf_.size());  // held text could not complete now

  buf_.append(text);
  // Earliest match wins; at equal positions the first stop string in the list. Held text holds
  // no full match, so a match here always ends inside the new text.
  size_t best = std::string::npos;
  for (size_t i = 0; i < params_.stop_strings.size(); ++i) {
    const size_t pos = buf_.find(params_.stop_strings[i]);
    if (pos < best) {
      best = pos;
      st.stop_string_index = static_cast<int>(i);
    }
  }
  if (best != std::string::npos) {
    st.stop_offset = n_emitted_ + best;
    return finish(FinishReason::stop_string, best);
  }
  if (params_.max_tokens > 0 && n_tokens_ >= params_.max_tokens)
    return finish(FinishReason::max_tokens, buf_.size());

  const size_t keep_from = held_start(buf_);
  st.emit = std::string_view(buf_).substr(0, keep_from);
  consumed_ = keep_from;
  n_emitted_ += keep_from;
  return st;
}

std::string_view StopChecker::flush() {
  if (final_.reason != FinishReason::none) return {};
  buf_.erase(0, consumed_);
  consumed_ = buf_.size();
  n_emitted_ += buf_.size();
  return buf_;
}

}  // namespace dsv4::engine
