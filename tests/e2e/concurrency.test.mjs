// Continuous batching from the outside: concurrent streams, an aborted client, keep-alives.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';
import { startServer, API_KEY, metrics, sleep } from './server.mjs';

let srv, client;
before(async () => {
  srv = await startServer(['--step-tokens', '64']);
  client = new OpenAI({ apiKey: API_KEY, baseURL: srv.base + '/v1', maxRetries: 0 });
});
after(async () => { await srv?.stop(); });

const MODEL = 'deepseek-v4-flash';

async function streamOnce(i, maxTokens) {
  const stream = await client.chat.completions.create({
    model: MODEL, messages: [{ role: 'user', content: `Client ${i} says hello.` }], max_tokens: maxTokens,
    stream: true, stream_options: { include_usage: true }, thinking: { type: 'disabled' }, seed: i,
  });
  let finish = null, usage = null;
  for await (const c of stream) {
    if (c.choices.length === 0) usage = c.usage;
    else if (c.choices[0].finish_reason) finish = c.choices[0].finish_reason;
  }
  return { finish, usage };
}

test('8 concurrent streams complete', async () => {
  const results = await Promise.all(Array.from({ length: 8 }, (_, i) => streamOnce(i, 24)));
  for (const r of results) {
    assert.ok(['stop', 'length'].includes(r.finish));
    assert.ok(r.usage.completion_tokens > 0);
  }
  const m = await metrics(srv.base);
  assert.ok(m.dsv4_forward_steps_total > 0);
});

test('an aborted stream is freed and the server keeps answering', async () => {
  const before = await metrics(srv.base);
  const ac = new AbortController();
  const stream = await client.chat.completions.create({
    model: MODEL, messages: [{ role: 'user', content: 'Long answer please' }], max_tokens: 3000, stream: true,
    thinking: { type: 'disabled' },
  }, { signal: ac.signal });
  let n = 0;
  try {
    for await (const c of stream) {
      if (++n === 5) ac.abort();  // the SDK either ends the iteration or throws an abort error
    }
  } catch (e) {
    assert.ok(e instanceof OpenAI.APIUserAbortError || e.name === 'AbortError', String(e));
  }
  assert.ok(n >= 5);
  // The sequence is cancelled within a few decode steps.
  let m = null;
  for (let i = 0; i < 50; i++) {
    await sleep(100);
    m = await metrics(srv.base);
    if (m.dsv4_requests_running === 0) break;
  }
  assert.equal(m.dsv4_requests_running, 0, 'aborted sequence still running');
  assert.ok(m.dsv4_requests_cancelled_total > before.dsv4_requests_cancelled_total);
  assert.ok(m.dsv4_generated_tokens_total - before.dsv4_generated_tokens_total < 2000);
  const r = await streamOnce(99, 4);
  assert.ok(r.finish);
});

test('SSE keep-alive comments do not break the SDK', async () => {
  // A long prompt with a small step budget takes several steps to prefill.
  const long = 'lorem ipsum dolor sit amet '.repeat(150);
  const r = await client.chat.completions.create({ model: MODEL, messages: [{ role: 'user', content: long }], max_tokens: 4,
    stream: true, thinking: { type: 'disabled' } });
  let chunks = 0;
  for await (const c of r) chunks++;
  assert.ok(chunks > 0);
});

test('overload: a full queue answers 503 with Retry-After, the rest complete', async () => {
  const small = await startServer(['--parallel', '1', '--queue', '1']);
  try {
    const body = JSON.stringify({ model: MODEL, messages: [{ role: 'user', content: 'x' }], max_tokens: 40,
      thinking: { type: 'disabled' } });
    const rs = await Promise.all(Array.from({ length: 6 }, () => fetch(small.base + '/v1/chat/completions', {
      method: 'POST', body, headers: { Authorization: `Bearer ${API_KEY}`, 'Content-Type': 'application/json' } })));
    const codes = rs.map((r) => r.status);
    assert.ok(codes.includes(200), codes.join(','));
    const busy = rs.filter((r) => r.status === 503);
    assert.ok(busy.length > 0, codes.join(','));
    assert.equal(busy[0].headers.get('retry-after'), '1');
    assert.ok((await busy[0].json()).error.message.includes('overloaded'));
  } finally {
    await small.stop();
  }
});
