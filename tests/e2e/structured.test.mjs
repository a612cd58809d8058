// Structured outputs against dsv4 serve on the random-weight tiny model: only the grammar
// constraint can make random weights write valid JSON, so every answer and every forced tool call's
// arguments must parse and validate (ajv + ajv-formats) against its schema, 100 %, over 24 schemas:
// OpenAI response_format json_schema / json_object, Anthropic output_config.format, forced tool
// calls (OpenAI tool_choice required / named, Anthropic tool_choice any / tool), stream and not,
// thinking off and on. Unsupported keywords answer 400 naming the keyword.
// The full matrix is 216 requests (~90 s on 2 busy cores); ctest runs every 4th of them (54, all
// 24 schemas and every path). DSV4_STRUCTURED_FULL=1 runs all 216 (bench/structured_outputs.sh).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';
import Anthropic from '@anthropic-ai/sdk';
import Ajv from 'ajv';
import addFormats from 'ajv-formats';
import { startServer, API_KEY } from './server.mjs';

let srv, oa, an;
before(async () => {
  srv = await startServer(['--parallel', '8']);
  oa = new OpenAI({ apiKey: API_KEY, baseURL: srv.base + '/v1', maxRetries: 0 });
  an = new Anthropic({ apiKey: API_KEY, baseURL: srv.base, maxRetries: 0 });
});
after(async () => { await srv?.stop(); });

const MODEL = 'deepseek-v4-flash';
const ajv = new Ajv({ strict: false, allErrors: true });
addFormats(ajv);

const str = (extra = {}) => ({ type: 'string', ...extra });
const obj = (properties, required = Object.keys(properties), extra = {}) =>
  ({ type: 'object', properties, required, additionalProperties: false, ...extra });

// 24 schemas: every supported keyword at least once.
export const SCHEMAS = [
  { type: 'object' },
  obj({ name: str(), age: { type: 'integer' } }),
  { type: 'object', properties: { color: { enum: ['red', 'green', 'blue'] }, n: { enum: [1, 12, 123, -4] } }, required: ['color', 'n'] },
  obj({ a: obj({ b: obj({ c: { const: 'deep' } }) }) }),
  { type: 'array', items: { type: 'integer', minimum: -5, maximum: 5 }, minItems: 2, maxItems: 4 },
  obj({ s: str({ minLength: 3, maxLength: 5 }) }),
  obj({ x: { type: 'number', minimum: 0, maximum: 1 }, y: { type: 'number', exclusiveMinimum: -10, exclusiveMaximum: 10 } }),
  obj({ v: { anyOf: [str({ maxLength: 4 }), { type: 'null' }, { type: 'integer' }] } }),
  obj({ v: { type: ['string', 'null'], maxLength: 3 } }),
  { $defs: { node: obj({ val: { type: 'integer' }, next: { anyOf: [{ $ref: '#/$defs/node' }, { type: 'null' }] } }) }, $ref: '#/$defs/node' },
  obj({ when: str({ format: 'date' }), at: str({ format: 'date-time' }), id: str({ format: 'uuid' }), mail: str({ format: 'email' }) }),
  obj({ code: str({ pattern: '^[A-Z]{3}-\\d{2,4}$' }) }),
  obj({ opt1: { type: 'boolean' }, opt2: { type: 'integer' }, req: { type: 'boolean' } }, ['req']),
  { type: 'object', properties: { k: { type: 'integer' } }, required: ['k'], additionalProperties: { type: 'integer', minimum: 0, maximum: 9 } },
  { anyOf: [obj({ kind: { const: 'a' }, x: { type: 'integer' } }), obj({ kind: { const: 'b' }, y: str({ maxLength: 3 }) })] },
  { type: 'array', items: obj({ id: { type: 'integer', minimum: 1 }, tags: { type: 'array', items: str({ maxLength: 5 }), maxItems: 2 } }), maxItems: 3 },
  str({ maxLength: 8 }),
  { type: 'integer', minimum: 100, maximum: 250 },
  { enum: ['x', 2, true, null, { a: 1 }, [1, 2]] },
  obj({ score: { type: 'integer', exclusiveMinimum: 0, exclusiveMaximum: 10 }, ratio: { type: 'number' } }),
  obj({ name: { type: 'string', nullable: true } }),
  { definitions: { pt: obj({ x: { type: 'integer' }, y: { type: 'integer' } }) }, ...obj({ a: { $ref: '#/definitions/pt' }, b: { $ref: '#/definitions/pt' } }) },
  obj({ 'quote "q"': str({ maxLength: 2 }), 'ünï': { type: 'boolean' } }),
  { ...obj({ list: { type: 'array', items: { enum: ['a', 'b'] }, minItems: 1 } }), title: 'T', description: 'd' },
];
const objectRoot = (s) => s.type === 'object' || (s.$ref && s.$defs);

const stats = { requests: 0, valid: 0 };
function check(schema, text, where) {
  stats.requests++;
  let v;
  try {
    v = JSON.parse(text);
  } catch (e) {
    assert.fail(`${where}: not JSON: ${JSON.stringify(text)}`);
  }
  const validate = ajv.compile(schema);
  assert.ok(validate(v), `${where}: ${JSON.stringify(text)} fails ${JSON.stringify(schema)}: ${ajv.errorsText(validate.errors)}`);
  stats.valid++;
}

// Runs fns with at most `width` in flight (the server runs 8 sequences at once).
async function pool(fns, width = 8) {
  let next = 0;
  const worker = async () => { while (next < fns.length) await fns[next++](); };
  await Promise.all(Array.from({ length: width }, worker));
}

const FULL = process.env.DSV4_STRUCTURED_FULL === '1';
const MAX = 40;
const msgs = [{ role: 'user', content: 'Fill in the form.' }];
const thinkingOA = (on) => ({ thinking: { type: on ? 'enabled' : 'disabled' } });

async function oaAnswer(body, stream) {
  if (!stream) {
    const r = await oa.chat.completions.create(body);
    return { text: r.choices[0].message.content, finish: r.choices[0].finish_reason, msg: r.choices[0].message };
  }
  const s = await oa.chat.completions.create({ ...body, stream: true });
  let text = '', finish = null;
  const calls = [];
  for await (const ch of s) {
    const c = ch.choices[0];
    if (!c) continue;
    if (c.delta?.content) text += c.delta.content;
    for (const tc of c.delta?.tool_calls ?? []) {
      calls[tc.index] ??= { name: '', arguments: '' };
      if (tc.function?.name) calls[tc.index].name = tc.function.name;
      if (tc.function?.arguments) calls[tc.index].arguments += tc.function.arguments;
    }
    if (c.finish_reason) finish = c.finish_reason;
  }
  return { text, finish, msg: { tool_calls: calls.map((c) => ({ function: c })) } };
}

async function anAnswer(body, stream) {
  if (!stream) {
    const r = await an.messages.create(body);
    const text = r.content.filter((b) => b.type === 'text').map((b) => b.text).join('');
    const tools = r.content.filter((b) => b.type === 'tool_use').map((b) => ({ name: b.name, input: JSON.stringify(b.input) }));
    return { text, tools, stop: r.stop_reason };
  }
  const s = await an.messages.create({ ...body, stream: true });
  let text = '', stop = null;
  const tools = [];
  for await (const ev of s) {
    if (ev.type === 'content_block_start' && ev.content_block.type === 'tool_use') tools.push({ name: ev.content_block.name, input: '' });
    if (ev.type === 'content_block_delta' && ev.delta.type === 'text_delta') text += ev.delta.text;
    if (ev.type === 'content_block_delta' && ev.delta.type === 'input_json_delta') tools[tools.length - 1].input += ev.delta.partial_json;
    if (ev.type === 'message_delta') stop = ev.delta.stop_reason;
  }
  return { text, tools, stop };
}

test('structured outputs: every answer and every forced call validates against its schema', async () => {
  const jobs = [];
  {
    SCHEMAS.forEach((schema, i) => {
      // OpenAI response_format json_schema: stream x thinking.
      for (const [stream, think] of [[false, false], [true, false], [false, true], [true, true]]) {
        jobs.push(async () => {
          const { text, finish } = await oaAnswer({
            model: MODEL, messages: msgs, max_tokens: MAX, temperature: 1, ...thinkingOA(think),
            response_format: { type: 'json_schema', json_schema: { name: `s${i}`, schema, strict: true } },
          }, stream);
          assert.equal(finish, 'stop', `schema ${i}: finish ${finish}`);
          check(schema, text, `openai schema ${i} stream=${stream} thinking=${think}`);
        });
      }
      // Anthropic output_config.format: not streamed with thinking, streamed without.
      for (const [stream, think] of [[false, true], [true, false]]) {
        jobs.push(async () => {
          const { text, stop } = await anAnswer({
            model: 'claude-sonnet-4-5', max_tokens: MAX, messages: msgs,
            thinking: think ? { type: 'enabled', budget_tokens: 16 } : { type: 'disabled' },
            output_config: { format: { type: 'json_schema', schema } },
          }, stream);
          assert.equal(stop, 'end_turn');
          check(schema, text, `anthropic schema ${i} stream=${stream} thinking=${think}`);
        });
      }
      if (!objectRoot(schema)) return;
      // Forced tool calls: the arguments follow the parameters schema.
      const fn = { name: `tool_${i}`, description: 'a tool', parameters: schema, strict: true };
      const other = { name: 'other', parameters: { type: 'object', properties: { q: { type: 'string' } }, required: ['q'] } };
      for (const [stream, named] of [[false, false], [true, true]]) {
        jobs.push(async () => {
          const { msg, finish } = await oaAnswer({
            model: MODEL, messages: msgs, max_tokens: MAX, ...thinkingOA(named),
            tools: [{ type: 'function', function: fn }, { type: 'function', function: other }],
            tool_choice: named ? { type: 'function', function: { name: fn.name } } : 'required',
          }, stream);
          assert.equal(finish, 'tool_calls');
          assert.ok(msg.tool_calls.length >= 1);
          for (const c of msg.tool_calls)
            check(c.function.name === fn.name ? schema : other.parameters, c.function.arguments, `openai tool ${i} stream=${stream}`);
        });
      }
      for (const [stream, type] of [[false, 'tool'], [true, 'any']]) {
        jobs.push(async () => {
          const { tools, stop } = await anAnswer({
            model: 'claude-sonnet-4-5', max_tokens: MAX, messages: msgs, thinking: { type: 'disabled' },
            tools: [{ name: fn.name, description: 'a tool', input_schema: schema }, { name: other.name, input_schema: other.parameters }],
            tool_choice: type === 'tool' ? { type: 'tool', name: fn.name } : { type: 'any' },
          }, stream);
          assert.equal(stop, 'tool_use');
          assert.ok(tools.length >= 1);
          for (const t of tools) check(t.name === fn.name ? schema : other.parameters, t.input, `anthropic tool ${i} ${type} stream=${stream}`);
        });
      }
    });
  }
  assert.ok(jobs.length >= 200, `${jobs.length} requests in the matrix`);
  const run = FULL ? jobs : jobs.filter((_, k) => k % 4 === 0);
  await pool(run);
  console.log(`structured outputs: ${stats.valid}/${stats.requests} valid over ${SCHEMAS.length} schemas, ${run.length} requests`);
  assert.equal(stats.valid, stats.requests);
  assert.ok(stats.requests >= run.length);
});

test('json_object: any JSON object, stream and not', async () => {
  for (const stream of [false, true]) {
    const { text } = await oaAnswer({ model: MODEL, messages: msgs, max_tokens: 40, response_format: { type: 'json_object' } }, stream);
    check({ type: 'object' }, text, `json_object stream=${stream}`);
  }
});

test('max_tokens smaller than the shortest instance: the JSON still closes', async () => {
  const schema = obj({ a: obj({ b: str({ minLength: 5 }) }), c: { type: 'array', items: { type: 'integer' }, minItems: 3 } });
  const { text } = await oaAnswer({ model: MODEL, messages: msgs, max_tokens: 4, ...thinkingOA(false),
    response_format: { type: 'json_schema', json_schema: { name: 'tight', schema } } }, false);
  check(schema, text, 'tight budget');
});

test('parallel_tool_calls with required: every call valid', async () => {
  // (Whether a second call follows is the model's choice; the engine test drives it to several.)
  const schema = obj({ city: { enum: ['Rome', 'Paris'] }, days: { type: 'integer', minimum: 1, maximum: 7 } });
  for (let k = 0; k < 3; k++) {
    const r = await oa.chat.completions.create({
      model: MODEL, messages: msgs, max_tokens: 200, ...thinkingOA(false), parallel_tool_calls: true, seed: k, temperature: 2,
      tools: [{ type: 'function', function: { name: 'w', parameters: schema, strict: true } }], tool_choice: 'required',
    });
    assert.equal(r.choices[0].finish_reason, 'tool_calls');
    const calls = r.choices[0].message.tool_calls;
    assert.ok(calls.length >= 1);
    for (const c of calls) check(schema, c.function.arguments, 'parallel call');
  }
});

test('unsupported schema keywords answer 400 naming the keyword', async () => {
  const bad = [
    [{ type: 'array', uniqueItems: true }, 'uniqueItems'],
    [{ type: 'string', format: 'ipv6' }, 'ipv6'],
    [{ type: 'object', patternProperties: { '^a': {} } }, 'patternProperties'],
  ];
  for (const [schema, word] of bad) {
    await assert.rejects(
      oa.chat.completions.create({ model: MODEL, messages: msgs, max_tokens: 8,
        response_format: { type: 'json_schema', json_schema: { name: 'bad', schema } } }),
      (e) => e.status === 400 && e.message.includes(word) && e.message.includes('response_format'));
    await assert.rejects(
      an.messages.create({ model: 'claude-sonnet-4-5', max_tokens: 8, messages: msgs,
        output_config: { format: { type: 'json_schema', schema } } }),
      (e) => e.status === 400 && e.message.includes(word));
  }
  await assert.rejects(
    oa.chat.completions.create({ model: MODEL, messages: msgs, max_tokens: 8, tool_choice: 'required',
      tools: [{ type: 'function', function: { name: 't', parameters: { type: 'object', properties: { a: { not: {} } } } } }] }),
    (e) => e.status === 400 && e.message.includes("'not'"));
});

test('strict tools under tool_choice auto: accepted (the block is constrained once the model opens one)', async () => {
  const strictTool = { type: 'function', function: { name: 's', strict: true, parameters: obj({ u: { enum: ['C', 'F'] } }) } };
  const looseTool = { type: 'function', function: { name: 'l', parameters: { type: 'object', properties: { a: { type: 'string', format: 'ipv6' } }, required: ['a'] } } };
  for (const stream of [false, true]) {
    const { finish } = await oaAnswer({ model: MODEL, messages: msgs, max_tokens: 8, ...thinkingOA(false),
      tools: [strictTool, looseTool] }, stream);
    assert.ok(['length', 'stop', 'tool_calls'].includes(finish), finish);
  }
  const badStrict = { type: 'function', function: { name: 'b', strict: true, parameters: { type: 'object', properties: { a: { type: 'string', format: 'ipv6' } } } } };
  await assert.rejects(oa.chat.completions.create({ model: MODEL, messages: msgs, max_tokens: 8, tools: [badStrict] }),
    (e) => e.status === 400 && e.message.includes('ipv6'));
  // Anthropic: tools marked strict, tool_choice absent.
  const r = await an.messages.create({ model: 'claude-sonnet-4-5', max_tokens: 8, messages: msgs, thinking: { type: 'disabled' },
    tools: [{ name: 's', strict: true, input_schema: obj({ u: { enum: ['C', 'F'] } }) }, { name: 'l', input_schema: looseTool.function.parameters }] });
  assert.ok(['max_tokens', 'end_turn', 'tool_use'].includes(r.stop_reason), r.stop_reason);
  await assert.rejects(an.messages.create({ model: 'claude-sonnet-4-5', max_tokens: 8, messages: msgs,
    tools: [{ name: 'b', strict: true, input_schema: badStrict.function.parameters }] }),
    (e) => e.status === 400 && e.message.includes('ipv6'));
});

test('openai SDK chat.completions.parse: message.parsed validates', async () => {
  const schema = SCHEMAS[1];
  const r = await oa.chat.completions.parse({ model: MODEL, messages: msgs, max_tokens: 32, ...thinkingOA(false),
    response_format: { type: 'json_schema', json_schema: { name: 'person', schema, strict: true } } });
  const m = r.choices[0].message;
  assert.ok(m.parsed && typeof m.parsed === 'object', JSON.stringify(m));
  check(schema, m.content, 'parse');
  assert.deepEqual(m.parsed, JSON.parse(m.content));
});
