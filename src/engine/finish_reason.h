// dsv4 engine: why a generation ended. The one finish-reason enum: the scheduler decides it
// (engine/output_stage.h for the reasons the text gives), `dsv4 run` and the server's log print
// finish_reason_name(), and each API dialect maps it to its wire strings in one function
// (openai.cpp finish_name, anthropic.cpp stop_reason).
#pragma once
#include <cstdint>

namespace dsv4::engine {

enum class FinishReason : uint8_t {
  none,          // still running
  eos,           // EOS or another stop token id (the chat parser also stops on the EOS marker)
  stop_string,   // a stop string matched (neither it nor anything after it is shown)
  max_tokens,    // the request's generated-token budget is spent
  context_full,  // prompt + generated tokens reached the context limit
  tool_calls,    // the turn ended with tool calls (a forced block closed, or EOS after calls)
  cancelled,     // the client went away, or the engine stopped
  error,         // the engine could not run the request (message in TokenEvent::error)
};

// "eos", "stop_string", "max_tokens", "context_full", "tool_calls", "cancelled", "error", "none".
const char* finish_reason_name(FinishReason r);

}  // namespace dsv4::engine
