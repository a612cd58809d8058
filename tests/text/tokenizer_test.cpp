// Tokenizer: golden ids (tokenizer_cases.jsonl), round trips, incremental decoding, added tokens,
// the V4 overlay, and the pieces underneath (pre-tokenizer, BPE, UTF-8 helpers).
#include "text/tokenizer.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <fstream>
#include <random>
#include <thread>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "test_util.h"
#include "text/bpe.h"
#include "text/pretokenizer.h"
#include "text/utf8_util.h"

namespace dsv4::text {
namespace {

using test::assets_path;
using test::testdata_path;

std::string v3_dir() { return assets_path("tokenizer/deepseek-v3"); }

bool have_v3() { return std::filesystem::exists(v3_dir() + "/tokenizer.json"); }

#define REQUIRE_V3()                                                                  \
  do {                                                                                \
    if (!have_v3()) GTEST_SKIP() << "MISSING tokenizer asset " << v3_dir() << ": skipped"; \
  } while (0)

const Tokenizer& v3() {
  static const Tokenizer tok = Tokenizer::load(v3_dir());
  return tok;
}

// The V4 overlay written once per process into a temp dir.
const Tokenizer& v4() {
  static const Tokenizer tok = [] {
    std::string dir = test::make_temp_dir("dsv4tok");
    write_v4_tokenizer(v3_dir(), dir);
    Tokenizer t = Tokenizer::load(dir);
    std::filesystem::remove_all(dir);
    return t;
  }();
  return tok;
}

struct Case {
  std::string id, text;
  std::vector<int32_t> ids;
};

const std::vector<Case>& golden_cases() {
  static const std::vector<Case> cases = [] {
    std::vector<Case> out;
    std::ifstream f(testdata_path("tokenizer/tokenizer_cases.jsonl"), std::ios::binary);
    std::string line;
    while (std::getline(f, line)) {
      if (line.empty()) continue;
      auto j = nlohmann::json::parse(line);
      out.push_back({j["id"].get<std::string>(), j["text"].get<std::string>(),
                     j["ids"].get<std::vector<int32_t>>()});
    }
    return out;
  }();
  return cases;
}

#define REQUIRE_CASES()                                                              \
  do {                                                                               \
    REQUIRE_V3();                                                                    \
    if (golden_cases().empty())                                                      \
      GTEST_SKIP() << "MISSING " << testdata_path("tokenizer/tokenizer_cases.jsonl"); \
  } while (0)

// ---------------------------------------------------------------------------------------------
// Random valid UTF-8 text: ASCII words and punctuation, CJK and kana (with the kana that are not
// letters), emoji with ZWJ/VS16/flags, combining marks, whitespace runs (incl. NBSP, U+3000,
// U+2028, CR/LF), ASCII and non-ASCII digits, other scripts, and any non-surrogate code point.
std::string random_text(std::mt19937& rng) {
  auto pick = [&](uint32_t lo, uint32_t hi) { return char32_t(std::uniform_int_distribution<uint32_t>(lo, hi)(rng)); };
  auto coin = [&](int n) { return std::uniform_int_distribution<int>(0, n - 1)(rng); };
  std::string s;
  int segments = coin(24);
  for (int seg = 0; seg < segments; ++seg) {
    int len = 1 + coin(6);
    switch (coin(12)) {
      case 0:
        for (int i = 0; i < len; ++i) append_utf8(pick('a', 'z') - (coin(4) == 0 ? 32 : 0), &s);
        break;
      case 1:
        for (int i = 0; i < len; ++i) append_utf8(pick(0x21, 0x7E), &s);
        break;
      case 2: {
        static const char32_t ws[] = {' ', ' ', ' ', '\t', '\n', '\r', '\v', '\f', 0xA0, 0x3000, 0x2028, 0x2003};
        for (int i = 0; i < len * 2; ++i) append_utf8(ws[coin(std::size(ws))], &s);
        break;
      }
      case 3:
        for (int i = 0; i < len * 2; ++i) append_utf8(coin(5) ? pick('0', '9') : (coin(2) ? pick(0x660, 0x669) : pick(0xFF10, 0xFF19)), &s);
        break;
      case 4:
        for (int i = 0; i < len; ++i) append_utf8(coin(3) ? pick(0x4E00, 0x9FA5) : pick(0x3040, 0x30FF), &s);
        break;
      case 5:
        for (int i = 0; i < len; ++i) {
          append_utf8(coin(3) ? pick(0x1F600, 0x1F64F) : pick(0x1F300, 0x1F5FF), &s);
          if (coin(3) == 0) append_utf8(0x200D, &s);
          if (coin(3) == 0) append_utf8(0xFE0F, &s);
          if (coin(5) == 0) {
            append_utf8(pick(0x1F1E6, 0x1F1FF), &s);
            append_utf8(pick(0x1F1E6, 0x1F1FF), &s);
          }
        }
        break;
      case 6:
        for (int i = 0; i < len; ++i) {
          append_utf8(pick('a', 'z'), &s);
          append_utf8(pick(0x300, 0x36F), &s);
          if (coin(2)) append_utf8(pick(0x300, 0x36F), &s);
        }
        break;
      case 7:
        for (int i = 0; i < len; ++i) append_utf8(coin(2) ? pick(0x410, 0x44F) : pick(0x391, 0x3C9), &s);
        break;
      case 8:
        for (int i = 0; i < len; ++i) append_utf8(coin(2) ? pick(0x621, 0x64A) : pick(0xAC00, 0xD7A3), &s);
        break;
      case 9: {
        char32_t cp;
        do cp = pick(1, 0x10FFFF);
        while (cp >= 0xD800 && cp <= 0xDFFF);
        append_utf8(cp, &s);
        break;
      }
      case 10:
        for (int i = 0; i < len; ++i) append_utf8(pick(0x2000, 0x2BFF), &s);  // punctuation, symbols
        break;
      default:
        s += coin(2) ? " the" : "\n\n";
        break;
    }
  }
  return s;
}

// ---------------------------------------------------------------------------------------------
// Golden ids

TEST(Tokenizer, GoldenCasesExactIds) {
  REQUIRE_CASES();
  EXPECT_EQ(golden_cases().size(), 106u);
  for (const Case& c : golden_cases()) {
    EXPECT_EQ(v3().encode_plain(c.text), c.ids) << c.id;
    // No case holds an added-token spelling, so both modes agree.
    EXPECT_EQ(v3().encode_with_specials(c.text), c.ids) << c.id;
  }
}

TEST(Tokenizer, ApiNotesVectors) {
  REQUIRE_V3();
  const Tokenizer& t = v3();
  EXPECT_EQ(t.encode_plain("Hello world"), (std::vector<int32_t>{19923, 2058}));
  EXPECT_EQ(t.encode_plain(" Hello  world  "), (std::vector<int32_t>{45948, 223, 2058, 262}));
  EXPECT_EQ(t.encode_plain("12345678 3.14159 1,000,000"),
            (std::vector<int32_t>{6895, 18009, 2597, 223, 21, 16, 9926, 3318, 223, 19, 14, 1320, 14, 1320}));
  EXPECT_EQ(t.encode_plain("你好，世界！今天天气很好。"),
            (std::vector<int32_t>{30594, 303, 3427, 1175, 5237, 16652, 12210, 320}));
  EXPECT_EQ(t.encode_plain("def f(x):\n    return x**2\n\n\n"),
            (std::vector<int32_t>{3465, 285, 4042, 3395, 361, 1354, 1527, 666, 20, 6328}));
  EXPECT_EQ(t.encode_plain("\t\t tabs\r\n\r\nCRLF"),
            (std::vector<int32_t>{998, 61302, 204, 201, 204, 201, 8002, 68688}));
  EXPECT_EQ(t.encode_plain("Привет, мир! Ελληνικά"),
            (std::vector<int32_t>{24797, 8919, 14, 74779, 3, 19217, 43595, 20975}));
  EXPECT_TRUE(t.encode_plain("").empty());
}

// ---------------------------------------------------------------------------------------------
// Round trips

TEST(Tokenizer, RoundTripGoldenCases) {
  REQUIRE_CASES();
  for (const Case& c : golden_cases()) {
    EXPECT_EQ(v3().decode(c.ids), c.text) << c.id;
    EXPECT_EQ(v3().decode(v3().encode_plain(c.text)), c.text) << c.id;
  }
}

TEST(Tokenizer, RoundTripRandomUtf8) {
  REQUIRE_V3();
  std::mt19937 rng(20240611);
  for (int i = 0; i < 4000; ++i) {
    std::string s = random_text(rng);
    ASSERT_TRUE(is_valid_utf8(s));
    std::vector<int32_t> ids = v3().encode_plain(s);
    ASSERT_EQ(v3().decode(ids), s) << "case " << i;
    ASSERT_EQ(v3().encode_with_specials(s), ids) << "case " << i;
  }
}

TEST(Tokenizer, LongRunsUseHeapMergeAndRoundTrip) {
  REQUIRE_V3();
  for (std::string unit : {" ", "a", "\n", "ab", "ä", "🦙", "1", "!?", " \t"}) {
    std::string s;
    while (s.size() < 30000) s += unit;
    EXPECT_EQ(v3().decode(v3().encode_plain(s)), s) << unit;
  }
}

// A megabyte drawn from a few troublesome characters: long whitespace runs with look-ahead
// backtracking, marks, digits, CJK. Guards against JIT stack exhaustion and quadratic scans.
TEST(Tokenizer, LargeMixedInputRoundTrips) {
  REQUIRE_V3();
  static const char* units[] = {" ", " ", " ", "\n", "\t", "\r\n", "a", "\u0301", "1", ".", "你", "\u3000", "ー"};
  std::mt19937 rng(3);
  std::string s;
  while (s.size() < (1u << 20)) {
    const char* u = units[rng() % std::size(units)];
    int reps = rng() % 8 == 0 ? int(rng() % 2000) : 1;
    for (int i = 0; i < reps; ++i) s += u;
  }
  EXPECT_EQ(v3().decode(v3().encode_plain(s)), s);
}

// Alternating tokenizers on one thread switches the per-thread word cache; results stay exact.
TEST(Tokenizer, AlternatingTokenizersShareNoCacheEntries) {
  REQUIRE_CASES();
  for (int rep = 0; rep < 2; ++rep)
    for (const Case& c : golden_cases()) {
      ASSERT_EQ(v3().encode_plain(c.text), c.ids) << c.id;
      ASSERT_EQ(v4().encode_plain(c.text), c.ids) << c.id;
    }
}

TEST(Tokenizer, InvalidUtf8EncodesEveryByteAndDecodesLossy) {
  REQUIRE_V3();
  const std::string bad = "ok\xFF\xC3(\xE4\xB8 x\xF0\x9F\x98";
  std::vector<int32_t> ids = v3().encode_plain(bad);
  std::string bytes;
  for (int32_t id : ids) v3().append_token_bytes(id, &bytes);
  EXPECT_EQ(bytes, bad);
  EXPECT_EQ(v3().decode(ids), "ok\uFFFD\uFFFD(\uFFFD x\uFFFD");
}

TEST(Tokenizer, ConcurrentEncodeMatchesSerial) {
  REQUIRE_CASES();
  std::vector<std::thread> threads;
  std::atomic<int> mismatches{0};
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&] {
      for (int rep = 0; rep < 3; ++rep)
        for (const Case& c : golden_cases())
          if (v3().encode_plain(c.text) != c.ids) ++mismatches;
    });
  for (auto& th : threads) th.join();
  EXPECT_EQ(mismatches.load(), 0);
}

// ---------------------------------------------------------------------------------------------
// Incremental decoding

// Pushes ids one at a time; every chunk must be valid UTF-8 and the whole equal decode(ids).
void expect_incremental_matches(const Tokenizer& t, const std::vector<int32_t>& ids, const std::string& what) {
  IncrementalDecoder dec(t);
  std::string all, bytes;
  for (size_t i = 0; i < ids.size(); ++i) {
    std::string chunk = dec.push(ids[i]);
    ASSERT_TRUE(is_valid_utf8(chunk)) << what << " at id " << i;
    all += chunk;
    t.append_token_bytes(ids[i], &bytes);
    // Emits as soon as possible: what is held is exactly an incomplete tail of the bytes so far.
    std::string scratch;
    size_t held = bytes.size() - append_utf8_decided(bytes, &scratch);
    ASSERT_EQ(dec.pending_bytes(), held) << what << " at id " << i;
    ASSERT_LE(dec.pending_bytes(), 3u);
  }
  std::string tail = dec.flush();
  ASSERT_TRUE(is_valid_utf8(tail));
  all += tail;
  EXPECT_EQ(all, t.decode(ids)) << what;
  EXPECT_EQ(dec.pending_bytes(), 0u);
}

TEST(IncrementalDecoder, MatchesOneShotOnGoldenCases) {
  REQUIRE_CASES();
  for (const Case& c : golden_cases()) expect_incremental_matches(v3(), c.ids, c.id);
}

TEST(IncrementalDecoder, MatchesOneShotOnRandomIdsWithBrokenUtf8) {
  REQUIRE_V3();
  std::mt19937 rng(7);
  // Byte tokens for every byte value, so that sequences cut characters anywhere.
  std::vector<int32_t> byte_tok;
  for (int b = 0; b < 256; ++b) {
    auto ids = v3().encode_plain(std::string(1, char(b)));
    ASSERT_EQ(ids.size(), 1u);
    byte_tok.push_back(ids[0]);
  }
  for (int i = 0; i < 2000; ++i) {
    std::vector<int32_t> ids;
    int n = std::uniform_int_distribution<int>(0, 24)(rng);
    for (int k = 0; k < n; ++k) {
      int kind = std::uniform_int_distribution<int>(0, 3)(rng);
      if (kind == 0)
        ids.push_back(std::uniform_int_distribution<int32_t>(0, 128814)(rng));
      else
        ids.push_back(byte_tok[std::uniform_int_distribution<int>(kind == 1 ? 0 : 0x80, 255)(rng)]);
    }
    expect_incremental_matches(v3(), ids, "random " + std::to_string(i));
  }
}

TEST(IncrementalDecoder, HoldsSplitCharacterUntilComplete) {
  REQUIRE_V3();
  // 🦙 = F0 9F A6 99, fed as four byte tokens.
  std::vector<int32_t> ids;
  for (unsigned char b : std::string("🦙")) ids.push_back(v3().encode_plain(std::string(1, char(b)))[0]);
  IncrementalDecoder dec(v3());
  EXPECT_EQ(dec.push(ids[0]), "");
  EXPECT_EQ(dec.push(ids[1]), "");
  EXPECT_EQ(dec.push(ids[2]), "");
  EXPECT_EQ(dec.push(ids[3]), "🦙");
  // A cut-short character followed by ASCII becomes U+FFFD right away; at the end, at flush().
  EXPECT_EQ(dec.push(ids[0]), "");
  EXPECT_EQ(dec.push(v3().token_id("a")), "\uFFFDa");
  EXPECT_EQ(dec.push(ids[0]), "");
  EXPECT_EQ(dec.flush(), "\uFFFD");
}

// ---------------------------------------------------------------------------------------------
// Added tokens: encode_with_specials vs encode_plain

TEST(Tokenizer, SpecialSpellingsV3) {
  REQUIRE_V3();
  const Tokenizer& t = v3();
  const std::string text = "<｜User｜>not special<｜end▁of▁sentence｜> <|EOT|>";
  std::vector<int32_t> with = t.encode_with_specials(text);
  ASSERT_FALSE(with.empty());
  EXPECT_EQ(with.front(), 128803);
  EXPECT_EQ(with.back(), 128805);
  EXPECT_NE(std::find(with.begin(), with.end(), 1), with.end());
  std::vector<int32_t> plain = t.encode_plain(text);
  for (int32_t id : plain) EXPECT_FALSE(t.is_added(id)) << id;
  EXPECT_EQ(t.decode(with), text);
  EXPECT_EQ(t.decode(plain), text);
  // The plain text between specials is encoded on its own.
  std::vector<int32_t> expect = {128803};
  for (int32_t id : t.encode_plain("not special")) expect.push_back(id);
  expect.push_back(1);
  for (int32_t id : t.encode_plain(" ")) expect.push_back(id);
  expect.push_back(128805);
  EXPECT_EQ(with, expect);
  // Near misses stay text.
  for (std::string s : {"<｜User|>", "<|User｜>", "<｜User｜", "<｜user｜>"})
    EXPECT_EQ(t.encode_with_specials(s), t.encode_plain(s)) << s;
}

TEST(Tokenizer, V3Metadata) {
  REQUIRE_V3();
  const Tokenizer& t = v3();
  EXPECT_EQ(t.vocab_size(), 128815u);
  EXPECT_EQ(t.bos_id(), 0);
  EXPECT_EQ(t.eos_id(), 1);
  EXPECT_TRUE(t.add_bos_token());
  EXPECT_EQ(t.token_id("<｜User｜>"), 128803);
  EXPECT_EQ(t.token_id("<｜Assistant｜>"), 128804);
  EXPECT_EQ(t.token_id("Hello"), 19923);
  EXPECT_EQ(t.token_id(" world"), 2058);
  EXPECT_EQ(t.token_id("no such token spelling"), -1);
  EXPECT_EQ(t.token_text(2058), " world");
  EXPECT_EQ(t.token_piece(2058), "Ġworld");
  EXPECT_EQ(t.token_text(128803), "<｜User｜>");
  EXPECT_TRUE(t.is_special(0));
  EXPECT_TRUE(t.is_special(128000));
  EXPECT_FALSE(t.is_special(128803));  // V3 marks the chat tokens non-special
  EXPECT_TRUE(t.is_added(128803));
  EXPECT_FALSE(t.is_special(19923));
  EXPECT_FALSE(t.is_special(-1));
  EXPECT_FALSE(t.is_special(1 << 30));
  EXPECT_EQ(t.token_text(-5), "");
}

// ---------------------------------------------------------------------------------------------
// V4 overlay

TEST(TokenizerV4, OverlayIdsAndMetadata) {
  REQUIRE_V3();
  const Tokenizer& t = v4();
  EXPECT_EQ(t.vocab_size(), 129280u);
  EXPECT_EQ(t.bos_id(), 0);
  EXPECT_EQ(t.eos_id(), 1);
  EXPECT_FALSE(t.add_bos_token());
  std::ifstream f(testdata_path("encoding/special_tokens.json"));
  ASSERT_TRUE(f) << "MISSING encoding/special_tokens.json";
  auto specials = nlohmann::json::parse(f);
  for (auto it = specials.begin(); it != specials.end(); ++it) {
    EXPECT_EQ(t.token_id(it.key()), it.value().get<int32_t>()) << it.key();
    EXPECT_EQ(t.encode_with_specials(it.key()), std::vector<int32_t>{it.value().get<int32_t>()}) << it.key();
  }
  EXPECT_EQ(t.token_id("<｜image｜>"), 129279);
  EXPECT_EQ(t.token_id("<｜tool▁calls▁begin｜>"), 128806);
  EXPECT_EQ(t.token_text(128900), "<｜place▁holder▁no▁900｜>");
  EXPECT_TRUE(t.is_special(128900));
  // Every id up to 129279 has a token.
  size_t added = 0;
  for (int32_t id = 0; id < 129280; ++id) {
    ASSERT_FALSE(t.token_piece(id).empty()) << id;
    added += t.is_added(id);
  }
  EXPECT_EQ(added, 1283u);
}

TEST(TokenizerV4, PublishedTestVectors) {
  REQUIRE_V3();
  const Tokenizer& t = v4();
  EXPECT_EQ(t.encode_with_specials("<｜User｜>你好<｜Assistant｜><think>推理</think>答案<｜end▁of▁sentence｜>"),
            (std::vector<int32_t>{128803, 30594, 128804, 128821, 36101, 128822, 7624, 1}));
  EXPECT_EQ(t.encode_plain("Hello! 毕老师！1 + 1 = 2 ĠÑĤÐ²ÑĬÑĢ"),
            (std::vector<int32_t>{19923, 3, 223, 5464, 5008, 1175, 19, 940, 223, 19, 438, 223, 20, 6113, 257,
                                  76589, 131, 100, 76032, 1628, 76589, 131, 108, 76589, 131, 98}));
  // Plain mode leaves <think> as text.
  std::vector<int32_t> plain = t.encode_plain("<think>");
  EXPECT_GT(plain.size(), 1u);
  EXPECT_EQ(t.decode(plain), "<think>");
}

// Rendered V4 prompts: with no special spelling inside content, HF-style encoding of the whole
// prompt gives the reference ids; with one, the reference's ids_specials_in_content_matched.
TEST(TokenizerV4, RenderedPrompts) {
  REQUIRE_V3();
  int checked = 0;
  for (const char* file : {"encoding/render_cases.json", "encoding/render_cases_v4_0731_effort.json"}) {
    std::ifstream f(testdata_path(file));
    if (!f) GTEST_SKIP() << "MISSING " << testdata_path(file);
    for (const auto& c : nlohmann::json::parse(f)) {
      const std::string prompt = c["prompt"].get<std::string>();
      const std::string id = c["id"].get<std::string>();
      auto ids = c["ids"].get<std::vector<int32_t>>();
      EXPECT_EQ(v4().decode(ids), prompt) << id;
      bool content_special = c.value("content_has_special_spelling", false);
      auto expect = content_special ? c["ids_specials_in_content_matched"].get<std::vector<int32_t>>() : ids;
      EXPECT_EQ(v4().encode_with_specials(prompt), expect) << id;
      ++checked;
    }
  }
  EXPECT_EQ(checked, 25);
}

TEST(TokenizerV4, WriterRejectsNonDeepSeekInput) {
  std::string dir = test::make_temp_dir("dsv4tok");
  {
    std::ofstream(dir + "/tokenizer.json") << R"({"added_tokens": [{"id": 0, "content": "<s>"}]})";
  }
  try {
    write_v4_tokenizer(dir, dir + "/out");
    ADD_FAILURE() << "expected dsv4::Error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("tokenizer.json"), std::string::npos) << e.what();
  }
  EXPECT_THROW(write_v4_tokenizer(dir + "/nope", dir + "/out"), Error);
  std::filesystem::remove_all(dir);
}

// ---------------------------------------------------------------------------------------------
// Load errors name the file

std::string load_error(const std::string& dir) {
  try {
    Tokenizer::load(dir);
  } catch (const Error& e) {
    return e.what();
  }
  return "<no error>";
}

TEST(Tokenizer, LoadErrorsNameTheFile) {
  std::string dir = test::make_temp_dir("dsv4tok");
  EXPECT_NE(load_error(dir).find(dir + "/tokenizer.json"), std::string::npos) << load_error(dir);
  {
    std::ofstream(dir + "/tokenizer.json") << "{ not json";
  }
  EXPECT_NE(load_error(dir).find("tokenizer.json: bad JSON"), std::string::npos) << load_error(dir);
  {
    std::ofstream(dir + "/tokenizer.json")
        << R"({"model": {"type": "WordPiece", "vocab": {}}, "pre_tokenizer": {"type": "ByteLevel", "use_regex": false}})";
  }
  std::string msg = load_error(dir);
  EXPECT_NE(msg.find("tokenizer.json"), std::string::npos) << msg;
  EXPECT_NE(msg.find("WordPiece"), std::string::npos) << msg;
  {
    std::ofstream(dir + "/tokenizer.json")
        << R"({"model": {"type": "BPE", "vocab": {}, "merges": []}, "pre_tokenizer": {"type": "Whitespace"}})";
  }
  msg = load_error(dir);
  EXPECT_NE(msg.find("Whitespace"), std::string::npos) << msg;
  std::filesystem::remove_all(dir);
}

TEST(Tokenizer, LoadAcceptsTokenizerJsonPath) {
  REQUIRE_V3();
  Tokenizer t = Tokenizer::load(v3_dir() + "/tokenizer.json");
  EXPECT_EQ(t.encode_plain("Hello world"), (std::vector<int32_t>{19923, 2058}));
  EXPECT_EQ(t.bos_id(), 0);
}

// ---------------------------------------------------------------------------------------------
// Pre-tokenizer

std::vector<std::string> v3_pieces(std::string_view s) {
  static const PreTokenizer pre = [] {
    std::ifstream f(v3_dir() + "/tokenizer.json");
    return PreTokenizer::from_json(nlohmann::json::parse(f)["pre_tokenizer"], "tokenizer.json");
  }();
  return pre.split_to_vector(s);
}

using Pieces = std::vector<std::string>;

TEST(PreTokenizer, DeepSeekSplits) {
  REQUIRE_V3();
  EXPECT_EQ(v3_pieces("Hello world"), (Pieces{"Hello", " world"}));
  EXPECT_EQ(v3_pieces("1234567"), (Pieces{"123", "456", "7"}));
  EXPECT_EQ(v3_pieces("你好abc"), (Pieces{"你好", "abc"}));
  EXPECT_EQ(v3_pieces("カ・カ"), (Pieces{"カ", "・", "カ"}));
  EXPECT_EQ(v3_pieces("x.Foo"), (Pieces{"x", ".Foo"}));
  EXPECT_EQ(v3_pieces("a  b"), (Pieces{"a", " ", " b"}));
  // The digit split ends the piece, so `\s+(?!\S)` sees its end: all spaces stay together.
  EXPECT_EQ(v3_pieces("a  1"), (Pieces{"a", "  ", "1"}));
  EXPECT_EQ(v3_pieces("x \n\n y"), (Pieces{"x", " \n\n", " y"}));
  EXPECT_EQ(v3_pieces(""), Pieces{});
}

TEST(PreTokenizer, WhitespaceFollowsOniguruma) {
  REQUIRE_V3();
  // U+0085 (NEL) is \s in Oniguruma (HF tokenizers): it joins the newline run.
  EXPECT_EQ(v3_pieces("\u0085\n"), (Pieces{"\u0085\n"}));
  // U+180E is not (PCRE2's own \s would say it is).
  EXPECT_EQ(v3_pieces("\u180E\n"), (Pieces{"\u180E", "\n"}));
  EXPECT_EQ(v3_pieces("\u3000\n"), (Pieces{"\u3000\n"}));
}

TEST(PreTokenizer, TranslateOnigPattern) {
  EXPECT_EQ(translate_onig_pattern("a\\s+b"), "a[\\t\\n\\x{0B}\\f\\r\\x{85}\\p{Z}]+b");
  EXPECT_EQ(translate_onig_pattern("(?!\\S)"), "(?![^\\t\\n\\x{0B}\\f\\r\\x{85}\\p{Z}])");
  EXPECT_EQ(translate_onig_pattern("[x\\s]"), "[x\\t\\n\\x{0B}\\f\\r\\x{85}\\p{Z}]");
  EXPECT_EQ(translate_onig_pattern("[\\]\\\\s]\\\\s"), "[\\]\\\\s]\\\\s");  // escaped backslashes
  EXPECT_EQ(translate_onig_pattern("[]s]"), "[]s]");
  EXPECT_THROW(translate_onig_pattern("[\\S]"), Error);
}

TEST(PreTokenizer, PiecesConcatenateToInputEvenWhenInvalid) {
  REQUIRE_V3();
  std::mt19937 rng(99);
  for (int i = 0; i < 500; ++i) {
    std::string s = random_text(rng);
    if (i % 2) s.insert(std::uniform_int_distribution<size_t>(0, s.size())(rng), 1, char(0x80 | (i & 0x7F)));
    std::string joined;
    for (const auto& p : v3_pieces(s)) {
      EXPECT_FALSE(p.empty());
      joined += p;
    }
    ASSERT_EQ(joined, s);
  }
}

// ---------------------------------------------------------------------------------------------
// BPE: the small and heap merge loops agree

TEST(Bpe, SmallAndHeapAgree) {
  std::mt19937 rng(5);
  MergeTable table;
  int32_t next_id = 8;  // symbols 0..7 are "bytes"
  for (int32_t rank = 0; rank < 200; ++rank) {
    int32_t a = std::uniform_int_distribution<int32_t>(0, next_id - 1)(rng);
    int32_t b = std::uniform_int_distribution<int32_t>(0, next_id - 1)(rng);
    if (table.add(a, b, rank, next_id)) ++next_id;
  }
  for (int i = 0; i < 3000; ++i) {
    std::vector<int32_t> w(std::uniform_int_distribution<size_t>(0, 120)(rng));
    for (auto& x : w) x = std::uniform_int_distribution<int32_t>(0, 7)(rng);
    std::vector<int32_t> a = w, b = w;
    bpe_merge_small(table, a);
    bpe_merge_heap(table, b);
    ASSERT_EQ(a, b) << "word " << i;
  }
}

TEST(Bpe, LeftmostWinsOnEqualRank) {
  MergeTable table;
  table.add(0, 0, 0, 1);  // "a a" -> "aa"
  std::vector<int32_t> w = {0, 0, 0};
  bpe_merge_small(table, w);
  EXPECT_EQ(w, (std::vector<int32_t>{1, 0}));
  w = {0, 0, 0};
  bpe_merge_heap(table, w);
  EXPECT_EQ(w, (std::vector<int32_t>{1, 0}));
}

// ---------------------------------------------------------------------------------------------
// UTF-8 helpers

std::string lossy(std::string_view s) {
  std::string out;
  append_utf8_lossy(s, &out);
  return out;
}

TEST(Utf8, LossyReplacesMaximalSubparts) {
  EXPECT_EQ(lossy("abc"), "abc");
  EXPECT_EQ(lossy("a\xFF" "b"), "a\uFFFDb");
  EXPECT_EQ(lossy("\xC3\x28"), "\uFFFD(");
  EXPECT_EQ(lossy("\xE0\x80"), "\uFFFD\uFFFD");          // E0 needs A0..BF next
  EXPECT_EQ(lossy("\xED\xA0\x80"), "\uFFFD\uFFFD\uFFFD");  // surrogate
  EXPECT_EQ(lossy("\xF4\x90\x80\x80"), "\uFFFD\uFFFD\uFFFD\uFFFD");
  EXPECT_EQ(lossy("\xF0\x9F\x98"), "\uFFFD");  // cut short at the end: one U+FFFD
  EXPECT_EQ(lossy("\xF0\x9F\x98 "), "\uFFFD ");
  EXPECT_EQ(lossy("\xC0\xAF"), "\uFFFD\uFFFD");
  EXPECT_EQ(lossy("\xF0\x9F\x98\x80"), "😀");
}

TEST(Utf8, DecidedStopsBeforeIncompleteTail) {
  std::string out;
  EXPECT_EQ(append_utf8_decided("ab\xE4\xB8", &out), 2u);
  EXPECT_EQ(out, "ab");
  out.clear();
  EXPECT_EQ(append_utf8_decided("ab\xE4(", &out), 4u);
  EXPECT_EQ(out, "ab\uFFFD(");
}

}  // namespace
}  // namespace dsv4::text
