// Anthropic SDK (@anthropic-ai/sdk) against dsv4 serve on the random-weight tiny model.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import Anthropic from '@anthropic-ai/sdk';
import { startServer, API_KEY } from './server.mjs';

let srv, client;
before(async () => {
  srv = await startServer();
  client = new Anthropic({ apiKey: API_KEY, baseURL: srv.base, maxRetries: 0 });
});
after(async () => { await srv?.stop(); });

const MODEL = 'claude-sonnet-4-5';
const tool = {
  name: 'get_weather', description: 'Weather of a city',
  input_schema: { type: 'object', properties: { city: { type: 'string' }, days: { type: 'integer' } }, required: ['city'] },
};

function checkUsage(u) {
  assert.equal(typeof u.input_tokens, 'number');
  assert.equal(typeof u.output_tokens, 'number');
  assert.equal(typeof u.cache_read_input_tokens, 'number');
}

test('messages non-stream, thinking off, system as blocks', async () => {
  const r = await client.messages.create({
    model: MODEL, max_tokens: 8, system: [{ type: 'text', text: 'Be brief.' }],
    messages: [{ role: 'user', content: 'Hello' }], thinking: { type: 'disabled' }, temperature: 0,
  });
  assert.equal(r.type, 'message');
  assert.equal(r.role, 'assistant');
  assert.ok(['end_turn', 'max_tokens'].includes(r.stop_reason));
  assert.ok(r.content.some((b) => b.type === 'text'));
  checkUsage(r.usage);
  assert.ok(r.usage.output_tokens <= 8);
});

test('messages non-stream with thinking: a thinking block first', async () => {
  const r = await client.messages.create({
    model: MODEL, max_tokens: 10, system: 'Think first.', messages: [{ role: 'user', content: 'Why?' }],
    thinking: { type: 'enabled', budget_tokens: 1024 },
  });
  assert.equal(r.content[0].type, 'thinking');
  assert.equal(typeof r.content[0].thinking, 'string');
});

test('messages stream: event sequence and final message', async () => {
  const stream = client.messages.stream({
    model: MODEL, max_tokens: 10, messages: [{ role: 'user', content: 'Stream' }],
  });
  const types = [];
  stream.on('streamEvent', (e) => types.push(e.type));
  const final = await stream.finalMessage();
  assert.equal(types[0], 'message_start');
  assert.ok(types.includes('content_block_start'));
  assert.ok(types.includes('message_delta'));
  assert.equal(types[types.length - 1], 'message_stop');
  assert.ok(final.content.length >= 1);
  assert.ok(final.usage.output_tokens > 0);
  assert.ok(['end_turn', 'max_tokens'].includes(final.stop_reason));
});

test('forced tool (type tool), stream, then tool_result round trip', async () => {
  const stream = client.messages.stream({
    model: MODEL, max_tokens: 60, tools: [tool], tool_choice: { type: 'tool', name: 'get_weather' },
    messages: [{ role: 'user', content: 'Weather in Oslo?' }],
  });
  const msg = await stream.finalMessage();
  assert.equal(msg.stop_reason, 'tool_use');
  const use = msg.content.find((b) => b.type === 'tool_use');
  assert.ok(use);
  assert.equal(use.name, 'get_weather');
  assert.equal(typeof use.input.city, 'string');
  const r2 = await client.messages.create({
    model: MODEL, max_tokens: 8, tools: [tool],
    messages: [
      { role: 'user', content: 'Weather in Oslo?' },
      { role: 'assistant', content: msg.content },
      { role: 'user', content: [{ type: 'tool_result', tool_use_id: use.id, content: 'sunny, 12C' }] },
    ],
  });
  assert.equal(r2.type, 'message');
  checkUsage(r2.usage);
  assert.ok(r2.usage.cache_read_input_tokens > 0, 'history reused from the prefix cache');
});

test('tool_choice any with a no-parameter tool yields input {}', async () => {
  const r = await client.messages.create({
    model: MODEL, max_tokens: 40, thinking: { type: 'disabled' },
    tools: [{ name: 'now', input_schema: { type: 'object', properties: {} } }], tool_choice: { type: 'any' },
    messages: [{ role: 'user', content: 'time?' }],
  });
  assert.equal(r.stop_reason, 'tool_use');
  const use = r.content.find((b) => b.type === 'tool_use');
  assert.deepEqual(use.input, {});
});

test('count_tokens', async () => {
  const r = await client.messages.countTokens({ model: MODEL, messages: [{ role: 'user', content: 'Hello there' }] });
  assert.ok(r.input_tokens > 0);
});

test('stop_sequences', async () => {
  const base = { model: MODEL, max_tokens: 12, temperature: 0, thinking: { type: 'disabled' },
    messages: [{ role: 'user', content: 'abc' }] };
  const a = await client.messages.create(base);
  const text = a.content.find((b) => b.type === 'text')?.text ?? '';
  assert.equal(a.stop_reason, 'max_tokens');
  assert.ok(text.length >= 6, `greedy answer too short to cut: ${JSON.stringify(text)}`);
  const stop = text.slice(2, 4);
  const b = await client.messages.create({ ...base, stop_sequences: [stop] });
  assert.equal(b.stop_reason, 'stop_sequence');
  assert.equal(b.stop_sequence, stop);
  assert.equal(b.content.find((x) => x.type === 'text')?.text ?? '', text.slice(0, text.indexOf(stop)));
  assert.ok(b.usage.output_tokens < a.usage.output_tokens, 'the engine stopped at the stop sequence');
});

test('typed errors: auth (x-api-key too), unknown model, missing max_tokens', async () => {
  const bad = new Anthropic({ apiKey: 'wrong', baseURL: srv.base, maxRetries: 0 });
  await assert.rejects(bad.messages.create({ model: MODEL, max_tokens: 4, messages: [{ role: 'user', content: 'x' }] }),
    Anthropic.AuthenticationError);
  await assert.rejects(client.messages.create({ model: 'gpt-4o', max_tokens: 4, messages: [{ role: 'user', content: 'x' }] }),
    Anthropic.NotFoundError);
  await assert.rejects(client.messages.create({ model: MODEL, messages: [{ role: 'user', content: 'x' }] }),
    Anthropic.BadRequestError);
  const r = await fetch(srv.base + '/v1/messages', { method: 'POST', headers: { 'x-api-key': API_KEY, 'content-type': 'application/json' },
    body: JSON.stringify({ model: MODEL, max_tokens: 2, messages: [{ role: 'user', content: 'x' }] }) });
  assert.equal(r.status, 200);
  const e = await fetch(srv.base + '/v1/messages', { method: 'POST', headers: { 'x-api-key': API_KEY }, body: '{' });
  assert.equal(e.status, 400);
  const body = await e.json();
  assert.equal(body.type, 'error');
  assert.equal(body.error.type, 'invalid_request_error');
});

test('thinking: off unless asked; budget_tokens closes the thinking block at the budget', async () => {
  const off = await client.messages.create({ model: MODEL, max_tokens: 6, messages: [{ role: 'user', content: 'Hi' }] });
  assert.deepEqual(off.content.map((b) => b.type), ['text'], 'no thinking block without `thinking`');
  const r = await client.messages.create({
    model: MODEL, max_tokens: 12, thinking: { type: 'enabled', budget_tokens: 3 }, messages: [{ role: 'user', content: 'Why?' }],
  });
  // Random weights never close their reasoning: only the budget can, after 3 tokens (+ </think>).
  assert.deepEqual(r.content.map((b) => b.type), ['thinking', 'text']);
  assert.ok(r.content[1].text.length > 0, 'the answer follows the closed thinking block');
  assert.equal(r.usage.output_tokens, 12);
});
