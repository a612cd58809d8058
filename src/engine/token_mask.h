// dsv4 engine: token masks for grammar-constrained decoding. Which of the 129,280 tokens may come
// next, given a JSON matcher state (engine/json_matcher.h)?
//
// Everything that depends only on the vocabulary is computed once per tokenizer (TokenIndex):
// each ordinary token's bytes (added tokens never appear inside JSON), a byte trie over them, and
// two bulk classes: "string-safe" tokens (no '"', '\\' or control byte, whole UTF-8 characters:
// inside a free string each just adds its code points) ordered by code-point count, and "key-safe"
// tokens ([A-Za-z0-9_-] only: inside an additional property's name each just adds its bytes)
// ordered by length, with a trie over the tokens outside each class.
//
// One mask (TokenMasker::compute): inside a free string (or a free key) the class's tokens that
// fit the length left are allowed in bulk and only the others are walked; elsewhere the whole trie
// is walked depth-first, each edge feeding one byte to a copy of the parent's state, so a prefix
// shared by many tokens is matched once and a rejected byte prunes its whole subtree (at a
// structural position almost everything dies at the first byte). The mask is exact: a token is
// allowed iff the matcher accepts all of its bytes.
#pragma once
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "engine/json_matcher.h"

namespace dsv4::text {
class Tokenizer;
}

namespace dsv4::engine {

struct ByteTrie {
  static constexpr uint32_t kNone = 0xffffffffu;
  // Node 0 is the root (the empty prefix). Children are linked first_child -> next_sibling.
  std::vector<uint8_t> byte;
  std::vector<uint32_t> first_child, next_sibling;
  std::vector<uint32_t> tok_begin, tok_end;  // tokens whose bytes end at this node: toks[begin, end)
  std::vector<int32_t> toks;
  int max_depth = 0;
  // Builds the trie of `ids` (tokens with their bytes in `bytes`).
  static ByteTrie build(const std::vector<std::string>& bytes, std::vector<int32_t> ids);
};

struct TokenIndex {
  int32_t vocab = 0;
  std::vector<std::string> bytes;            // [vocab] raw bytes ("" for added tokens / no token)
  int32_t byte_token[256];                   // the token of each single byte (-1: none)
  ByteTrie all;                              // every ordinary token
  std::vector<int32_t> string_safe;          // ordered by code points
  std::vector<uint32_t> string_safe_upto;    // [k]: string_safe tokens with <= k code points
  ByteTrie not_string_safe;
  std::vector<int32_t> key_safe;             // ordered by bytes
  std::vector<uint32_t> key_safe_upto;
  ByteTrie not_key_safe;
  static std::shared_ptr<const TokenIndex> build(const text::Tokenizer& tok, int32_t model_vocab);
};

// Computes masks for one sequence (owns the per-depth scratch states; not thread-safe).
class TokenMasker {
 public:
  explicit TokenMasker(std::shared_ptr<const TokenIndex> index);
  // allow[id] = 1 for every token the matcher accepts in full from `s`; the rest are 0. Returns
  // the number allowed. (The end-of-value token is the caller's business.)
  size_t compute(const JsonMatcher& m, const JsonState& s, std::vector<uint8_t>& allow);
  const TokenIndex& index() const { return *ix_; }

 private:
  void walk(const JsonMatcher& m, const ByteTrie& tr, uint32_t node, int depth, std::vector<uint8_t>& allow, size_t& n);
  std::shared_ptr<const TokenIndex> ix_;
  std::vector<JsonState> states_;  // [depth]
};

}  // namespace dsv4::engine
