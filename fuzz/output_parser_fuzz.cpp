// libFuzzer target: the streaming output parser on arbitrary model output.
//
// Input layout: byte 0 = flags (bit 0: thinking mode, bit 1: use stop strings, bits 2-7: chunk
// size seed); the rest is the completion text, fed in chunks of varying size. Checked on every
// input: no crash or exception; events spell out exactly the streamed message; every started tool
// call ends; when the official parser accepts the text, the finished message equals its result,
// and so do the events when EOS only ends the text.
// fuzz-sources: src/core/error.cpp src/text/py_json.cpp src/text/output_parser.cpp
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "text/output_parser.h"

using namespace dsv4::text;

namespace {

std::string show(const ParsedMessage& m) { return py_json_dumps(parsed_message_to_json(m)); }

void check_at(bool ok, int line) {
  if (!ok) {
    std::fprintf(stderr, "output_parser_fuzz: check failed at line %d\n", line);
    std::abort();
  }
}
#define check(ok) check_at((ok), __LINE__)

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  uint8_t flags = data[0];
  std::string_view text(reinterpret_cast<const char*>(data + 1), size - 1);
  OutputParserOptions opt;
  opt.thinking = flags & 1;
  if (flags & 2) opt.stop = {"\n\n", "STOP", "<"};

  OutputParser parser(opt);
  std::vector<ParseEvent> events;
  size_t chunk = 1 + (flags >> 2);
  for (size_t i = 0; i < text.size();) {
    parser.push(text.substr(i, chunk), false, events);
    i += chunk;
    chunk = 1 + (chunk * 7 + 3) % 13;
  }
  parser.finish(events);

  ParsedMessage rebuilt;
  int open = 0, dones = 0;
  for (const auto& e : events) {
    switch (e.kind) {
      case ParseEventKind::reasoning_delta: rebuilt.reasoning_content += e.text; break;
      case ParseEventKind::content_delta: rebuilt.content += e.text; break;
      case ParseEventKind::tool_call_start:
        check(open == 0 && e.tool_index == static_cast<int>(rebuilt.tool_calls.size()));
        rebuilt.tool_calls.push_back({e.name, ""});
        ++open;
        break;
      case ParseEventKind::tool_call_arguments:
        check(open == 1);
        rebuilt.tool_calls.back().arguments += e.text;
        break;
      case ParseEventKind::tool_call_end: check(open == 1); --open; break;
      case ParseEventKind::done: ++dones; break;
    }
  }
  check(open == 0 && dones == 1 && events.back().kind == ParseEventKind::done);
  check(show(rebuilt) == show(parser.streamed_message()));

  if (!parser.stop_matched()) {
    StrictParseResult strict = parse_completion_text(text, opt.thinking);
    check(strict.error.has_value() == parser.error().has_value());
    if (!strict.error) {
      check(show(parser.message()) == show(strict.message));
      // Generation ends at the first EOS, so the stream treats EOS as the end even where the
      // official parser reads on (inside a parameter value). Compare events only for text that
      // a model could actually produce: EOS at most once, at the very end.
      constexpr std::string_view kEos = "<｜end▁of▁sentence｜>";
      size_t eos = text.find(kEos);
      if (eos == std::string_view::npos || eos + kEos.size() == text.size())
        check(show(parser.streamed_message()) == show(strict.message));
    }
  }
  return 0;
}
