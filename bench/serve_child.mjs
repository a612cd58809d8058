// Shared by bench/load_test.mjs and bench/soak.mjs: their flags, `dsv4 serve` started as a child
// on a free port (or an existing server with --url), and a process's RSS.
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';

// --name value pairs of the command line.
export function parseArgs(argv = process.argv.slice(2)) {
  return Object.fromEntries(argv.reduce((a, v, i, all) => {
    if (v.startsWith('--')) a.push([v.slice(2), all[i + 1]]);
    return a;
  }, []));
}

// `dsv4 serve --port 0 --quiet` with --parallel/--queue/--cache-mb (--binary, --model from args),
// or args.url as it is. Returns {base, pid, stop}.
export async function startServer(args, { parallel, queue, cacheMb }) {
  if (args.url) return { base: args.url, pid: null, stop: async () => {} };
  const cmd = ['serve', '--port', '0', '--parallel', String(parallel), '--queue', String(queue), '--quiet',
    '--cache-mb', String(cacheMb)];
  if (args.model) cmd.push('--model', args.model);
  const proc = spawn(args.binary ?? 'build/dsv4', cmd, { stdio: ['ignore', 'pipe', 'pipe'] });
  let log = '';
  const port = await new Promise((resolve, reject) => {
    const on = (d) => { log += d; const m = log.match(/listening on http:\/\/[\d.]+:(\d+)/); if (m) resolve(Number(m[1])); };
    proc.stderr.on('data', on);
    proc.stdout.on('data', on);
    proc.on('exit', (c) => reject(new Error('server exited ' + c + '\n' + log)));
  });
  return { base: `http://127.0.0.1:${port}`, pid: proc.pid,
    stop: async () => { proc.kill('SIGTERM'); await new Promise((r) => proc.on('exit', r)); } };
}

// VmRSS of pid in MiB (NaN when unknown or gone).
export function rssMiB(pid) {
  if (!pid) return NaN;
  try {
    const m = readFileSync(`/proc/${pid}/status`, 'utf8').match(/VmRSS:\s+(\d+) kB/);
    return m ? Number(m[1]) / 1024 : NaN;
  } catch { return NaN; }
}
