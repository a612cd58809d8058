// LangChain JS against dsv4 serve: ChatOpenAI with useResponsesApi (the Responses API) and on chat
// completions, ChatAnthropic; invoke, stream, bound tools and a tool-message round trip.
// Random-weight tiny model: protocol shape only (tool calls are forced).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { ChatOpenAI } from '@langchain/openai';
import { ChatAnthropic } from '@langchain/anthropic';
import { HumanMessage, ToolMessage } from '@langchain/core/messages';
import { tool } from '@langchain/core/tools';
import { z } from 'zod';
import { startServer, API_KEY } from './server.mjs';

let srv;
before(async () => { srv = await startServer(); });
after(async () => { await srv?.stop(); });

const MODEL = 'deepseek-v4-flash';
const weather = tool(async ({ city }) => `Sunny in ${city}`, {
  name: 'get_weather', description: 'Weather of a city', schema: z.object({ city: z.string() }),
});

function openai(extra = {}) {
  return new ChatOpenAI({ model: MODEL, apiKey: API_KEY, configuration: { baseURL: srv.base + '/v1' }, maxRetries: 0, ...extra });
}
function anthropic(extra = {}) {
  return new ChatAnthropic({ model: 'claude-sonnet-4-5', apiKey: API_KEY, anthropicApiUrl: srv.base, maxRetries: 0, ...extra });
}

async function toolRoundTrip(llm) {
  const bound = llm.bindTools([weather], { tool_choice: 'get_weather' });
  const q = new HumanMessage('Weather in Paris?');
  const ai = await bound.invoke([q]);
  assert.equal(ai.tool_calls.length, 1, JSON.stringify(ai));
  assert.equal(ai.tool_calls[0].name, 'get_weather');
  assert.equal(typeof ai.tool_calls[0].args.city, 'string');
  const result = await weather.invoke(ai.tool_calls[0]);
  assert.ok(result instanceof ToolMessage);
  const answer = await llm.bindTools([weather]).invoke([q, ai, result]);
  assert.ok(typeof answer.content === 'string' || Array.isArray(answer.content));
  assert.ok(answer.usage_metadata.input_tokens > ai.usage_metadata.input_tokens, 'the tool result went back');
  return answer;
}

test('ChatOpenAI useResponsesApi: invoke and stream', async () => {
  const llm = openai({ useResponsesApi: true, maxTokens: 8, temperature: 0 });
  const r = await llm.invoke('Say hello');
  assert.ok(r.usage_metadata.input_tokens > 0);
  assert.equal(r.usage_metadata.output_tokens, 8);
  assert.match(r.response_metadata?.id ?? r.id ?? '', /^resp_/, JSON.stringify(r));
  let chunks = 0, text = '';
  for await (const c of await llm.stream('Stream')) {
    chunks++;
    // Thinking is on (LangChain sends no reasoning effort for this model name): the 8 random
    // tokens are reasoning, which LangChain streams as reasoning content parts.
    if (typeof c.content === 'string') text += c.content;
    else for (const p of c.content) text += p.text ?? p.reasoning ?? '';
  }
  assert.ok(chunks > 1);
  assert.ok(text.length > 0, 'streamed text or reasoning');
});

test('ChatOpenAI useResponsesApi: bound tool, ToolMessage round trip', async () => {
  await toolRoundTrip(openai({ useResponsesApi: true, maxTokens: 60, reasoning: { effort: 'none' } }));
});

test('ChatOpenAI (chat completions): bound tool round trip', async () => {
  await toolRoundTrip(openai({ maxTokens: 60 }));
});

test('ChatAnthropic: invoke, stream, bound tool round trip', async () => {
  const llm = anthropic({ maxTokens: 8, temperature: 0 });
  const r = await llm.invoke('Hello');
  assert.equal(r.usage_metadata.output_tokens, 8);
  let text = '';
  for await (const c of await llm.stream('Stream')) if (typeof c.content === 'string') text += c.content;
  assert.ok(text.length > 0);
  await toolRoundTrip(anthropic({ maxTokens: 60 }));
});
