// OpenAI SDK (openai@6) against dsv4 serve on the random-weight tiny model: protocol shape only.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';
import { startServer, API_KEY } from './server.mjs';

let srv, client;
before(async () => {
  srv = await startServer();
  client = new OpenAI({ apiKey: API_KEY, baseURL: srv.base + '/v1', maxRetries: 0 });
});
after(async () => { await srv?.stop(); });

const MODEL = 'deepseek-v4-flash';
const weatherTool = {
  type: 'function',
  function: {
    name: 'get_weather',
    description: 'Weather of a city',
    parameters: {
      type: 'object',
      properties: { city: { type: 'string' }, days: { type: 'integer' }, metric: { type: 'boolean' } },
      required: ['city', 'days'],
    },
  },
};
const nowTool = { type: 'function', function: { name: 'get_time', parameters: { type: 'object', properties: {} } } };

function checkUsage(u) {
  assert.ok(u, 'usage present');
  assert.equal(typeof u.prompt_tokens, 'number');
  assert.ok(u.prompt_tokens > 0);
  assert.equal(u.total_tokens, u.prompt_tokens + u.completion_tokens);
  assert.equal(u.prompt_cache_hit_tokens + u.prompt_cache_miss_tokens, u.prompt_tokens);
  assert.equal(u.prompt_tokens_details.cached_tokens, u.prompt_cache_hit_tokens);
  assert.equal(typeof u.completion_tokens_details.reasoning_tokens, 'number');
}

test('models list and retrieve', async () => {
  const list = await client.models.list();
  assert.equal(list.data[0].id, MODEL);
  const m = await client.models.retrieve(MODEL);
  assert.equal(m.id, MODEL);
  await assert.rejects(client.models.retrieve('no-such-model'), OpenAI.NotFoundError);
});

test('chat non-stream, thinking disabled: content, usage, finish length', async () => {
  // Greedy on the tiny model's fixed weights: 8 tokens of answer, no EOS among them.
  const r = await client.chat.completions.create({
    model: MODEL, messages: [{ role: 'user', content: 'Say hello' }], max_tokens: 8,
    temperature: 0, thinking: { type: 'disabled' },
  });
  assert.equal(r.object, 'chat.completion');
  assert.equal(r.choices[0].message.role, 'assistant');
  assert.equal(typeof r.choices[0].message.content, 'string');
  assert.ok(r.choices[0].message.content.length > 0, 'the answer has text');
  assert.equal(r.choices[0].message.reasoning_content, null);
  assert.equal(r.choices[0].finish_reason, 'length');
  checkUsage(r.usage);
  assert.equal(r.usage.completion_tokens, 8);
  assert.equal(r.usage.completion_tokens_details.reasoning_tokens, 0);
});

test('chat non-stream, thinking enabled: reasoning_content and reasoning_tokens', async () => {
  const r = await client.chat.completions.create({
    model: MODEL, messages: [{ role: 'system', content: 'Be brief.' }, { role: 'user', content: 'Why?' }],
    max_tokens: 12, thinking: { type: 'enabled' }, reasoning_effort: 'high', seed: 7,
  });
  const msg = r.choices[0].message;
  // 12 tokens of random-weight output rarely close the reasoning: it is all reasoning text.
  assert.equal(typeof msg.reasoning_content, 'string');
  assert.ok(msg.reasoning_content.length > 0, 'reasoning_content has the reasoning');
  checkUsage(r.usage);
  const reasoning = r.usage.completion_tokens_details.reasoning_tokens;
  assert.ok(reasoning > 0, 'reasoning tokens counted');
  assert.ok(reasoning <= r.usage.completion_tokens);
  if (msg.content === '') assert.equal(reasoning, r.usage.completion_tokens, 'no answer: every token is reasoning');
});

test('temperature 0 is deterministic', async () => {
  const req = { model: MODEL, messages: [{ role: 'user', content: 'Count' }], max_tokens: 10, temperature: 0,
    thinking: { type: 'disabled' } };
  const a = await client.chat.completions.create(req);
  const b = await client.chat.completions.create(req);
  assert.equal(a.choices[0].message.content, b.choices[0].message.content);
});

test('chat stream with include_usage: role first, usage chunk with empty choices, [DONE]', async () => {
  const req = { model: MODEL, messages: [{ role: 'user', content: 'Stream please' }], max_tokens: 10, temperature: 0,
    thinking: { type: 'disabled' } };
  const whole = await client.chat.completions.create(req);
  const stream = await client.chat.completions.create({ ...req, stream: true, stream_options: { include_usage: true } });
  let first = true, finish = null, usage = null, text = '';
  for await (const chunk of stream) {
    assert.equal(chunk.object, 'chat.completion.chunk');
    if (chunk.choices.length === 0) { usage = chunk.usage; continue; }
    const c = chunk.choices[0];
    if (first) { assert.equal(c.delta.role, 'assistant'); first = false; }
    if (c.delta.content) text += c.delta.content;
    if (c.finish_reason) finish = c.finish_reason;
  }
  // The streamed deltas spell the non-stream answer; same finish, same usage.
  assert.equal(text, whole.choices[0].message.content);
  assert.equal(finish, whole.choices[0].finish_reason);
  checkUsage(usage);
  assert.equal(usage.completion_tokens, whole.usage.completion_tokens);
});

test('stream reasoning_content deltas (thinking on)', async () => {
  const stream = await client.chat.completions.create({
    model: MODEL, messages: [{ role: 'user', content: 'Think' }], max_tokens: 6, stream: true,
  });
  let reasoning = '';
  for await (const chunk of stream) {
    const d = chunk.choices[0]?.delta;
    if (d?.reasoning_content) reasoning += d.reasoning_content;
  }
  assert.ok(reasoning.length > 0);
});

test('logprobs: exactly top_logprobs alternatives, sorted', async () => {
  const r = await client.chat.completions.create({
    model: MODEL, messages: [{ role: 'user', content: 'x' }], max_tokens: 5, logprobs: true, top_logprobs: 3,
    thinking: { type: 'disabled' },
  });
  const lp = r.choices[0].logprobs.content;
  assert.ok(lp.length > 0);
  for (const t of lp) {
    assert.equal(typeof t.token, 'string');
    assert.ok(t.logprob <= 0);
    assert.equal(t.top_logprobs.length, 3);
    for (let i = 1; i < 3; i++) assert.ok(t.top_logprobs[i - 1].logprob >= t.top_logprobs[i].logprob);
  }
});

test('forced tool call (named) non-stream: valid JSON arguments', async () => {
  const r = await client.chat.completions.create({
    model: MODEL, messages: [{ role: 'user', content: 'Weather in Paris?' }], max_tokens: 60,
    tools: [weatherTool, nowTool], tool_choice: { type: 'function', function: { name: 'get_weather' } },
  });
  const c = r.choices[0];
  assert.equal(c.finish_reason, 'tool_calls');
  assert.equal(c.message.tool_calls.length, 1);
  const tc = c.message.tool_calls[0];
  assert.equal(tc.type, 'function');
  assert.equal(tc.function.name, 'get_weather');
  const args = JSON.parse(tc.function.arguments);
  assert.equal(typeof args.city, 'string');
  assert.equal(typeof args.days, 'number');
});

test('forced tool call (required, no parameters) streamed via SDK helper: arguments {}', async () => {
  const runner = client.chat.completions.stream({
    model: MODEL, messages: [{ role: 'user', content: 'Time?' }], max_tokens: 40,
    tools: [nowTool], tool_choice: 'required', thinking: { type: 'disabled' },
  });
  const final = await runner.finalChatCompletion();
  const c = final.choices[0];
  assert.equal(c.finish_reason, 'tool_calls');
  assert.equal(c.message.tool_calls[0].function.name, 'get_time');
  assert.deepEqual(JSON.parse(c.message.tool_calls[0].function.arguments), {});
});

test('tool result round trip', async () => {
  const first = await client.chat.completions.create({
    model: MODEL, messages: [{ role: 'user', content: 'Weather in Rome?' }], max_tokens: 60,
    tools: [weatherTool], tool_choice: 'required', temperature: 0,
  });
  const msg = first.choices[0].message;
  assert.equal(msg.tool_calls.length, 1);
  const second = await client.chat.completions.create({
    model: MODEL, max_tokens: 8, tools: [weatherTool], temperature: 0,
    messages: [
      { role: 'user', content: 'Weather in Rome?' },
      { role: 'assistant', content: msg.content, reasoning_content: msg.reasoning_content, tool_calls: msg.tool_calls },
      { role: 'tool', tool_call_id: msg.tool_calls[0].id, content: '{"temp": 21}' },
    ],
  });
  checkUsage(second.usage);
  assert.ok(second.usage.prompt_tokens > first.usage.prompt_tokens);
  assert.ok(second.usage.prompt_cache_hit_tokens >= first.usage.prompt_tokens / 2, 'history reused');
});

test('tool round trip without reasoning_content: the server restores it, cache hits past the first prompt', async () => {
  const first = await client.chat.completions.create({
    model: MODEL, messages: [{ role: 'user', content: 'Weather in Lima?' }], max_tokens: 40,
    tools: [weatherTool], tool_choice: 'required', temperature: 0, thinking: { type: 'enabled' },
  });
  const msg = first.choices[0].message;
  assert.ok(msg.reasoning_content, 'thinking mode produced reasoning');
  const second = await client.chat.completions.create({
    model: MODEL, max_tokens: 4, tools: [weatherTool], temperature: 0, thinking: { type: 'enabled' },
    messages: [
      { role: 'user', content: 'Weather in Lima?' },
      { role: 'assistant', content: msg.content, tool_calls: msg.tool_calls },  // reasoning dropped
      { role: 'tool', tool_call_id: msg.tool_calls[0].id, content: 'warm' },
    ],
  });
  assert.ok(second.usage.prompt_cache_hit_tokens > first.usage.prompt_tokens,
    `hit ${second.usage.prompt_cache_hit_tokens} <= first prompt ${first.usage.prompt_tokens}`);
});

test('stop strings end the answer and finish_reason is stop', async () => {
  const base = { model: MODEL, messages: [{ role: 'user', content: 'abc' }], max_tokens: 12, temperature: 0,
    thinking: { type: 'disabled' } };
  const a = await client.chat.completions.create(base);
  const text = a.choices[0].message.content;
  assert.equal(a.choices[0].finish_reason, 'length');
  assert.ok(text.length >= 6, `greedy answer too short to cut: ${JSON.stringify(text)}`);
  const stop = text.slice(2, 4);
  const cut = text.slice(0, text.indexOf(stop));
  const b = await client.chat.completions.create({ ...base, stop: ['never in this text \u0001', stop] });
  assert.equal(b.choices[0].finish_reason, 'stop');
  assert.equal(b.choices[0].message.content, cut);
  // The engine ends the sequence at the stop string: fewer tokens than the uncut answer.
  assert.ok(b.usage.completion_tokens < a.usage.completion_tokens,
    `${b.usage.completion_tokens} tokens with the stop string, ${a.usage.completion_tokens} without`);
  // Streaming gives the same cut text.
  let streamed = '', finish = null;
  for await (const chunk of await client.chat.completions.create({ ...base, stop, stream: true })) {
    const c = chunk.choices[0];
    if (c?.delta?.content) streamed += c.delta.content;
    if (c?.finish_reason) finish = c.finish_reason;
  }
  assert.equal(streamed, cut);
  assert.equal(finish, 'stop');
});

for (const thinking of ['disabled', 'enabled']) test(`3-turn conversation at temperature 0 reuses the prefix cache (thinking ${thinking})`, async () => {
  const messages = [{ role: 'system', content: `You are terse (${thinking}).` }, { role: 'user', content: 'Turn one question.' }];
  let prev = null;
  for (let turn = 1; turn <= 3; turn++) {
    const r = await client.chat.completions.create({ model: MODEL, messages, max_tokens: 16, temperature: 0,
      thinking: { type: thinking } });
    checkUsage(r.usage);
    if (prev) assert.ok(r.usage.prompt_cache_hit_tokens >= prev / 2,
      `turn ${turn}: hit ${r.usage.prompt_cache_hit_tokens} < half of ${prev}`);
    prev = r.usage.prompt_tokens;
    messages.push({ role: 'assistant', content: r.choices[0].message.content });
    messages.push({ role: 'user', content: `Turn ${turn + 1} question.` });
  }
});

test('completions with suffix (FIM)', async () => {
  const base = { model: MODEL, prompt: 'def add(a, b):', max_tokens: 6, temperature: 0 };
  const r = await client.completions.create({ ...base, suffix: '\n    return c' });
  assert.equal(r.object, 'text_completion');
  assert.equal(typeof r.choices[0].text, 'string');
  assert.ok(r.choices[0].text.length > 0);
  // The suffix reaches the prompt: <｜fim▁begin｜> prompt <｜fim▁hole｜> suffix <｜fim▁end｜>.
  const plain = await client.completions.create(base);
  const empty = await client.completions.create({ ...base, suffix: '' });
  assert.equal(empty.usage.prompt_tokens, plain.usage.prompt_tokens + 3, 'the three FIM markers');
  assert.ok(r.usage.prompt_tokens > empty.usage.prompt_tokens, 'the suffix text is in the prompt');
});

test('typed errors: auth, unknown model, bad request, context overflow', async () => {
  const bad = new OpenAI({ apiKey: 'wrong', baseURL: srv.base + '/v1', maxRetries: 0 });
  await assert.rejects(bad.chat.completions.create({ model: MODEL, messages: [{ role: 'user', content: 'x' }] }),
    OpenAI.AuthenticationError);
  await assert.rejects(client.chat.completions.create({ model: 'gpt-unknown', messages: [{ role: 'user', content: 'x' }] }),
    OpenAI.NotFoundError);
  await assert.rejects(client.chat.completions.create({ model: MODEL }), OpenAI.BadRequestError);
  await assert.rejects(client.chat.completions.create({ model: MODEL, messages: [{ role: 'user', content: 'x' }], temperature: 9 }),
    OpenAI.BadRequestError);
  const long = 'word '.repeat(5000);
  await assert.rejects(client.chat.completions.create({ model: MODEL, messages: [{ role: 'user', content: long }] }),
    (e) => e instanceof OpenAI.BadRequestError && /\d+ tokens.*4096/.test(e.message));
  const raw = await fetch(srv.base + '/v1/chat/completions', { method: 'POST', body: '{not json',
    headers: { Authorization: `Bearer ${API_KEY}`, 'Content-Type': 'application/json' } });
  assert.equal(raw.status, 400);
  assert.ok((await raw.json()).error.message);
});

test('routes without /v1, health and metrics', async () => {
  const h = await (await fetch(srv.base + '/health')).json();
  assert.equal(h.status, 'ok');
  assert.equal(h.model, MODEL);
  assert.equal(h.ctx, 4096);
  const noV1 = new OpenAI({ apiKey: API_KEY, baseURL: srv.base, maxRetries: 0 });
  const r = await noV1.chat.completions.create({ model: MODEL, messages: [{ role: 'user', content: 'x' }], max_tokens: 2 });
  assert.equal(r.object, 'chat.completion');
  const m = await (await fetch(srv.base + '/metrics')).text();
  for (const k of ['dsv4_requests_total', 'dsv4_queue_depth', 'dsv4_decode_tokens_per_second', 'dsv4_prefix_cache_hit_ratio', 'dsv4_kv_bytes_in_use'])
    assert.ok(m.includes(k), k);
});
