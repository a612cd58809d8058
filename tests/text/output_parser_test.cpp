// Output parsing: the golden parse cases (official results and errors), streaming at every split
// point == one shot, events == final message, render -> parse round trips, malformed input, stop
// strings, hold-back of partial markers, and the `dsv4 parse` CLI.
#include "text/output_parser.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <random>

#include "test_util.h"
#include "text/chat_template.h"
#include "text/tokenizer.h"

namespace dsv4::text {
namespace {

using test::testdata_path;

const std::string kEos = "<｜end▁of▁sentence｜>";

bool have_parse_data() { return std::filesystem::exists(testdata_path("encoding/parse_cases.json")); }

#define REQUIRE_PARSE_DATA()                                                                      \
  do {                                                                                            \
    if (!have_parse_data())                                                                       \
      GTEST_SKIP() << "MISSING golden data " << testdata_path("encoding") << ": skipped";         \
  } while (0)

Json load_parse_cases() {
  std::string path = testdata_path("encoding/parse_cases.json");
  return parse_py_json(test::read_file(path), path);
}

ParsedMessage message_from_json(const Json& j) {
  ParsedMessage m;
  m.content = j["content"].get<std::string>();
  m.reasoning_content = j["reasoning_content"].get<std::string>();
  for (const auto& tc : j["tool_calls"])
    m.tool_calls.push_back({tc["function"]["name"].get<std::string>(), tc["function"]["arguments"].get<std::string>()});
  return m;
}

std::string show(const ParsedMessage& m) { return py_json_dumps(parsed_message_to_json(m)); }  // raw bytes kept

bool same(const ParsedMessage& a, const ParsedMessage& b) { return show(a) == show(b); }

// The message spelled out by the events alone.
ParsedMessage from_events(const std::vector<ParseEvent>& events) {
  ParsedMessage m;
  for (const auto& e : events) {
    switch (e.kind) {
      case ParseEventKind::reasoning_delta: m.reasoning_content += e.text; break;
      case ParseEventKind::content_delta: m.content += e.text; break;
      case ParseEventKind::tool_call_start:
        EXPECT_EQ(e.tool_index, static_cast<int>(m.tool_calls.size()));
        m.tool_calls.push_back({e.name, ""});
        break;
      case ParseEventKind::tool_call_arguments:
        EXPECT_EQ(e.tool_index + 1, static_cast<int>(m.tool_calls.size()));
        if (!m.tool_calls.empty()) m.tool_calls.back().arguments += e.text;
        break;
      case ParseEventKind::tool_call_end:
        EXPECT_EQ(e.tool_index + 1, static_cast<int>(m.tool_calls.size()));
        break;
      case ParseEventKind::done: break;
    }
  }
  return m;
}

struct ParseRun {
  ParsedMessage final_msg;
  ParsedMessage streamed;
  std::optional<ParseError> error;
  std::string reason;  // how the text ended: "eos", "stop" (a stop string) or "unterminated"
  std::vector<ParseEvent> events;
};

ParseRun run_chunks(const std::vector<std::string>& chunks, bool thinking, std::vector<std::string> stop = {}) {
  OutputParser p(OutputParserOptions{thinking, std::move(stop)});
  ParseRun r;
  for (const auto& c : chunks) p.push(c, false, r.events);
  p.finish(r.events);
  r.final_msg = p.message();
  r.streamed = p.streamed_message();
  r.error = p.error();
  r.reason = p.stop_matched() ? "stop" : p.saw_eos() ? "eos" : "unterminated";
  // Invariants of every run: done comes last, once; events spell out the streamed message; every
  // started call is ended.
  EXPECT_FALSE(r.events.empty());
  if (!r.events.empty()) EXPECT_EQ(r.events.back().kind, ParseEventKind::done);
  int starts = 0, ends = 0, dones = 0;
  for (const auto& e : r.events) {
    starts += e.kind == ParseEventKind::tool_call_start;
    ends += e.kind == ParseEventKind::tool_call_end;
    dones += e.kind == ParseEventKind::done;
  }
  EXPECT_EQ(starts, ends);
  EXPECT_EQ(dones, 1);
  EXPECT_EQ(show(from_events(r.events)), show(r.streamed));
  return r;
}

ParseRun run_text(const std::string& text, bool thinking, std::vector<std::string> stop = {}) {
  return run_chunks({text}, thinking, std::move(stop));
}

// ---------------------------------------------------------------------------------------------
// Golden parse cases
// ---------------------------------------------------------------------------------------------

TEST(ParseCases, StrictParserMatchesOfficial) {
  REQUIRE_PARSE_DATA();
  Json cases = load_parse_cases();
  ASSERT_GE(cases.size(), 10u);
  for (const auto& c : cases) {
    std::string id = c["id"].get<std::string>();
    auto r = parse_completion_text(c["completion"].get<std::string>(), c["thinking"].get<bool>());
    if (c["error"].is_null()) {
      ASSERT_FALSE(r.error) << id << ": " << r.error->message;
      EXPECT_EQ(show(r.message), show(message_from_json(c["expected"]))) << id;
    } else {
      ASSERT_TRUE(r.error) << id;
      EXPECT_EQ(r.error->type, c["error"]["type"].get<std::string>()) << id << ": " << r.error->message;
      EXPECT_EQ(r.error->message, c["error"]["message"].get<std::string>()) << id;
    }
  }
}

TEST(ParseCases, StreamingOneShotMatchesOfficialAndEvents) {
  REQUIRE_PARSE_DATA();
  for (const auto& c : load_parse_cases()) {
    std::string id = c["id"].get<std::string>();
    ParseRun r = run_text(c["completion"].get<std::string>(), c["thinking"].get<bool>());
    if (c["error"].is_null()) {
      EXPECT_FALSE(r.error) << id;
      EXPECT_EQ(show(r.final_msg), show(message_from_json(c["expected"]))) << id;
      EXPECT_EQ(show(r.streamed), show(r.final_msg)) << id << ": events differ from the official result";
      EXPECT_EQ(r.reason, "eos") << id;
    } else {
      ASSERT_TRUE(r.error) << id;
      EXPECT_EQ(r.error->type, c["error"]["type"].get<std::string>()) << id;
    }
  }
}

TEST(ParseCases, EverySplitPointGivesTheOneShotResult) {
  REQUIRE_PARSE_DATA();
  for (const auto& c : load_parse_cases()) {
    std::string id = c["id"].get<std::string>();
    std::string text = c["completion"].get<std::string>();
    bool thinking = c["thinking"].get<bool>();
    ParseRun one = run_text(text, thinking);
    for (size_t k = 0; k <= text.size(); ++k) {
      ParseRun two = run_chunks({text.substr(0, k), text.substr(k)}, thinking);
      ASSERT_EQ(show(two.final_msg), show(one.final_msg)) << id << " split at " << k;
      ASSERT_EQ(show(two.streamed), show(one.streamed)) << id << " split at " << k;
      ASSERT_EQ(two.error.has_value(), one.error.has_value()) << id << " split at " << k;
    }
    // Byte by byte, and three-way splits around every position.
    std::vector<std::string> bytes;
    for (char ch : text) bytes.push_back(std::string(1, ch));
    ParseRun each = run_chunks(bytes, thinking);
    EXPECT_EQ(show(each.final_msg), show(one.final_msg)) << id << " byte by byte";
    EXPECT_EQ(show(each.streamed), show(one.streamed)) << id << " byte by byte";
    for (size_t k = 0; k + 3 <= text.size(); k += 3) {
      ParseRun three = run_chunks({text.substr(0, k), text.substr(k, 3), text.substr(k + 3)}, thinking);
      ASSERT_EQ(show(three.streamed), show(one.streamed)) << id << " 3-split at " << k;
    }
  }
}

TEST(ParseCases, TokenByTokenThroughTheTokenizer) {
  REQUIRE_PARSE_DATA();
  std::string dir = test::assets_path("tokenizer/deepseek-v3");
  if (!std::filesystem::exists(dir + "/tokenizer.json")) GTEST_SKIP() << "MISSING tokenizer " << dir;
  Tokenizer tok = Tokenizer::load(dir);
  for (const auto& c : load_parse_cases()) {
    std::string text = c["completion"].get<std::string>();
    bool thinking = c["thinking"].get<bool>();
    ParseRun one = run_text(text, thinking);
    OutputParser p(OutputParserOptions{thinking, {}});
    IncrementalDecoder dec(tok);
    std::vector<ParseEvent> ev;
    for (int32_t id : tok.encode_with_specials(text)) p.push(dec.push(id), tok.is_special(id), ev);
    p.push(dec.flush(), false, ev);
    p.finish(ev);
    EXPECT_EQ(show(p.message()), show(one.final_msg)) << c["id"].get<std::string>();
    EXPECT_EQ(show(p.streamed_message()), show(one.streamed)) << c["id"].get<std::string>();
  }
}

// ---------------------------------------------------------------------------------------------
// Render -> parse round trips (the parser reads back what the encoder writes)
// ---------------------------------------------------------------------------------------------

std::string random_text(std::mt19937& rng, size_t max_len) {
  static const std::vector<std::string> alphabet = {
      "a", "b", "z", " ", " ", "\n", "\n", "\t", "<", ">", "/", "\"", "\\", "=", "{", "}", "中", "😀", "é",
      "｜", "▁", "think", "DSML", "name", "string", "true", "\x01", "\r"};
  std::uniform_int_distribution<size_t> len(0, max_len), pick(0, alphabet.size() - 1);
  for (;;) {
    std::string s;
    for (size_t n = len(rng); n > 0; --n) s += alphabet[pick(rng)];
    bool clean = true;
    for (const char* bad : {"<think>", "</think>", "｜DSML｜", "<｜end▁of▁sentence｜>", "<｜begin▁of▁sentence｜>"})
      clean = clean && s.find(bad) == std::string::npos;
    if (clean) return s;
  }
}

Json random_value(std::mt19937& rng, int depth = 0) {
  switch (std::uniform_int_distribution<int>(0, depth > 1 ? 4 : 6)(rng)) {
    case 0: return Json(random_text(rng, 12));
    case 1: return Json(std::uniform_int_distribution<int64_t>(-1000000, 1000000)(rng));
    case 2: return Json(std::uniform_real_distribution<double>(-1e6, 1e6)(rng));
    case 3: return Json(std::uniform_int_distribution<int>(0, 1)(rng) == 1);
    case 4: return Json(nullptr);
    case 5: {
      Json a = Json::array();
      for (int n = std::uniform_int_distribution<int>(0, 3)(rng); n > 0; --n) a.push_back(random_value(rng, depth + 1));
      return a;
    }
    default: {
      Json o = Json::object();
      for (int n = std::uniform_int_distribution<int>(0, 3)(rng); n > 0; --n)
        o["k" + std::to_string(n)] = random_value(rng, depth + 1);
      return o;
    }
  }
}

TEST(ParseRoundTrip, RenderedAssistantTurnsParseBack) {
  std::mt19937 rng(1234);
  int checked = 0;
  for (int iter = 0; iter < 300; ++iter) {
    bool thinking = iter % 2 == 0;
    Message user;
    user.role = Role::user;
    user.content = "q";
    Message asst;
    asst.role = Role::assistant;
    asst.content = random_text(rng, 20);
    if (thinking) asst.reasoning_content = random_text(rng, 20);
    int n_calls = std::uniform_int_distribution<int>(0, 3)(rng);
    for (int k = 0; k < n_calls; ++k) {
      ToolCall call;
      call.id = "c" + std::to_string(k);
      call.name = std::string("fn_") + static_cast<char>('a' + k) + (k == 2 ? "\"x" : "");
      Json args = Json::object();
      for (int n = std::uniform_int_distribution<int>(0, 3)(rng); n > 0; --n)
        args["p" + std::to_string(n) + (n == 2 ? " x" : "")] = random_value(rng);
      call.arguments = Json(py_json_dumps(args));
      asst.tool_calls.push_back(std::move(call));
    }
    RenderOptions opt;
    opt.thinking_mode = thinking ? ThinkingMode::thinking : ThinkingMode::chat;
    opt.drop_thinking = false;
    std::string prompt = segments_to_string(render_prompt_segments({user, asst}, opt));
    std::string head = std::string("<｜begin▁of▁sentence｜><｜User｜>q<｜Assistant｜>") + (thinking ? "<think>" : "</think>");
    ASSERT_EQ(prompt.rfind(head, 0), 0u);
    std::string completion = prompt.substr(head.size());

    ParsedMessage want;
    want.content = asst.content;
    want.reasoning_content = asst.reasoning_content;
    for (const auto& call : asst.tool_calls) {
      std::string a = "{";
      auto params = dsml_parameters_from_arguments(call.arguments);
      for (size_t i = 0; i < params.size(); ++i) {
        if (i) a += ", ";
        a += py_json_quote(params[i].name) + ": " + (params[i].is_string ? py_json_quote(params[i].value) : params[i].value);
      }
      want.tool_calls.push_back({call.name, a + "}"});
    }
    // The official parser reads it back...
    auto strict = parse_completion_text(completion, thinking);
    ASSERT_FALSE(strict.error) << strict.error->message << "\n" << completion;
    ASSERT_EQ(show(strict.message), show(want)) << completion;
    // ...and so does the streaming parser, for any two-way split and token-sized chunks.
    std::uniform_int_distribution<size_t> at(0, completion.size());
    for (int s = 0; s < 8; ++s) {
      size_t k = at(rng);
      ParseRun r = run_chunks({completion.substr(0, k), completion.substr(k)}, thinking);
      ASSERT_FALSE(r.error) << completion;
      ASSERT_EQ(show(r.streamed), show(want)) << "split at " << k << "\n" << completion;
    }
    std::vector<std::string> chunks;
    for (size_t i = 0; i < completion.size();) {
      size_t n = std::uniform_int_distribution<size_t>(1, 5)(rng);
      chunks.push_back(completion.substr(i, n));
      i += n;
    }
    ParseRun r = run_chunks(chunks, thinking);
    ASSERT_EQ(show(r.streamed), show(want)) << completion;
    ++checked;
  }
  EXPECT_EQ(checked, 300);
}

// ---------------------------------------------------------------------------------------------
// Malformed output: never throws, never loses the answer, reports the official error
// ---------------------------------------------------------------------------------------------

TEST(ParseMalformed, MutatedCompletionsNeverCrashAndAgreeWhenValid) {
  REQUIRE_PARSE_DATA();
  std::vector<std::string> corpus;
  for (const auto& c : load_parse_cases()) corpus.push_back(c["completion"].get<std::string>());
  static const std::vector<std::string> pieces = {
      "<｜DSML｜invoke", "</｜DSML｜invoke>", "<｜DSML｜parameter", "</｜DSML｜parameter>", "\n\n<｜DSML｜tool_calls>",
      "</｜DSML｜tool_calls>", kEos, "</think>", "<think>", " name=\"x\"", " string=\"true\">", " string=\"false\">",
      ">\n", "\n", "<", "\"", "｜", "\xE4\xB8", "stop"};
  std::mt19937 rng(99);
  int valid = 0, streamed_differs = 0;
  for (int iter = 0; iter < 6000; ++iter) {
    std::string t = corpus[rng() % corpus.size()];
    for (int m = std::uniform_int_distribution<int>(1, 4)(rng); m > 0; --m) {
      size_t pos = t.empty() ? 0 : rng() % (t.size() + 1);
      switch (rng() % 3) {
        case 0: t.insert(pos, pieces[rng() % pieces.size()]); break;
        case 1: t.erase(pos, rng() % 12); break;
        default: t = t.substr(0, pos); break;
      }
    }
    bool thinking = rng() % 2;
    std::vector<std::string> chunks;
    for (size_t i = 0; i < t.size();) {
      size_t n = std::uniform_int_distribution<size_t>(1, 7)(rng);
      chunks.push_back(t.substr(i, n));
      i += n;
    }
    ParseRun r = run_chunks(chunks, thinking, {"stop"});
    if (r.reason == "stop") continue;
    auto strict = parse_completion_text(t, thinking);
    EXPECT_EQ(r.error.has_value(), strict.error.has_value());
    if (!strict.error) {
      ++valid;
      EXPECT_EQ(show(r.final_msg), show(strict.message));
      if (show(r.streamed) != show(strict.message)) {
        ++streamed_differs;
        ADD_FAILURE() << "events differ from the official result, thinking=" << thinking << "\n  text="
                      << py_json_quote(t) << "\n  strict=" << show(strict.message) << "\n  stream=" << show(r.streamed);
      }
    } else {
      EXPECT_EQ(r.error->type, strict.error->type);
    }
  }
  EXPECT_GT(valid, 50);
  EXPECT_EQ(streamed_differs, 0);
}

TEST(ParseMalformed, RandomBytesNeverCrash) {
  std::mt19937 rng(7);
  for (int iter = 0; iter < 2000; ++iter) {
    std::string t;
    for (int n = rng() % 64; n > 0; --n) t += static_cast<char>(rng() % 256);
    ParseRun r = run_chunks({t.substr(0, t.size() / 2), t.substr(t.size() / 2)}, rng() % 2);
    EXPECT_TRUE(r.error.has_value());  // no EOS: never valid... unless it spells one
  }
}

TEST(ParseMalformed, DegradesToContentWithoutLosingText) {
  // Junk after the block: the calls stay, the junk becomes content, the official error is reported.
  std::string block = "\n\n<｜DSML｜tool_calls>\n<｜DSML｜invoke name=\"f\">\n\n</｜DSML｜invoke>\n</｜DSML｜tool_calls>";
  ParseRun r = run_text("hi" + block + "junk" + kEos, false);
  ASSERT_TRUE(r.error);
  EXPECT_EQ(r.error->type, "AssertionError");
  EXPECT_EQ(r.final_msg.content, "hijunk");
  ASSERT_EQ(r.final_msg.tool_calls.size(), 1u);
  EXPECT_EQ(r.final_msg.tool_calls[0].arguments, "{}");

  // A broken block before any call: the whole markup is content.
  r = run_text("hi\n\n<｜DSML｜tool_calls> nope" + kEos, false);
  ASSERT_TRUE(r.error);
  EXPECT_EQ(r.error->type, "ValueError");
  EXPECT_EQ(r.final_msg.content, "hi\n\n<｜DSML｜tool_calls> nope");
  EXPECT_TRUE(r.final_msg.tool_calls.empty());

  // Unclosed parameter at the end of generation (no EOS): the call is closed with valid JSON.
  r = run_text("\n\n<｜DSML｜tool_calls>\n<｜DSML｜invoke name=\"f\">\n<｜DSML｜parameter name=\"a\" string=\"true\">ab\"c", false);
  ASSERT_TRUE(r.error);
  ASSERT_EQ(r.final_msg.tool_calls.size(), 1u);
  EXPECT_EQ(r.final_msg.tool_calls[0].arguments, R"({"a": "ab\"c"})");
  EXPECT_EQ(r.reason, "unterminated");

  // Broken invoke header: markup back to content.
  r = run_text("x\n\n<｜DSML｜tool_calls>\n<｜DSML｜invoke nome=\"f\">\n</｜DSML｜invoke>\n</｜DSML｜tool_calls>" + kEos, false);
  ASSERT_TRUE(r.error);
  EXPECT_EQ(r.final_msg.content, "x\n\n<｜DSML｜tool_calls>\n<｜DSML｜invoke nome=\"f\">\n</｜DSML｜invoke>\n</｜DSML｜tool_calls>");

  // Thinking never closed, tool block inside the reasoning: parsed anyway, error reported.
  r = run_text("plan\n\n<｜DSML｜tool_calls>\n<｜DSML｜invoke name=\"f\">\n\n</｜DSML｜invoke>\n</｜DSML｜tool_calls>" + kEos, true);
  ASSERT_TRUE(r.error);
  EXPECT_EQ(r.error->message, "Invalid thinking format: missing </think>");
  EXPECT_EQ(r.final_msg.reasoning_content, "plan");
  EXPECT_EQ(r.final_msg.tool_calls.size(), 1u);

  // Text after EOS is kept as content.
  r = run_text("a" + kEos + "b", false);
  ASSERT_TRUE(r.error);
  EXPECT_EQ(r.final_msg.content, "ab");
}

// ---------------------------------------------------------------------------------------------
// Streaming behaviour
// ---------------------------------------------------------------------------------------------

std::string deltas(const std::vector<ParseEvent>& ev, ParseEventKind kind) {
  std::string s;
  for (const auto& e : ev)
    if (e.kind == kind) s += e.text;
  return s;
}

TEST(ParseStreaming, HoldsBackOnlyPossibleMarkers) {
  OutputParser p(OutputParserOptions{false, {}});
  std::vector<ParseEvent> ev;
  p.push("abc\n", false, ev);
  EXPECT_EQ(deltas(ev, ParseEventKind::content_delta), "abc");
  p.push("\n", false, ev);
  EXPECT_EQ(deltas(ev, ParseEventKind::content_delta), "abc");
  p.push("x", false, ev);
  EXPECT_EQ(deltas(ev, ParseEventKind::content_delta), "abc\n\nx");
  p.push("<｜end", false, ev);
  EXPECT_EQ(deltas(ev, ParseEventKind::content_delta), "abc\n\nx");
  p.push("▁of▁sentence｜>", true, ev);
  EXPECT_TRUE(p.should_stop());
  EXPECT_TRUE(p.saw_eos() && !p.stop_matched());
  p.finish(ev);
  EXPECT_FALSE(p.error());
  EXPECT_EQ(p.message().content, "abc\n\nx");

  OutputParser q(OutputParserOptions{true, {}});
  ev.clear();
  q.push("I think </thi", false, ev);
  EXPECT_EQ(deltas(ev, ParseEventKind::reasoning_delta), "I think ");
  q.push("nk>Answer", true, ev);
  EXPECT_EQ(deltas(ev, ParseEventKind::content_delta), "Answer");
  // A split UTF-8 character is held until complete.
  q.push("\xE4\xB8", false, ev);
  EXPECT_EQ(deltas(ev, ParseEventKind::content_delta), "Answer");
  q.push("\xAD", false, ev);
  EXPECT_EQ(deltas(ev, ParseEventKind::content_delta), "Answer中");
}

TEST(ParseStreaming, ArgumentsStreamAsJsonFragments) {
  OutputParser p(OutputParserOptions{false, {}});
  std::vector<ParseEvent> ev;
  std::string text = "\n\n<｜DSML｜tool_calls>\n<｜DSML｜invoke name=\"write\">\n"
                     "<｜DSML｜parameter name=\"path\" string=\"true\">a \"q\"\nb\\c</｜DSML｜parameter>\n"
                     "<｜DSML｜parameter name=\"n\" string=\"false\">[1, 2]</｜DSML｜parameter>\n"
                     "</｜DSML｜invoke>\n</｜DSML｜tool_calls>" + kEos;
  int fragments = 0;
  for (size_t i = 0; i < text.size(); i += 2) {
    size_t before = ev.size();
    p.push(text.substr(i, 2), false, ev);
    for (size_t k = before; k < ev.size(); ++k) fragments += ev[k].kind == ParseEventKind::tool_call_arguments;
  }
  p.finish(ev);
  ASSERT_FALSE(p.error()) << p.error()->message;
  EXPECT_EQ(deltas(ev, ParseEventKind::tool_call_arguments), R"({"path": "a \"q\"\nb\\c", "n": [1, 2]})");
  EXPECT_EQ(p.message().tool_calls.at(0).arguments, R"({"path": "a \"q\"\nb\\c", "n": [1, 2]})");
  EXPECT_GT(fragments, 5);  // streamed while the value was generated, not at the end
  ASSERT_GE(ev.size(), 2u);
  EXPECT_EQ(ev.front().kind, ParseEventKind::tool_call_start);
  EXPECT_EQ(ev.front().name, "write");
}

TEST(ParseStreaming, StopStringsApplyToAnswerTextOnly) {
  // In content: cut before the stop string, finish reason stop, no error.
  ParseRun r = run_chunks({"Hello wo", "rld STO", "P and more", kEos}, false, {"STOP"});
  EXPECT_EQ(r.reason, "stop");
  EXPECT_FALSE(r.error);
  EXPECT_EQ(r.final_msg.content, "Hello world ");
  // Not in reasoning, nor in tool-call values.
  r = run_text("STOP thinking</think>ans STOP x", true, {"STOP"});
  EXPECT_EQ(r.final_msg.reasoning_content, "STOP thinking");
  EXPECT_EQ(r.final_msg.content, "ans ");
  r = run_text("\n\n<｜DSML｜tool_calls>\n<｜DSML｜invoke name=\"f\">\n<｜DSML｜parameter name=\"a\" string=\"true\">STOP"
               "</｜DSML｜parameter>\n</｜DSML｜invoke>\n</｜DSML｜tool_calls>" + kEos,
               false, {"STOP"});
  EXPECT_EQ(r.reason, "eos");
  EXPECT_FALSE(r.error);
  EXPECT_EQ(r.final_msg.tool_calls.at(0).arguments, R"({"a": "STOP"})");
  // A stop string that is also a prefix of the tool marker does not pre-empt the tool block.
  r = run_chunks({"ok\n", "\n<｜DSML｜tool_calls>\n<｜DSML｜invoke name=\"f\">\n\n</｜DSML｜invoke>\n</｜DSML｜tool_calls>", kEos},
                 false, {"\n\n"});
  EXPECT_EQ(r.final_msg.tool_calls.size(), 1u);
  EXPECT_EQ(r.final_msg.content, "ok");
  // A stop string still waiting on the tool marker at the end of generation applies then.
  r = run_chunks({"ok\n\n"}, false, {"\n\n"});
  EXPECT_EQ(r.reason, "stop");
  EXPECT_EQ(r.final_msg.content, "ok");
  // The earliest stop string wins; the text held for a longer one is released.
  r = run_chunks({"abcd", "ef"}, false, {"cdx", "e"});
  EXPECT_EQ(r.final_msg.content, "abcd");
  EXPECT_EQ(r.reason, "stop");
}

TEST(ParseStreaming, UnterminatedOutputReportsTheOfficialError) {
  ParseRun r = run_text("partial answer", false);
  EXPECT_EQ(r.reason, "unterminated");
  ASSERT_TRUE(r.error);
  EXPECT_EQ(r.error->message, "Invalid format: missing EOS token");
  EXPECT_EQ(r.final_msg.content, "partial answer");
}

// ---------------------------------------------------------------------------------------------
// CLI: dsv4 parse
// ---------------------------------------------------------------------------------------------

TEST(ParseCli, PrintsMessageOrErrorWithExitCode) {
  REQUIRE_PARSE_DATA();
  if (!std::filesystem::exists(test::dsv4_binary())) GTEST_SKIP() << "no dsv4 binary";
  std::string dir = test::make_temp_dir("parse");
  std::string model = testdata_path("oracle/case-a/ckpt");
  for (const auto& c : load_parse_cases()) {
    std::string id = c["id"].get<std::string>();
    std::string in = dir + "/" + id + ".txt";
    std::ofstream(in, std::ios::binary) << c["completion"].get<std::string>();
    std::string out;
    int rc = test::run_command_stdout(test::dsv4_binary() + " parse --model " + model +
                                   (c["thinking"].get<bool>() ? " --thinking" : " --chat") + " < " + in,
                               &out);
    Json got = Json::parse(out, nullptr, false);
    ASSERT_TRUE(got.is_object()) << id << ": " << out;
    if (c["error"].is_null()) {
      EXPECT_EQ(rc, 0) << id;
      EXPECT_EQ(got, Json(c["expected"])) << id;
    } else {
      EXPECT_EQ(rc, 2) << id;
      EXPECT_EQ(got["error"]["type"], c["error"]["type"]) << id;
    }
  }
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace dsv4::text
