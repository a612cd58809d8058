// dsv4 text: streaming reader of tokenizer.json (see tokenizer_json.h).
#include "text/tokenizer_json.h"

#include <cstdio>

#include "core/error.h"

namespace dsv4::text {

namespace {

using Json = nlohmann::json;

// SAX handler: a small DOM builder that diverts model.vocab and model.merges into vectors.
class Reader final : public nlohmann::json_sax<Json> {
 public:
  Reader(TokenizerJson* out, const std::string& path) : out_(out), path_(path) {}

  bool null() override { return value(Json(nullptr)); }
  bool boolean(bool v) override { return value(Json(v)); }
  bool number_integer(number_integer_t v) override {
    if (mode_ == Mode::vocab) {
      out_->vocab.emplace_back(std::move(key_), v);
      return true;
    }
    return value(Json(v));
  }
  bool number_unsigned(number_unsigned_t v) override {
    if (mode_ == Mode::vocab) {
      if (v > uint64_t(INT64_MAX)) fail("model.vocab: id out of range for '" + key_ + "'");
      out_->vocab.emplace_back(std::move(key_), int64_t(v));
      return true;
    }
    return value(Json(v));
  }
  bool number_float(number_float_t v, const string_t&) override { return value(Json(v)); }
  bool string(string_t& s) override {
    if (mode_ == Mode::merges) {
      size_t sp = s.size() > 1 ? s.find(' ', 1) : std::string::npos;
      if (sp == std::string::npos)
        fail("model.merges entry " + std::to_string(out_->merges.size()) + " '" + s + "' has no space");
      out_->merges.emplace_back(s.substr(0, sp), s.substr(sp + 1));
      return true;
    }
    if (mode_ == Mode::merge_pair) {
      pair_.push_back(std::move(s));
      return true;
    }
    return value(Json(std::move(s)));
  }
  bool binary(binary_t&) override { fail("unexpected binary value"); }

  bool start_object(std::size_t) override {
    if (mode_ != Mode::dom) fail(where_in_model() + ": unexpected object");
    ++depth_;
    if (depth_ == 3 && root_key_ == "model" && model_key_ == "vocab") {
      value(Json::object());
      mode_ = Mode::vocab;
      return true;
    }
    return open(Json::object());
  }
  bool key(string_t& k) override {
    if (depth_ == 1) root_key_ = k;
    if (depth_ == 2) model_key_ = k;
    key_ = std::move(k);
    return true;
  }
  bool end_object() override {
    --depth_;
    if (mode_ == Mode::vocab) {
      mode_ = Mode::dom;
      return true;
    }
    stack_.pop_back();
    return true;
  }
  bool start_array(std::size_t) override {
    ++depth_;
    if (mode_ == Mode::merges) {
      mode_ = Mode::merge_pair;
      pair_.clear();
      return true;
    }
    if (mode_ != Mode::dom) fail(where_in_model() + ": unexpected array");
    if (depth_ == 3 && root_key_ == "model" && model_key_ == "merges") {
      value(Json::array());
      mode_ = Mode::merges;
      return true;
    }
    return open(Json::array());
  }
  bool end_array() override {
    --depth_;
    if (mode_ == Mode::merge_pair) {
      if (pair_.size() != 2)
        fail("model.merges entry " + std::to_string(out_->merges.size()) + " is not a pair of strings");
      out_->merges.emplace_back(std::move(pair_[0]), std::move(pair_[1]));
      mode_ = Mode::merges;
      return true;
    }
    if (mode_ == Mode::merges) {
      mode_ = Mode::dom;
      return true;
    }
    stack_.pop_back();
    return true;
  }
  bool parse_error(std::size_t position, const std::string&, const nlohmann::detail::exception& ex) override {
    throw Error(path_ + ": bad JSON at byte " + std::to_string(position) + ": " + ex.what());
  }

 private:
  enum class Mode { dom, vocab, merges, merge_pair };

  [[noreturn]] void fail(const std::string& what) { throw Error(path_ + ": " + what); }
  std::string where_in_model() const {
    return mode_ == Mode::vocab ? "model.vocab" : "model.merges";
  }

  // Places a scalar (or an empty container) at the current position.
  bool value(Json v) {
    if (mode_ == Mode::vocab) fail("model.vocab: value of '" + key_ + "' is not an integer");
    if (mode_ == Mode::merges || mode_ == Mode::merge_pair)
      fail("model.merges entry " + std::to_string(out_->merges.size()) + " is neither \"a b\" nor [a, b]");
    place(std::move(v));
    return true;
  }
  Json* place(Json v) {
    if (stack_.empty()) {
      out_->doc = std::move(v);
      return &out_->doc;
    }
    Json* parent = stack_.back();
    if (parent->is_array()) {
      parent->push_back(std::move(v));
      return &parent->back();
    }
    Json& slot = (*parent)[key_];
    slot = std::move(v);
    return &slot;
  }
  bool open(Json container) {
    stack_.push_back(place(std::move(container)));
    return true;
  }

  TokenizerJson* out_;
  const std::string& path_;
  std::vector<Json*> stack_;  // open DOM containers (pointers stay valid: only the back grows)
  std::string key_, root_key_, model_key_;
  std::vector<std::string> pair_;
  Mode mode_ = Mode::dom;
  int depth_ = 0;
};

std::string read_file_bytes(const std::string& path) {
  FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) throw Error(path + ": cannot open file");
  std::string data;
  char buf[1 << 16];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) data.append(buf, n);
  bool err = std::ferror(f);
  std::fclose(f);
  if (err) throw Error(path + ": read error");
  return data;
}

}  // namespace

TokenizerJson read_tokenizer_json(const std::string& path) {
  std::string data = read_file_bytes(path);
  TokenizerJson out;
  out.vocab.reserve(data.size() / 64);
  out.merges.reserve(data.size() / 64);
  Reader reader(&out, path);
  if (!Json::sax_parse(data, &reader)) throw Error(path + ": bad JSON");
  return out;
}

}  // namespace dsv4::text
