// dsv4 text: the official completion parser and the streaming output parser (see output_parser.h).
#include "text/output_parser.h"

#include <algorithm>
#include <initializer_list>
#include <span>

namespace dsv4::text {
namespace {

constexpr std::string_view kBos = "<｜begin▁of▁sentence｜>";
constexpr std::string_view kEos = "<｜end▁of▁sentence｜>";
constexpr std::string_view kThinkBegin = "<think>";
constexpr std::string_view kThinkEnd = "</think>";
constexpr std::string_view kDsml = "｜DSML｜";
constexpr std::string_view kToolStart = "\n\n<｜DSML｜tool_calls";
constexpr std::string_view kBlockEnd = "</｜DSML｜tool_calls>";
constexpr std::string_view kInvoke = "<｜DSML｜invoke";
constexpr std::string_view kInvokeEnd = "</｜DSML｜invoke";
constexpr std::string_view kParam = "<｜DSML｜parameter";
constexpr std::string_view kParamEnd = "/｜DSML｜parameter";
constexpr std::string_view kNamePrefix = " name=\"";
constexpr std::string_view kStringTrue = "\" string=\"true\">";
constexpr std::string_view kStringFalse = "\" string=\"false\">";

bool starts_with(std::string_view s, std::string_view p) { return s.substr(0, p.size()) == p; }
bool ends_with(std::string_view s, std::string_view p) {
  return s.size() >= p.size() && s.substr(s.size() - p.size()) == p;
}

// Byte length of the Python `\s` character (str.isspace) at s[i], or 0.
size_t py_space_len(std::string_view s, size_t i) {
  auto b = [&](size_t k) { return i + k < s.size() ? static_cast<unsigned char>(s[i + k]) : 0u; };
  unsigned c = b(0);
  if (c == ' ' || (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x1F)) return 1;
  if (c == 0xC2 && (b(1) == 0x85 || b(1) == 0xA0)) return 2;
  if (c == 0xE1 && b(1) == 0x9A && b(2) == 0x80) return 3;                       // U+1680
  if (c == 0xE2 && b(1) == 0x80 && ((b(2) >= 0x80 && b(2) <= 0x8A) || b(2) == 0xA8 ||
                                    b(2) == 0xA9 || b(2) == 0xAF)) return 3;     // U+2000.. U+202F
  if (c == 0xE2 && b(1) == 0x81 && b(2) == 0x9F) return 3;                       // U+205F
  if (c == 0xE3 && b(1) == 0x80 && b(2) == 0x80) return 3;                       // U+3000
  return 0;
}

// The official `re.findall(r'^\s*name="(.*?)">\n$', header, re.DOTALL)` with one match.
std::optional<std::string> match_invoke_header(std::string_view h) {
  size_t i = 0;
  while (size_t n = py_space_len(h, i)) i += n;
  if (!starts_with(h.substr(i), "name=\"")) return std::nullopt;
  size_t j = i + 6;
  // `$` matches at the end or before a final "\n": the header ends with `">\n` or `">\n\n`.
  if (ends_with(h, "\">\n\n") && h.size() - 4 >= j) return std::string(h.substr(j, h.size() - 4 - j));
  if (ends_with(h, "\">\n") && h.size() - 3 >= j) return std::string(h.substr(j, h.size() - 3 - j));
  return std::nullopt;
}

struct Param {
  std::string name;
  bool is_string;
  std::string value;
};

// The official `re.findall(r'^ name="(.*?)" string="(true|false)">(.*?)<$', p, re.DOTALL)`.
std::optional<Param> match_param(std::string_view p) {
  if (!starts_with(p, kNamePrefix)) return std::nullopt;
  // The value must end in "<" at the end or before a final "\n" (lazy value: "<\n" preferred).
  size_t value_end;
  if (ends_with(p, "<\n")) value_end = p.size() - 2;
  else if (ends_with(p, "<")) value_end = p.size() - 1;
  else return std::nullopt;
  // Lazy name: the first `" string="true|false">` that leaves the final "<" after it.
  size_t from = kNamePrefix.size();
  for (;;) {
    size_t t = p.find(kStringTrue, from), f = p.find(kStringFalse, from);
    size_t at = std::min(t, f);
    if (at == std::string_view::npos) return std::nullopt;
    bool is_str = at == t;
    size_t vstart = at + (is_str ? kStringTrue.size() : kStringFalse.size());
    if (vstart <= value_end)
      return Param{std::string(p.substr(kNamePrefix.size(), at - kNamePrefix.size())), is_str,
                   std::string(p.substr(vstart, value_end - vstart))};
    from = at + 1;
  }
}

// _read_until_stop(): earliest of `stops` from `index` (ties: the first listed).
struct ReadResult {
  size_t index;
  std::string_view content;
  int stop;  // index into stops, -1 = none
};
ReadResult read_until(std::string_view text, size_t index, std::initializer_list<std::string_view> stops) {
  size_t best = text.size();
  int which = -1, k = 0;
  for (std::string_view s : stops) {
    size_t pos = text.find(s, index);
    if (pos != std::string_view::npos && pos < best) {
      best = pos;
      which = k;
    }
    ++k;
  }
  if (which < 0) return {text.size(), text.substr(index), -1};
  return {best + stops.begin()[which].size(), text.substr(index, best - index), which};
}

struct Failure {
  const char* type;
  std::string message;
};

std::string arguments_json(const std::vector<Param>& params) {
  std::string out = "{";
  for (size_t i = 0; i < params.size(); ++i) {
    if (i) out += ", ";
    out += py_json_quote(params[i].name);
    out += ": ";
    out += params[i].is_string ? py_json_quote(params[i].value) : params[i].value;
  }
  out += "}";
  return out;
}

// parse_tool_calls(): returns the index after the block and the last stop (-1 = none).
size_t parse_tool_calls(std::string_view text, size_t index, std::vector<ParsedToolCall>& calls) {
  while (index < text.size()) {
    auto r = read_until(text, index, {kInvoke, kBlockEnd});
    index = r.index;
    if (r.content != ">\n")
      throw Failure{"ValueError", "Tool call format error: expected '>\\n' but got '" + std::string(r.content) + "'"};
    if (r.stop == 1) break;
    if (r.stop < 0) throw Failure{"ValueError", "Missing special token in tool calls"};

    auto h = read_until(text, index, {kParam, kInvokeEnd});
    index = h.index;
    auto name = match_invoke_header(h.content);
    if (!name) throw Failure{"ValueError", "Tool name format error: '" + std::string(h.content) + "'"};
    std::vector<Param> params;
    int stop = h.stop;
    while (stop == 0) {  // "<｜DSML｜parameter"
      auto pr = read_until(text, index, {kParamEnd});
      index = pr.index;
      auto p = match_param(pr.content);
      if (!p) throw Failure{"ValueError", "Parameter format error: '" + std::string(pr.content) + "'"};
      for (const auto& q : params)
        if (q.name == p->name) throw Failure{"ValueError", "Duplicate parameter name: '" + p->name + "'"};
      params.push_back(std::move(*p));
      auto sep = read_until(text, index, {kParam, kInvokeEnd});
      index = sep.index;
      stop = sep.stop;
      if (sep.content != ">\n")
        throw Failure{"ValueError", "Parameter format error: expected '>\\n' but got '" + std::string(sep.content) + "'"};
    }
    calls.push_back({*name, arguments_json(params)});
  }
  return index;
}

}  // namespace

Json parsed_message_to_json(const ParsedMessage& m) {
  Json j = Json::object();
  j["role"] = "assistant";
  j["content"] = m.content;
  j["reasoning_content"] = m.reasoning_content;
  j["tool_calls"] = Json::array();
  for (const auto& c : m.tool_calls) {
    Json fn = Json::object();
    fn["name"] = c.name;
    fn["arguments"] = c.arguments;
    Json tc = Json::object();
    tc["type"] = "function";
    tc["function"] = std::move(fn);
    j["tool_calls"].push_back(std::move(tc));
  }
  return j;
}

// parse_message_from_completion_text(): the official function, step for step.
StrictParseResult parse_completion_text(std::string_view text, bool thinking) {
  StrictParseResult res;
  ParsedMessage& m = res.message;
  try {
    size_t index = 0;
    if (thinking) {
      auto r = read_until(text, index, {kThinkEnd, kToolStart});
      index = r.index;
      m.reasoning_content = std::string(r.content);
      if (r.stop != 0) throw Failure{"AssertionError", "Invalid thinking format: missing </think>"};
    }
    auto r = read_until(text, index, {kEos, kToolStart});
    index = r.index;
    m.content = std::string(r.content);
    int stop = r.stop;  // 0 = EOS, 1 = tool block, -1 = none
    if (stop != 1 && stop != 0) throw Failure{"AssertionError", "Invalid format: missing EOS token"};
    if (stop == 1) {
      index = parse_tool_calls(text, index, m.tool_calls);
      auto tail = read_until(text, index, {kEos});
      index = tail.index;
      stop = tail.stop < 0 ? -1 : 0;
      if (!tail.content.empty()) throw Failure{"AssertionError", "Unexpected content after tool calls"};
    }
    if (index != text.size() || (stop != 0 && stop != -1))
      throw Failure{"AssertionError", "Unexpected content at end"};
    for (std::string_view sp : {kBos, kEos, kThinkBegin, kThinkEnd, kDsml}) {
      if (m.content.find(sp) != std::string::npos || m.reasoning_content.find(sp) != std::string::npos)
        throw Failure{"AssertionError", "Unexpected special token '" + std::string(sp) + "' in content"};
    }
  } catch (const Failure& f) {
    res.error = ParseError{f.type, f.message};
  }
  return res;
}

// ---------------------------------------------------------------------------------------------
// Streaming parser
// ---------------------------------------------------------------------------------------------
namespace {

// Length of the longest suffix of `s` that is a proper prefix of one of `markers`.
template <class Str>
size_t partial_suffix(std::string_view s, std::span<const Str> markers) {
  size_t best = 0;
  for (std::string_view m : markers) {
    size_t max_len = std::min(s.size(), m.size() - 1);
    for (size_t len = max_len; len > best; --len) {
      if (s.substr(s.size() - len) == m.substr(0, len)) {
        best = len;
        break;
      }
    }
  }
  return best;
}

// Largest n' <= n such that s[0:n'] does not end inside an incomplete UTF-8 sequence.
size_t utf8_safe_len(std::string_view s, size_t n) {
  size_t k = n;
  size_t back = 0;
  while (k > 0 && back < 4 && (static_cast<unsigned char>(s[k - 1]) & 0xC0) == 0x80) {
    --k;
    ++back;
  }
  if (k == 0) return n;
  unsigned char lead = static_cast<unsigned char>(s[k - 1]);
  size_t need = lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : lead >= 0xC0 ? 2 : 1;
  if (need > 1 && back + 1 < need) return k - 1;  // lead at k-1 with too few continuations
  return n;
}

struct Match {
  size_t pos = std::string_view::npos;
  int which = -1;
  bool wait = false;  // a marker might still start at or before `pos`
};

// Earliest complete marker in `s` (ties: first listed). `wait` is set when a marker that would
// win could still complete once more text arrives.
template <class Str>
Match earliest_marker(std::string_view s, std::span<const Str> markers) {
  Match m;
  for (size_t k = 0; k < markers.size(); ++k) {
    size_t p = s.find(markers[k]);
    if (p != std::string_view::npos && p < m.pos) {
      m.pos = p;
      m.which = static_cast<int>(k);
    }
  }
  if (m.which < 0) return m;
  for (size_t k = 0; k < markers.size(); ++k) {
    std::string_view mk = markers[k];
    if (mk.size() < 2) continue;
    size_t lo = s.size() >= mk.size() - 1 ? s.size() - (mk.size() - 1) : 0;
    for (size_t q = lo; q <= m.pos && q < s.size(); ++q) {
      if (q == m.pos && static_cast<int>(k) >= m.which) continue;  // loses the tie anyway
      if (mk.substr(0, s.size() - q) == s.substr(q)) {
        m.wait = true;
        return m;
      }
    }
  }
  return m;
}

}  // namespace

OutputParser::OutputParser(OutputParserOptions opt)
    : opt_(std::move(opt)), state_(opt_.thinking ? State::reasoning : State::content) {
  opt_.stop.erase(std::remove(opt_.stop.begin(), opt_.stop.end(), std::string()), opt_.stop.end());
  reasoning_markers_ = {std::string(kThinkEnd), std::string(kToolStart), std::string(kEos)};
  content_markers_ = {std::string(kEos), std::string(kToolStart)};
  junk_markers_ = {std::string(kEos)};
  for (const auto& s : opt_.stop) {
    content_markers_.push_back(s);
    junk_markers_.push_back(s);
  }
}

void OutputParser::push(std::string_view text, bool is_special, std::vector<ParseEvent>& ev) {
  (void)is_special;  // markers are matched on text, like the official parser
  if (finished_ || state_ == State::stopped) return;
  raw_.append(text);
  buf_.append(text);
  while (step(ev)) {
  }
}

void OutputParser::consume(size_t n, bool structural) {
  if (structural) uncommitted_.append(buf_, 0, n);
  buf_.erase(0, n);
}

void OutputParser::emit_text(std::vector<ParseEvent>& ev, std::string_view s) {
  if (s.empty()) return;
  bool reasoning = state_ == State::reasoning;
  ParseEvent e;
  e.kind = reasoning ? ParseEventKind::reasoning_delta : ParseEventKind::content_delta;
  e.text = std::string(s);
  (reasoning ? streamed_.reasoning_content : streamed_.content).append(s);
  ev.push_back(std::move(e));
}

void OutputParser::emit_args(std::vector<ParseEvent>& ev, std::string_view s) {
  if (s.empty()) return;
  ParseEvent e;
  e.kind = ParseEventKind::tool_call_arguments;
  e.tool_index = static_cast<int>(streamed_.tool_calls.size()) - 1;
  e.text = std::string(s);
  streamed_.tool_calls.back().arguments.append(s);
  ev.push_back(std::move(e));
}

void OutputParser::emit_value(std::vector<ParseEvent>& ev, std::string_view s) {
  if (!value_is_string_) {
    emit_args(ev, s);
    return;
  }
  std::string esc;
  py_json_escape_to(esc, s);  // JSON-escaped on the fly (only ASCII bytes change)
  emit_args(ev, esc);
}

void OutputParser::start_call(std::vector<ParseEvent>& ev, std::string name) {
  streamed_.tool_calls.push_back({name, ""});
  ParseEvent e;
  e.kind = ParseEventKind::tool_call_start;
  e.tool_index = static_cast<int>(streamed_.tool_calls.size()) - 1;
  e.name = std::move(name);
  ev.push_back(std::move(e));
  in_call_ = true;
  args_open_ = false;
  param_names_.clear();
  uncommitted_.clear();
}

void OutputParser::end_call(std::vector<ParseEvent>& ev) {
  emit_args(ev, args_open_ ? "}" : "{}");
  ParseEvent e;
  e.kind = ParseEventKind::tool_call_end;
  e.tool_index = static_cast<int>(streamed_.tool_calls.size()) - 1;
  ev.push_back(std::move(e));
  in_call_ = false;
  args_open_ = false;
}

void OutputParser::close_open_call(std::vector<ParseEvent>& ev) {
  if (!in_call_) return;
  if (state_ == State::param_value && value_is_string_) emit_args(ev, "\"");
  end_call(ev);
}

// Markup that does not parse: everything not yet represented by an event becomes content.
void OutputParser::degrade() {
  buf_.insert(0, uncommitted_);
  uncommitted_.clear();
  state_ = State::junk;
}

bool OutputParser::step(std::vector<ParseEvent>& ev) {
  switch (state_) {
    case State::reasoning:
    case State::content:
    case State::junk: return step_text(ev);
    case State::block:
    case State::after_param:
    case State::after_block: return step_expect(ev);
    case State::invoke_header: return step_invoke_header(ev);
    case State::param_header: return step_param_header(ev);
    case State::param_value: return step_param_value(ev);
    case State::done:
      // Text after EOS is not part of any valid completion; keep it as content.
      if (!buf_.empty()) {
        ParseEvent e;
        e.kind = ParseEventKind::content_delta;
        e.text = buf_;
        streamed_.content += buf_;
        ev.push_back(std::move(e));
        buf_.clear();
      }
      return false;
    case State::stopped: buf_.clear(); return false;
  }
  return false;
}

// Reasoning, content and degraded content: stream text up to the next marker.
bool OutputParser::step_text(std::vector<ParseEvent>& ev) {
  // Markers by priority (ties at one position go to the first), then the stop strings.
  const std::vector<std::string>& markers = state_ == State::reasoning ? reasoning_markers_
                                                 : state_ == State::content ? content_markers_
                                                                            : junk_markers_;
  size_t n_fixed = state_ == State::reasoning ? 3 : state_ == State::content ? 2 : 1;

  Match m = earliest_marker<std::string>(buf_, markers);
  if (m.which >= 0 && (!m.wait || flushing_)) {
    emit_text(ev, std::string_view(buf_).substr(0, m.pos));
    std::string_view mk = markers[m.which];
    if (static_cast<size_t>(m.which) >= n_fixed) {  // stop string: the answer ends here
      matched_stop_ = std::string(mk);
      state_ = State::stopped;
      buf_.clear();
      return false;
    }
    buf_.erase(0, m.pos + mk.size());
    if (mk == kEos) {
      saw_eos_ = true;
      state_ = State::done;
    } else if (mk == kThinkEnd) {
      state_ = State::content;
    } else {  // tool block (from content, or from reasoning that never closed: still parsed)
      uncommitted_ = std::string(kToolStart);
      state_ = State::block;
    }
    return true;
  }
  size_t safe = buf_.size() - partial_suffix<std::string>(buf_, markers);
  if (m.which >= 0) safe = std::min(safe, m.pos);  // a marker may still start before it
  safe = utf8_safe_len(buf_, safe);
  emit_text(ev, std::string_view(buf_).substr(0, safe));
  buf_.erase(0, safe);
  return false;
}

// Fixed markup between elements: `>\n` + next element, or EOS after the block.
bool OutputParser::step_expect(std::vector<ParseEvent>& ev) {
  struct Next {
    std::string_view lit;
    State to;
  };
  std::vector<Next> nexts;
  if (state_ == State::block) {
    nexts = {{">\n<｜DSML｜invoke", State::invoke_header}, {">\n</｜DSML｜tool_calls>", State::after_block}};
  } else if (state_ == State::after_param) {
    nexts = {{">\n<｜DSML｜parameter", State::param_header}, {">\n</｜DSML｜invoke", State::block}};
  }
  if (buf_.empty()) return false;
  for (const auto& n : nexts) {
    if (starts_with(buf_, n.lit)) {
      bool closes_call = n.to == State::block;
      bool closes_block = n.to == State::after_block;
      consume(n.lit.size(), true);
      if (closes_call) end_call(ev);
      if (closes_call || closes_block) uncommitted_.clear();
      state_ = n.to;
      return true;
    }
    if (starts_with(n.lit, buf_)) return false;  // may still become this
  }
  if (starts_with(buf_, kEos)) {  // generation ended inside the tool block
    close_open_call(ev);
    buf_.erase(0, kEos.size());
    if (!uncommitted_.empty()) {  // markup that never became a call: keep it as content
      state_ = State::junk;
      emit_text(ev, uncommitted_);
      uncommitted_.clear();
    }
    saw_eos_ = true;
    state_ = State::done;
    return true;
  }
  if (starts_with(kEos, buf_)) return false;
  close_open_call(ev);
  degrade();
  return true;
}

bool OutputParser::step_invoke_header(std::vector<ParseEvent>& ev) {
  static constexpr std::string_view kMarkers[] = {kParam, kInvokeEnd, kEos};
  Match m = earliest_marker<std::string_view>(buf_, kMarkers);
  if (m.which < 0) {
    // Early rejection: after leading whitespace the header must read `name="`.
    size_t i = 0;
    while (size_t n = py_space_len(buf_, i)) i += n;
    std::string_view rest = std::string_view(buf_).substr(i);
    std::string_view want = "name=\"";
    bool ok = rest.empty() || static_cast<unsigned char>(rest[0]) >= 0x80 ||
              starts_with(rest, want) || starts_with(want, rest);
    if (!ok) degrade();
    return !ok;
  }
  std::optional<std::string> name;
  if (m.which != 2) name = match_invoke_header(std::string_view(buf_).substr(0, m.pos));
  if (!name) {
    degrade();
    return true;
  }
  size_t marker_len = m.which == 0 ? kParam.size() : kInvokeEnd.size();
  consume(m.pos + marker_len, true);
  start_call(ev, std::move(*name));
  if (m.which == 0) {
    uncommitted_ = std::string(kParam);  // until the parameter header parses
    state_ = State::param_header;
  } else {
    end_call(ev);
    state_ = State::block;
  }
  return true;
}

bool OutputParser::step_param_header(std::vector<ParseEvent>& ev) {
  if (!starts_with(buf_, kNamePrefix)) {
    if (starts_with(kNamePrefix, buf_)) return false;
    close_open_call(ev);
    degrade();
    return true;
  }
  std::string_view rest = std::string_view(buf_).substr(kNamePrefix.size());
  static constexpr std::string_view kMarkers[] = {kStringTrue, kStringFalse, kParamEnd, kEos};
  Match m = earliest_marker<std::string_view>(rest, kMarkers);
  if (m.which < 0) return false;
  if (m.which >= 2) {
    close_open_call(ev);
    degrade();
    return true;
  }
  std::string name(rest.substr(0, m.pos));
  value_is_string_ = m.which == 0;
  size_t header_len = kNamePrefix.size() + m.pos + (value_is_string_ ? kStringTrue.size() : kStringFalse.size());
  consume(header_len, true);
  uncommitted_.clear();
  std::string frag = args_open_ ? ", " : "{";
  args_open_ = true;
  frag += py_json_quote(name);
  frag += ": ";
  if (value_is_string_) frag += '"';
  emit_args(ev, frag);
  param_names_.push_back(std::move(name));  // duplicates are reported by the strict parse
  state_ = State::param_value;
  return true;
}

bool OutputParser::step_param_value(std::vector<ParseEvent>& ev) {
  static constexpr std::string_view kMarkers[] = {kParamEnd, kEos};
  Match m = earliest_marker<std::string_view>(buf_, kMarkers);
  if (m.which == 0) {
    std::string_view v = std::string_view(buf_).substr(0, m.pos);
    if (ends_with(v, "<\n")) v.remove_suffix(2);
    else if (ends_with(v, "<")) v.remove_suffix(1);
    emit_value(ev, v);
    if (value_is_string_) emit_args(ev, "\"");
    buf_.erase(0, m.pos + kParamEnd.size());
    uncommitted_.clear();
    state_ = State::after_param;
    return true;
  }
  if (m.which == 1) {  // generation ended inside a value: keep what came, close the call
    std::string_view v = std::string_view(buf_).substr(0, m.pos);
    emit_value(ev, v);
    close_open_call(ev);
    buf_.erase(0, m.pos + kEos.size());
    saw_eos_ = true;
    state_ = State::done;
    return true;
  }
  // The value ends before "<" (or "<\n") + "/｜DSML｜parameter": hold those back too.
  static constexpr std::string_view kHold[] = {"</｜DSML｜parameter", "<\n/｜DSML｜parameter", kParamEnd, kEos};
  size_t hold = partial_suffix<std::string_view>(buf_, kHold);
  size_t safe = utf8_safe_len(buf_, buf_.size() - hold);
  emit_value(ev, std::string_view(buf_).substr(0, safe));
  buf_.erase(0, safe);
  return false;
}

void OutputParser::finish(std::vector<ParseEvent>& ev) {
  if (finished_) return;
  // No more text: a complete marker that waited for a longer one to resolve is taken now.
  flushing_ = true;
  while (step(ev)) {
  }
  // Flush what was held back as a possible marker.
  switch (state_) {
    case State::reasoning:
    case State::content:
    case State::junk:
      emit_text(ev, buf_);
      buf_.clear();
      break;
    case State::param_value:
      emit_value(ev, buf_);
      buf_.clear();
      close_open_call(ev);
      break;
    case State::invoke_header:
      // The official parser accepts a block cut off after a complete invoke header (a call with
      // no arguments) or right before the next invoke (below): the stream agrees.
      if (auto name = match_invoke_header(buf_)) {
        buf_.clear();
        start_call(ev, std::move(*name));
        end_call(ev);
        break;
      }
      degrade();
      emit_text(ev, buf_);
      buf_.clear();
      break;
    case State::block:
      if (buf_.empty()) {
        uncommitted_.clear();
        break;
      }
      [[fallthrough]];
    case State::after_param:
      if (state_ == State::after_param && buf_ == ">\n") {  // cut off after a parameter's line
        buf_.clear();
        end_call(ev);
        uncommitted_.clear();
        break;
      }
      [[fallthrough]];
    case State::param_header:
    case State::after_block:
      close_open_call(ev);
      if (!buf_.empty() || !uncommitted_.empty()) {
        degrade();
        emit_text(ev, buf_);
        buf_.clear();
      }
      break;
    case State::done:
    case State::stopped: break;
  }
  finished_ = true;

  final_ = streamed_;
  if (!stop_matched()) {
    StrictParseResult strict = parse_completion_text(raw_, opt_.thinking);
    if (strict.error) error_ = strict.error;
    else final_ = std::move(strict.message);
  }
  ParseEvent e;
  e.kind = ParseEventKind::done;
  e.error = error_;
  ev.push_back(std::move(e));
}

}  // namespace dsv4::text
