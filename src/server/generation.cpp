#include "server/generation.h"

namespace dsv4::server {

Generation::Generation(const text::Tokenizer& tok, const text::OutputParserOptions& opt, bool want_logprobs)
    : tok_(tok),
      dec_(tok),
      parser_(opt),
      thinking_(opt.thinking),
      want_logprobs_(want_logprobs),
      in_reasoning_(opt.thinking),
      think_end_(tok.token_id("</think>")) {}

bool Generation::on_event(const engine::TokenEvent& e, std::vector<text::ParseEvent>* events,
                          std::vector<TokenLogprobInfo>* logprobs) {
  if (e.finish != engine::FinishReason::none) engine_finished_ = true;
  if (done_) return true;
  if (!started_ || e.finish != engine::FinishReason::none) {
    usage_.prompt = e.prompt_tokens;
    usage_.cached = e.cached_tokens;
  }
  started_ = true;
  if (e.token >= 0) {
    usage_.completion++;
    tokens_.push_back(e.token);
    const bool special = tok_.is_added(e.token);
    if (in_reasoning_) {
      if (e.token == think_end_) in_reasoning_ = false;
      else usage_.reasoning++;
    }
    std::string piece = special ? dec_.flush() + tok_.token_text(e.token) : dec_.push(e.token);
    if (want_logprobs_ && e.token != tok_.eos_id()) {
      TokenLogprobInfo info;
      info.token = tok_.token_text(e.token);
      info.logprob = e.logprob;
      for (const auto& t : e.top) info.top.emplace_back(tok_.token_text(t.token), t.logprob);
      logprobs->push_back(info);
      all_logprobs_.push_back(std::move(info));
    }
    if (!piece.empty()) parser_.push(piece, special, *events);
    if (parser_.should_stop()) {
      stopped_by_text_ = parser_.finish_reason() == text::FinishReason::stop;
      end(stopped_by_text_ ? engine::FinishReason::stop
                           : (e.finish == engine::FinishReason::tool_calls ? e.finish : engine::FinishReason::stop),
          events);
      return true;
    }
  }
  if (e.finish != engine::FinishReason::none) {
    if (e.finish == engine::FinishReason::error) error_ = e.error;
    std::string rest = dec_.flush();
    if (!rest.empty()) parser_.push(rest, false, *events);
    end(e.finish, events);
    return true;
  }
  return false;
}

void Generation::end(engine::FinishReason r, std::vector<text::ParseEvent>* events) {
  engine_finish_ = r;
  parser_.finish(*events);
  done_ = true;
}

void Generation::register_runs(engine::TokenRunCache& runs) const {
  size_t start = 0;
  for (size_t i = 0; i <= tokens_.size(); ++i) {
    if (i < tokens_.size() && !tok_.is_added(tokens_[i])) continue;
    if (i > start) {
      std::vector<int32_t> ids(tokens_.begin() + long(start), tokens_.begin() + long(i));
      runs.put(tok_.decode(ids), std::move(ids));
    }
    start = i + 1;
  }
  // The parsed reasoning and answer as the client will send them back (the parser drops some
  // newlines; random text may hold added-token ids mid-run): map them to the sampled ids too.
  const text::ParsedMessage& m = parser_.streamed_message();
  size_t think = tokens_.size();
  for (size_t i = 0; i < tokens_.size(); ++i)
    if (tokens_[i] == think_end_) {
      think = i;
      break;
    }
  if (thinking_ && think < tokens_.size() && !m.reasoning_content.empty())
    runs.put(m.reasoning_content, std::vector<int32_t>(tokens_.begin(), tokens_.begin() + long(think)));
  if (m.tool_calls.empty() && !m.content.empty() && (!thinking_ || think < tokens_.size())) {
    const size_t from = thinking_ ? think + 1 : 0;
    size_t to = tokens_.size();
    if (to > from && tokens_[to - 1] == tok_.eos_id()) --to;
    if (to > from) runs.put(m.content, std::vector<int32_t>(tokens_.begin() + long(from), tokens_.begin() + long(to)));
  }
}

Outcome Generation::outcome() const {
  Outcome o;
  o.usage = usage_;
  o.message = parser_.streamed_message();
  o.logprobs = all_logprobs_;
  switch (engine_finish_) {
    case engine::FinishReason::length: o.finish = Finish::length; break;
    case engine::FinishReason::cancelled: o.finish = Finish::cancelled; break;
    case engine::FinishReason::error: o.finish = Finish::error; o.error = error_; break;
    default: o.finish = Finish::stop; break;
  }
  if (stopped_by_text_) {
    o.finish = Finish::stop_sequence;
    o.stop_sequence = parser_.matched_stop();
  } else if (o.finish == Finish::stop && !o.message.tool_calls.empty()) {
    o.finish = Finish::tool_calls;
  }
  return o;
}

}  // namespace dsv4::server
