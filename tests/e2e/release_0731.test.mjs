// Issue 17: `dsv4 serve` on a V4-Flash-0731-layout checkpoint (DSpark drafter, written by
// `dsv4 tiny --release flash-0731`) picks the 0731 prompt encoder by itself: reasoning effort
// "high" then adds the "Absolute maximum" paragraph and "max" the longer "Beyond maximum" one,
// where the April checkpoint adds nothing for "high". Seen through usage.prompt_tokens.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import OpenAI from 'openai';
import Anthropic from '@anthropic-ai/sdk';
import { startServer, binary, API_KEY } from './server.mjs';

let tmp, srv0731, srvApril, c0731, cApril;
before(async () => {
  tmp = mkdtempSync(path.join(os.tmpdir(), 'dsv4e2e0731-'));
  const dir = path.join(tmp, 'ckpt');
  const r = spawnSync(binary(), ['tiny', '--out', dir, '--release', 'flash-0731'], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stdout + r.stderr);
  srv0731 = await startServer(['--model', dir]);
  srvApril = await startServer();
  c0731 = new OpenAI({ apiKey: API_KEY, baseURL: srv0731.base + '/v1', maxRetries: 0 });
  cApril = new OpenAI({ apiKey: API_KEY, baseURL: srvApril.base + '/v1', maxRetries: 0 });
});
after(async () => {
  await srv0731?.stop();
  await srvApril?.stop();
  if (tmp) rmSync(tmp, { recursive: true, force: true });
});

async function promptTokens(client, effort) {
  const req = { model: 'deepseek-v4-flash', messages: [{ role: 'user', content: 'Why is the sky blue?' }],
    max_tokens: 1, temperature: 0, thinking: { type: 'enabled' } };
  if (effort !== undefined) req.reasoning_effort = effort;
  const r = await client.chat.completions.create(req);
  return r.usage.prompt_tokens;
}

test('start-up log names the drafter and the detected encoder', () => {
  assert.match(srv0731.log(), /drafter\s+= dspark/);
  assert.match(srv0731.log(), /encoder\s+= v4-0731 \(config\.json .*\), default effort low/);
  assert.match(srvApril.log(), /encoder\s+= v4 \(/);
});

test('0731 effort table: low = none < high < max', async () => {
  const none = await promptTokens(c0731);
  const low = await promptTokens(c0731, 'low');
  const high = await promptTokens(c0731, 'high');
  const max = await promptTokens(c0731, 'max');
  assert.equal(low, none);
  assert.ok(high > low + 10, `high ${high} vs low ${low}`);
  assert.ok(max > high, `max ${max} vs high ${high}`);
});

test('April effort table: high adds nothing, max adds the paragraph', async () => {
  const none = await promptTokens(cApril);
  assert.equal(await promptTokens(cApril, 'high'), none);
  const max = await promptTokens(cApril, 'max');
  assert.ok(max > none + 10);
  // The April "max" paragraph is the 0731 "high" one.
  assert.equal(max - none, (await promptTokens(c0731, 'high')) - (await promptTokens(c0731)));
});

test('Anthropic output_config.effort follows the same table', async () => {
  const a = new Anthropic({ apiKey: API_KEY, baseURL: srv0731.base, maxRetries: 0 });
  const count = async (effort) => (await a.messages.countTokens({
    model: 'deepseek-v4-flash', messages: [{ role: 'user', content: 'Hi' }],
    thinking: { type: 'enabled', budget_tokens: 1024 }, ...(effort ? { output_config: { effort } } : {}),
  })).input_tokens;
  assert.ok((await count('high')) > (await count()) + 10);
});
