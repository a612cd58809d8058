// dsv4 engine: the JSON grammar's byte-level pushdown automaton (see json_matcher.h).
#include "engine/json_matcher.h"

#include <algorithm>
#include <cstring>

namespace dsv4::engine {

using text::JsonGrammar;
using text::SchemaNode;

namespace {

bool is_digit(unsigned char c) { return c >= '0' && c <= '9'; }
bool free_key_char(unsigned char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-';
}
int64_t pow10(int k) {
  int64_t p = 1;
  while (k-- > 0) p *= 10;
  return p;
}
int first_required(const SchemaNode& n, int from) {
  for (size_t i = size_t(from); i < n.properties.size(); ++i)
    if (n.properties[i].required) return int(i);
  return -1;
}
JsonFrame value_frame(int node) {
  JsonFrame v;
  v.kind = JsonFrame::value;
  v.node = node;
  return v;
}

}  // namespace

JsonMatcher::JsonMatcher(std::shared_ptr<const JsonGrammar> g) : g_(std::move(g)) {}

JsonState JsonMatcher::initial(int node) const {
  JsonState s;
  JsonFrame r;
  r.node = node < 0 ? g_->root : node;
  s.frames.push_back(r);
  s.ends.push_back(1);
  return s;
}

void JsonMatcher::push_thread(const Thread& t, JsonState& out) {
  out.frames.insert(out.frames.end(), t.begin(), t.end());
  out.ends.push_back(uint32_t(out.frames.size()));
}

bool JsonMatcher::feed(const JsonState& in, unsigned char c, JsonState& out) const {
  out.frames.clear();
  out.ends.clear();
  thread_local Thread t;
  uint32_t begin = 0;
  for (uint32_t end : in.ends) {
    t.assign(in.frames.begin() + begin, in.frames.begin() + end);
    step(t, c, out, 0);
    begin = end;
  }
  if (out.ends.size() > 1) {  // drop duplicate threads (identical stacks), keep at most kMaxThreads
    JsonState u;
    uint32_t b = 0;
    for (size_t i = 0; i < out.ends.size(); ++i) {
      const uint32_t e = out.ends[i];
      bool dup = false;
      uint32_t ub = 0;
      for (uint32_t ue : u.ends) {
        if (ue - ub == e - b && std::equal(out.frames.begin() + b, out.frames.begin() + e, u.frames.begin() + ub)) dup = true;
        ub = ue;
      }
      if (!dup && u.ends.size() < kMaxThreads) {
        u.frames.insert(u.frames.end(), out.frames.begin() + b, out.frames.begin() + e);
        u.ends.push_back(uint32_t(u.frames.size()));
      }
      b = e;
    }
    out = std::move(u);
  }
  return !out.ends.empty();
}

bool JsonMatcher::number_viable(const SchemaNode& n, bool neg, int64_t m, int nd) const {
  for (int k = 0; nd + k <= JsonGrammar::kMaxNumberDigits; ++k) {
    if (m == 0 && k > 0) break;  // no leading zeros
    const int64_t p = pow10(k), a = m * p, b = a + p - 1;
    const int64_t lo = neg ? -b : a, hi = neg ? -a : b;
    if (lo <= n.hi && hi >= n.lo) return true;
  }
  return false;
}

bool JsonMatcher::ends_here(const JsonFrame& f) const {
  if (f.kind == JsonFrame::literal) {
    const auto& L = g_->nodes[size_t(f.node)].literals;
    return L[size_t(f.a)].size() == size_t(f.c);
  }
  if (f.kind == JsonFrame::number) {
    if (f.phase == 4) return true;
    if (f.phase != 2) return false;
    const SchemaNode& n = g_->nodes[size_t(f.node)];
    const int64_t v = f.neg ? -f.m : f.m;
    return v >= n.lo && v <= n.hi;
  }
  return false;
}

void JsonMatcher::child_done(Thread& t) const {
  JsonFrame& p = t.back();
  switch (p.kind) {
    case JsonFrame::root: p.phase = 1; break;
    case JsonFrame::object: p.phase = 4; break;
    case JsonFrame::array: p.a++; p.phase = 1; break;
    default: break;
  }
}

bool JsonMatcher::key_start(JsonFrame& f) const {
  const SchemaNode& n = g_->nodes[size_t(f.node)];
  const int np = int(n.properties.size());
  const int r = first_required(n, f.a);
  const int last = r >= 0 ? r : np - 1;
  f.cand = 0;
  for (int i = f.a; i <= last && i < np; ++i) f.cand |= uint64_t(1) << i;
  f.all = np == 64 ? ~uint64_t(0) : (uint64_t(1) << np) - 1;
  f.free = n.additional >= 0 && f.d < JsonGrammar::kMaxAdditional && r < 0;
  if (!f.cand && !f.free) return false;
  f.phase = 1;
  f.b = 0;
  return true;
}

void JsonMatcher::step(Thread& t, unsigned char c, JsonState& out, int depth_guard) const {
  for (;;) {
    JsonFrame& f = t.back();
    const SchemaNode& n = g_->nodes[size_t(f.node < 0 ? g_->root : f.node)];
    switch (f.kind) {
      case JsonFrame::root:
        if (f.phase == 0) {
          f.phase = 2;
          t.push_back(value_frame(f.node));
          continue;
        }
        return;  // complete: nothing may follow

      case JsonFrame::value: {
        if (!n.any_of.empty()) {
          if (depth_guard > 32) return;
          for (int b : n.any_of) {
            Thread t2 = t;
            t2.back().node = b;
            step(t2, c, out, depth_guard + 1);
          }
          return;
        }
        if (!n.literals.empty()) {
          f.kind = JsonFrame::literal;
          f.a = 0;
          f.b = int32_t(n.literals.size());
          f.c = 0;
          continue;
        }
        const bool deep = f.node == g_->any && t.size() > size_t(JsonGrammar::kMaxFreeDepth);
        if (c == '{' && (n.types & text::kJsonObject) && !deep) {
          f.kind = JsonFrame::object;
          f.phase = 0;
          f.a = f.d = 0;
          push_thread(t, out);
          return;
        }
        if (c == '[' && (n.types & text::kJsonArray) && !deep) {
          f.kind = JsonFrame::array;
          f.phase = 0;
          f.a = 0;
          push_thread(t, out);
          return;
        }
        if (c == '"' && (n.types & text::kJsonString)) {
          f.kind = JsonFrame::string;
          f.a = f.b = f.c = 0;
          push_thread(t, out);
          return;
        }
        if ((c == '-' || is_digit(c)) && (n.types & (text::kJsonInteger | text::kJsonNumber))) {
          f.kind = JsonFrame::number;
          f.phase = 0;
          f.m = 0;
          f.b = f.c = 0;
          continue;
        }
        if ((c == 't' || c == 'f') && (n.types & text::kJsonBool)) {
          f.node = g_->bool_lits;
          continue;
        }
        if (c == 'n' && (n.types & text::kJsonNull)) {
          f.node = g_->null_lits;
          continue;
        }
        return;
      }

      case JsonFrame::literal: {
        const auto& L = n.literals;
        const size_t pos = size_t(f.c);
        int lo = f.a;
        const int hi = f.b;
        while (lo < hi && !(L[size_t(lo)].size() > pos && (unsigned char)L[size_t(lo)][pos] == c)) ++lo;
        int nhi = lo;
        while (nhi < hi && L[size_t(nhi)].size() > pos && (unsigned char)L[size_t(nhi)][pos] == c) ++nhi;
        if (lo == nhi) {
          if (L[size_t(f.a)].size() == pos) {  // a complete literal (a number): the byte is the parent's
            t.pop_back();
            child_done(t);
            continue;
          }
          return;
        }
        f.a = lo;
        f.b = nhi;
        f.c = int32_t(pos + 1);
        if (nhi - lo == 1 && L[size_t(lo)].size() == pos + 1) {
          t.pop_back();
          child_done(t);
        }
        push_thread(t, out);
        return;
      }

      case JsonFrame::number: {
        if (f.phase == 0 && c == '-') {
          if (n.lo < 0) {
            f.neg = 1;
            f.phase = 1;
            push_thread(t, out);
          }
          return;
        }
        if (f.phase <= 1) {
          if (!is_digit(c) || !number_viable(n, f.neg, c - '0', 1)) return;
          f.m = c - '0';
          f.b = 1;
          f.phase = 2;
          push_thread(t, out);
          return;
        }
        if (f.phase == 2 && is_digit(c)) {
          if (f.m == 0 || f.b >= JsonGrammar::kMaxNumberDigits) return;
          const int64_t m2 = f.m * 10 + (c - '0');
          if (!number_viable(n, f.neg, m2, f.b + 1)) return;
          f.m = m2;
          f.b++;
          push_thread(t, out);
          return;
        }
        if (f.phase == 2 && c == '.') {
          if (!(n.types & text::kJsonNumber)) return;
          const bool ok = !n.bounded || (f.neg ? (-f.m - 1 >= n.lo && -f.m <= n.hi) : (f.m >= n.lo && f.m + 1 <= n.hi));
          if (ok) {
            f.phase = 3;
            push_thread(t, out);
          }
          return;
        }
        if (f.phase == 3) {
          if (is_digit(c)) {
            f.phase = 4;
            f.c = 1;
            push_thread(t, out);
          }
          return;
        }
        if (f.phase == 4 && is_digit(c)) {
          if (f.c < JsonGrammar::kMaxFractionDigits) {
            f.c++;
            push_thread(t, out);
          }
          return;
        }
        if (ends_here(f)) {
          t.pop_back();
          child_done(t);
          continue;
        }
        return;
      }

      case JsonFrame::string: {
        if (f.pending) {
          if (c >= f.lo2 && c <= f.hi2) {
            f.pending--;
            f.lo2 = 0x80;
            f.hi2 = 0xbf;
            push_thread(t, out);
          }
          return;
        }
        if (f.esc) {
          if (c && std::strchr("\"\\/bfnrt", c)) {
            f.esc = 0;
            push_thread(t, out);
          }
          return;
        }
        if (!n.segments.empty()) {
          const auto& S = n.segments;
          size_t seg = size_t(f.b);
          int cnt = f.c;
          if (c == '"') {
            if (seg < S.size() && cnt < S[seg].min) return;
            for (size_t k = seg + 1; k < S.size(); ++k)
              if (S[k].min > 0) return;
            t.pop_back();
            child_done(t);
            push_thread(t, out);
            return;
          }
          while (seg < S.size()) {
            if ((S[seg].max < 0 || cnt < S[seg].max) && S[seg].has(c)) {
              f.b = int32_t(seg);
              f.c = cnt + 1;
              f.a++;
              push_thread(t, out);
              return;
            }
            if (cnt < S[seg].min) return;
            ++seg;
            cnt = 0;
          }
          return;
        }
        if (c == '"') {
          if (f.a >= n.min_length) {
            t.pop_back();
            child_done(t);
            push_thread(t, out);
          }
          return;
        }
        if (n.max_length >= 0 && f.a >= n.max_length) return;
        if (c == '\\') {
          f.esc = 1;
        } else if (c < 0x20) {
          return;
        } else if (c < 0x80) {
        } else if (c >= 0xc2 && c <= 0xdf) {
          f.pending = 1;
        } else if (c >= 0xe0 && c <= 0xef) {
          f.pending = 2;
          if (c == 0xe0) f.lo2 = 0xa0;
          if (c == 0xed) f.hi2 = 0x9f;
        } else if (c >= 0xf0 && c <= 0xf4) {
          f.pending = 3;
          if (c == 0xf0) f.lo2 = 0x90;
          if (c == 0xf4) f.hi2 = 0x8f;
        } else {
          return;
        }
        f.a++;
        push_thread(t, out);
        return;
      }

      case JsonFrame::object: {
        switch (f.phase) {
          case 0:
          case 5:
            if (f.phase == 5 && c == ' ' && !f.space) {
              f.space = 1;
              push_thread(t, out);
              return;
            }
            if (c == '"') {
              if (key_start(f)) push_thread(t, out);
              return;
            }
            if (f.phase == 0 && c == '}' && first_required(n, f.a) < 0) {
              t.pop_back();
              child_done(t);
              push_thread(t, out);
            }
            return;
          case 1: {
            const auto& P = n.properties;
            bool escaped_quote = false;  // a declared name goes on with \" here (never a close)
            if (c == '"')
              for (size_t i = 0; i < P.size(); ++i)
                if (((f.all >> i) & 1) && P[i].name.size() > size_t(f.b) && P[i].name[size_t(f.b)] == '"') escaped_quote = true;
            if (c == '"' && !escaped_quote) {
              for (size_t i = 0; i < P.size(); ++i)
                if (((f.cand >> i) & 1) && P[i].name.size() == size_t(f.b)) {
                  f.c = P[i].node;
                  f.a = int32_t(i + 1);
                  f.phase = 2;
                  push_thread(t, out);
                  return;
                }
              if (!f.free || f.b < 1) return;
              for (size_t i = 0; i < P.size(); ++i)
                if (((f.all >> i) & 1) && P[i].name.size() == size_t(f.b)) return;  // a declared name
              f.c = n.additional;
              f.a = int32_t(P.size());
              f.d++;
              f.phase = 2;
              push_thread(t, out);
              return;
            }
            uint64_t cand = 0, all = 0;
            for (size_t i = 0; i < P.size(); ++i) {
              if (!((f.all >> i) & 1)) continue;
              if (P[i].name.size() > size_t(f.b) && (unsigned char)P[i].name[size_t(f.b)] == c) {
                all |= uint64_t(1) << i;
                cand |= f.cand & (uint64_t(1) << i);
              }
            }
            const bool fr = f.free && free_key_char(c) && f.b < JsonGrammar::kMaxFreeKeyLength;
            if (!cand && !fr) return;
            f.cand = cand;
            f.all = all;
            f.free = fr;
            f.b++;
            push_thread(t, out);
            return;
          }
          case 2:
            if (c == ':') {
              f.phase = 3;
              f.space = 0;
              push_thread(t, out);
            }
            return;
          case 3: {
            if (c == ' ' && !f.space) {
              f.space = 1;
              push_thread(t, out);
              return;
            }
            f.phase = 6;  // in the value
            const int vn = f.c;
            t.push_back(value_frame(vn));
            continue;
          }
          case 4:
            if (c == ',') {
              const bool more = f.a < int32_t(n.properties.size()) || (n.additional >= 0 && f.d < JsonGrammar::kMaxAdditional);
              if (more) {
                f.phase = 5;
                f.space = 0;
                push_thread(t, out);
              }
              return;
            }
            if (c == '}' && first_required(n, f.a) < 0) {
              t.pop_back();
              child_done(t);
              push_thread(t, out);
            }
            return;
          default:
            return;
        }
      }

      case JsonFrame::array: {
        switch (f.phase) {
          case 0:
            if (c == ']') {
              if (n.min_items == 0) {
                t.pop_back();
                child_done(t);
                push_thread(t, out);
              }
              return;
            }
            if (n.max_items == 0) return;
            f.phase = 3;
            t.push_back(value_frame(n.items));
            continue;
          case 1:
            if (c == ',') {
              if (n.max_items < 0 || f.a < n.max_items) {
                f.phase = 2;
                f.space = 0;
                push_thread(t, out);
              }
              return;
            }
            if (c == ']' && f.a >= n.min_items) {
              t.pop_back();
              child_done(t);
              push_thread(t, out);
            }
            return;
          case 2:
            if (c == ' ' && !f.space) {
              f.space = 1;
              push_thread(t, out);
              return;
            }
            f.phase = 3;
            t.push_back(value_frame(n.items));
            continue;
          default:
            return;
        }
      }
    }
    return;
  }
}

bool JsonMatcher::can_finish(const JsonState& s) const {
  uint32_t begin = 0;
  for (uint32_t end : s.ends) {
    Thread t(s.frames.begin() + begin, s.frames.begin() + end);
    begin = end;
    for (;;) {
      const JsonFrame& f = t.back();
      if (f.kind == JsonFrame::root) {
        if (f.phase == 1) return true;
        break;
      }
      if (!ends_here(f)) break;
      t.pop_back();
      child_done(t);
    }
  }
  return false;
}

bool JsonMatcher::finished(const JsonState& s) const {
  uint32_t begin = 0;
  for (uint32_t end : s.ends) {
    if (!(end - begin == 1 && s.frames[begin].kind == JsonFrame::root && s.frames[begin].phase == 1)) return false;
    begin = end;
  }
  return !s.ends.empty();
}

int JsonMatcher::free_string_room(const JsonState& s) const {
  if (s.ends.size() != 1) return -2;
  const JsonFrame& f = s.frames.back();
  if (f.kind != JsonFrame::string || f.esc || f.pending) return -2;
  const SchemaNode& n = g_->nodes[size_t(f.node)];
  if (!n.segments.empty()) return -2;
  return n.max_length < 0 ? -1 : std::max(0, n.max_length - f.a);
}

int JsonMatcher::free_key_room(const JsonState& s) const {
  if (s.ends.size() != 1) return -2;
  const JsonFrame& f = s.frames.back();
  if (f.kind != JsonFrame::object || f.phase != 1 || !f.free) return -2;
  return JsonGrammar::kMaxFreeKeyLength - f.b;
}

std::string JsonMatcher::object_rest(const JsonFrame& f, bool comma_first) const {
  const SchemaNode& n = g_->nodes[size_t(f.node)];
  std::string out;
  bool comma = comma_first;
  for (size_t i = size_t(f.a); i < n.properties.size(); ++i) {
    const auto& p = n.properties[i];
    if (!p.required) continue;
    out += (comma ? ",\"" : "\"") + p.name + "\":" + g_->nodes[size_t(p.node)].shortest;
    comma = true;
  }
  return out + "}";
}

std::string JsonMatcher::frame_completion(const Thread& t, size_t i, bool top) const {
  const JsonFrame& f = t[i];
  const SchemaNode& n = g_->nodes[size_t(f.node < 0 ? g_->root : f.node)];
  auto free_name = [&](const std::string& prefix_hint, uint64_t all, int have) {
    // An additional property's name (the rest of it) equal to no declared name.
    std::string suffix = have >= 1 ? "" : "_";
    for (;;) {
      bool clash = false;
      for (size_t k = 0; k < n.properties.size(); ++k)
        if (((all >> k) & 1) && n.properties[k].name.size() == size_t(have) + suffix.size() &&
            n.properties[k].name.compare(size_t(have), std::string::npos, suffix) == 0)
          clash = true;
      if (!clash || suffix.size() > 8) return prefix_hint + suffix;
      suffix += "_";
    }
  };
  switch (f.kind) {
    case JsonFrame::root:
      return f.phase == 0 ? n.shortest : "";
    case JsonFrame::value:
      return n.shortest;
    case JsonFrame::literal: {
      size_t best = size_t(f.a);
      for (int k = f.a; k < f.b; ++k)
        if (n.literals[size_t(k)].size() < n.literals[best].size()) best = size_t(k);
      return n.literals[best].substr(size_t(f.c));
    }
    case JsonFrame::string: {
      std::string s;
      if (f.pending) {
        s += char(f.lo2);
        s.append(size_t(f.pending - 1), char(0x80));
      }
      if (f.esc) s += 'n';
      if (!n.segments.empty()) {
        const size_t seg = size_t(f.b);
        for (size_t k = seg; k < n.segments.size(); ++k) {
          const int have = k == seg ? f.c : 0;
          s.append(size_t(std::max(0, n.segments[k].min - have)), char(n.segments[k].first()));
        }
      } else {
        s.append(size_t(std::max(0, n.min_length - f.a)), 'a');
      }
      return s + "\"";
    }
    case JsonFrame::number: {
      if (ends_here(f)) return "";
      if (f.phase == 3) return "0";
      if (f.phase == 0) return n.shortest;
      // Digits after '-' or after a prefix: the extension of smallest magnitude in range.
      const int nd = f.phase == 1 ? 0 : f.b;
      for (int k = 1; nd + k <= JsonGrammar::kMaxNumberDigits; ++k) {
        int64_t a, b;
        if (nd == 0) {
          a = k == 1 ? 0 : pow10(k - 1);
          b = pow10(k) - 1;
        } else {
          a = f.m * pow10(k);
          b = a + pow10(k) - 1;
        }
        const int64_t mag_lo = f.neg ? std::max(a, -n.hi) : std::max(a, n.lo);
        const int64_t mag_hi = f.neg ? std::min(b, -n.lo) : std::min(b, n.hi);
        if (mag_lo <= mag_hi) {
          const std::string digits = std::to_string(mag_lo);
          return digits.substr(size_t(nd));
        }
      }
      return "";
    }
    case JsonFrame::array: {
      const std::string& item = g_->nodes[size_t(n.items)].shortest;
      std::string s;
      if (!top) {
        for (int k = f.a + 1; k < n.min_items; ++k) s += "," + item;
      } else if (f.phase == 0) {
        for (int k = 0; k < n.min_items; ++k) s += (k ? "," : "") + item;
      } else if (f.phase == 1) {
        for (int k = f.a; k < n.min_items; ++k) s += "," + item;
      } else {  // after ','
        s += item;
        for (int k = f.a + 1; k < n.min_items; ++k) s += "," + item;
      }
      return s + "]";
    }
    case JsonFrame::object: {
      if (!top) return object_rest(f, true);
      switch (f.phase) {
        case 0: return object_rest(f, false);
        case 1: {
          for (size_t k = 0; k < n.properties.size(); ++k)
            if ((f.cand >> k) & 1) {
              JsonFrame g = f;
              g.a = int32_t(k + 1);
              return n.properties[k].name.substr(size_t(f.b)) + "\":" + g_->nodes[size_t(n.properties[k].node)].shortest +
                     object_rest(g, true);
            }
          JsonFrame g = f;
          g.a = int32_t(n.properties.size());
          return free_name("", f.all, f.b) + "\":" + g_->nodes[size_t(n.additional)].shortest + object_rest(g, true);
        }
        case 2: return ":" + g_->nodes[size_t(f.c)].shortest + object_rest(f, true);
        case 3: return g_->nodes[size_t(f.c)].shortest + object_rest(f, true);
        case 4: return object_rest(f, true);
        case 5: {
          if (first_required(n, f.a) >= 0) return object_rest(f, false);
          if (f.a < int32_t(n.properties.size())) {
            JsonFrame g = f;
            g.a = f.a + 1;
            const auto& p = n.properties[size_t(f.a)];
            return "\"" + p.name + "\":" + g_->nodes[size_t(p.node)].shortest + object_rest(g, true);
          }
          uint64_t all = n.properties.size() == 64 ? ~uint64_t(0) : (uint64_t(1) << n.properties.size()) - 1;
          return "\"" + free_name("", all, 0) + "\":" + g_->nodes[size_t(n.additional)].shortest + "}";
        }
        default: return object_rest(f, true);
      }
    }
  }
  return "";
}

std::string JsonMatcher::completion(const JsonState& s) const {
  if (can_finish(s)) return "";
  std::string best;
  bool have = false;
  uint32_t begin = 0;
  for (uint32_t end : s.ends) {
    Thread t(s.frames.begin() + begin, s.frames.begin() + end);
    begin = end;
    std::string c;
    for (size_t i = t.size(); i-- > 0;) c += frame_completion(t, i, i + 1 == t.size());
    if (!have || c.size() < best.size()) {
      best = std::move(c);
      have = true;
    }
  }
  return best;
}

}  // namespace dsv4::engine
