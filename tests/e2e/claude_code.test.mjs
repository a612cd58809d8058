// A Claude Code-style Anthropic request against `dsv4 serve` on its DEFAULT context window: the
// shape Claude Code sends (system blocks with cache_control, tool definitions, <system-reminder>
// user blocks, a tool_use / tool_result round, a mid-conversation `system` message, streaming,
// adaptive thinking, metadata, anthropic-beta headers), about 9K tokens, which the old fixed
// default (--ctx 8192) rejected. Written for this test after the requests Claude Code makes; the
// real agent's ~28K-token first prompt was checked by hand (README "Claude Code").
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, API_KEY } from './server.mjs';

let srv;
before(async () => { srv = await startServer(['--ctx', null]); });  // serve's own default --ctx
after(async () => { await srv?.stop(); });

const guidelines = [
  'You are an interactive CLI tool that helps users with software engineering tasks.',
  'Use the instructions below and the tools available to you to assist the user.',
  'IMPORTANT: Assist with defensive security tasks only. Refuse to create or improve code that may be used maliciously.',
  'When you run a non-trivial bash command, explain what the command does and why you are running it.',
  'Your responses can use GitHub-flavored markdown for formatting and will be rendered in a monospace font.',
  'Only use emojis if the user explicitly requests it. Avoid using emojis in all communication unless asked.',
  'When making changes to files, first understand the file\'s code conventions. Mimic code style, use existing libraries.',
  'NEVER assume that a given library is available, even if it is well known. Check the package manifest first.',
  'Always follow security best practices. Never introduce code that exposes or logs secrets and keys.',
  'You MUST answer concisely with fewer than 4 lines of text, unless the user asks for detail.',
];
function longSystemPrompt(paragraphs) {
  const out = [];
  for (let i = 0; i < paragraphs; i++) out.push(`# Section ${i + 1}\n` + guidelines.map((g, k) => `- (${i}.${k}) ${g}`).join('\n'));
  return out.join('\n\n');
}

const tools = [
  { name: 'Bash', description: 'Executes a given bash command in a persistent shell session with optional timeout.',
    input_schema: { type: 'object', properties: { command: { type: 'string', description: 'The command to execute' },
      timeout: { type: 'number', description: 'Optional timeout in milliseconds (max 600000)' },
      description: { type: 'string', description: 'Clear, concise description of what this command does in 5-10 words' } },
    required: ['command'], additionalProperties: false, $schema: 'http://json-schema.org/draft-07/schema#' } },
  { name: 'Read', description: 'Reads a file from the local filesystem.',
    input_schema: { type: 'object', properties: { file_path: { type: 'string' }, offset: { type: 'number' }, limit: { type: 'number' } },
      required: ['file_path'], additionalProperties: false, $schema: 'http://json-schema.org/draft-07/schema#' } },
  { name: 'Edit', description: 'Performs exact string replacements in files.',
    input_schema: { type: 'object', properties: { file_path: { type: 'string' }, old_string: { type: 'string' }, new_string: { type: 'string' },
      replace_all: { type: 'boolean', default: false } }, required: ['file_path', 'old_string', 'new_string'],
    additionalProperties: false, $schema: 'http://json-schema.org/draft-07/schema#' } },
  { name: 'TodoWrite', description: 'Create and manage a structured task list for your current coding session.',
    input_schema: { type: 'object', properties: { todos: { type: 'array', items: { type: 'object', properties: {
      content: { type: 'string', minLength: 1 }, status: { type: 'string', enum: ['pending', 'in_progress', 'completed'] },
      activeForm: { type: 'string', minLength: 1 } }, required: ['content', 'status', 'activeForm'], additionalProperties: false } } },
    required: ['todos'], additionalProperties: false, $schema: 'http://json-schema.org/draft-07/schema#' } },
];

function claudeCodeBody(maxTokens) {
  return {
    model: 'claude-sonnet-4-5-20250929',
    max_tokens: maxTokens,
    stream: true,
    thinking: { type: 'adaptive' },
    metadata: { user_id: 'user_0123_account__session_4567' },
    system: [
      { type: 'text', text: "You are Claude Code, Anthropic's official CLI for Claude.", cache_control: { type: 'ephemeral' } },
      { type: 'text', text: longSystemPrompt(46) + '\n\nHere is useful information about the environment you are running in:\n<env>\nWorking directory: /home/user/project\nIs directory a git repo: Yes\nPlatform: linux\n</env>',
        cache_control: { type: 'ephemeral' } },
    ],
    tools,
    messages: [
      { role: 'user', content: [
        { type: 'text', text: '<system-reminder>\nAs you answer the user\'s questions, you can use the following context:\n# claudeMd\nBuild with scripts/build.sh; test with ctest.\n</system-reminder>' },
        { type: 'text', text: 'Why does the build fail?', cache_control: { type: 'ephemeral' } },
      ] },
      { role: 'assistant', content: [
        { type: 'thinking', thinking: 'I should run the build first.', signature: 'sig' },
        { type: 'text', text: "I'll run the build to see the error." },
        { type: 'tool_use', id: 'toolu_01A', name: 'Bash', input: { command: 'scripts/build.sh 2>&1 | tail -20', description: 'Run the build' } },
      ] },
      { role: 'user', content: [
        { type: 'tool_result', tool_use_id: 'toolu_01A', content: 'src/main.cpp:12:5: error: use of undeclared identifier \'foo\'\nninja: build stopped', is_error: false },
      ] },
      { role: 'system', content: 'The user has switched the output style to "Explanatory". Explain your reasoning in more detail.' },
      { role: 'user', content: [{ type: 'text', text: 'Please fix it.' }] },
    ],
  };
}

const headers = { 'x-api-key': API_KEY, 'content-type': 'application/json', 'anthropic-version': '2023-06-01',
  'anthropic-beta': 'claude-code-20250219,interleaved-thinking-2025-05-14,fine-grained-tool-streaming-2025-05-14' };

test('the default context fits an agent prompt (not the old 8192)', async () => {
  const models = await (await fetch(srv.base + '/v1/models', { headers })).json();
  assert.ok(models.data[0].context_length >= 131072, `default ctx ${models.data[0].context_length}`);
  const count = await (await fetch(srv.base + '/v1/messages/count_tokens', { method: 'POST', headers,
    body: JSON.stringify({ ...claudeCodeBody(1), stream: undefined, max_tokens: undefined }) })).json();
  assert.ok(count.input_tokens > 8192, `the recorded request has ${count.input_tokens} tokens`);
});

test('Claude Code-style request with a mid-conversation system message: 200, a complete stream', async () => {
  const r = await fetch(srv.base + '/v1/messages', { method: 'POST', headers, body: JSON.stringify(claudeCodeBody(16)) });
  const text = await r.text();
  assert.equal(r.status, 200, text.slice(0, 500));
  const events = [...text.matchAll(/^event: (\S+)$/gm)].map((m) => m[1]);
  assert.equal(events[0], 'message_start');
  assert.equal(events.at(-1), 'message_stop');
  assert.ok(events.includes('content_block_delta'));
  const start = JSON.parse(text.split('\n').find((l) => l.startsWith('data: {"type":"message_start"')).slice(6));
  assert.ok(start.message.usage.input_tokens + start.message.usage.cache_read_input_tokens > 8192);
  // Adaptive thinking was asked for: the first block is a thinking block.
  assert.match(text, /"content_block":\{"type":"thinking"/);
});
