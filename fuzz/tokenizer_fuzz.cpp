// libFuzzer target: tokenizer round trips and incremental decoding on arbitrary bytes.
//
// For any input x (valid UTF-8 or not), with the DeepSeek-V4 tokenizer (V3 file + V4 overlay):
//   * the raw bytes of encode_plain(x) and of encode_with_specials(x) concatenate to x exactly;
//   * decode() of either equals x with invalid UTF-8 replaced (x itself when x is valid);
//   * IncrementalDecoder fed the ids one at a time emits only valid UTF-8 and, with flush(),
//     equals decode(); the same for the input read as a raw id sequence (which cuts characters
//     anywhere and mixes added tokens in).
// Any violation aborts. Tokenizer dir: $DSV4_FUZZ_TOKENIZER_DIR (a V3 or V4 tokenizer dir), else
// the shared V3 asset with the V4 overlay written to a temp dir.
//
// fuzz-sources: src/core/error.cpp src/core/log.cpp src/text/tokenizer.cpp src/text/tokenizer_json.cpp
// fuzz-sources: src/text/tokenizer_v4.cpp src/text/pretokenizer.cpp src/text/bpe.cpp
// fuzz-sources: src/text/added_tokens.cpp src/text/utf8_util.cpp
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "text/tokenizer.h"
#include "text/utf8_util.h"

namespace {

using dsv4::text::IncrementalDecoder;
using dsv4::text::Tokenizer;

std::unique_ptr<Tokenizer> g_tok;

[[noreturn]] void fail(const char* what) {
  std::fprintf(stderr, "tokenizer_fuzz: %s\n", what);
  std::abort();
}

std::unique_ptr<Tokenizer> load_tokenizer() {
  if (const char* dir = std::getenv("DSV4_FUZZ_TOKENIZER_DIR"); dir && *dir)
    return std::make_unique<Tokenizer>(Tokenizer::load(dir));
  std::string tmpl = (std::filesystem::temp_directory_path() / "dsv4fuzzXXXXXX").string();
  if (!mkdtemp(tmpl.data())) fail("mkdtemp failed");
  dsv4::text::write_v4_tokenizer(std::string(DSV4_ASSETS_DIR) + "/tokenizer/deepseek-v3", tmpl);
  auto tok = std::make_unique<Tokenizer>(Tokenizer::load(tmpl));
  std::filesystem::remove_all(tmpl);
  return tok;
}

std::string raw_bytes(const Tokenizer& tok, const std::vector<int32_t>& ids) {
  std::string out;
  for (int32_t id : ids) tok.append_token_bytes(id, &out);
  return out;
}

void check_incremental(const Tokenizer& tok, const std::vector<int32_t>& ids) {
  IncrementalDecoder dec(tok);
  std::string all;
  for (int32_t id : ids) {
    std::string chunk = dec.push(id);
    if (!dsv4::text::is_valid_utf8(chunk)) fail("IncrementalDecoder emitted invalid UTF-8");
    if (dec.pending_bytes() > 3) fail("IncrementalDecoder holds more than 3 bytes");
    all += chunk;
  }
  std::string tail = dec.flush();
  if (!dsv4::text::is_valid_utf8(tail)) fail("IncrementalDecoder::flush emitted invalid UTF-8");
  all += tail;
  if (all != tok.decode(ids)) fail("incremental decode != one-shot decode");
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  g_tok = load_tokenizer();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size > 1 << 16) return 0;
  const Tokenizer& tok = *g_tok;
  const std::string x(reinterpret_cast<const char*>(data), size);
  std::string lossy;
  dsv4::text::append_utf8_lossy(x, &lossy);
  if (dsv4::text::is_valid_utf8(x) != (lossy == x)) fail("is_valid_utf8 disagrees with lossy conversion");

  for (bool specials : {false, true}) {
    std::vector<int32_t> ids = specials ? tok.encode_with_specials(x) : tok.encode_plain(x);
    if (raw_bytes(tok, ids) != x) fail(specials ? "encode_with_specials lost bytes" : "encode_plain lost bytes");
    if (tok.decode(ids) != lossy) fail("decode(encode(x)) != lossy(x)");
    for (int32_t id : ids)
      if (id < 0 || size_t(id) >= tok.vocab_size()) fail("encode produced an id out of range");
    check_incremental(tok, ids);
  }

  // The input as a sequence of 3-byte little-endian ids (mod vocab size).
  std::vector<int32_t> ids;
  for (size_t i = 0; i + 3 <= size; i += 3)
    ids.push_back(int32_t((data[i] | (data[i + 1] << 8) | (data[i + 2] << 16)) % tok.vocab_size()));
  check_incremental(tok, ids);
  return 0;
}
