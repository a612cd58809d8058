// dsv4 server: one request's engine events, read on the HTTP I/O thread. The engine has
// already detokenised, parsed and applied the stop strings (engine/output_stage.h): this only
// collects what a response needs besides the text events — usage, logprob entries, the outcome —
// and files the sampled token runs for prompt replay. No parsing, no decisions.
#pragma once
#include <string>
#include <vector>

#include "engine/queue.h"
#include "engine/request.h"
#include "server/api.h"
#include "text/tokenizer.h"

namespace dsv4::server {

class Generation {
 public:
  Generation(const text::Tokenizer& tok, engine::OutputMode mode, bool want_logprobs);

  // Takes one engine event; appends its text events and logprob entries. Returns true on the
  // request's last event.
  bool on_event(const engine::TokenEvent& e, std::vector<text::ParseEvent>* events,
                std::vector<TokenLogprobInfo>* logprobs);
  bool done() const { return done_; }
  bool started() const { return started_; }
  const Usage& usage() const { return usage_; }
  const Outcome& outcome() const { return outcome_; }
  // Files the generated text runs (between control tokens) with their exact token ids.
  void register_runs(engine::TokenRunCache& runs) const;

 private:
  const text::Tokenizer& tok_;
  bool thinking_;
  bool want_logprobs_;
  int32_t think_end_;
  Usage usage_;
  bool started_ = false, done_ = false;
  Outcome outcome_;
  std::vector<int32_t> tokens_;
};

}  // namespace dsv4::server
