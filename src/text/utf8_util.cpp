// dsv4 text: UTF-8 helpers (see utf8_util.h).
#include "text/utf8_util.h"

namespace dsv4::text {

namespace {
constexpr std::string_view kReplacement = "\xEF\xBF\xBD";  // U+FFFD
}  // namespace

Utf8Kind utf8_classify(const unsigned char* s, size_t n, size_t* len) {
  unsigned char b0 = s[0];
  if (b0 < 0x80) {
    *len = 1;
    return Utf8Kind::valid;
  }
  // Allowed range of the second byte and the total length, per Unicode Table 3-7.
  size_t need;
  unsigned char lo = 0x80, hi = 0xBF;
  if (b0 >= 0xC2 && b0 <= 0xDF) {
    need = 2;
  } else if (b0 >= 0xE0 && b0 <= 0xEF) {
    need = 3;
    if (b0 == 0xE0) lo = 0xA0;
    if (b0 == 0xED) hi = 0x9F;
  } else if (b0 >= 0xF0 && b0 <= 0xF4) {
    need = 4;
    if (b0 == 0xF0) lo = 0x90;
    if (b0 == 0xF4) hi = 0x8F;
  } else {  // 80..C1, F5..FF never start a character
    *len = 1;
    return Utf8Kind::invalid;
  }
  for (size_t k = 1; k < need; ++k) {
    if (k >= n) {
      *len = n;
      return Utf8Kind::incomplete;
    }
    unsigned char b = s[k];
    unsigned char l = k == 1 ? lo : 0x80, h = k == 1 ? hi : 0xBF;
    if (b < l || b > h) {
      *len = k;
      return Utf8Kind::invalid;
    }
  }
  *len = need;
  return Utf8Kind::valid;
}

bool is_valid_utf8(std::string_view str) {
  auto s = reinterpret_cast<const unsigned char*>(str.data());
  size_t n = str.size(), i = 0;
  while (i < n) {
    if (s[i] < 0x80) {
      ++i;
      continue;
    }
    size_t len;
    if (utf8_classify(s + i, n - i, &len) != Utf8Kind::valid) return false;
    i += len;
  }
  return true;
}

size_t append_utf8_decided(std::string_view bytes, std::string* out) {
  auto s = reinterpret_cast<const unsigned char*>(bytes.data());
  size_t n = bytes.size(), i = 0, run = 0;  // [run, i) is valid text not yet appended
  while (i < n) {
    if (s[i] < 0x80) {
      ++i;
      continue;
    }
    size_t len;
    Utf8Kind k = utf8_classify(s + i, n - i, &len);
    if (k == Utf8Kind::valid) {
      i += len;
      continue;
    }
    out->append(bytes.data() + run, i - run);
    if (k == Utf8Kind::incomplete) return i;
    out->append(kReplacement);
    i += len;
    run = i;
  }
  out->append(bytes.data() + run, n - run);
  return n;
}

void append_utf8_lossy(std::string_view bytes, std::string* out) {
  size_t used = append_utf8_decided(bytes, out);
  if (used < bytes.size()) out->append(kReplacement);  // an incomplete tail is one U+FFFD
}

void append_utf8(char32_t cp, std::string* out) {
  if (cp < 0x80) {
    out->push_back(char(cp));
  } else if (cp < 0x800) {
    out->push_back(char(0xC0 | (cp >> 6)));
    out->push_back(char(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out->push_back(char(0xE0 | (cp >> 12)));
    out->push_back(char(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(char(0x80 | (cp & 0x3F)));
  } else {
    out->push_back(char(0xF0 | (cp >> 18)));
    out->push_back(char(0x80 | ((cp >> 12) & 0x3F)));
    out->push_back(char(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(char(0x80 | (cp & 0x3F)));
  }
}

}  // namespace dsv4::text
