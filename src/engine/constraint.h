// dsv4 engine: forced tool calls (tool_choice required / named). The engine writes the DSML
// tool-call block (API-NOTES §2.3) itself and lets the model choose only what the schema leaves
// open: which tool (when several are allowed), and each parameter value. Everything else is a
// forced token sequence; values are sampled under a mask (no markup, no newlines; digits only for
// numbers) with a length cap, so even a random-weight model yields a parseable call:
//
//   [reasoning </think>] \n\n<｜DSML｜tool_calls>\n<｜DSML｜invoke name="NAME">\n
//   <｜DSML｜parameter name="P" string="true|false">VALUE</｜DSML｜parameter>\n ...
//   </｜DSML｜invoke>\n</｜DSML｜tool_calls><｜end▁of▁sentence｜>
#pragma once
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "engine/request.h"

namespace dsv4::text {
class Tokenizer;
}

namespace dsv4::engine {

// Per-model token classes the constraint needs, computed once from the tokenizer.
struct ConstraintVocab {
  const text::Tokenizer* tok = nullptr;
  int32_t vocab = 0;
  int32_t eos = 1;
  int32_t think_end = -1;           // </think>, -1 when the tokenizer has none
  std::vector<uint8_t> string_ok;   // [vocab] 1: may appear inside a string value
  std::vector<uint8_t> digit_ok;    // [vocab] 1: only ASCII digits
  static std::shared_ptr<const ConstraintVocab> build(const text::Tokenizer& tok, int32_t model_vocab);
  std::vector<int32_t> encode(const std::string& markup) const;  // DSML spellings become ids
};

class ToolCallConstraint {
 public:
  ToolCallConstraint(const ForcedToolCall& spec, std::shared_ptr<const ConstraintVocab> vocab);
  // Before sampling: returns the forced next token, or -1 after masking `logits` (in place) to the
  // tokens allowed here (the caller then samples normally).
  int32_t next(std::span<float> logits);
  // The token that was emitted (forced or sampled under the mask).
  void accept(int32_t token);
  bool done() const { return done_; }
  // The DSML block has started: it runs to its end regardless of max_tokens.
  bool in_block() const { return !done_ && steps_[step_].phase != Phase::reasoning; }

 private:
  enum class Phase { reasoning, forced, choice, value, finished };
  struct Step {               // one unit of the block
    Phase phase;
    std::vector<std::vector<int32_t>> options;  // forced: 1 option; choice: several
    ParamKind kind = ParamKind::string;          // value
  };
  void begin_step();
  void push_forced(const std::string& markup);

  std::shared_ptr<const ConstraintVocab> v_;
  ForcedToolCall spec_;
  std::vector<Step> steps_;
  size_t step_ = 0;
  // Progress in the current step:
  std::vector<int> alive_;        // choice: options still consistent with what was emitted
  size_t pos_ = 0;                // tokens emitted in this step
  std::vector<int32_t> closing_;  // value: the parameter closing sequence
  bool closing_started_ = false;
  int reasoning_tokens_ = 0;
  bool tool_chosen_ = false;
  bool done_ = false;
};

}  // namespace dsv4::engine
