#include "engine/constraint.h"

#include <algorithm>
#include <limits>

#include "text/tokenizer.h"

namespace dsv4::engine {

namespace {
constexpr float kNegInf = -std::numeric_limits<float>::infinity();
constexpr int kMaxNumberTokens = 1;  // one digit token: always a valid JSON number

const char* kind_string_attr(ParamKind k) { return k == ParamKind::string ? "true" : "false"; }
}  // namespace

std::shared_ptr<const ConstraintVocab> ConstraintVocab::build(const text::Tokenizer& tok, int32_t model_vocab) {
  auto v = std::make_shared<ConstraintVocab>();
  v->tok = &tok;
  v->vocab = model_vocab;
  v->eos = tok.eos_id();
  v->think_end = tok.token_id("</think>");
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
  return v;
}

std::vector<int32_t> ConstraintVocab::encode(const std::string& markup) const {
  return tok->encode_with_specials(markup);
}

ToolCallConstraint::ToolCallConstraint(const ForcedToolCall& spec, std::shared_ptr<const ConstraintVocab> vocab)
    : v_(std::move(vocab)), spec_(spec) {
  if (spec_.in_reasoning && v_->think_end >= 0) steps_.push_back({Phase::reasoning, {}, {}});
  push_forced("\n\n<｜DSML｜tool_calls>\n<｜DSML｜invoke name=\"");
  Step choice{Phase::choice, {}, {}};
  for (const auto& t : spec_.tools) choice.options.push_back(v_->encode(t.name + "\">\n"));
  steps_.push_back(std::move(choice));
  begin_step();
}

void ToolCallConstraint::push_forced(const std::string& markup) {
  steps_.push_back({Phase::forced, {v_->encode(markup)}, {}});
}

void ToolCallConstraint::begin_step() {
  pos_ = 0;
  closing_started_ = false;
  if (step_ >= steps_.size()) {
    done_ = true;
    return;
  }
  Step& s = steps_[step_];
  alive_.clear();
  for (size_t i = 0; i < s.options.size(); ++i) alive_.push_back(int(i));
}

int32_t ToolCallConstraint::next(std::span<float> logits) {
  if (done_) return v_->eos;
  Step& s = steps_[step_];
  switch (s.phase) {
    case Phase::reasoning:
      if (reasoning_tokens_ >= spec_.max_reasoning_tokens) return v_->think_end;
      logits[size_t(v_->eos)] = kNegInf;
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
  switch (s.phase) {
    case Phase::reasoning:
      ++reasoning_tokens_;
      if (token == v_->think_end) {
        ++step_;
        begin_step();
      }
      return;
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
          if (!tool_chosen_) {
            tool_chosen_ = true;
            const ForcedTool& tool = spec_.tools[size_t(i)];
            // Steps of the chosen tool go after this one.
            std::vector<Step> rest;
            for (const auto& p : tool.params) {
              rest.push_back({Phase::forced,
                              {v_->encode("<｜DSML｜parameter name=\"" + p.name + "\" string=\"" +
                                          kind_string_attr(p.kind) + "\">")},
                              {}});
              switch (p.kind) {
                case ParamKind::string:
                case ParamKind::integer:
                case ParamKind::number:
                  rest.push_back({Phase::value, {}, p.kind});
                  break;
                case ParamKind::boolean:
                  rest.push_back({Phase::choice, {v_->encode("true"), v_->encode("false")}, p.kind});
                  break;
                case ParamKind::object:
                  rest.push_back({Phase::forced, {v_->encode("{}")}, p.kind});
                  break;
                case ParamKind::array:
                  rest.push_back({Phase::forced, {v_->encode("[]")}, p.kind});
                  break;
                case ParamKind::null:
                  rest.push_back({Phase::forced, {v_->encode("null")}, p.kind});
                  break;
              }
              rest.push_back({Phase::forced, {v_->encode("</｜DSML｜parameter>\n")}, {}});
            }
            rest.push_back({Phase::forced, {v_->encode("</｜DSML｜invoke>\n</｜DSML｜tool_calls>")}, {}});
            rest.push_back({Phase::forced, {{v_->eos}}, {}});
            steps_.insert(steps_.end(), rest.begin(), rest.end());
          }
          ++step_;
          begin_step();
          return;
        }
      }
      if (alive_.empty()) {  // cannot happen: the mask allowed only live options
        done_ = true;
      }
      return;
    }
    case Phase::value: {
      const std::vector<int32_t>& close = steps_[step_ + 1].options[0];
      if (token == close[0]) {
        ++step_;
        begin_step();
        pos_ = 1;
        if (pos_ >= steps_[step_].options[0].size()) {
          ++step_;
          begin_step();
        }
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
