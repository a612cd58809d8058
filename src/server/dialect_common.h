// dsv4 server: pieces both dialects use (defined in openai.cpp; JSON stays in the dialect files).
#pragma once
#include <memory>
#include <string>

#include "server/api.h"
#include "text/chat_template.h"
#include "text/json_schema.h"
#include "text/py_json.h"

namespace dsv4::server {

// Body -> JSON object (400 on bad JSON or a non-object).
text::Json parse_request_json(const std::string& body);
// JSON dump that never throws on invalid UTF-8 (replaced by U+FFFD).
std::string dump_json(const text::Json& j);
// Structured outputs (engine GenRequest::response_schema): the compiled grammar of a JSON Schema
// (cached per schema text), 400 naming `param` and the unsupported keyword.
std::shared_ptr<const text::JsonGrammar> json_schema_grammar(const text::Json& schema, const std::string& param);
// A response_format object: {type: text} -> null, {type: json_object} -> any object,
// {type: json_schema, json_schema: {schema}} (OpenAI chat) or {type: json_schema, schema}
// (Responses API text.format, Anthropic output_config.format) -> the schema's grammar.
std::shared_ptr<const text::JsonGrammar> response_format_grammar(const text::Json& rf, const std::string& param);
// The forced tool-call spec from OpenAI-shaped tools (`only` = a tool name, or "" for any): each
// tool's required parameters with their schema (400 naming an unsupported keyword; `lenient`: only
// for tools marked strict, the others fall back to their parameters' top-level types).
// 400 when `only` names no tool or there are no tools.
std::shared_ptr<engine::ForcedToolCall> forced_tool_from_tools(const text::Json& tools, const std::string& only,
                                                               bool lenient = false);
// Renders the chat request into pr->gen.prompt, sets parser thinking mode, checks --ctx (400),
// and sets the forced tool call's reasoning mode.
void render_chat_prompt(const text::ChatRequest& cr, const DialectContext& ctx, PreparedRequest* pr);
// max_tokens: absent -> the rest of the context; both capped by --max-tokens when set.
int resolve_max_tokens(const text::Json* v, const char* key, int64_t prompt_tokens, const DialectContext& ctx);
// An OpenAI chat-completions body (already parsed) -> the engine request, without a responder
// (prepare_chat adds the chat one; the Responses API maps its body onto this one and adds its own).
PreparedRequest prepare_chat_request(text::Json& body, const DialectContext& ctx);
// The DSML control token (for banning tool calls under tool_choice none).
int32_t dsml_token_id();

}  // namespace dsv4::server
