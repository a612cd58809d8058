// dsv4 engine: token masks over the vocabulary for the JSON matcher (see token_mask.h).
#include "engine/token_mask.h"

#include <algorithm>
#include <cstring>

#include "text/tokenizer.h"
#include "text/utf8_util.h"

namespace dsv4::engine {

namespace {

// Code points of `s` when it is whole, valid UTF-8 with no '"', '\\' or control byte; else -1.
int string_safe_chars(const std::string& s) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  int n = 0;
  for (size_t i = 0; i < s.size(); ++n) {
    const unsigned char c = p[i];
    if (c == '"' || c == '\\' || c < 0x20) return -1;
    size_t len = 0;
    if (text::utf8_classify(p + i, s.size() - i, &len) != text::Utf8Kind::valid) return -1;
    i += len;
  }
  return n;
}

bool key_safe_token(const std::string& s) {
  for (unsigned char c : s)
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-')) return false;
  return !s.empty();
}

}  // namespace

ByteTrie ByteTrie::build(const std::vector<std::string>& bytes, std::vector<int32_t> ids) {
  std::sort(ids.begin(), ids.end(), [&](int32_t a, int32_t b) {
    const int c = bytes[size_t(a)].compare(bytes[size_t(b)]);
    return c != 0 ? c < 0 : a < b;
  });
  ByteTrie t;
  auto new_node = [&](uint8_t b) {
    t.byte.push_back(b);
    t.first_child.push_back(kNone);
    t.next_sibling.push_back(kNone);
    t.tok_begin.push_back(0);
    t.tok_end.push_back(0);
    return uint32_t(t.byte.size() - 1);
  };
  new_node(0);
  std::vector<uint32_t> last_child(1, kNone);
  std::vector<uint32_t> path = {0};  // path[d]: node of the current prefix of length d
  const std::string* prev = nullptr;
  for (int32_t id : ids) {
    const std::string& s = bytes[size_t(id)];
    size_t common = 0;
    if (prev)
      while (common < prev->size() && common < s.size() && (*prev)[common] == s[common]) ++common;
    path.resize(common + 1);
    for (size_t d = common; d < s.size(); ++d) {
      const uint32_t parent = path[d];
      const uint32_t child = new_node(uint8_t(s[d]));
      last_child.push_back(kNone);
      if (last_child[parent] == kNone) t.first_child[parent] = child;
      else t.next_sibling[last_child[parent]] = child;
      last_child[parent] = child;
      path.push_back(child);
    }
    const uint32_t at = path[s.size()];
    if (t.tok_end[at] == 0 && t.tok_begin[at] == 0) t.tok_begin[at] = uint32_t(t.toks.size());
    t.toks.push_back(id);
    t.tok_end[at] = uint32_t(t.toks.size());
    t.max_depth = std::max(t.max_depth, int(s.size()));
    prev = &s;
  }
  return t;
}

std::shared_ptr<const TokenIndex> TokenIndex::build(const text::Tokenizer& tok, int32_t model_vocab) {
  auto ix = std::make_shared<TokenIndex>();
  ix->vocab = model_vocab;
  ix->bytes.resize(size_t(model_vocab));
  std::vector<int32_t> all, not_str, not_key;
  std::vector<std::pair<int, int32_t>> str, key;
  for (int32_t id = 0; id < model_vocab; ++id) {
    if (tok.is_added(id)) continue;
    std::string b = tok.token_text(id);
    if (b.empty()) continue;
    all.push_back(id);
    const int cp = string_safe_chars(b);
    if (cp > 0) str.push_back({cp, id});
    else not_str.push_back(id);
    if (key_safe_token(b)) key.push_back({int(b.size()), id});
    else not_key.push_back(id);
    ix->bytes[size_t(id)] = std::move(b);
  }
  for (int b = 0; b < 256; ++b) ix->byte_token[b] = -1;
  for (int32_t id : all)
    if (ix->bytes[size_t(id)].size() == 1 && ix->byte_token[(unsigned char)ix->bytes[size_t(id)][0]] < 0)
      ix->byte_token[(unsigned char)ix->bytes[size_t(id)][0]] = id;
  std::sort(str.begin(), str.end());
  std::sort(key.begin(), key.end());
  auto upto = [](const std::vector<std::pair<int, int32_t>>& v, std::vector<int32_t>& ids, std::vector<uint32_t>& up) {
    const int maxk = v.empty() ? 0 : v.back().first;
    up.assign(size_t(maxk) + 1, 0);
    for (const auto& [k, id] : v) ids.push_back(id);
    size_t j = 0;
    for (int k = 0; k <= maxk; ++k) {
      while (j < v.size() && v[j].first <= k) ++j;
      up[size_t(k)] = uint32_t(j);
    }
  };
  upto(str, ix->string_safe, ix->string_safe_upto);
  upto(key, ix->key_safe, ix->key_safe_upto);
  ix->all = ByteTrie::build(ix->bytes, all);
  ix->not_string_safe = ByteTrie::build(ix->bytes, not_str);
  ix->not_key_safe = ByteTrie::build(ix->bytes, not_key);
  return ix;
}

TokenMasker::TokenMasker(std::shared_ptr<const TokenIndex> index) : ix_(std::move(index)) {
  states_.resize(size_t(ix_->all.max_depth) + 2);
}

void TokenMasker::walk(const JsonMatcher& m, const ByteTrie& tr, uint32_t node, int depth, std::vector<uint8_t>& allow,
                       size_t& n) {
  const JsonState& here = states_[size_t(depth)];
  JsonState& next = states_[size_t(depth) + 1];
  for (uint32_t ch = tr.first_child[node]; ch != ByteTrie::kNone; ch = tr.next_sibling[ch]) {
    if (!m.feed(here, tr.byte[ch], next)) continue;
    for (uint32_t k = tr.tok_begin[ch]; k < tr.tok_end[ch]; ++k) {
      allow[size_t(tr.toks[k])] = 1;
      ++n;
    }
    if (tr.first_child[ch] != ByteTrie::kNone) walk(m, tr, ch, depth + 1, allow, n);
  }
}

size_t TokenMasker::compute(const JsonMatcher& m, const JsonState& s, std::vector<uint8_t>& allow) {
  allow.assign(size_t(ix_->vocab), 0);
  size_t n = 0;
  states_[0] = s;
  const ByteTrie* tr = &ix_->all;
  auto bulk = [&](const std::vector<int32_t>& ids, const std::vector<uint32_t>& upto, int room) {
    const size_t end = room < 0 || size_t(room) >= upto.size() ? ids.size() : upto[size_t(room)];
    for (size_t k = 0; k < end; ++k) allow[size_t(ids[k])] = 1;
    n += end;
  };
  if (const int room = m.free_string_room(s); room != -2) {
    bulk(ix_->string_safe, ix_->string_safe_upto, room);
    tr = &ix_->not_string_safe;
  } else if (const int kroom = m.free_key_room(s); kroom != -2) {
    bulk(ix_->key_safe, ix_->key_safe_upto, kroom);
    tr = &ix_->not_key_safe;
  }
  walk(m, *tr, 0, 0, allow, n);
  return n;
}

}  // namespace dsv4::engine
