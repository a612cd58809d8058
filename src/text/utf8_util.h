// dsv4 text: UTF-8 validation and lossy conversion, shared by Tokenizer::decode and
// IncrementalDecoder so that streaming and one-shot decoding agree byte for byte.
//
// Invalid input becomes U+FFFD per "maximal subpart" (Unicode §3.9, the WHATWG / Rust
// String::from_utf8_lossy practice, which HF tokenizers' decode uses): a byte that cannot start a
// character is one U+FFFD; a well-formed prefix of a character cut short by a bad byte is one
// U+FFFD and the bad byte is examined afresh; a prefix cut short by the end of input is one U+FFFD.
#pragma once
#include <cstddef>
#include <string>
#include <string_view>

namespace dsv4::text {

enum class Utf8Kind { valid, invalid, incomplete };

// Classifies the sequence starting at s[0] (n >= 1). *len = bytes of the character (valid), of
// the maximal invalid subpart (invalid, >= 1), or n (incomplete: a well-formed prefix that the
// end of input cuts short).
Utf8Kind utf8_classify(const unsigned char* s, size_t n, size_t* len);

bool is_valid_utf8(std::string_view s);

// Appends `bytes` to *out with invalid sequences replaced (an incomplete tail included).
void append_utf8_lossy(std::string_view bytes, std::string* out);

// Appends the part of `bytes` that is decided (valid characters, and invalid sequences that no
// later byte can repair, replaced) and returns how many bytes it consumed. The rest (at most 3
// bytes) is a well-formed but incomplete character that later bytes may still complete.
size_t append_utf8_decided(std::string_view bytes, std::string* out);

// Appends the UTF-8 encoding of code point cp (cp < 0x110000, not a surrogate).
void append_utf8(char32_t cp, std::string* out);

}  // namespace dsv4::text
