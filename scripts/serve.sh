#!/usr/bin/env bash
# Installs dependencies, builds, and serves the embedded default model (README's first command).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/build.sh
exec ./build/dsv4 serve "$@"
