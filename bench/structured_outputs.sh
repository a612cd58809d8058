#!/usr/bin/env bash
# The full structured-outputs run of issue 13: all 216 requests of tests/e2e/structured.test.mjs
# (24 schemas; OpenAI response_format and forced tools, Anthropic output_config.format and forced
# tool_use; stream and not; thinking off and on) against `dsv4 serve` on the random-weight default
# model, every output validated with ajv. ctest runs every 4th request of the same matrix.
#   bench/structured_outputs.sh            (uses build/dsv4; DSV4_BINARY overrides)
set -euo pipefail
cd "$(dirname "$0")/.."
export DSV4_BINARY=${DSV4_BINARY:-$PWD/build/dsv4}
export DSV4_STRUCTURED_FULL=1
cd tests/e2e
exec node --test structured.test.mjs
