// dsv4 text: the pre-tokenizer of a byte-level BPE tokenizer.json (API-NOTES §1.1).
//
// DeepSeek V3/V4 declare a Sequence of three Split steps (behavior Isolated) and a final ByteLevel
// step that only maps bytes (use_regex false). Each Split runs its regex over every piece the
// previous step produced; the matches AND the gaps between them become pieces. A piece is its own
// subject: a look-ahead such as `\s+(?!\S)` sees the end of the piece, not the next piece's text.
//
// The regexes run on PCRE2 (UTF + UCP, JIT). HF tokenizers runs them on Oniguruma, whose `\s` is
// {U+0009-000D, U+0085, Zs, Zl, Zp}; PCRE2's `\s` also matches U+180E, so `\s`/`\S` are rewritten
// into that explicit class before compiling (translate_onig_pattern). Invalid UTF-8 in the input
// never matches anything (PCRE2_MATCH_INVALID_UTF) and so lands in a gap piece, byte for byte.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace dsv4::text {

class PreTokenizer {
 public:
  // Parses tokenizer.json's "pre_tokenizer" value. `file` names the source in errors. Accepts a
  // Sequence (or a single step) of Split{Regex, Isolated, invert false} steps and at most one
  // ByteLevel{use_regex false, add_prefix_space false}; anything else throws dsv4::Error.
  static PreTokenizer from_json(const nlohmann::json& pre, const std::string& file);
  // The same from a list of Oniguruma-syntax regexes (for tests).
  static PreTokenizer from_patterns(const std::vector<std::string>& patterns);

  PreTokenizer();
  ~PreTokenizer();
  PreTokenizer(PreTokenizer&&) noexcept;
  PreTokenizer& operator=(PreTokenizer&&) noexcept;
  PreTokenizer(const PreTokenizer&) = delete;
  PreTokenizer& operator=(const PreTokenizer&) = delete;

  // Calls sink(piece) for each final piece of `text`, in order; the pieces concatenate to `text`.
  // Thread-safe (each thread uses its own match data).
  template <typename Sink>
  void split(std::string_view text, Sink&& sink) const {
    split_impl(text, &sink, [](void* s, std::string_view piece) { (*static_cast<Sink*>(s))(piece); });
  }
  std::vector<std::string> split_to_vector(std::string_view text) const;

  size_t num_steps() const;

 private:
  using SinkFn = void (*)(void*, std::string_view);
  void split_impl(std::string_view text, void* sink, SinkFn fn) const;
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Rewrites Oniguruma `\s` / `\S` (outside and `\s` inside character classes) into explicit PCRE2
// classes with Oniguruma's membership. Throws dsv4::Error on `\S` inside a class.
std::string translate_onig_pattern(std::string_view pattern);

}  // namespace dsv4::text
