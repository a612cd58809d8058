// ctest entry: runs every *.test.mjs here with node:test against $DSV4_BINARY. Exits 77 (ctest
// SKIP) when the SDKs are not installed (run `npm ci` here; scripts/test.sh does).
import { existsSync, readdirSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
for (const pkg of ['openai', '@anthropic-ai/sdk', 'ai', '@ai-sdk/openai', '@ai-sdk/anthropic', '@langchain/openai', '@langchain/anthropic']) {
  if (!existsSync(path.join(here, 'node_modules', pkg))) {
    console.error(`\n*** e2e_sdk SKIPPED: ${pkg} is not installed in ${here}/node_modules.` +
      `\n*** Run: (cd ${here} && npm ci)  — scripts/test.sh does this.\n`);
    process.exit(77);
  }
}
const files = readdirSync(here).filter((f) => f.endsWith('.test.mjs')).sort();
const r = spawnSync(process.execPath, ['--test', '--test-concurrency=1', ...files], { cwd: here, stdio: 'inherit' });
process.exit(r.status ?? 1);
