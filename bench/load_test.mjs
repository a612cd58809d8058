// Load test for `dsv4 serve` (not CI): N concurrent streaming clients for a fixed time.
// Reports failed requests, single-client vs aggregate decode tok/s, and the server's RSS over
// time (memory must stay flat).
//
//   node bench/load_test.mjs [--clients 32] [--seconds 120] [--max-tokens 64] \
//       [--binary build/dsv4] [--model DIR] [--cache-mb 512] [--url http://127.0.0.1:8080]
//
// Without --url it starts `dsv4 serve --port 0 --parallel <clients>` itself (the embedded model
// unless --model) and stops it at the end. Uses plain fetch + SSE parsing (no npm packages).
import { parseArgs, rssMiB, startServer } from './serve_child.mjs';

const args = parseArgs();
const clients = Number(args.clients ?? 32);
const seconds = Number(args.seconds ?? 120);
const maxTokens = Number(args['max-tokens'] ?? 64);

// Every request leaves two prefix-cache entries (prompt end, final state): RSS grows until the
// cache budget is full and must stay flat after that.
const start = () => startServer(args, { parallel: clients, queue: clients * 2, cacheMb: args['cache-mb'] ?? 512 });

// One streaming request; returns {ok, tokens, decodeMs} (decode time = first to last token).
async function streamOne(base, i) {
  const body = { model: 'deepseek-v4-flash', stream: true, max_tokens: maxTokens, temperature: 0.8, seed: i,
    thinking: { type: 'disabled' }, stream_options: { include_usage: true },
    messages: [{ role: 'user', content: `Load test client ${i}: write something.` }] };
  const r = await fetch(base + '/v1/chat/completions', { method: 'POST', body: JSON.stringify(body),
    headers: { 'Content-Type': 'application/json' } });
  if (r.status !== 200) return { ok: false, why: `HTTP ${r.status}` };
  let buf = '', first = 0, last = 0, usage = null, done = false;
  const dec = new TextDecoder();
  for await (const chunk of r.body) {
    buf += dec.decode(chunk, { stream: true });
    let k;
    while ((k = buf.indexOf('\n\n')) >= 0) {
      const frame = buf.slice(0, k); buf = buf.slice(k + 2);
      if (!frame.startsWith('data: ')) continue;
      const data = frame.slice(6);
      if (data === '[DONE]') { done = true; continue; }
      const j = JSON.parse(data);
      if (j.error) return { ok: false, why: j.error.message };
      if (j.usage) usage = j.usage;
      const d = j.choices?.[0]?.delta;
      if (d && (d.content || d.reasoning_content)) { last = performance.now(); if (!first) first = last; }
    }
  }
  if (!done || !usage) return { ok: false, why: 'stream ended early' };
  return { ok: true, tokens: usage.completion_tokens, decodeMs: last - first };
}

const srv = await start();
console.log(`server ${srv.base}; ${clients} clients x ${seconds} s, max_tokens ${maxTokens}`);

// Single client first: its decode tok/s is the baseline.
let single = { tokens: 0, ms: 0 };
for (let i = 0; i < 3; i++) {
  const r = await streamOne(srv.base, 1000 + i);
  if (r.ok) { single.tokens += r.tokens - 1; single.ms += r.decodeMs; }
}
const singleTps = single.tokens * 1000 / single.ms;
console.log(`single client decode: ${singleTps.toFixed(1)} tok/s`);

const t0 = performance.now();
const deadline = t0 + seconds * 1000;
let ok = 0, failed = 0, tokens = 0;
const failures = new Map();
const rss = [];
const sampler = setInterval(() => rss.push(rssMiB(srv.pid)), 5000);
rss.push(rssMiB(srv.pid));
await Promise.all(Array.from({ length: clients }, async (_, c) => {
  for (let n = 0; performance.now() < deadline; n++) {
    try {
      const r = await streamOne(srv.base, c * 100000 + n);
      if (r.ok) { ok++; tokens += r.tokens; } else { failed++; failures.set(r.why, (failures.get(r.why) ?? 0) + 1); }
    } catch (e) {
      failed++; failures.set(String(e), (failures.get(String(e)) ?? 0) + 1);
    }
  }
}));
clearInterval(sampler);
rss.push(rssMiB(srv.pid));
const wall = (performance.now() - t0) / 1000;
const metrics = await (await fetch(srv.base + '/metrics')).text();
await srv.stop();

const agg = tokens / wall;
console.log(`requests: ${ok} ok, ${failed} failed${failed ? ' ' + JSON.stringify(Object.fromEntries(failures)) : ''}`);
console.log(`aggregate: ${agg.toFixed(1)} generated tok/s over ${wall.toFixed(1)} s ` +
  `(${(agg / singleTps).toFixed(2)}x single-client decode)`);
if (srv.pid) {
  const first = rss[1] ?? rss[0], lastR = rss[rss.length - 1];
  console.log(`server RSS MiB: start ${rss[0].toFixed(0)}, after warm-up ${first.toFixed(0)}, end ${lastR.toFixed(0)}, ` +
    `max ${Math.max(...rss).toFixed(0)}; every 5 s: ${rss.map((x) => x.toFixed(0)).join(" ")}`);
}
for (const line of metrics.split('\n'))
  if (/^dsv4_(decode|prefill)_tokens_per_second|^dsv4_prefix_cache_(bytes|entries)|^dsv4_requests_(finished|cancelled)_total/.test(line))
    console.log('  ' + line);
process.exit(failed ? 1 : 0);
