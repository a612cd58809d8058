// dsv4 text: added-token splitting (see added_tokens.h).
#include "text/added_tokens.h"

#include <algorithm>

namespace dsv4::text {

void AddedTokenMatcher::Trie::add(std::string_view s, int32_t id) {
  if (s.empty()) return;
  first[static_cast<unsigned char>(s[0])] = true;
  uint32_t node = 0;
  for (char ch : s) {
    auto c = static_cast<unsigned char>(ch);
    auto& kids = nodes[node].kids;
    auto it = std::lower_bound(kids.begin(), kids.end(), c,
                               [](const auto& kv, unsigned char b) { return kv.first < b; });
    if (it != kids.end() && it->first == c) {
      node = it->second;
    } else {
      uint32_t child = uint32_t(nodes.size());
      kids.insert(it, {c, child});  // `kids` may dangle after push_back: insert first
      nodes.push_back(Node{});
      node = child;
    }
  }
  if (nodes[node].token < 0) nodes[node].token = id;  // first definition of a spelling wins
}

int32_t AddedTokenMatcher::Trie::longest_at(std::string_view text, size_t i, size_t* len) const {
  uint32_t node = 0;
  int32_t best = -1;
  for (size_t j = i; j < text.size(); ++j) {
    auto c = static_cast<unsigned char>(text[j]);
    const auto& kids = nodes[node].kids;
    auto it = std::lower_bound(kids.begin(), kids.end(), c,
                               [](const auto& kv, unsigned char b) { return kv.first < b; });
    if (it == kids.end() || it->first != c) break;
    node = it->second;
    if (nodes[node].token >= 0) {
      best = nodes[node].token;
      *len = j + 1 - i;
    }
  }
  return best;
}

void AddedTokenMatcher::Trie::split(std::string_view text, std::vector<Segment>* out) const {
  size_t plain = 0;
  for (size_t i = 0; i < text.size();) {
    size_t len = 0;
    int32_t id = first[static_cast<unsigned char>(text[i])] ? longest_at(text, i, &len) : -1;
    if (id < 0) {
      ++i;
      continue;
    }
    if (i > plain) out->push_back({-1, text.substr(plain, i - plain)});
    out->push_back({id, text.substr(i, len)});
    i += len;
    plain = i;
  }
  if (plain < text.size()) out->push_back({-1, text.substr(plain)});
}

void AddedTokenMatcher::add(std::string_view content, int32_t id, bool normalized) {
  (normalized ? norm_ : raw_).add(content, id);
}

void AddedTokenMatcher::split(std::string_view text, std::vector<Segment>* out) const {
  std::vector<Segment> first_pass;
  raw_.split(text, &first_pass);
  for (const Segment& s : first_pass) {
    if (s.id >= 0)
      out->push_back(s);
    else
      norm_.split(s.text, out);
  }
}

}  // namespace dsv4::text
