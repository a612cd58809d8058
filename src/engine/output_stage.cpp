#include "engine/output_stage.h"

#include "core/error.h"

namespace dsv4::engine {

const char* finish_reason_name(FinishReason r) {
  switch (r) {
    case FinishReason::none: return "none";
    case FinishReason::eos: return "eos";
    case FinishReason::stop_string: return "stop_string";
    case FinishReason::max_tokens: return "max_tokens";
    case FinishReason::context_full: return "context_full";
    case FinishReason::tool_calls: return "tool_calls";
    case FinishReason::cancelled: return "cancelled";
    case FinishReason::error: return "error";
  }
  return "none";
}

OutputStage::OutputStage(const text::Tokenizer& tok, const OutputSpec& spec, const std::vector<int32_t>& stop_token_ids)
    : tok_(tok),
      dec_(tok),
      stop_(spec.stop),
      think_end_(tok.token_id("</think>")),
      in_reasoning_(spec.mode == OutputMode::chat_thinking) {
  for (size_t i = 0; i < stop_.size(); ++i)
    if (stop_[i].empty()) throw Error("stop: stop string " + std::to_string(i) + " is empty, expected non-empty");
  if (spec.mode == OutputMode::plain) {
    StopParams sp;
    sp.stop_token_ids = stop_token_ids;
    sp.stop_token_ids.push_back(tok.eos_id());
    sp.stop_strings = stop_;
    checker_.emplace(std::move(sp));
  } else {
    text::OutputParserOptions po;
    po.thinking = spec.mode == OutputMode::chat_thinking;
    po.stop = stop_;
    parser_.emplace(std::move(po));
  }
}

void OutputStage::content(std::string_view s, std::vector<text::ParseEvent>& out) {
  if (s.empty()) return;
  text::ParseEvent e;
  e.kind = text::ParseEventKind::content_delta;
  e.text = std::string(s);
  out.push_back(std::move(e));
  plain_.content += s;
}

FinishReason OutputStage::push(int32_t token, std::vector<text::ParseEvent>& out) {
  if (finished_) return FinishReason::none;
  if (in_reasoning_) {
    if (token == think_end_) in_reasoning_ = false;
    else ++reasoning_tokens_;
  }
  // Control tokens by their spelling (the parser matches markers on the text), after whatever
  // partial character the decoder held.
  const bool special = tok_.is_added(token);
  const std::string piece = special ? dec_.flush() + tok_.token_text(token) : dec_.push(token);
  if (parser_) {
    if (!piece.empty()) parser_->push(piece, special, out);
    if (parser_->stop_matched()) {
      matched_stop_ = parser_->matched_stop();
      return FinishReason::stop_string;
    }
    return parser_->saw_eos() ? FinishReason::eos : FinishReason::none;
  }
  const StopStatus s = checker_->on_token(token, piece);  // a stop token's own text is not shown
  content(s.emit, out);
  if (s.reason == FinishReason::stop_string) matched_stop_ = stop_[size_t(s.stop_string_index)];
  return s.reason;
}

FinishReason OutputStage::finish(FinishReason why, std::vector<text::ParseEvent>& out) {
  if (finished_) return why;
  finished_ = true;
  if (parser_) {
    const std::string rest = dec_.flush();
    if (!rest.empty()) parser_->push(rest, false, out);
    parser_->finish(out);
    // A stop string that waited on a longer marker applies once no more text can come.
    if (why != FinishReason::stop_string && parser_->stop_matched()) {
      matched_stop_ = parser_->matched_stop();
      why = FinishReason::stop_string;
    }
    if (why == FinishReason::eos && !parser_->streamed_message().tool_calls.empty()) why = FinishReason::tool_calls;
    return why;
  }
  // Plain text: after EOS or a stop string nothing more may be shown.
  if (why != FinishReason::eos && why != FinishReason::stop_string) {
    const StopStatus s = checker_->on_token(kNoToken, dec_.flush());  // may still complete a stop string
    content(s.emit, out);
    if (s.reason == FinishReason::stop_string) {
      matched_stop_ = stop_[size_t(s.stop_string_index)];
      why = FinishReason::stop_string;
    } else {
      content(checker_->flush(), out);
    }
  }
  text::ParseEvent done;
  done.kind = text::ParseEventKind::done;
  out.push_back(std::move(done));
  return why;
}

const text::ParsedMessage& OutputStage::message() const { return parser_ ? parser_->streamed_message() : plain_; }

}  // namespace dsv4::engine
