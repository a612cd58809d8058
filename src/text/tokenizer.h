// dsv4 text: the DeepSeek V3/V4 tokenizer (API-NOTES §1), loaded from a model dir's
// tokenizer.json (+ tokenizer_config.json).
//
// Byte-level BPE as HF tokenizers runs it: no normalizer; the pre-tokenizer of tokenizer.json
// (Split regexes on PCRE2, then the byte-level alphabet, see pretokenizer.h); merges by rank on
// pair ids (bpe.h); added tokens matched leftmost-longest. Two encoding modes (API-NOTES §1.2):
// encode_plain treats every special-token spelling as ordinary text (what the prompt renderer uses
// for message content); encode_with_specials turns added-token spellings anywhere in the text into
// their ids like HF `encode(text, add_special_tokens=False)`. Neither adds BOS.
//
// Tokens map to raw bytes; a token may hold part of a UTF-8 character. decode() joins the bytes
// and replaces invalid UTF-8 with U+FFFD (utf8_util.h); IncrementalDecoder does the same while ids
// arrive one at a time. For valid UTF-8 x, decode(encode_plain(x)) == x.
//
// A loaded Tokenizer is immutable: every method is const and safe to call from many threads.
// Encoding keeps a bounded per-thread cache of merged words.
#pragma once
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace dsv4::text {

class Tokenizer {
 public:
  // Reads <model_dir>/tokenizer.json and, when present, <model_dir>/tokenizer_config.json (for
  // bos/eos and add_bos_token; without it bos/eos fall back to the DeepSeek spellings).
  // `model_dir` may also name a tokenizer.json file. Throws dsv4::Error naming the file.
  static Tokenizer load(const std::string& model_dir);

  Tokenizer(Tokenizer&&) noexcept;
  Tokenizer& operator=(Tokenizer&&) noexcept;
  Tokenizer(const Tokenizer&) = delete;
  Tokenizer& operator=(const Tokenizer&) = delete;
  ~Tokenizer();

  // Special-token spellings are ordinary text.
  std::vector<int32_t> encode_plain(std::string_view text) const;
  void encode_plain(std::string_view text, std::vector<int32_t>* out) const;  // appends
  // Added-token spellings become their ids (HF AddedVocabulary: normalized=false tokens are split
  // out first, then normalized=true ones in what remains; leftmost-longest in each pass).
  std::vector<int32_t> encode_with_specials(std::string_view text) const;

  // Joined token bytes, invalid UTF-8 replaced by U+FFFD. Ids with no token are skipped.
  std::string decode(std::span<const int32_t> ids) const;
  // Appends the raw bytes of token `id` (nothing for an id with no token).
  void append_token_bytes(int32_t id, std::string* out) const;

  // Id of the token whose text is `spelling` (an added token's content, or the bytes a vocab
  // entry stands for, e.g. " Hello"), or -1.
  int32_t token_id(std::string_view spelling) const;
  // Raw bytes of token `id` (may be part of a UTF-8 character); "" for an id with no token.
  std::string token_text(int32_t id) const;
  // The spelling in tokenizer.json (byte-level alphabet for vocab entries, e.g. "ĠHello").
  std::string token_piece(int32_t id) const;
  // Added token marked "special": true in tokenizer.json.
  bool is_special(int32_t id) const;
  // Any added token (special or not, e.g. <｜User｜> in V3).
  bool is_added(int32_t id) const;
  // 1 + the largest id in the vocab or the added tokens.
  size_t vocab_size() const;
  int32_t bos_id() const;
  int32_t eos_id() const;
  bool add_bos_token() const;  // tokenizer_config's add_bos_token (V3 true, V4 false)
  const std::string& source() const;  // the tokenizer.json path

 private:
  struct Impl;
  explicit Tokenizer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// Turns ids into text as they arrive, never emitting part of a UTF-8 character. The
// concatenation of every push() and the final flush() equals tok.decode(all ids), for any split.
// Invalid bytes become U+FFFD as soon as no later byte could make them valid, or at flush().
class IncrementalDecoder {
 public:
  explicit IncrementalDecoder(const Tokenizer& tok) : tok_(&tok) {}
  // Text completed by `id`, possibly "".
  std::string push(int32_t id);
  void push(int32_t id, std::string* out);  // appends to *out
  // The rest: a held incomplete character becomes U+FFFD. The decoder is then empty.
  std::string flush();
  void reset() { pending_.clear(); }
  size_t pending_bytes() const { return pending_.size(); }

 private:
  const Tokenizer* tok_;
  std::string pending_;  // bytes of an incomplete character (at most 3)
};

// Writes <out_dir>/tokenizer.json and tokenizer_config.json for a DeepSeek-V4 checkpoint: the
// V3 file in <v3_tokenizer_dir> with the V4 added tokens overlaid (assets/tokenizer/README.md):
// ids 128815..129279 become added tokens, the known V4 ones by name (<think> 128821, ...) and the
// rest `<｜place▁holder▁no▁N｜>` placeholders (N = id - 128000, special). The V4 config has
// add_bos_token false and model_max_length 1048576. Creates out_dir if needed.
void write_v4_tokenizer(const std::string& v3_tokenizer_dir, const std::string& out_dir);

}  // namespace dsv4::text
