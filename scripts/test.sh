#!/usr/bin/env bash
# Installs dependencies, builds, and runs every test. This is the README's test command and what
# .ci/run calls: unit and property tests, golden-data tests, CLI and server end-to-end tests with
# the real SDK clients (all through ctest), preceded by a short libFuzzer smoke run.
# DSV4_FUZZ_SECS=0 skips the fuzz smoke.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/build.sh
if [ -f tests/e2e/package.json ]; then
  (cd tests/e2e && (npm ci --no-audit --no-fund --loglevel=error || npm install --no-audit --no-fund --loglevel=error))
fi
if [ "${DSV4_FUZZ_SECS:-10}" != "0" ]; then
  scripts/fuzz-smoke.sh "${DSV4_FUZZ_SECS:-10}"
fi
cd "${BUILD_DIR:-build}"
ctest --output-on-failure -j"$(nproc)" --timeout 600
