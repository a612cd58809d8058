// dsv4 text: PCRE2-backed Split pre-tokenizer (see pretokenizer.h for the rules it follows).
#include "text/pretokenizer.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <atomic>
#include <cctype>
#include <cstdio>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/log.h"

namespace dsv4::text {

namespace {

// Oniguruma's Unicode `\s`: U+0009-000D, U+0085, and General_Category Zs/Zl/Zp (= \p{Z}).
constexpr std::string_view kOnigSpaceBody = "\\t\\n\\x{0B}\\f\\r\\x{85}\\p{Z}";

std::string pcre2_error_text(int code) {
  PCRE2_UCHAR buf[256];
  int n = pcre2_get_error_message(code, buf, sizeof buf);
  return n < 0 ? "PCRE2 error " + std::to_string(code) : std::string(reinterpret_cast<char*>(buf));
}

// One compiled Split regex.
struct SplitRegex {
  pcre2_code* code = nullptr;
  bool jit = false;
  std::string source;  // the tokenizer.json pattern, for messages
};

// Per-thread match data, shared by all patterns: only the overall match (ovector pair 0) is read,
// and a too-small ovector still reports it (rc 0).
pcre2_match_data* thread_match_data() {
  struct Holder {
    pcre2_match_data* md = pcre2_match_data_create(1, nullptr);
    ~Holder() { pcre2_match_data_free(md); }
  };
  thread_local Holder holder;
  return holder.md;
}

void warn_jit_stack_once(const std::string& pattern) {
  static std::atomic<bool> warned{false};
  if (!warned.exchange(true))
    log::warn("pre_tokenizer regex '%s' ran out of PCRE2 JIT stack; using the PCRE2 interpreter for such "
              "matches (slower)", pattern.c_str());
}

size_t utf8_char_len_at(const unsigned char* s, size_t n, size_t pos) {
  size_t i = pos + 1;
  while (i < n && (s[i] & 0xC0) == 0x80 && i - pos < 4) ++i;
  return i - pos;
}

}  // namespace

struct PreTokenizer::Impl {
  std::vector<SplitRegex> steps;
  ~Impl() {
    for (auto& s : steps) pcre2_code_free(s.code);
  }

  void add_pattern(const std::string& onig_pattern, const std::string& origin) {
    std::string pat = translate_onig_pattern(onig_pattern);
    int err = 0;
    PCRE2_SIZE err_off = 0;
    pcre2_code* code =
        pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pat.data()), pat.size(),
                      PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF, &err, &err_off, nullptr);
    if (!code)
      throw Error(origin + ": pre_tokenizer regex '" + onig_pattern + "' does not compile: " +
                  pcre2_error_text(err) + " at offset " + std::to_string(err_off));
    SplitRegex r;
    r.code = code;
    r.source = onig_pattern;
    r.jit = pcre2_jit_compile(code, PCRE2_JIT_COMPLETE) == 0;
    steps.push_back(r);
  }

  // Runs step `i` on `piece` and recurses into the next step for every match and gap.
  void run(size_t i, std::string_view piece, void* sink, SinkFn fn) const {
    if (piece.empty()) return;
    if (i == steps.size()) {
      fn(sink, piece);
      return;
    }
    const SplitRegex& re = steps[i];
    pcre2_match_data* md = thread_match_data();
    const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md);
    auto subject = reinterpret_cast<PCRE2_SPTR>(piece.data());
    const size_t n = piece.size();
    size_t pos = 0, gap_start = 0;
    while (pos < n) {
      int rc = re.jit ? pcre2_jit_match(re.code, subject, n, pos, 0, md, nullptr)
                      : pcre2_match(re.code, subject, n, pos, 0, md, nullptr);
      if (rc == PCRE2_ERROR_JIT_STACKLIMIT) {
        // Not seen with the DeepSeek patterns (their repeats are single character classes, which
        // JIT runs without stack frames), but a tokenizer.json may bring others: the interpreter
        // keeps its backtracking state on the heap.
        warn_jit_stack_once(re.source);
        rc = pcre2_match(re.code, subject, n, pos, PCRE2_NO_JIT, md, nullptr);
      }
      if (rc == PCRE2_ERROR_NOMATCH) break;
      if (rc < 0)
        throw Error("pre_tokenizer regex '" + re.source + "' failed: " + pcre2_error_text(rc));
      size_t s = ov[0], e = ov[1];
      if (e == s) {  // an empty match splits nothing; step over one character
        pos = s + utf8_char_len_at(subject, n, s);
        continue;
      }
      if (s > gap_start) run(i + 1, piece.substr(gap_start, s - gap_start), sink, fn);
      run(i + 1, piece.substr(s, e - s), sink, fn);
      gap_start = pos = e;
    }
    if (gap_start < n) run(i + 1, piece.substr(gap_start), sink, fn);
  }
};

PreTokenizer::PreTokenizer() : impl_(std::make_unique<Impl>()) {}
PreTokenizer::~PreTokenizer() = default;
PreTokenizer::PreTokenizer(PreTokenizer&&) noexcept = default;
PreTokenizer& PreTokenizer::operator=(PreTokenizer&&) noexcept = default;

size_t PreTokenizer::num_steps() const { return impl_->steps.size(); }

void PreTokenizer::split_impl(std::string_view text, void* sink, SinkFn fn) const {
  impl_->run(0, text, sink, fn);
}

std::vector<std::string> PreTokenizer::split_to_vector(std::string_view text) const {
  std::vector<std::string> out;
  split(text, [&](std::string_view p) { out.emplace_back(p); });
  return out;
}

PreTokenizer PreTokenizer::from_patterns(const std::vector<std::string>& patterns) {
  PreTokenizer p;
  for (const auto& pat : patterns) p.impl_->add_pattern(pat, "pre_tokenizer");
  return p;
}

namespace {

std::string escape_literal(const std::string& s) {
  std::string out;
  for (char c : s) {
    auto u = static_cast<unsigned char>(c);
    if (u < 0x80 && !std::isalnum(u)) out += '\\';
    out += c;
  }
  return out;
}

}  // namespace

PreTokenizer PreTokenizer::from_json(const nlohmann::json& pre, const std::string& file) {
  PreTokenizer p;
  if (pre.is_null()) return p;
  auto where = [&](const std::string& what) { return file + ": pre_tokenizer: " + what; };
  if (!pre.is_object() || !pre.contains("type")) throw Error(where("expected an object with 'type'"));
  std::vector<nlohmann::json> items;
  if (pre["type"] == "Sequence") {
    if (!pre.contains("pretokenizers") || !pre["pretokenizers"].is_array())
      throw Error(where("Sequence without a 'pretokenizers' array"));
    for (const auto& it : pre["pretokenizers"]) items.push_back(it);
  } else {
    items.push_back(pre);
  }
  bool saw_byte_level = false;
  for (const auto& it : items) {
    std::string type = it.value("type", "");
    if (type == "Split") {
      if (saw_byte_level) throw Error(where("Split after ByteLevel is not supported"));
      if (it.value("behavior", "") != "Isolated")
        throw Error(where("Split behavior '" + it.value("behavior", "") +
                          "' is not supported (expected Isolated)"));
      if (it.value("invert", false)) throw Error(where("Split with invert true is not supported"));
      const auto& pat = it.at("pattern");
      if (pat.contains("Regex")) {
        p.impl_->add_pattern(pat["Regex"].get<std::string>(), file);
      } else if (pat.contains("String")) {
        p.impl_->add_pattern(escape_literal(pat["String"].get<std::string>()), file);
      } else {
        throw Error(where("Split pattern must have 'Regex' or 'String'"));
      }
    } else if (type == "ByteLevel") {
      if (it.value("add_prefix_space", false))
        throw Error(where("ByteLevel add_prefix_space true is not supported"));
      if (it.value("use_regex", true))
        throw Error(where("ByteLevel use_regex true is not supported (DeepSeek uses false)"));
      saw_byte_level = true;
    } else {
      throw Error(where("step type '" + type + "' is not supported"));
    }
  }
  if (!saw_byte_level) throw Error(where("no ByteLevel step: not a byte-level BPE tokenizer"));
  return p;
}

std::string translate_onig_pattern(std::string_view pat) {
  std::string out;
  out.reserve(pat.size() + 64);
  bool in_class = false;
  size_t class_body_start = 0;  // index in `pat` of the first character of the class body
  for (size_t i = 0; i < pat.size(); ++i) {
    char c = pat[i];
    if (c == '\\' && i + 1 < pat.size()) {
      char e = pat[i + 1];
      ++i;
      if (e == 's') {
        if (in_class) {
          out += kOnigSpaceBody;
        } else {
          out += '[';
          out += kOnigSpaceBody;
          out += ']';
        }
      } else if (e == 'S') {
        if (in_class) throw Error("pre_tokenizer regex: \\S inside a character class is not supported");
        out += "[^";
        out += kOnigSpaceBody;
        out += ']';
      } else {
        out += c;
        out += e;
      }
      continue;
    }
    if (!in_class && c == '[') {
      in_class = true;
      out += c;
      if (i + 1 < pat.size() && pat[i + 1] == '^') out += pat[++i];
      class_body_start = i + 1;
      continue;
    }
    if (in_class && c == '[')
      throw Error("pre_tokenizer regex: nested character classes are not supported");
    if (in_class && c == ']' && i != class_body_start) in_class = false;
    out += c;
  }
  return out;
}

}  // namespace dsv4::text
