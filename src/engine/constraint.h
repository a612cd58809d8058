// dsv4 engine: grammar-constrained decoding. One interface (Constraint) that the scheduler runs
// around the sampler: before each sample it either forces the next token or masks the logits to
// the tokens allowed there; after it, it is told the token. Two implementations:
//
// JsonConstraint (structured outputs: response_format json_object / json_schema, Anthropic
// output_config.format, `dsv4 run --json-schema`): the answer is one JSON value of a grammar
// (text/json_schema.h), then EOS. In thinking mode the reasoning stays free (EOS banned) until
// </think>, forced after max_reasoning_tokens. Each step masks the vocabulary with the JSON
// matcher (engine/token_mask.h). A token budget (what max_tokens leaves) bounds the value: when
// the tokens left get down to the bytes of the shortest completion, that completion is forced, so
// max_tokens never cuts the JSON; when even that does not fit, the value still runs to its end
// (in_block()).
//
// ToolCallConstraint (tool_choice required / named, Anthropic tool_choice any / tool; under
// tool_choice auto with strict tools, from the moment the model opens a block itself): the engine
// writes the DSML tool-call block (API-NOTES §2.3) itself and lets the model choose only what the
// schema leaves open: which tool (when several are allowed), each parameter value, and (with
// parallel calls) whether another call follows. Plain string parameters are raw text (string="true",
// no markup, no newlines, a length cap); every other parameter is a JSON value under its schema
// (string="false": enums, nested objects with their required keys, arrays, numbers in bounds):
//
//   [reasoning </think>] \n\n<｜DSML｜tool_calls>\n<｜DSML｜invoke name="NAME">\n
//   <｜DSML｜parameter name="P" string="true|false">VALUE</｜DSML｜parameter>\n ...
//   </｜DSML｜invoke>\n[<｜DSML｜invoke ...>...]</｜DSML｜tool_calls><｜end▁of▁sentence｜>
#pragma once
#include <cstdint>
#include <deque>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "engine/finish_reason.h"
#include "engine/json_matcher.h"
#include "engine/request.h"
#include "engine/token_mask.h"

namespace dsv4::text {
class Tokenizer;
}

namespace dsv4::engine {

// Per-model token classes the constraints need, computed once from the tokenizer (the token
// index takes ~1 s on the full vocabulary, so the scheduler builds it at the first constrained
// request).
struct ConstraintVocab {
  const text::Tokenizer* tok = nullptr;
  int32_t vocab = 0;
  int32_t eos = 1;
  int32_t think_end = -1;           // </think>, -1 when the tokenizer has none
  int32_t dsml = -1;                // ｜DSML｜, -1 when the tokenizer has none
  std::vector<uint8_t> string_ok;   // [vocab] 1: may appear inside a raw string parameter value
  std::vector<uint8_t> digit_ok;    // [vocab] 1: only ASCII digits
  std::shared_ptr<const TokenIndex> index;  // token bytes, trie and bulk classes (token_mask.h)
  static std::shared_ptr<const ConstraintVocab> build(const text::Tokenizer& tok, int32_t model_vocab);
  std::vector<int32_t> encode(const std::string& markup) const;  // DSML spellings become ids
};

class Constraint {
 public:
  virtual ~Constraint() = default;
  // Before sampling: returns the forced next token, or -1 after masking `logits` (in place) to the
  // tokens allowed here (the caller then samples normally).
  virtual int32_t next(std::span<float> logits) = 0;
  // The token that was emitted (forced or sampled under the mask).
  virtual void accept(int32_t token) = 0;
  // The structure is complete (its last token, EOS, was accepted).
  virtual bool done() const = 0;
  // The structure has started: it runs to its end regardless of max_tokens.
  virtual bool in_block() const = 0;
  // The finish reason once done().
  virtual FinishReason done_reason() const = 0;
};

// One JSON value under a grammar node, token by token, ended by `end_token` (EOS for an answer,
// the parameter's closing markup in a tool call). The building block of both constraints.
class JsonValueGen {
 public:
  JsonValueGen(std::shared_ptr<const text::JsonGrammar> g, int node, std::shared_ptr<const ConstraintVocab> v,
               int32_t end_token, int budget);
  int32_t next(std::span<float> logits);
  void accept(int32_t token);
  bool complete() const { return complete_; }
  const JsonMatcher& matcher() const { return m_; }
  const JsonState& state() const { return st_; }

 private:
  std::shared_ptr<const ConstraintVocab> v_;
  JsonMatcher m_;
  TokenMasker masker_;
  JsonState st_, tmp_;
  std::vector<uint8_t> allow_;
  std::deque<int32_t> forced_;  // the completion being forced (budget spent)
  int32_t end_;
  int budget_;
  int used_ = 0;
  bool complete_ = false;
};

class JsonConstraint : public Constraint {
 public:
  // budget: tokens the whole answer may take (reasoning included); in_reasoning: the prompt
  // ended in <think>.
  JsonConstraint(std::shared_ptr<const text::JsonGrammar> g, std::shared_ptr<const ConstraintVocab> v, int budget,
                 bool in_reasoning, int max_reasoning_tokens);
  int32_t next(std::span<float> logits) override;
  void accept(int32_t token) override;
  bool done() const override { return done_; }
  bool in_block() const override { return !done_ && !reasoning_; }
  FinishReason done_reason() const override { return FinishReason::eos; }

 private:
  std::shared_ptr<const text::JsonGrammar> g_;
  std::shared_ptr<const ConstraintVocab> v_;
  std::unique_ptr<JsonValueGen> gen_;
  int budget_;
  bool reasoning_;
  int max_reasoning_;
  int reasoning_tokens_ = 0;
  bool done_ = false;
};

class ToolCallConstraint : public Constraint {
 public:
  ToolCallConstraint(const ForcedToolCall& spec, std::shared_ptr<const ConstraintVocab> vocab);
  int32_t next(std::span<float> logits) override;
  void accept(int32_t token) override;
  bool done() const override { return done_; }
  bool in_block() const override {
    return !done_ && steps_[step_].phase != Phase::reasoning && steps_[step_].phase != Phase::watch;
  }
  FinishReason done_reason() const override { return FinishReason::tool_calls; }

 private:
  enum class Phase { reasoning, watch, forced, choice, value, json, finished };
  enum class Choice { tool, boolean, more };
  struct Step {               // one unit of the block
    Phase phase;
    std::vector<std::vector<int32_t>> options;  // forced: 1 option; choice: several
    ParamKind kind = ParamKind::string;          // value
    Choice choice = Choice::tool;                // choice
    const ForcedParam* param = nullptr;          // json
  };
  void begin_step();
  void push_forced(const std::string& markup);
  void push_tool_choice();
  void push_tool_steps(const ForcedTool& tool);
  void choice_made(Choice c, int option);

  std::shared_ptr<const ConstraintVocab> v_;
  ForcedToolCall spec_;
  std::vector<Step> steps_;
  size_t step_ = 0;
  // Progress in the current step:
  std::vector<int> alive_;        // choice: options still consistent with what was emitted
  size_t pos_ = 0;                // tokens emitted in this step
  std::unique_ptr<JsonValueGen> json_;  // json: the value being written
  int reasoning_tokens_ = 0;
  bool watch_reasoning_ = false;  // watch: still inside the reasoning (a block may not open there)
  std::string tail_;              // watch: the last bytes written
  int calls_ = 0;
  bool done_ = false;
};

}  // namespace dsv4::engine
