// The Vercel AI SDK (ai@6) against dsv4 serve: @ai-sdk/openai's default provider (the Responses
// API) and its chat provider, and @ai-sdk/anthropic; generateText / streamText, tools with a
// multi-step round trip. Random-weight tiny model: the protocol must hold (tool calls are forced,
// so their arguments are valid by construction).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { generateText, streamText, tool, stepCountIs } from 'ai';
import { createOpenAI } from '@ai-sdk/openai';
import { createAnthropic } from '@ai-sdk/anthropic';
import { z } from 'zod';
import { startServer, API_KEY } from './server.mjs';

let srv, openai, anthropic;
before(async () => {
  srv = await startServer();
  openai = createOpenAI({ baseURL: srv.base + '/v1', apiKey: API_KEY });
  anthropic = createAnthropic({ baseURL: srv.base + '/v1', apiKey: API_KEY });
});
after(async () => { await srv?.stop(); });

const MODEL = 'deepseek-v4-flash';
const calls = [];
const weather = tool({
  description: 'Weather of a city',
  inputSchema: z.object({ city: z.string(), days: z.number().int() }),
  execute: async ({ city, days }) => { calls.push({ city, days }); return { city, temp: 21 }; },
});
// Step 0 must call the tool, step 1 answers from its result.
const forceThenAnswer = ({ stepNumber }) => (stepNumber === 0 ? { toolChoice: { type: 'tool', toolName: 'weather' } } : { toolChoice: 'none' });

test('openai provider (Responses API): generateText', async () => {
  const r = await generateText({ model: openai(MODEL), prompt: 'Say hello', maxOutputTokens: 8, temperature: 0 });
  assert.equal(typeof r.text, 'string');
  assert.ok(r.usage.inputTokens > 0);
  assert.equal(r.usage.outputTokens, 8);
  assert.equal(r.finishReason, 'length');
  assert.match(r.response.id, /^resp_/);
});

test('openai provider (Responses API): streamText deltas spell the text', async () => {
  const result = streamText({ model: openai(MODEL), prompt: 'Stream', maxOutputTokens: 10,
    providerOptions: { openai: { reasoningEffort: 'high', reasoningSummary: 'auto' } } });
  let text = '', reasoning = '', errors = [];
  for await (const part of result.fullStream) {
    if (part.type === 'text-delta') text += part.text;
    if (part.type === 'reasoning-delta') reasoning += part.text;
    if (part.type === 'error') errors.push(part.error);
  }
  assert.deepEqual(errors, []);
  assert.equal(text, await result.text);
  assert.ok(reasoning.length > 0, 'reasoning streamed as a summary');
  const usage = await result.usage;
  assert.equal(usage.outputTokens, 10);
  assert.ok(usage.outputTokenDetails?.reasoningTokens > 0 || usage.reasoningTokens > 0);
});

test('openai provider (Responses API): tools, two steps with the tool result', async () => {
  calls.length = 0;
  const r = await generateText({
    model: openai(MODEL), prompt: 'Weather in Paris?', tools: { weather }, prepareStep: forceThenAnswer,
    stopWhen: stepCountIs(2), maxOutputTokens: 60, temperature: 0,
  });
  assert.equal(r.steps.length, 2);
  assert.equal(r.steps[0].toolCalls[0].toolName, 'weather');
  assert.equal(typeof r.steps[0].toolCalls[0].input.city, 'string');
  assert.equal(r.steps[0].toolResults[0].output.temp, 21);
  assert.equal(calls.length, 1);
  assert.ok(r.steps[1].usage.inputTokens > r.steps[0].usage.inputTokens, 'the tool result went back');
});

test('openai provider (Responses API): streamText with a forced tool call', async () => {
  const result = streamText({ model: openai(MODEL), prompt: 'Weather?', tools: { weather },
    toolChoice: { type: 'tool', toolName: 'weather' }, maxOutputTokens: 60 });
  const types = new Set();
  let errors = [];
  for await (const part of result.fullStream) {
    types.add(part.type);
    if (part.type === 'error') errors.push(part.error);
  }
  assert.deepEqual(errors, []);
  assert.ok(types.has('tool-input-delta') || types.has('tool-call'), [...types].join(','));
  const tc = await result.toolCalls;
  assert.equal(tc[0].toolName, 'weather');
  assert.equal((await result.toolResults)[0].output.temp, 21);
});

test('openai chat provider (/v1/chat/completions): generateText and tools', async () => {
  const r = await generateText({ model: openai.chat(MODEL), prompt: 'Hi', maxOutputTokens: 6 });
  assert.equal(r.usage.outputTokens, 6);
  const t = await generateText({ model: openai.chat(MODEL), prompt: 'Weather?', tools: { weather }, prepareStep: forceThenAnswer,
    stopWhen: stepCountIs(2), maxOutputTokens: 60 });
  assert.equal(t.steps[0].toolCalls[0].toolName, 'weather');
  assert.equal(t.steps.length, 2);
});

test('anthropic provider: generateText, streamText, tools', async () => {
  const r = await generateText({ model: anthropic('claude-sonnet-4-5'), prompt: 'Hello', maxOutputTokens: 8, temperature: 0 });
  assert.equal(r.usage.outputTokens, 8);
  assert.equal(r.finishReason, 'length');
  assert.equal(r.reasoningText, undefined, 'no thinking unless asked (Anthropic default)');
  const s = streamText({ model: anthropic('claude-sonnet-4-5'), prompt: 'Stream', maxOutputTokens: 8,
    providerOptions: { anthropic: { thinking: { type: 'enabled', budgetTokens: 4 } } } });
  let reasoning = '', text = '';
  for await (const part of s.fullStream) {
    if (part.type === 'reasoning-delta') reasoning += part.text;
    if (part.type === 'text-delta') text += part.text;
    assert.notEqual(part.type, 'error', String(part.error));
  }
  assert.ok(reasoning.length > 0);
  const u = await s.usage;
  assert.equal(u.outputTokens, 12);  // the provider asks for maxOutputTokens + budgetTokens
  calls.length = 0;
  const t = await generateText({ model: anthropic('claude-sonnet-4-5'), prompt: 'Weather in Oslo?', tools: { weather },
    prepareStep: forceThenAnswer, stopWhen: stepCountIs(2), maxOutputTokens: 60 });
  assert.equal(t.steps[0].toolCalls[0].toolName, 'weather');
  assert.equal(t.steps[0].toolResults[0].output.temp, 21);
  assert.equal(t.steps.length, 2);
});
