// Grammar-constrained decoding cost (issue 13): the time the JSON constraint takes per token (the
// token mask over the full 129,280-token vocabulary + accepting the token) against the time of one
// decode step, measured in the same loop on a real model: decode -> mask -> sample -> accept.
//   constraint_bench [--preset small] [--tokens 48] [--threads N] [--mask-only]
// --mask-only: no decoding, random logits (the mask's own distribution and its slowest states).
// Prints the one-time vocabulary index build, then per schema and in total: decode ms/token,
// constraint ms/token (mean, p50, p99) and the ratio. The README quotes the total line.

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "engine/constraint.h"
#include "engine/default_model.h"
#include "engine/generate.h"
#include "engine/sampling.h"
#include "kernels/backend.h"
#include "model/forward.h"
#include "model/weights.h"
#include "text/json_schema.h"
#include "text/tokenizer.h"

using namespace dsv4;
using Clock = std::chrono::steady_clock;

namespace {

double ms_since(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

const char* kSchemas[] = {
    R"({"type":"object"})",
    R"({"type":"object","properties":{"name":{"type":"string"},"age":{"type":"integer"}},"required":["name","age"],"additionalProperties":false})",
    R"({"type":"object","properties":{"color":{"enum":["red","green","blue"]},"tags":{"type":"array","items":{"type":"string","maxLength":12},"maxItems":4}},"required":["color","tags"],"additionalProperties":false})",
    R"({"type":"object","properties":{"a":{"type":"object","properties":{"b":{"type":"number","minimum":0,"maximum":1},"c":{"type":"string","format":"date"}},"required":["b","c"],"additionalProperties":false}},"required":["a"],"additionalProperties":false})",
    R"({"type":"object","properties":{"text":{"type":"string"}},"required":["text"],"additionalProperties":false})",
};

double pct(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, size_t(p * double(v.size())))];
}

}  // namespace

int main(int argc, char** argv) {
  std::string preset = "small";
  int tokens = 48;
  bool mask_only = false;
  for (int i = 1; i < argc; ++i) {
    const bool has = i + 1 < argc;
    if (!std::strcmp(argv[i], "--mask-only")) mask_only = true;
    else if (!std::strcmp(argv[i], "--preset") && has) preset = argv[++i];
    else if (!std::strcmp(argv[i], "--tokens") && has) tokens = std::atoi(argv[++i]);
    else if (!std::strcmp(argv[i], "--threads") && has) ::setenv("DSV4_THREADS", argv[++i], 1);  // read when the CPU backend starts, below
  }
  const std::string dir = engine::preset_model_dir(preset);
  auto model = model::Model::load(dir);
  const text::Tokenizer tok = text::Tokenizer::load(dir);
  model::ForwardPass fp(*model, model::Numerics::reference);
  const int32_t vocab = int32_t(model->config().vocab_size);

  auto t0 = Clock::now();
  auto cv = engine::ConstraintVocab::build(tok, vocab);
  std::printf("preset %s, vocab %d, %d threads\n", preset.c_str(), vocab, kernels::default_backend().threads());
  std::printf("vocabulary index (once per tokenizer): %.0f ms, %zu trie nodes\n", ms_since(t0),
              cv->index->all.byte.size() + cv->index->not_string_safe.byte.size() + cv->index->not_key_safe.byte.size());

  if (mask_only) {
    // No model: random logits, many runs per schema; the slowest steps with the text before them.
    std::mt19937 rng(5);
    std::normal_distribution<float> nd(0.0f, 3.0f);
    std::vector<float> logits(static_cast<size_t>(vocab));
    std::vector<double> times;
    std::vector<std::pair<double, std::string>> slow;
    for (size_t si = 0; si < std::size(kSchemas); ++si) {
      auto g = text::compile_json_schema(text::Json::parse(kSchemas[si]));
      for (int run = 0; run < 20; ++run) {
        engine::JsonConstraint c(g, cv, tokens, false, 0);
        std::vector<int32_t> out;
        while (!c.done()) {
          for (float& x : logits) x = nd(rng);
          auto m0 = Clock::now();
          int32_t t = c.next(logits);
          const double mt = ms_since(m0);
          if (t < 0) t = int32_t(std::max_element(logits.begin(), logits.end()) - logits.begin());
          times.push_back(mt);
          slow.push_back({mt, std::to_string(si) + ": " + tok.decode(out)});
          c.accept(t);
          out.push_back(t);
        }
      }
    }
    std::sort(slow.begin(), slow.end(), [](auto& a, auto& b) { return a.first > b.first; });
    double sum = 0;
    for (double x : times) sum += x;
    std::printf("mask only: %zu steps, mean %.3f ms, p50 %.3f, p99 %.3f, max %.3f\n", times.size(), sum / double(times.size()),
                pct(times, 0.5), pct(times, 0.99), slow[0].first);
    for (int k = 0; k < 8 && k < int(slow.size()); ++k) std::printf("  %.3f ms after %s\n", slow[size_t(k)].first, slow[size_t(k)].second.c_str());
    return 0;
  }
  std::vector<int32_t> prompt = {tok.bos_id()};
  tok.encode_plain("Answer in JSON.", &prompt);
  std::vector<double> all_mask, all_decode;
  std::printf("%-8s %8s %12s %12s %12s %12s %8s\n", "schema", "tokens", "decode ms", "mask mean", "mask p50", "mask p99", "ratio");
  for (size_t si = 0; si < std::size(kSchemas); ++si) {
    auto g = text::compile_json_schema(text::Json::parse(kSchemas[si]));
    engine::JsonConstraint c(g, cv, tokens, false, 0);
    engine::SamplingParams sp;
    sp.temperature = 1.0f;
    sp.seed = 1 + si;
    sp.has_seed = true;
    engine::Sampler sampler(sp);
    auto st = fp.new_state();
    std::vector<float> logits;
    engine::prefill(fp, *st, prompt, logits);
    std::vector<double> mask, decode;
    std::vector<int32_t> out;
    while (!c.done() && int(out.size()) < tokens + 64) {
      auto m0 = Clock::now();
      int32_t t = c.next(logits);
      double mt = ms_since(m0);
      if (t < 0) t = sampler.sample(logits, out).token;
      m0 = Clock::now();
      c.accept(t);
      mt += ms_since(m0);
      mask.push_back(mt);
      out.push_back(t);
      if (c.done()) break;
      const auto d0 = Clock::now();
      engine::decode_step(fp, *st, t, logits);
      decode.push_back(ms_since(d0));
    }
    double ms = 0, ds = 0;
    for (double x : mask) ms += x;
    for (double x : decode) ds += x;
    const double mm = ms / double(mask.size()), dm = ds / double(std::max<size_t>(1, decode.size()));
    std::printf("%-8zu %8zu %12.3f %12.3f %12.3f %12.3f %7.1f%%\n", si, out.size(), dm, mm, pct(mask, 0.5), pct(mask, 0.99),
                100.0 * mm / dm);
    std::string text = tok.decode(std::span<const int32_t>(out.data(), out.size() - 1));
    if (text.size() > 100) text = text.substr(0, 97) + "...";
    std::printf("         %s\n", text.c_str());
    all_mask.insert(all_mask.end(), mask.begin(), mask.end());
    all_decode.insert(all_decode.end(), decode.begin(), decode.end());
  }
  double ms = 0, ds = 0;
  for (double x : all_mask) ms += x;
  for (double x : all_decode) ds += x;
  const double mm = ms / double(all_mask.size()), dm = ds / double(all_decode.size());
  std::printf("total: decode %.3f ms/token, constraint %.3f ms/token (p50 %.3f, p99 %.3f): %.1f%% of a decode step\n", dm, mm,
              pct(all_mask, 0.5), pct(all_mask, 0.99), 100.0 * mm / dm);
  return 0;
}
