// Soak test for `dsv4 serve` (not CI; issue 16): C streaming clients for M minutes, every SSE
// frame validated (framing, JSON, chunk shape, one finish_reason, usage, [DONE] last), errors
// printed as they happen, latency percentiles (time to first token, total) and the server's RSS
// over time at the end. Exit status 1 on any error.
//
//   node bench/soak.mjs [--clients 64] [--minutes 10] [--max-tokens 48] [--parallel 16]
//       [--queue 64] [--binary build/dsv4] [--model DIR] [--url http://127.0.0.1:8080]
//
// Without --url it starts `dsv4 serve --port 0` itself (the embedded model unless --model) and
// stops it (SIGTERM) at the end. Plain fetch + SSE parsing: no npm packages.
import { parseArgs, rssMiB, startServer } from './serve_child.mjs';

const args = parseArgs();
const clients = Number(args.clients ?? 64);
const minutes = Number(args.minutes ?? 10);
const maxTokens = Number(args['max-tokens'] ?? 48);
const parallel = Number(args.parallel ?? 16);
const queue = Number(args.queue ?? 64);

const start = () => startServer(args, { parallel, queue, cacheMb: args['cache-mb'] ?? 256 });

// One streaming chat request, every frame checked. Returns {ok, why, ttft, total, tokens}.
async function streamOne(base, i) {
  const t0 = performance.now();
  const body = { model: 'deepseek-v4-flash', stream: true, max_tokens: maxTokens, temperature: 0.8, seed: i,
    thinking: { type: 'disabled' }, stream_options: { include_usage: true },
    messages: [{ role: 'user', content: `Soak client ${i}: write something.` }] };
  const r = await fetch(base + '/v1/chat/completions', { method: 'POST', body: JSON.stringify(body),
    headers: { 'Content-Type': 'application/json' } });
  if (r.status !== 200) return { ok: false, why: `HTTP ${r.status}: ${(await r.text()).slice(0, 200)}` };
  if (!(r.headers.get('content-type') ?? '').startsWith('text/event-stream')) return { ok: false, why: 'content-type ' + r.headers.get('content-type') };
  let buf = '', id = null, ttft = 0, finishes = 0, usage = null, done = false, frames = 0, tokens = 0;
  const dec = new TextDecoder();
  const bad = (why) => ({ ok: false, why: `frame ${frames}: ${why}` });
  for await (const chunk of r.body) {
    buf += dec.decode(chunk, { stream: true });
    let k;
    while ((k = buf.indexOf('\n\n')) >= 0) {
      const frame = buf.slice(0, k); buf = buf.slice(k + 2);
      frames++;
      if (frame.startsWith(':')) continue;  // keep-alive comment
      if (!frame.startsWith('data: ') || frame.includes('\n')) return bad('not one data line: ' + JSON.stringify(frame.slice(0, 80)));
      if (done) return bad('data after [DONE]');
      const data = frame.slice(6);
      if (data === '[DONE]') { done = true; continue; }
      let j;
      try { j = JSON.parse(data); } catch (e) { return bad('invalid JSON: ' + data.slice(0, 80)); }
      if (j.error) return bad('error event: ' + JSON.stringify(j.error));
      if (j.object !== 'chat.completion.chunk') return bad('object ' + j.object);
      if (typeof j.id !== 'string' || (id && j.id !== id)) return bad('id ' + j.id);
      id = j.id;
      if (!Array.isArray(j.choices)) return bad('no choices array');
      if (j.usage) {
        if (usage) return bad('two usage chunks');
        if (j.choices.length !== 0) return bad('usage chunk with choices');
        usage = j.usage;
        continue;
      }
      if (j.choices.length !== 1 || j.choices[0].index !== 0) return bad('choices ' + JSON.stringify(j.choices));
      const c = j.choices[0];
      if (finishes) return bad('chunk after finish_reason');
      if (c.finish_reason) {
        if (!['stop', 'length'].includes(c.finish_reason)) return bad('finish_reason ' + c.finish_reason);
        finishes++;
      }
      const d = c.delta ?? {};
      if (d.content || d.reasoning_content) { tokens++; if (!ttft) ttft = performance.now() - t0; }
    }
  }
  if (buf.trim()) return bad('trailing bytes ' + JSON.stringify(buf.slice(0, 80)));
  if (!done) return bad('no [DONE]');
  if (finishes !== 1) return bad('finish_reason count ' + finishes);
  if (!usage || usage.completion_tokens < 1 || usage.total_tokens !== usage.prompt_tokens + usage.completion_tokens)
    return bad('usage ' + JSON.stringify(usage));
  return { ok: true, ttft: ttft || (performance.now() - t0), total: performance.now() - t0, tokens: usage.completion_tokens };
}

const pct = (a, p) => a.length ? a[Math.min(a.length - 1, Math.floor(p / 100 * a.length))] : NaN;

const srv = await start();
console.log(`soak: server ${srv.base}; ${clients} streaming clients x ${minutes} min, max_tokens ${maxTokens}` +
  (srv.pid ? `, --parallel ${parallel} --queue ${queue}` : ''));
const t0 = performance.now();
const deadline = t0 + minutes * 60000;
let ok = 0, failed = 0, tokens = 0;
const ttfts = [], totals = [], rss = [];
const sample = () => rss.push({ s: (performance.now() - t0) / 1000, mib: rssMiB(srv.pid) });
sample();
const sampler = setInterval(() => {
  sample();
  const last = rss[rss.length - 1];
  console.log(`  ${last.s.toFixed(0)} s: ${ok} ok, ${failed} errors, RSS ${last.mib.toFixed(0)} MiB`);
}, 30000);
await Promise.all(Array.from({ length: clients }, async (_, c) => {
  for (let n = 0; performance.now() < deadline; n++) {
    let r;
    try { r = await streamOne(srv.base, c * 1000000 + n); } catch (e) { r = { ok: false, why: String(e) }; }
    if (r.ok) { ok++; tokens += r.tokens; ttfts.push(r.ttft); totals.push(r.total); }
    else { failed++; console.log(`  ERROR client ${c} request ${n}: ${r.why}`); }
  }
}));
clearInterval(sampler);
sample();
const wall = (performance.now() - t0) / 1000;
await srv.stop();

ttfts.sort((a, b) => a - b);
totals.sort((a, b) => a - b);
const f = (x) => x.toFixed(0);
console.log(`streams: ${ok} ok, ${failed} errors; ${tokens} tokens in ${wall.toFixed(0)} s (${(tokens / wall).toFixed(0)} tok/s)`);
console.log(`time to first token ms: p50 ${f(pct(ttfts, 50))} p90 ${f(pct(ttfts, 90))} p99 ${f(pct(ttfts, 99))} max ${f(ttfts[ttfts.length - 1] ?? NaN)}`);
console.log(`total ms:               p50 ${f(pct(totals, 50))} p90 ${f(pct(totals, 90))} p99 ${f(pct(totals, 99))} max ${f(totals[totals.length - 1] ?? NaN)}`);
if (srv.pid) {
  console.log('server RSS MiB over time: ' + rss.map((x) => `${x.s.toFixed(0)}s=${x.mib.toFixed(0)}`).join(' '));
  const warm = rss.filter((x) => x.s >= Math.min(60, wall / 2));
  if (warm.length >= 2) console.log(`RSS after warm-up: first ${warm[0].mib.toFixed(0)}, last ${warm[warm.length - 1].mib.toFixed(0)}, ` +
    `max ${Math.max(...warm.map((x) => x.mib)).toFixed(0)} MiB`);
}
process.exit(failed ? 1 : 0);
