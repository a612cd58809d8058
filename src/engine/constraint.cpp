#include "engine/constraint.h"

#include <algorithm>
#include <cstring>
#include <limits>

#include "text/tokenizer.h"

namespace dsv4::engine {

namespace {
constexpr float kNegInf = -std::numeric_limits<float>::infinity();
constexpr int kMaxNumberTokens = 1;  // one digit token: always a valid JSON number

const char* kind_string_attr(ParamKind k) { return k == ParamKind::string ? "true" : "false"; }

// A string schema with nothing to enforce: written raw (string="true"), as the model was trained.
bool plain_string(const ForcedParam& p) {
  if (!p.grammar) return p.kind == ParamKind::string;
  const text::SchemaNode& n = p.grammar->nodes[size_t(p.node)];
  return n.any_of.empty() && n.literals.empty() && n.types == text::kJsonString && n.segments.empty() &&
         n.min_length == 0 && n.max_length < 0;
}

void mask_to(std::span<float> logits, const std::vector<uint8_t>& allow) {
  const size_t n = std::min(logits.size(), allow.size());
  for (size_t j = 0; j < n; ++j)
    if (!allow[j]) logits[j] = kNegInf;
  for (size_t j = n; j < logits.size(); ++j) logits[j] = kNegInf;
}
}  // namespace

std::shared_ptr<const ConstraintVocab> ConstraintVocab::build(const text::Tokenizer& tok, int32_t model_vocab) {
  auto v = std::make_shared<ConstraintVocab>();
  v->tok = &tok;
  v->vocab = model_vocab;
  v->eos = tok.eos_id();
  v->think_end = tok.token_id("</think>");
  v->dsml = tok.token_id("｜DSML｜");
  v->string_ok.assign(size_t(model_vocab), 0);
  v->digit_ok.assign(size_t(model_vocab), 0);
  for (int32_t id = 0; id < model_vocab; ++id) {
    if (tok.is_added(id)) continue;
    std::string t = tok.token_text(id);
    if (t.empty()) continue;
    bool ok = true, digits = true;
    for (unsigned char c : t) {
      if (c == '<' || c == '\n' || c == '\r' || c == '\\' || c < 0x20) ok = false;
      if (c < '0' || c > '9') digits = false;
    }
    // Only complete UTF-8: a value cut at the cap must still be valid text.
    for (unsigned char c : t)
      if (c >= 0x80) ok = false;
    v->string_ok[size_t(id)] = ok;
    v->digit_ok[size_t(id)] = digits && t[0] != '0';  // a JSON number: no leading zero
  }
  v->index = TokenIndex::build(tok, model_vocab);
  return v;
}

std::vector<int32_t> ConstraintVocab::encode(const std::string& markup) const {
  return tok->encode_with_specials(markup);
}

// ---------------------------------------------------------------------------------------------
// JsonValueGen

JsonValueGen::JsonValueGen(std::shared_ptr<const text::JsonGrammar> g, int node, std::shared_ptr<const ConstraintVocab> v,
                           int32_t end_token, int budget)
    : v_(std::move(v)), m_(std::move(g)), masker_(v_->index), end_(end_token), budget_(budget) {
  st_ = m_.initial(node);
}

int32_t JsonValueGen::next(std::span<float> logits) {
  if (complete_) return end_;
  if (!forced_.empty()) return forced_.front();
  if (m_.finished(st_)) return end_;
  const std::string rest = m_.completion(st_);  // "" when the value may end here
  if (budget_ - used_ <= int(rest.size()) + 1) {
    if (rest.empty()) return end_;
    // The completion may start inside a UTF-8 character (the last token ended mid-character):
    // those continuation bytes go as single-byte tokens, the rest through the tokenizer.
    forced_.clear();
    size_t k = 0;
    while (k < rest.size() && ((unsigned char)rest[k] & 0xc0) == 0x80) {
      forced_.push_back(v_->index->byte_token[(unsigned char)rest[k]]);
      ++k;
    }
    const std::vector<int32_t> ids = v_->tok->encode_plain(std::string_view(rest).substr(k));
    forced_.insert(forced_.end(), ids.begin(), ids.end());
    return forced_.front();
  }
  masker_.compute(m_, st_, allow_);
  if (m_.can_finish(st_) && end_ >= 0 && size_t(end_) < allow_.size()) allow_[size_t(end_)] = 1;
  mask_to(logits, allow_);
  return -1;
}

void JsonValueGen::accept(int32_t token) {
  if (complete_) return;
  ++used_;
  if (!forced_.empty() && forced_.front() == token) forced_.pop_front();
  else forced_.clear();
  if (token == end_ && m_.can_finish(st_)) {
    complete_ = true;
    return;
  }
  const std::string& bytes = token >= 0 && size_t(token) < v_->index->bytes.size() ? v_->index->bytes[size_t(token)] : std::string();
  if (bytes.empty()) {  // not a JSON token (cannot happen under the mask): end here
    complete_ = true;
    return;
  }
  for (unsigned char c : bytes) {
    if (!m_.feed(st_, c, tmp_)) {
      complete_ = true;
      return;
    }
    std::swap(st_, tmp_);
  }
}

// ---------------------------------------------------------------------------------------------
// JsonConstraint

JsonConstraint::JsonConstraint(std::shared_ptr<const text::JsonGrammar> g, std::shared_ptr<const ConstraintVocab> v,
                               int budget, bool in_reasoning, int max_reasoning_tokens)
    : g_(std::move(g)), v_(std::move(v)), budget_(budget), reasoning_(in_reasoning && v_->think_end >= 0),
      max_reasoning_(max_reasoning_tokens) {
  if (!reasoning_) gen_ = std::make_unique<JsonValueGen>(g_, -1, v_, v_->eos, budget_);
}

int32_t JsonConstraint::next(std::span<float> logits) {
  if (done_) return v_->eos;
  if (reasoning_) {
    if (reasoning_tokens_ >= max_reasoning_) return v_->think_end;
    if (size_t(v_->eos) < logits.size()) logits[size_t(v_->eos)] = kNegInf;
    return -1;
  }
  return gen_->next(logits);
}

void JsonConstraint::accept(int32_t token) {
  if (done_) return;
  if (reasoning_) {
    ++reasoning_tokens_;
    if (token == v_->think_end) {
      reasoning_ = false;
      gen_ = std::make_unique<JsonValueGen>(g_, -1, v_, v_->eos, std::max(2, budget_ - reasoning_tokens_));
    }
    return;
  }
  gen_->accept(token);
  if (gen_->complete()) done_ = true;
}

// ---------------------------------------------------------------------------------------------
// ToolCallConstraint

ToolCallConstraint::ToolCallConstraint(const ForcedToolCall& spec, std::shared_ptr<const ConstraintVocab> vocab)
    : v_(std::move(vocab)), spec_(spec) {
  if (spec_.on_open) {
    // Free until the model writes "\n\n<｜DSML｜"; the rest of the opening is forced.
    watch_reasoning_ = spec_.in_reasoning && v_->think_end >= 0;
    steps_.push_back({Phase::watch, {}, {}});
    push_forced("tool_calls>\n<｜DSML｜invoke name=\"");
  } else {
    if (spec_.in_reasoning && v_->think_end >= 0) steps_.push_back({Phase::reasoning, {}, {}});
    push_forced("\n\n<｜DSML｜tool_calls>\n<｜DSML｜invoke name=\"");
  }
  push_tool_choice();
  begin_step();
}

void ToolCallConstraint::push_forced(const std::string& markup) {
  steps_.push_back({Phase::forced, {v_->encode(markup)}, {}});
}

void ToolCallConstraint::push_tool_choice() {
  Step choice{Phase::choice, {}, {}};
  choice.choice = Choice::tool;
  for (const auto& t : spec_.tools) choice.options.push_back(v_->encode(t.name + "\">\n"));
  steps_.push_back(std::move(choice));
}

void ToolCallConstraint::push_tool_steps(const ForcedTool& tool) {
  for (const auto& p : tool.params) {
    const bool raw = plain_string(p);
    const bool json = p.grammar && !raw;
    steps_.push_back({Phase::forced,
                      {v_->encode("<｜DSML｜parameter name=\"" + p.name + "\" string=\"" +
                                  (raw ? "true" : json ? "false" : kind_string_attr(p.kind)) + "\">")},
                      {}});
    if (json) {
      Step s{Phase::json, {}, {}};
      s.param = &p;
      steps_.push_back(std::move(s));
    } else {
      switch (p.kind) {
        case ParamKind::string:
        case ParamKind::integer:
        case ParamKind::number:
          steps_.push_back({Phase::value, {}, p.kind});
          break;
        case ParamKind::boolean: {
          Step s{Phase::choice, {v_->encode("true"), v_->encode("false")}, p.kind};
          s.choice = Choice::boolean;
          steps_.push_back(std::move(s));
          break;
        }
        case ParamKind::object:
          steps_.push_back({Phase::forced, {v_->encode("{}")}, p.kind});
          break;
        case ParamKind::array:
          steps_.push_back({Phase::forced, {v_->encode("[]")}, p.kind});
          break;
        case ParamKind::null:
          steps_.push_back({Phase::forced, {v_->encode("null")}, p.kind});
          break;
      }
    }
    push_forced("</｜DSML｜parameter>\n");
  }
  if (spec_.parallel && calls_ < spec_.max_calls) {
    push_forced("</｜DSML｜invoke>\n");
    Step more{Phase::choice, {v_->encode("<｜DSML｜invoke name=\""), v_->encode("</｜DSML｜tool_calls>")}, {}};
    more.choice = Choice::more;
    steps_.push_back(std::move(more));
  } else {
    push_forced("</｜DSML｜invoke>\n</｜DSML｜tool_calls>");
    steps_.push_back({Phase::forced, {{v_->eos}}, {}});
  }
}

void ToolCallConstraint::choice_made(Choice c, int option) {
  switch (c) {
    case Choice::tool:
      ++calls_;
      push_tool_steps(spec_.tools[size_t(option)]);
      break;
    case Choice::boolean:
      break;
    case Choice::more:
      if (option == 0) push_tool_choice();
      else steps_.push_back({Phase::forced, {{v_->eos}}, {}});
      break;
  }
}

void ToolCallConstraint::begin_step() {
  pos_ = 0;
  json_.reset();
  if (step_ >= steps_.size()) {
    done_ = true;
    return;
  }
  Step& s = steps_[step_];
  alive_.clear();
  for (size_t i = 0; i < s.options.size(); ++i) alive_.push_back(int(i));
  if (s.phase == Phase::json) {
    const std::vector<int32_t>& close = steps_[step_ + 1].options[0];
    json_ = std::make_unique<JsonValueGen>(s.param->grammar, s.param->node, v_, close[0], spec_.max_json_tokens);
  }
}

int32_t ToolCallConstraint::next(std::span<float> logits) {
  if (done_) return v_->eos;
  Step& s = steps_[step_];
  switch (s.phase) {
    case Phase::reasoning:
      if (reasoning_tokens_ >= spec_.max_reasoning_tokens) return v_->think_end;
      logits[size_t(v_->eos)] = kNegInf;
      return -1;
    case Phase::watch:
      return -1;
    case Phase::forced:
      return s.options[0][pos_];
    case Phase::choice: {
      int32_t first = -1;
      bool agree = true;
      for (int i : alive_) {
        int32_t t = s.options[size_t(i)][pos_];
        if (first < 0) first = t;
        else if (t != first) agree = false;
      }
      if (agree) return first;
      std::vector<uint8_t> allow(logits.size(), 0);
      for (int i : alive_) allow[size_t(s.options[size_t(i)][pos_])] = 1;
      for (size_t j = 0; j < logits.size(); ++j)
        if (!allow[j]) logits[j] = kNegInf;
      return -1;
    }
    case Phase::json:
      return json_->next(logits);
    case Phase::value: {
      const std::vector<int32_t>& close = steps_[step_ + 1].options[0];
      const bool number = s.kind == ParamKind::integer || s.kind == ParamKind::number;
      const int cap = number ? kMaxNumberTokens : spec_.max_value_tokens;
      if (int(pos_) >= cap) return close[0];
      const std::vector<uint8_t>& ok = number ? v_->digit_ok : v_->string_ok;
      const size_t n = std::min(logits.size(), ok.size());
      for (size_t j = 0; j < n; ++j)
        if (!ok[j]) logits[j] = kNegInf;
      for (size_t j = n; j < logits.size(); ++j) logits[j] = kNegInf;
      // The model may close the value itself after at least one token.
      if (pos_ > 0 && size_t(close[0]) < logits.size()) {
        // Restore the closing token's logit: it was masked above ('<').
        // (Its original value is gone; give it the best surviving logit so it stays reachable.)
        float best = kNegInf;
        for (size_t j = 0; j < n; ++j) best = std::max(best, logits[j]);
        logits[size_t(close[0])] = best - 2.0f;
      }
      return -1;
    }
    case Phase::finished:
      return v_->eos;
  }
  return -1;
}

void ToolCallConstraint::accept(int32_t token) {
  if (done_) return;
  Step& s = steps_[step_];
  auto closed_value = [&] {  // the value's closing markup started with this token
    ++step_;
    begin_step();
    pos_ = 1;
    if (pos_ >= steps_[step_].options[0].size()) {
      ++step_;
      begin_step();
    }
  };
  switch (s.phase) {
    case Phase::reasoning:
      ++reasoning_tokens_;
      if (token == v_->think_end) {
        ++step_;
        begin_step();
      }
      return;
    case Phase::watch: {
      if (watch_reasoning_) {
        if (token == v_->think_end) watch_reasoning_ = false;
        return;
      }
      const bool opens = token == v_->dsml && tail_.size() >= 3 && tail_.compare(tail_.size() - 3, 3, "\n\n<") == 0;
      if (opens) {
        ++step_;
        begin_step();
        return;
      }
      if (token >= 0 && size_t(token) < v_->index->bytes.size()) tail_ += v_->index->bytes[size_t(token)];
      if (tail_.size() > 8) tail_.erase(0, tail_.size() - 8);
      return;
    }
    case Phase::forced:
      if (++pos_ >= s.options[0].size()) {
        ++step_;
        begin_step();
      }
      return;
    case Phase::choice: {
      std::vector<int> keep;
      for (int i : alive_)
        if (s.options[size_t(i)][pos_] == token) keep.push_back(i);
      alive_ = keep;
      ++pos_;
      for (int i : alive_) {
        if (s.options[size_t(i)].size() == pos_) {
          const Choice c = s.choice;  // steps_ may grow below
          choice_made(c, i);
          ++step_;
          begin_step();
          return;
        }
      }
      if (alive_.empty()) done_ = true;  // cannot happen: the mask allowed only live options
      return;
    }
    case Phase::json:
      json_->accept(token);
      if (json_->complete()) closed_value();
      return;
    case Phase::value: {
      const std::vector<int32_t>& close = steps_[step_ + 1].options[0];
      if (token == close[0]) {
        closed_value();
        return;
      }
      ++pos_;
      return;
    }
    case Phase::finished:
      done_ = true;
      return;
  }
}

}  // namespace dsv4::engine
