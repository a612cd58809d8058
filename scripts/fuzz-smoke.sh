#!/usr/bin/env bash
# Builds every fuzz/*_fuzz.cpp target with clang (fuzzer+ASan+UBSan) and runs each briefly.
# Usage: scripts/fuzz-smoke.sh [seconds per target, default 20]. Build dir: $FUZZ_BUILD_DIR
# (default build-fuzz). Runs every target, then exits non-zero when a build failed or any target
# found a crash (its log and artifacts stay in the build dir).
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${FUZZ_BUILD_DIR:-build-fuzz}
SECS=${1:-20}

targets=()
for src in fuzz/*_fuzz.cpp; do
  [ -e "$src" ] && targets+=("$(basename "$src" .cpp)")
done
if [ ${#targets[@]} -eq 0 ]; then
  echo "fuzz-smoke: no fuzz/*_fuzz.cpp targets"
  exit 0
fi

CC=${CC:-clang} CXX=${CXX:-clang++} cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Debug \
  -DDSV4_FUZZ=ON -DDSV4_BUILD_TESTS=OFF -DDSV4_BUILD_BENCH=OFF >/dev/null
cmake --build "$BUILD_DIR" -j"$(nproc)" --target "${targets[@]}"

failed=()
for t in "${targets[@]}"; do
  name=${t%_fuzz}
  corpus="$BUILD_DIR/corpus/$t"
  mkdir -p "$corpus"
  extra=()
  [ -f "fuzz/$name.dict" ] && extra+=("-dict=fuzz/$name.dict")
  seeds=()
  [ -d "fuzz/corpus/$name" ] && seeds+=("fuzz/corpus/$name")
  echo "fuzz-smoke: $t for ${SECS}s"
  log="$BUILD_DIR/$t.log"
  rc=0
  "$BUILD_DIR/$t" -max_total_time="$SECS" -timeout=10 -rss_limit_mb=4096 -print_final_stats=1 \
    -artifact_prefix="$BUILD_DIR/$t-" "${extra[@]}" "$corpus" "${seeds[@]}" >"$log" 2>&1 || rc=$?
  tail -n 12 "$log"
  if [ "$rc" -ne 0 ]; then
    echo "fuzz-smoke: $t FAILED (exit $rc); log $log, artifacts $BUILD_DIR/$t-*"
    failed+=("$t")
  fi
done
if [ ${#failed[@]} -ne 0 ]; then
  echo "fuzz-smoke: FAILED: ${failed[*]}"
  exit 1
fi
echo "fuzz-smoke: all ${#targets[@]} target(s) ran clean"
