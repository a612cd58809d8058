// dsv4 server: one request's output on the HTTP thread that waits for it. Engine TokenEvents go
// through the streaming detokenizer and the output parser (reasoning / content / tool calls,
// stop strings in answer text); the result is parser events for streaming and an Outcome.
#pragma once
#include <string>
#include <vector>

#include "engine/queue.h"
#include "engine/request.h"
#include "server/api.h"
#include "text/output_parser.h"
#include "text/tokenizer.h"

namespace dsv4::server {

class Generation {
 public:
  Generation(const text::Tokenizer& tok, const text::OutputParserOptions& opt, bool want_logprobs);

  // Feeds one engine event; appends parser events and logprob entries. Returns true when the
  // request is over (engine finished, or the parser saw EOS / a stop string: the caller then
  // cancels the job).
  bool on_event(const engine::TokenEvent& e, std::vector<text::ParseEvent>* events,
                std::vector<TokenLogprobInfo>* logprobs);
  bool done() const { return done_; }
  bool stopped_by_text() const { return stopped_by_text_; }
  bool started() const { return started_; }
  bool engine_finished() const { return engine_finished_; }
  const Usage& usage() const { return usage_; }
  Outcome outcome() const;
  // Files the generated text runs (between control tokens) with their exact token ids.
  void register_runs(engine::TokenRunCache& runs) const;

 private:
  void end(engine::FinishReason r, std::vector<text::ParseEvent>* events);

  const text::Tokenizer& tok_;
  text::IncrementalDecoder dec_;
  text::OutputParser parser_;
  bool thinking_;
  bool want_logprobs_;
  bool in_reasoning_;
  int32_t think_end_;
  Usage usage_;
  bool started_ = false, done_ = false, stopped_by_text_ = false, engine_finished_ = false;
  engine::FinishReason engine_finish_ = engine::FinishReason::none;
  std::string error_;
  std::vector<TokenLogprobInfo> all_logprobs_;
  std::vector<int32_t> tokens_;
};

}  // namespace dsv4::server
