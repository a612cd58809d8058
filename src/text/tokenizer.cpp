// dsv4 text: Tokenizer loading, encoding and decoding (see tokenizer.h).
#include "text/tokenizer.h"

#include <atomic>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <tuple>
#include <unordered_map>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "text/added_tokens.h"
#include "text/bpe.h"
#include "text/pretokenizer.h"
#include "text/tokenizer_json.h"
#include "text/utf8_util.h"

namespace dsv4::text {

namespace {

struct SvHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};
using StringMap = std::unordered_map<std::string, int32_t, SvHash, std::equal_to<>>;

enum : uint8_t { kAssigned = 1, kAdded = 2, kSpecial = 4 };

// GPT-2 byte-level alphabet: printable Latin-1 bytes (33-126, 161-172, 174-255) stand for
// themselves; the other 68 bytes map, in byte order, to U+0100.. so that no token holds a space
// or a control character.
struct ByteAlphabet {
  char32_t byte_to_cp[256];
  int16_t cp_to_byte[324];  // -1: not in the alphabet
  ByteAlphabet() {
    std::fill(std::begin(cp_to_byte), std::end(cp_to_byte), int16_t(-1));
    int extra = 0;
    for (int b = 0; b < 256; ++b) {
      bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174);
      char32_t cp = printable ? char32_t(b) : char32_t(256 + extra++);
      byte_to_cp[b] = cp;
      cp_to_byte[cp] = int16_t(b);
    }
  }
};
const ByteAlphabet& byte_alphabet() {
  static const ByteAlphabet a;
  return a;
}

// Bytes a vocab piece stands for. Characters outside the alphabet (only in pieces that are
// also added tokens, e.g. "<｜begin▁of▁sentence｜>") are kept as their own UTF-8.
std::string piece_to_bytes(std::string_view piece) {
  const ByteAlphabet& a = byte_alphabet();
  std::string out;
  auto s = reinterpret_cast<const unsigned char*>(piece.data());
  for (size_t i = 0; i < piece.size();) {
    size_t len = 1;
    char32_t cp = s[i];
    if (utf8_classify(s + i, piece.size() - i, &len) == Utf8Kind::valid && len > 1) {
      cp = s[i] & (0xFF >> (len + 1));
      for (size_t k = 1; k < len; ++k) cp = (cp << 6) | (s[i + k] & 0x3F);
    }
    if (cp < 324 && a.cp_to_byte[cp] >= 0)
      out.push_back(char(a.cp_to_byte[cp]));
    else
      out.append(piece.substr(i, len));
    i += len;
  }
  return out;
}

std::string read_text_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw Error(path + ": cannot open file");
  std::ostringstream ss;
  ss << f.rdbuf();
  if (f.bad()) throw Error(path + ": read error");
  return ss.str();
}

nlohmann::json parse_json_file(const std::string& path) {
  std::string text = read_text_file(path);
  try {
    return nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    throw Error(path + ": bad JSON: " + e.what());
  }
}

// tokenizer_config's bos_token / eos_token: a string or {"content": ...}; "" when absent.
std::string config_token(const nlohmann::json& cfg, const char* key) {
  if (!cfg.contains(key) || cfg[key].is_null()) return "";
  const auto& v = cfg[key];
  if (v.is_string()) return v.get<std::string>();
  if (v.is_object() && v.contains("content") && v["content"].is_string())
    return v["content"].get<std::string>();
  return "";
}

struct ConfigTokens {
  std::string bos = "<｜begin▁of▁sentence｜>", eos = "<｜end▁of▁sentence｜>";
  bool bos_named = false, eos_named = false;  // given by the config (must then exist)
  bool add_bos = false;
};

ConfigTokens read_config(const std::string& path) {
  nlohmann::json cfg = parse_json_file(path);
  if (!cfg.is_object()) throw Error(path + ": expected a JSON object");
  ConfigTokens ct;
  if (std::string b = config_token(cfg, "bos_token"); !b.empty()) {
    ct.bos = b;
    ct.bos_named = true;
  }
  if (std::string e = config_token(cfg, "eos_token"); !e.empty()) {
    ct.eos = e;
    ct.eos_named = true;
  }
  if (cfg.contains("add_bos_token") && !cfg["add_bos_token"].is_null()) {
    if (!cfg["add_bos_token"].is_boolean()) throw Error(path + ": add_bos_token must be true or false");
    ct.add_bos = cfg["add_bos_token"].get<bool>();
  }
  return ct;
}

std::atomic<uint64_t> g_next_serial{1};

// Ids above this are taken for a corrupt file rather than allocated for.
constexpr int64_t kMaxTokenId = int64_t{1} << 24;

struct AddedSpec {
  int32_t id;
  std::string content;
  bool special;
};

}  // namespace

struct Tokenizer::Impl {
  std::string source;
  uint64_t serial = g_next_serial.fetch_add(1);
  PreTokenizer pre;
  MergeTable merges;
  bool ignore_merges = false;
  int32_t byte_ids[256];
  // Per id: raw bytes (bytes_arena[bytes_off[id], bytes_off[id+1])), spelling, flags.
  std::string bytes_arena;
  std::vector<uint32_t> bytes_off;
  std::vector<std::string> pieces;
  std::vector<uint8_t> flags;
  StringMap added_by_text;  // added token content -> id
  StringMap vocab_by_bytes; // vocab entry bytes -> id (lowest id on a tie)
  AddedTokenMatcher added;
  int32_t bos = -1, eos = -1;
  bool add_bos = false;

  void load_model(const TokenizerJson& tj, StringMap& vocab_by_piece);
  std::vector<AddedSpec> load_added_tokens(const nlohmann::json& doc);
  void build_id_tables(const StringMap& vocab_by_piece, const std::vector<AddedSpec>& added);
  void encode_word(std::string_view word, WordCache& cache, std::vector<int32_t>& syms,
                   std::vector<int32_t>* out) const;
};

// model (tokenizer.json "model": BPE) from the streamed vocab and merges.
void Tokenizer::Impl::load_model(const TokenizerJson& tj, StringMap& vocab_by_piece) {
  auto where = [&](const std::string& what) { return source + ": model: " + what; };
  const nlohmann::json& model = tj.doc["model"];
  std::string type = model.value("type", "BPE");
  if (type != "BPE") throw Error(where("type '" + type + "' is not supported (expected BPE)"));
  if (model.value("byte_fallback", false)) throw Error(where("byte_fallback true is not supported"));
  for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"})
    if (model.contains(key) && !model[key].is_null() && model[key] != "")
      throw Error(where(std::string(key) + " is not supported"));
  if (model.contains("dropout") && model["dropout"].is_number() && model["dropout"].get<double>() > 0)
    throw Error(where("dropout is not supported"));
  ignore_merges = model.value("ignore_merges", false);
  if (!model.contains("vocab") || !model["vocab"].is_object()) throw Error(where("no 'vocab' object"));
  if (!model.contains("merges") || !model["merges"].is_array()) throw Error(where("no 'merges' array"));

  vocab_by_piece.reserve(tj.vocab.size() * 2);
  for (const auto& [piece, id] : tj.vocab) {
    if (id < 0 || id > kMaxTokenId) throw Error(where("vocab entry '" + piece + "' has a bad id"));
    vocab_by_piece.emplace(piece, int32_t(id));
  }

  const ByteAlphabet& a = byte_alphabet();
  for (int b = 0; b < 256; ++b) {
    std::string piece;
    append_utf8(a.byte_to_cp[b], &piece);
    auto it = vocab_by_piece.find(piece);
    if (it == vocab_by_piece.end())
      throw Error(where("vocab lacks the byte-level symbol '" + piece + "' of byte " +
                        std::to_string(b)));
    byte_ids[b] = it->second;
  }

  merges.reserve(tj.merges.size());
  std::string joined;
  for (size_t rank = 0; rank < tj.merges.size(); ++rank) {
    const auto& [left, right] = tj.merges[rank];
    joined.assign(left).append(right);
    auto l = vocab_by_piece.find(left), r = vocab_by_piece.find(right), j = vocab_by_piece.find(joined);
    if (l == vocab_by_piece.end() || r == vocab_by_piece.end() || j == vocab_by_piece.end())
      throw Error(where("merge " + std::to_string(rank) + " '" + left + " " + right +
                        "' uses a piece missing from the vocab"));
    merges.add(l->second, r->second, int32_t(rank), j->second);
  }
}

// tokenizer.json "added_tokens": registers each with the matcher and returns them.
std::vector<AddedSpec> Tokenizer::Impl::load_added_tokens(const nlohmann::json& doc) {
  std::vector<AddedSpec> added;
  if (!doc.contains("added_tokens") || doc["added_tokens"].is_null()) return added;
  if (!doc["added_tokens"].is_array()) throw Error(source + ": 'added_tokens' is not an array");
  for (const auto& t : doc["added_tokens"]) {
    if (!t.is_object() || !t.contains("id") || !t["id"].is_number_integer() || !t.contains("content") ||
        !t["content"].is_string())
      throw Error(source + ": added_tokens entry without integer 'id' and string 'content': " + t.dump());
    int64_t id = t["id"].get<int64_t>();
    std::string content = t["content"].get<std::string>();
    if (id < 0 || id > kMaxTokenId) throw Error(source + ": added token '" + content + "' has a bad id");
    if (content.empty()) throw Error(source + ": added token " + std::to_string(id) + " is empty");
    for (const char* flag : {"lstrip", "rstrip", "single_word"})
      if (t.value(flag, false))
        throw Error(source + ": added token '" + content + "': " + flag + " true is not supported");
    this->added.add(content, int32_t(id), t.value("normalized", false));
    added.push_back(AddedSpec{int32_t(id), std::move(content), t.value("special", false)});
  }
  return added;
}

// Per-id spelling, flags and bytes; the text -> id maps.
void Tokenizer::Impl::build_id_tables(const StringMap& vocab_by_piece, const std::vector<AddedSpec>& added) {
  int32_t max_id = -1;
  for (const auto& [piece, id] : vocab_by_piece) max_id = std::max(max_id, id);
  for (const auto& a : added) max_id = std::max(max_id, a.id);
  const size_t n = size_t(max_id + 1);
  pieces.assign(n, std::string());
  flags.assign(n, 0);
  for (const auto& [piece, id] : vocab_by_piece) {
    pieces[id] = piece;
    flags[id] |= kAssigned;
  }
  for (const auto& a : added) {
    pieces[a.id] = a.content;
    flags[a.id] |= kAssigned | kAdded | (a.special ? kSpecial : 0);
    added_by_text.emplace(a.content, a.id);
  }
  bytes_off.assign(n + 1, 0);
  for (size_t id = 0; id < n; ++id) {
    bytes_off[id] = uint32_t(bytes_arena.size());
    if (flags[id] & kAdded) {
      bytes_arena += pieces[id];
    } else if (flags[id] & kAssigned) {
      std::string bytes = piece_to_bytes(pieces[id]);
      vocab_by_bytes.emplace(bytes, int32_t(id));
      bytes_arena += bytes;
    }
  }
  bytes_off[n] = uint32_t(bytes_arena.size());
}

Tokenizer Tokenizer::load(const std::string& model_dir) {
  namespace fs = std::filesystem;
  std::error_code ec;
  fs::path json_path = model_dir;
  if (!fs::is_regular_file(json_path, ec)) json_path /= "tokenizer.json";
  if (!fs::exists(json_path, ec))
    throw Error(json_path.string() + ": tokenizer file not found");
  fs::path config_path = json_path.parent_path() / "tokenizer_config.json";

  auto impl = std::make_unique<Impl>();
  impl->source = json_path.string();
  const std::string& src = impl->source;
  try {
    TokenizerJson tj = read_tokenizer_json(src);
    const nlohmann::json& j = tj.doc;
    if (!j.is_object()) throw Error(src + ": expected a JSON object");

    // No normalizer is supported: null or an empty Sequence.
    if (j.contains("normalizer") && !j["normalizer"].is_null()) {
      const auto& n = j["normalizer"];
      bool empty_seq = n.value("type", "") == "Sequence" && n.contains("normalizers") &&
                       n["normalizers"].is_array() && n["normalizers"].empty();
      if (!empty_seq) throw Error(src + ": normalizer '" + n.value("type", "?") + "' is not supported");
    }
    if (j.contains("decoder") && !j["decoder"].is_null() && j["decoder"].value("type", "") != "ByteLevel")
      throw Error(src + ": decoder '" + j["decoder"].value("type", "?") + "' is not supported (expected ByteLevel)");
    impl->pre = PreTokenizer::from_json(j.contains("pre_tokenizer") ? j["pre_tokenizer"] : nlohmann::json(), src);
    if (!j.contains("model") || !j["model"].is_object()) throw Error(src + ": no 'model' object");

    StringMap vocab_by_piece;
    impl->load_model(tj, vocab_by_piece);

    std::vector<AddedSpec> added = impl->load_added_tokens(j);
    impl->build_id_tables(vocab_by_piece, added);
  } catch (const nlohmann::json::exception& e) {  // a value of the wrong JSON type
    throw Error(src + ": unexpected structure: " + e.what());
  }

  // tokenizer_config.json: bos/eos and add_bos_token. Without it, the DeepSeek spellings.
  ConfigTokens ct;
  if (fs::is_regular_file(config_path, ec)) ct = read_config(config_path.string());
  impl->add_bos = ct.add_bos;
  Tokenizer tok(std::move(impl));
  for (auto [text, named, slot] : {std::tuple{ct.bos, ct.bos_named, &tok.impl_->bos},
                                   std::tuple{ct.eos, ct.eos_named, &tok.impl_->eos}}) {
    *slot = tok.token_id(text);
    if (*slot < 0 && named)
      throw Error(config_path.string() + ": '" + text + "' is not a token of " + tok.source());
  }
  return tok;
}

Tokenizer::Tokenizer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Tokenizer::Tokenizer(Tokenizer&&) noexcept = default;
Tokenizer& Tokenizer::operator=(Tokenizer&&) noexcept = default;
Tokenizer::~Tokenizer() = default;

// ---------------------------------------------------------------------------------------------
// Encoding

void Tokenizer::Impl::encode_word(std::string_view word, WordCache& cache, std::vector<int32_t>& syms,
                                  std::vector<int32_t>* out) const {
  if (word.size() == 1) {
    out->push_back(byte_ids[static_cast<unsigned char>(word[0])]);
    return;
  }
  const bool cacheable = word.size() <= WordCache::kMaxKeyLen;
  uint64_t h = 0;
  if (cacheable) {
    h = hash_bytes(word);
    if (cache.lookup(word, h, out)) return;
  }
  if (ignore_merges) {
    if (auto it = vocab_by_bytes.find(word); it != vocab_by_bytes.end()) {
      out->push_back(it->second);
      if (cacheable) cache.insert(word, h, &it->second, 1);
      return;
    }
  }
  syms.resize(word.size());
  for (size_t i = 0; i < word.size(); ++i) syms[i] = byte_ids[static_cast<unsigned char>(word[i])];
  bpe_merge(merges, syms);
  out->insert(out->end(), syms.begin(), syms.end());
  if (cacheable) cache.insert(word, h, syms.data(), syms.size());
}

void Tokenizer::encode_plain(std::string_view text, std::vector<int32_t>* out) const {
  const Impl& im = *impl_;
  WordCache& cache = thread_word_cache(im.serial);
  std::vector<int32_t> syms;
  im.pre.split(text, [&](std::string_view word) { im.encode_word(word, cache, syms, out); });
}

std::vector<int32_t> Tokenizer::encode_plain(std::string_view text) const {
  std::vector<int32_t> out;
  out.reserve(text.size() / 3 + 4);
  encode_plain(text, &out);
  return out;
}

std::vector<int32_t> Tokenizer::encode_with_specials(std::string_view text) const {
  std::vector<AddedTokenMatcher::Segment> segs;
  impl_->added.split(text, &segs);
  std::vector<int32_t> out;
  out.reserve(text.size() / 3 + 4);
  for (const auto& s : segs) {
    if (s.id >= 0)
      out.push_back(s.id);
    else
      encode_plain(s.text, &out);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Decoding and lookups

void Tokenizer::append_token_bytes(int32_t id, std::string* out) const {
  const Impl& im = *impl_;
  if (id < 0 || size_t(id) >= im.flags.size()) return;
  out->append(im.bytes_arena, im.bytes_off[id], im.bytes_off[id + 1] - im.bytes_off[id]);
}

std::string Tokenizer::decode(std::span<const int32_t> ids) const {
  std::string bytes;
  bytes.reserve(ids.size() * 4);
  for (int32_t id : ids) append_token_bytes(id, &bytes);
  if (is_valid_utf8(bytes)) return bytes;
  std::string out;
  append_utf8_lossy(bytes, &out);
  return out;
}

int32_t Tokenizer::token_id(std::string_view spelling) const {
  if (auto it = impl_->added_by_text.find(spelling); it != impl_->added_by_text.end()) return it->second;
  if (auto it = impl_->vocab_by_bytes.find(spelling); it != impl_->vocab_by_bytes.end()) return it->second;
  return -1;
}

std::string Tokenizer::token_text(int32_t id) const {
  std::string out;
  append_token_bytes(id, &out);
  return out;
}

std::string Tokenizer::token_piece(int32_t id) const {
  if (id < 0 || size_t(id) >= impl_->pieces.size()) return "";
  return impl_->pieces[id];
}

bool Tokenizer::is_special(int32_t id) const {
  return id >= 0 && size_t(id) < impl_->flags.size() && (impl_->flags[id] & kSpecial);
}
bool Tokenizer::is_added(int32_t id) const {
  return id >= 0 && size_t(id) < impl_->flags.size() && (impl_->flags[id] & kAdded);
}
size_t Tokenizer::vocab_size() const { return impl_->flags.size(); }
int32_t Tokenizer::bos_id() const { return impl_->bos; }
int32_t Tokenizer::eos_id() const { return impl_->eos; }
bool Tokenizer::add_bos_token() const { return impl_->add_bos; }
const std::string& Tokenizer::source() const { return impl_->source; }

// ---------------------------------------------------------------------------------------------
// IncrementalDecoder

void IncrementalDecoder::push(int32_t id, std::string* out) {
  tok_->append_token_bytes(id, &pending_);
  size_t used = append_utf8_decided(pending_, out);
  pending_.erase(0, used);
}

std::string IncrementalDecoder::push(int32_t id) {
  std::string out;
  push(id, &out);
  return out;
}

std::string IncrementalDecoder::flush() {
  std::string out;
  append_utf8_lossy(pending_, &out);
  pending_.clear();
  return out;
}

}  // namespace dsv4::text
