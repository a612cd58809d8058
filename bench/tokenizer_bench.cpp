// Tokenizer throughput (single thread). The target is >= 30 MB/s encoding English prose.
//
// Prose: the sentences of a fixed English paragraph and of the ascii_prose golden cases,
// recombined in a seeded random order into ~1 MiB. The per-thread word cache is warm after the
// first iteration, as it is for a server that has seen some text. BM_EncodeUncachedWords encodes
// letter strings that never repeat (every word misses the cache: the BPE worst case for prose).
//
//   ./build/bench/tokenizer_bench --benchmark_filter=Encode
#include <benchmark/benchmark.h>

#include <fstream>
#include <random>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "text/tokenizer.h"

namespace {

using dsv4::text::Tokenizer;

const char* kParagraph =
    "The history of computing is a story of abstraction layered on abstraction. Early machines were "
    "programmed by rewiring panels, and every change to a calculation meant hours of careful work "
    "with cables and switches. Stored programs changed that: instructions became data, and data "
    "could be written, copied, and corrected like any other record. Within a decade, engineers had "
    "assemblers that turned mnemonics into numbers, and soon afterwards compilers that turned "
    "formulas into whole routines. Each step hid details that had once mattered a great deal, "
    "while exposing new ones that nobody had anticipated. Memory was scarce, so programmers "
    "counted bytes; later it was plentiful but slow, so they learned to count cache misses "
    "instead. Today a single laptop holds more storage than every computer of 1970 combined, yet "
    "the old questions remain surprisingly familiar. How should a program represent its data? "
    "When is it worth spending time to save space, or space to save time? Which parts of a "
    "system deserve to be simple, and which are allowed to be clever? Good answers rarely come "
    "from theory alone. They come from measuring real workloads, reading other people's code, "
    "and keeping a healthy suspicion of any result that seems too good to be true. \"It's "
    "fine,\" she said, \"until it isn't\" - and then, of course, everyone wants to know why.";

std::vector<std::string> sentences() {
  std::vector<std::string> out;
  std::string cur;
  for (const char* p = kParagraph; *p; ++p) {
    cur += *p;
    if ((*p == '.' || *p == '?') && p[1] == ' ') {
      out.push_back(cur);
      cur.clear();
    }
  }
  if (!cur.empty()) out.push_back(cur);
  std::ifstream f(std::string(DSV4_TESTDATA_DIR) + "/tokenizer/tokenizer_cases.jsonl");
  std::string line;
  while (std::getline(f, line)) {
    auto j = nlohmann::json::parse(line);
    if (j["id"].get<std::string>().rfind("ascii_prose", 0) == 0) out.push_back(j["text"].get<std::string>());
  }
  return out;
}

std::string make_prose(size_t bytes) {
  std::vector<std::string> s = sentences();
  std::mt19937 rng(42);
  std::string text;
  while (text.size() < bytes) {
    text += s[rng() % s.size()];
    text += (rng() % 5 == 0) ? "\n\n" : " ";
  }
  return text;
}

const Tokenizer& tokenizer() {
  static const Tokenizer tok = Tokenizer::load(std::string(DSV4_ASSETS_DIR) + "/tokenizer/deepseek-v3");
  return tok;
}

void BM_EncodeEnglishProse(benchmark::State& state) {
  const Tokenizer& tok = tokenizer();
  const std::string text = make_prose(size_t(state.range(0)));
  size_t n_tokens = 0;
  for (auto _ : state) {
    auto ids = tok.encode_plain(text);
    n_tokens = ids.size();
    benchmark::DoNotOptimize(ids.data());
  }
  state.SetBytesProcessed(int64_t(state.iterations()) * int64_t(text.size()));
  state.counters["bytes_per_token"] = double(text.size()) / double(n_tokens);
}
BENCHMARK(BM_EncodeEnglishProse)->Arg(4 << 10)->Arg(1 << 20)->Unit(benchmark::kMillisecond);

void BM_EncodeUncachedWords(benchmark::State& state) {
  const Tokenizer& tok = tokenizer();
  std::mt19937 rng(1);
  const size_t bytes = 1 << 20;
  int64_t processed = 0;
  for (auto _ : state) {
    state.PauseTiming();
    std::string text;
    while (text.size() < bytes) {
      text += ' ';
      int len = 3 + int(rng() % 8);
      for (int i = 0; i < len; ++i) text += char('a' + rng() % 26);
    }
    state.ResumeTiming();
    auto ids = tok.encode_plain(text);
    benchmark::DoNotOptimize(ids.data());
    processed += int64_t(text.size());
  }
  state.SetBytesProcessed(processed);
}
BENCHMARK(BM_EncodeUncachedWords)->Unit(benchmark::kMillisecond);

void BM_Decode(benchmark::State& state) {
  const Tokenizer& tok = tokenizer();
  const std::string text = make_prose(1 << 20);
  const std::vector<int32_t> ids = tok.encode_plain(text);
  for (auto _ : state) {
    std::string s = tok.decode(ids);
    benchmark::DoNotOptimize(s.data());
  }
  state.SetBytesProcessed(int64_t(state.iterations()) * int64_t(text.size()));
}
BENCHMARK(BM_Decode)->Unit(benchmark::kMillisecond);

void BM_Load(benchmark::State& state) {
  for (auto _ : state) {
    Tokenizer t = Tokenizer::load(std::string(DSV4_ASSETS_DIR) + "/tokenizer/deepseek-v3");
    benchmark::DoNotOptimize(&t);
  }
}
BENCHMARK(BM_Load)->Unit(benchmark::kMillisecond)->Iterations(3);

}  // namespace

BENCHMARK_MAIN();
