// dsv4 text: finding added-token spellings in text (HF tokenizers AddedVocabulary semantics).
//
// HF splits in two passes: tokens with "normalized": false are matched in the raw text, then
// tokens with "normalized": true in each remaining piece after normalization (DeepSeek has no
// normalizer, so the same bytes). Each pass takes, at the leftmost position where some token
// matches, the longest token there, and continues after it (Aho-Corasick LeftmostLongest).
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace dsv4::text {

class AddedTokenMatcher {
 public:
  struct Segment {
    int32_t id;         // token id, or -1 for plain text
    std::string_view text;
  };
  // normalized: which pass the token belongs to.
  void add(std::string_view content, int32_t id, bool normalized);
  // Appends the segments of `text` in order (plain segments are non-empty).
  void split(std::string_view text, std::vector<Segment>* out) const;
  bool empty() const { return raw_.nodes.size() <= 1 && norm_.nodes.size() <= 1; }

 private:
  struct Trie {
    struct Node {
      int32_t token = -1;
      std::vector<std::pair<unsigned char, uint32_t>> kids;  // sorted by byte
    };
    std::vector<Node> nodes{Node{}};
    bool first[256] = {};
    void add(std::string_view s, int32_t id);
    // Longest token starting at text[i] (length in *len), or -1.
    int32_t longest_at(std::string_view text, size_t i, size_t* len) const;
    void split(std::string_view text, std::vector<Segment>* out) const;
  };
  Trie raw_, norm_;
};

}  // namespace dsv4::text
