// Structured output through the high-level clients people use (issue 13 point 4), against dsv4 serve
// on the random-weight tiny model, where only the grammar constraint can produce valid JSON:
// the Vercel AI SDK's generateObject / streamObject (openai Responses provider, openai chat
// provider, anthropic provider) and LangChain JS withStructuredOutput (ChatOpenAI on the Responses
// API and on chat completions, ChatAnthropic). Each result is checked against its zod schema (the
// clients parse it too) and again with ajv against the JSON Schema the client sent.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { generateObject, streamObject } from 'ai';
import { createOpenAI } from '@ai-sdk/openai';
import { createAnthropic } from '@ai-sdk/anthropic';
import { ChatOpenAI } from '@langchain/openai';
import { ChatAnthropic } from '@langchain/anthropic';
import { z } from 'zod';
import Ajv from 'ajv';
import { startServer, API_KEY } from './server.mjs';

let srv, openai, anthropic;
before(async () => {
  srv = await startServer(['--parallel', '4']);
  openai = createOpenAI({ baseURL: srv.base + '/v1', apiKey: API_KEY });
  anthropic = createAnthropic({ baseURL: srv.base + '/v1', apiKey: API_KEY });
});
after(async () => { await srv?.stop(); });

const MODEL = 'deepseek-v4-flash';
const Person = z.object({
  name: z.string().max(12),
  age: z.number().int().min(0).max(120),
  role: z.enum(['admin', 'user', 'guest']),
  tags: z.array(z.string().max(8)).max(3),
  address: z.object({ city: z.string().max(10), zip: z.string().max(6) }),
});
// The AI SDK's anthropic provider moves length and range limits into descriptions (Anthropic's
// structured outputs do not take them), so what reaches the server cannot hold the output to them:
// that provider gets the same shape without limits.
const PersonLoose = z.object({
  name: z.string(),
  age: z.number().int(),
  role: z.enum(['admin', 'user', 'guest']),
  tags: z.array(z.string()),
  address: z.object({ city: z.string(), zip: z.string() }),
});
const ajv = new Ajv({ strict: false });
const validator = (schema) => {
  const { $schema, ...js } = z.toJSONSchema(schema);  // (ajv's default draft is 07)
  return ajv.compile(js);
};
const validPerson = validator(Person), validLoose = validator(PersonLoose);

function check(obj, what, schema = Person) {
  const valid = schema === Person ? validPerson : validLoose;
  assert.ok(valid(obj), `${what}: ${JSON.stringify(obj)} ${JSON.stringify(valid.errors)}`);
  schema.parse(obj);
}

const providers = () => [
  ['openai Responses provider', openai(MODEL), Person],
  ['openai chat provider', openai.chat(MODEL), Person],
  ['anthropic provider', anthropic('claude-sonnet-4-5'), PersonLoose],
];

test('AI SDK generateObject: every provider returns an object of the schema', async () => {
  for (const [what, model, schema] of providers()) {
    for (const temperature of [1]) {
      const r = await generateObject({ model, schema, prompt: 'Invent a user.', maxOutputTokens: 200, temperature });
      check(r.object, `${what}, temperature ${temperature}`, schema);
    }
  }
});

test('AI SDK streamObject: the streamed object validates', async () => {
  for (const [what, model, schema] of providers()) {
    const result = streamObject({ model, schema, prompt: 'Invent a user.', maxOutputTokens: 200, temperature: 1 });
    let partials = 0;
    for await (const _ of result.partialObjectStream) partials++;
    assert.ok(partials > 0, what);
    check(await result.object, what, schema);
  }
});

test('LangChain withStructuredOutput: ChatOpenAI (Responses and chat) and ChatAnthropic', async () => {
  const llms = [
    ['ChatOpenAI useResponsesApi', new ChatOpenAI({ model: MODEL, apiKey: API_KEY, configuration: { baseURL: srv.base + '/v1' }, maxRetries: 0, useResponsesApi: true, maxTokens: 200 })],
    ['ChatOpenAI chat', new ChatOpenAI({ model: MODEL, apiKey: API_KEY, configuration: { baseURL: srv.base + '/v1' }, maxRetries: 0, maxTokens: 200 })],
    ['ChatAnthropic', new ChatAnthropic({ model: 'claude-sonnet-4-5', apiKey: API_KEY, anthropicApiUrl: srv.base, maxRetries: 0, maxTokens: 200 })],
  ];
  for (const [what, llm] of llms) {
    const structured = llm.withStructuredOutput(Person, { name: 'person' });
    check(await structured.invoke('Invent a user.'), what);
  }
});
