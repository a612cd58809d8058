#!/usr/bin/env bash
# Installs every Debian package dsv4 needs to build, test and benchmark. Idempotent; run as root
# (or with sudo available) on Debian 12+.
set -euo pipefail
PKGS=(
  build-essential cmake ninja-build pkg-config git ca-certificates
  nlohmann-json3-dev      # JSON: config.json, safetensors headers, API bodies
  libpcre2-dev            # Unicode regex (\p{L} ...) for the tokenizer pre-tokenizer, JIT
  libboost-dev            # Boost.Asio + Boost.Beast (header-only): the event-driven HTTP server of `dsv4 serve`
  libcli11-dev            # CLI flag parsing
  libgtest-dev libgmock-dev   # unit tests
  libbenchmark-dev        # Google Benchmark microbenchmarks (bench/)
  libhwy-dev              # Highway portable SIMD with runtime dispatch
  clang libclang-rt-14-dev  # libFuzzer targets and sanitizer runtimes
  g++-aarch64-linux-gnu   # ARM64 cross compiler (+ arm64 libc, libstdc++, libgomp) for scripts/test-arm64.sh
  qemu-user               # qemu-aarch64: runs those ARM64 test binaries here
  googletest              # GoogleTest sources, compiled for arm64 in the cross build
  libopenmpi-dev openmpi-bin  # expert parallelism over several processes/hosts (mpirun -np N dsv4 ..., issue 15); optional at build time
  iproute2                # `ip netns`: the multi-"host" MPI test over network namespaces
  python3 curl procps
)
# Node.js + npm run only the SDK end-to-end clients (openai, @anthropic-ai/sdk). A machine that
# already has them (e.g. from NodeSource, whose nodejs conflicts with Debian's npm) keeps its own.
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  PKGS+=(nodejs npm)
fi
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
echo "install-deps: all packages present"
