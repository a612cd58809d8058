// The OpenAI Responses API (POST /v1/responses) through the openai SDK (openai@6): responses.create
// (stream and not), the responses.stream helper, a tool round trip with function_call_output,
// previous_response_id, retrieve; plus the agent-facing routes (/beta alias, unknown-route 404, n).
// Random-weight tiny model: protocol shape only (forced tool calls come out valid by construction).
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
const weather = {
  type: 'function', name: 'get_weather', description: 'Weather of a city',
  parameters: { type: 'object', properties: { city: { type: 'string' }, days: { type: 'integer' } }, required: ['city', 'days'] },
  strict: false,
};

function checkUsage(u) {
  assert.ok(u, 'usage present');
  assert.ok(u.input_tokens > 0);
  assert.equal(typeof u.input_tokens_details.cached_tokens, 'number');
  assert.equal(typeof u.output_tokens_details.reasoning_tokens, 'number');
  assert.equal(u.total_tokens, u.input_tokens + u.output_tokens);
}

test('responses.create non-stream, reasoning off: a message item, output_text, usage', async () => {
  const r = await client.responses.create({
    model: MODEL, input: 'Say hello', instructions: 'Be brief.', max_output_tokens: 8, temperature: 0,
    reasoning: { effort: 'none' },
  });
  assert.equal(r.object, 'response');
  assert.match(r.id, /^resp_/);
  assert.equal(r.status, 'incomplete');  // 8 tokens of random text never reach EOS here
  assert.equal(r.incomplete_details.reason, 'max_output_tokens');
  assert.equal(r.output.length, 1);
  assert.equal(r.output[0].type, 'message');
  assert.equal(r.output[0].content[0].type, 'output_text');
  assert.ok(r.output_text.length > 0, 'the SDK joined output_text');
  assert.equal(r.output_text, r.output[0].content[0].text);
  checkUsage(r.usage);
  assert.equal(r.usage.output_tokens, 8);
  assert.equal(r.usage.output_tokens_details.reasoning_tokens, 0);
  assert.equal(r.instructions, 'Be brief.');
});

test('responses.create stream: event sequence and sequence numbers, text equals non-stream', async () => {
  const req = { model: MODEL, input: [{ role: 'user', content: 'Stream please' }], max_output_tokens: 10, temperature: 0,
    reasoning: { effort: 'none' } };
  const whole = await client.responses.create(req);
  const stream = await client.responses.create({ ...req, stream: true });
  const types = [];
  let text = '', last = null, seq = -1;
  for await (const ev of stream) {
    types.push(ev.type);
    assert.equal(ev.sequence_number, seq + 1);
    seq = ev.sequence_number;
    if (ev.type === 'response.output_text.delta') text += ev.delta;
    last = ev;
  }
  assert.deepEqual(types.slice(0, 4), ['response.created', 'response.in_progress', 'response.output_item.added', 'response.content_part.added']);
  assert.ok(types.includes('response.output_text.delta'));
  assert.deepEqual(types.slice(-4), ['response.output_text.done', 'response.content_part.done', 'response.output_item.done', 'response.incomplete']);
  assert.equal(text, whole.output_text);
  checkUsage(last.response.usage);
  assert.equal(last.response.usage.output_tokens, whole.usage.output_tokens);
});

test('responses.stream helper, thinking on: reasoning item (as its summary) then the final response', async () => {
  const stream = client.responses.stream({ model: MODEL, input: 'Why?', max_output_tokens: 12, reasoning: { effort: 'high' } });
  let reasoning = '';
  stream.on('response.reasoning_summary_text.delta', (e) => { reasoning += e.delta; });
  const final = await stream.finalResponse();
  assert.equal(final.output[0].type, 'reasoning');
  assert.equal(final.output[0].summary[0].type, 'summary_text');
  assert.equal(final.output[0].summary[0].text, reasoning);
  assert.ok(reasoning.length > 0);
  assert.ok(final.usage.output_tokens_details.reasoning_tokens > 0);
});

test('forced function call, function_call_output round trip, reasoning restored and cached', async () => {
  const first = await client.responses.create({
    model: MODEL, input: 'Weather in Paris?', tools: [weather], tool_choice: { type: 'function', name: 'get_weather' },
    max_output_tokens: 60, temperature: 0,
  });
  const call = first.output.find((o) => o.type === 'function_call');
  assert.ok(call, JSON.stringify(first.output));
  assert.equal(call.name, 'get_weather');
  assert.match(call.call_id, /^call_/);
  const args = JSON.parse(call.arguments);
  assert.equal(typeof args.city, 'string');
  assert.equal(typeof args.days, 'number');
  assert.equal(first.status, 'completed');
  // Send the whole turn back (as Codex does, store: false) with the tool output.
  const second = await client.responses.create({
    model: MODEL, tools: [weather], max_output_tokens: 6, temperature: 0, store: false,
    input: [{ role: 'user', content: 'Weather in Paris?' }, ...first.output,
      { type: 'function_call_output', call_id: call.call_id, output: '{"temp": 21}' }],
  });
  checkUsage(second.usage);
  assert.ok(second.usage.input_tokens > first.usage.input_tokens);
  assert.ok(second.usage.input_tokens_details.cached_tokens > first.usage.input_tokens / 2, 'history reused from the prefix cache');
});

test('streamed function call: arguments deltas spell the done arguments', async () => {
  const stream = await client.responses.create({
    model: MODEL, input: 'Weather?', tools: [weather], tool_choice: 'required', max_output_tokens: 60, stream: true,
    reasoning: { effort: 'none' },
  });
  let args = '', done = null, added = null, completed = null;
  for await (const ev of stream) {
    if (ev.type === 'response.output_item.added' && ev.item.type === 'function_call') added = ev.item;
    if (ev.type === 'response.function_call_arguments.delta') args += ev.delta;
    if (ev.type === 'response.function_call_arguments.done') done = ev;
    if (ev.type === 'response.completed') completed = ev.response;
  }
  assert.ok(added && done && completed);
  assert.equal(done.arguments, args);
  assert.equal(done.item_id, added.id);
  JSON.parse(args);
  assert.equal(completed.output.at(-1).arguments, args);
});

test('previous_response_id continues a stored response; retrieve; unknown id is a 400', async () => {
  const first = await client.responses.create({ model: MODEL, input: 'Remember 7.', max_output_tokens: 4, reasoning: { effort: 'none' } });
  const got = await client.responses.retrieve(first.id);
  assert.equal(got.id, first.id);
  assert.equal(got.output_text, first.output_text);
  const second = await client.responses.create({
    model: MODEL, input: 'Which number?', previous_response_id: first.id, max_output_tokens: 4, reasoning: { effort: 'none' },
  });
  assert.equal(second.previous_response_id, first.id);
  assert.ok(second.usage.input_tokens > first.usage.input_tokens + 2, 'the earlier turn is part of the prompt');
  assert.ok(second.usage.input_tokens_details.cached_tokens > 0);
  await assert.rejects(client.responses.create({ model: MODEL, input: 'x', previous_response_id: 'resp_gone' }),
    (e) => e instanceof OpenAI.BadRequestError && e.code === 'previous_response_not_found');
  await assert.rejects(client.responses.retrieve('resp_gone'), OpenAI.NotFoundError);
});

test('text.format json_schema and json_object are accepted (the schema reaches the prompt)', async () => {
  const schema = { type: 'object', properties: { answer: { type: 'string' } }, required: ['answer'], additionalProperties: false };
  const a = await client.responses.create({ model: MODEL, input: 'JSON please', max_output_tokens: 4,
    text: { format: { type: 'json_schema', name: 'answer', schema, strict: true } } });
  const b = await client.responses.create({ model: MODEL, input: 'JSON please', max_output_tokens: 4 });
  assert.ok(a.usage.input_tokens > b.usage.input_tokens + 20, 'the schema block is rendered into the prompt');
  assert.deepEqual(a.text.format.schema, schema);
  await assert.rejects(client.responses.create({ model: MODEL, input: 'x', text: { format: { type: 'xml' } } }), OpenAI.BadRequestError);
});

test('bad input items are 400s naming the field', async () => {
  await assert.rejects(client.responses.create({ model: MODEL, input: [{ role: 'user', content: [{ type: 'input_image', image_url: 'x' }] }] }),
    (e) => e instanceof OpenAI.BadRequestError && e.param === 'input[0].content[0].type');
  await assert.rejects(client.responses.create({ model: MODEL, input: 'x', tools: [{ type: 'custom', name: 'apply_patch' }] }),
    (e) => e instanceof OpenAI.BadRequestError && e.param === 'tools[0].type');
});

test('/beta alias, unknown routes 404 with a route code, n > 1 is a 400 naming n', async () => {
  const beta = new OpenAI({ apiKey: API_KEY, baseURL: srv.base + '/beta', maxRetries: 0 });
  const r = await beta.chat.completions.create({ model: MODEL, messages: [{ role: 'user', content: 'x' }], max_tokens: 2 });
  assert.equal(r.object, 'chat.completion');
  const nf = await fetch(srv.base + '/v1/nope', { method: 'POST', headers: { Authorization: `Bearer ${API_KEY}` }, body: '{}' });
  assert.equal(nf.status, 404);
  const body = await nf.json();
  assert.equal(body.error.code, 'unknown_route');
  assert.match(body.error.message, /POST \/v1\/nope/);
  const root = await fetch(srv.base + '/', { method: 'HEAD' });  // clients probe the base URL
  assert.equal(root.status, 200);
  await assert.rejects(client.chat.completions.create({ model: MODEL, messages: [{ role: 'user', content: 'x' }], n: 2 }),
    (e) => e instanceof OpenAI.BadRequestError && e.param === 'n');
});
