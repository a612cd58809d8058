// Starts `dsv4 serve` on the embedded tiny model on a free loopback port for one test file.
import { spawn } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
export const API_KEY = 'e2e-secret';

export function binary() {
  return process.env.DSV4_BINARY || path.resolve(here, '../../build/dsv4');
}

export async function startServer(extraArgs = []) {
  // Flags given in extraArgs (as --flag value pairs) replace these defaults; a null value drops one.
  const flags = { '--port': '0', '--api-key': API_KEY, '--parallel': '8', '--ctx': '4096', '--keepalive-ms': '500' };
  for (let i = 0; i + 1 < extraArgs.length; i += 2) {
    if (extraArgs[i + 1] === null) delete flags[extraArgs[i]];
    else flags[extraArgs[i]] = extraArgs[i + 1];
  }
  const args = ['serve', ...Object.entries(flags).flat()];
  const proc = spawn(binary(), args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let log = '';
  const port = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('dsv4 serve did not start in 120 s:\n' + log)), 120000);
    const onData = (d) => {
      log += d.toString();
      const m = log.match(/listening on http:\/\/127\.0\.0\.1:(\d+)/);
      if (m) {
        clearTimeout(timer);
        resolve(Number(m[1]));
      }
    };
    proc.stdout.on('data', onData);
    proc.stderr.on('data', onData);
    proc.on('exit', (code) => reject(new Error(`dsv4 serve exited with ${code}:\n${log}`)));
  });
  proc.stderr.on('data', (d) => { log += d.toString(); });
  const base = `http://127.0.0.1:${port}`;
  return {
    base,
    port,
    proc,
    log: () => log,
    async stop() {
      proc.kill('SIGTERM');
      await new Promise((r) => { if (proc.exitCode !== null) r(); else proc.on('exit', r); });
    },
  };
}

export async function metrics(base) {
  const r = await fetch(base + '/metrics');
  const text = await r.text();
  const out = {};
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const [k, v] = line.split(' ');
    out[k] = Number(v);
  }
  return out;
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
