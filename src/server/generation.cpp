#include "server/generation.h"

namespace dsv4::server {

Generation::Generation(const text::Tokenizer& tok, engine::OutputMode mode, bool want_logprobs)
    : tok_(tok),
      thinking_(mode == engine::OutputMode::chat_thinking),
      want_logprobs_(want_logprobs),
      think_end_(tok.token_id("</think>")) {}

bool Generation::on_event(const engine::TokenEvent& e, std::vector<text::ParseEvent>* events,
                          std::vector<TokenLogprobInfo>* logprobs) {
  if (done_) return true;
  if (e.token < 0 && e.finish == engine::FinishReason::none) return false;  // prefill progress
  if (!started_ || e.finish != engine::FinishReason::none) {
    usage_.prompt = e.prompt_tokens;
    usage_.cached = e.cached_tokens;
  }
  started_ = true;
  if (e.token >= 0) {
    usage_.completion++;
    tokens_.push_back(e.token);
    if (want_logprobs_ && e.token != tok_.eos_id()) {
      TokenLogprobInfo info;
      info.token = tok_.token_text(e.token);
      info.logprob = e.logprob;
      for (const auto& t : e.top) info.top.emplace_back(tok_.token_text(t.token), t.logprob);
      logprobs->push_back(info);
      outcome_.logprobs.push_back(std::move(info));
    }
  }
  events->insert(events->end(), e.text.begin(), e.text.end());
  if (e.finish == engine::FinishReason::none) return false;
  usage_.reasoning = e.reasoning_tokens;
  outcome_.finish = e.finish;
  outcome_.stop_sequence = e.stop_string;
  outcome_.message = e.message;
  outcome_.error = e.error;
  outcome_.usage = usage_;
  done_ = true;
  return true;
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
  const text::ParsedMessage& m = outcome_.message;
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

}  // namespace dsv4::server
