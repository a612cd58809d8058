#!/usr/bin/env bash
# dsv4 vs llama.cpp's `deepseek4` on the same random weights, in one run (issue 11 part 8).
# A benchmark, not part of the test command.
#
#   LLAMA_CPP_DIR=/path/to/llama.cpp bench/peer/llama_cpp.sh
#
# 1. `dsv4 tiny --preset flash --layers 1 --vocab 8192` writes a random checkpoint in the official
#    layout: one real-shape V4-Flash CSA layer (hash-routed MoE, 256 experts), 8K vocab.
# 2. bench/peer/write_gguf.py writes the same weights as a llama.cpp GGUF (experts FP4 -> MXFP4
#    losslessly, FP8 -> Q8_0; it prints the Q8_0 error), with llama.cpp's own gguf-py.
# 3. `dsv4 bench --contexts 512 --gen 32` and `llama-bench -p 512 -n 32` (plus tg32 at depth 512,
#    which is what dsv4's decode row measures), same thread count, both after a warm-up (dsv4
#    bench's default one-chunk warm-up, llama-bench's warm-up run); then a table with both and
#    the ratios dsv4 / llama.cpp.
# 4. A rough agreement check (CHECK=1): the last-position logits of one prompt in both engines
#    (needs llama-debug, an example target) and its greedy continuation (needs llama-completion).
#
# It does not build llama.cpp: LLAMA_BENCH (default $LLAMA_CPP_DIR/build/bin/llama-bench) must be a
# CPU build of a checkout whose src/models/deepseek4.cpp exists (the `deepseek4` arch; commit
# 571d0d540 of the fairydreaming/llama.cpp mirror was used). Build it as llama.cpp's
# docs/build.md says (CMake, CPU backend, Release).
#
# Environment (defaults):
#   LLAMA_CPP_DIR      (required) the llama.cpp checkout; its gguf-py is used to write the GGUF
#   LLAMA_BENCH        $LLAMA_CPP_DIR/build/bin/llama-bench
#   LLAMA_COMPLETION   next to LLAMA_BENCH; for CHECK=1 (skipped without it)
#   LLAMA_DEBUG        next to LLAMA_BENCH; for CHECK=1 (skipped without it)
#   DSV4               build/dsv4 of this repo
#   DSV4_REV           the commit DSV4 was built from, for the report (default: repo HEAD for build/dsv4)
#   WORK               /tmp/dsv4-peer   (checkpoint ~3.6 GB + GGUF ~3.9 GB; reused when present)
#   THREADS            2                (OMP_NUM_THREADS for dsv4, -t for llama.cpp)
#   PP, TG             512, 32          (prefill length; decoded tokens)
#   REPS               3                (llama-bench repetitions)
#   CHECK              1                (0: skip the agreement check)
#   PYTHON             a python3 with numpy (python3, else /usr/bin/python3)
# On a shared machine run it under `nice -n 19`: both engines then see the same load.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
: "${LLAMA_CPP_DIR:?set LLAMA_CPP_DIR to a llama.cpp checkout with the deepseek4 arch}"
LLAMA_BENCH=${LLAMA_BENCH:-$LLAMA_CPP_DIR/build/bin/llama-bench}
LLAMA_COMPLETION=${LLAMA_COMPLETION:-$(dirname "$LLAMA_BENCH")/llama-completion}
LLAMA_DEBUG=${LLAMA_DEBUG:-$(dirname "$LLAMA_BENCH")/llama-debug}
DSV4=${DSV4:-$root/build/dsv4}
WORK=${WORK:-/tmp/dsv4-peer}
THREADS=${THREADS:-2}
PP=${PP:-512}
TG=${TG:-32}
REPS=${REPS:-3}
CHECK=${CHECK:-1}

die() { echo "llama_cpp.sh: $*" >&2; exit 1; }
[[ -f $LLAMA_CPP_DIR/src/models/deepseek4.cpp ]] || die "$LLAMA_CPP_DIR has no src/models/deepseek4.cpp (no deepseek4 arch)"
[[ -d $LLAMA_CPP_DIR/gguf-py/gguf ]] || die "$LLAMA_CPP_DIR/gguf-py missing"
[[ -x $LLAMA_BENCH ]] || die "no llama-bench at $LLAMA_BENCH: build llama.cpp (CPU) first, or set LLAMA_BENCH"
[[ -x $DSV4 ]] || die "no dsv4 binary at $DSV4 (scripts/build.sh), or set DSV4"
if [[ -z ${PYTHON:-} ]]; then
  for p in python3 /usr/bin/python3; do
    if "$p" -c 'import numpy' 2>/dev/null; then PYTHON=$p; break; fi
  done
  [[ -n ${PYTHON:-} ]] || die "no python3 with numpy (Debian: apt-get install python3-numpy)"
fi
mkdir -p "$WORK"
ckpt=$WORK/flash-1layer-v8k
model=$WORK/flash-1layer-v8k.gguf

# ---- machine -------------------------------------------------------------------------------------
cpu=$(lscpu | sed -n 's/^Model name: *//p' | head -1)
avx512=$( (grep -o -w 'avx512[a-z_0-9]*' /proc/cpuinfo || true) | sort -u | tr '\n' ' ')
llama_rev=$(git -C "$LLAMA_CPP_DIR" rev-parse --short=9 HEAD 2>/dev/null || echo '?')
dsv4_rev=${DSV4_REV:-}
if [[ -z $dsv4_rev && $DSV4 == "$root/build/dsv4" ]]; then
  dsv4_rev="repo HEAD $(git -C "$root" rev-parse --short=9 HEAD 2>/dev/null || echo '?')"
fi
echo "machine: $cpu, $(nproc) CPUs, avx512: ${avx512:-none}, load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "dsv4 ${dsv4_rev:-(commit unknown: set DSV4_REV)} ($DSV4); llama.cpp $llama_rev ($LLAMA_BENCH); $THREADS threads; $(date -u +%FT%TZ)"

# ---- weights ------------------------------------------------------------------------------------
if [[ ! -f $ckpt/config.json ]]; then
  rm -rf "$ckpt"
  "$DSV4" tiny --out "$ckpt" --preset flash --layers 1 --vocab 8192 --seed 0
fi
if [[ ! -f $model || $model -ot $ckpt/config.json ]]; then
  PYTHONPATH=$LLAMA_CPP_DIR/gguf-py "$PYTHON" "$here/write_gguf.py" "$ckpt" "$model" | tee "$WORK/write_gguf.log"
elif [[ -f $WORK/write_gguf.log ]]; then
  sed 's/^/(reused) /' "$WORK/write_gguf.log"
fi

# ---- dsv4 ---------------------------------------------------------------------------------------
echo "== dsv4 bench --contexts $PP --gen $TG"
OMP_NUM_THREADS=$THREADS "$DSV4" bench --model "$ckpt" --contexts "$PP" --gen "$TG" --csv "$WORK/dsv4.csv" |
  tee "$WORK/dsv4.log"

# ---- llama.cpp ----------------------------------------------------------------------------------
echo "== llama-bench -p $PP -n $TG -t $THREADS, and -p 0 -n $TG -d $PP"
"$LLAMA_BENCH" -m "$model" -p "$PP" -n "$TG" -t "$THREADS" -r "$REPS" -o json > "$WORK/llama.json" 2> "$WORK/llama.err" ||
  { tail -20 "$WORK/llama.err"; die "llama-bench failed"; }
"$LLAMA_BENCH" -m "$model" -p 0 -n "$TG" -d "$PP" -t "$THREADS" -r "$REPS" -o json > "$WORK/llama_d.json" 2>> "$WORK/llama.err" ||
  { tail -20 "$WORK/llama.err"; die "llama-bench -d failed"; }

# ---- table --------------------------------------------------------------------------------------
"$PYTHON" - "$WORK/dsv4.csv" "$WORK/llama.json" "$WORK/llama_d.json" "$PP" "$TG" <<'EOF'
import csv, json, sys
dsv4_csv, lj, ljd, pp, tg = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
row = next(csv.DictReader(open(dsv4_csv)))
d_pp, d_tg = float(row["prefill_tok_s"]), float(row["decode_tok_s"])
l = {}
for f in (lj, ljd):
    for r in json.load(open(f)):
        ts = sorted(r.get("samples_ts") or [r["avg_ts"]])
        med = ts[len(ts) // 2] if len(ts) % 2 else 0.5 * (ts[len(ts) // 2 - 1] + ts[len(ts) // 2])
        l[(r["n_prompt"], r["n_gen"], r.get("n_depth", 0))] = (med, ts[0], ts[-1])
# llama-bench's repetitions: the median (a first repetition can be an outlier), and the range
l_pp, l_tg0, l_tg = l[(pp, 0, 0)], l[(0, tg, 0)], l[(0, tg, pp)]
f = lambda v, p: f"{v[0]:.{p}f} ({v[1]:.{p}f}-{v[2]:.{p}f})"
print()
print(f"| test | dsv4 tok/s | llama.cpp tok/s, median (range) | dsv4 / llama.cpp |")
print(f"|---|---:|---:|---:|")
print(f"| prefill {pp} (pp{pp}) | {d_pp:.1f} | {f(l_pp, 1)} | {d_pp / l_pp[0]:.2f} |")
print(f"| decode {tg} at context {pp} (tg{tg} @ d{pp}) | {d_tg:.2f} | {f(l_tg, 2)} | {d_tg / l_tg[0]:.2f} |")
print(f"| decode {tg} at context 0 (llama-bench tg{tg}; dsv4 row is @ {pp}) | {d_tg:.2f} | {f(l_tg0, 2)} | {d_tg / l_tg0[0]:.2f} |")
EOF

# ---- agreement (rough) --------------------------------------------------------------------------
# Last-position logits of one prompt (llama-debug --save-logits vs dsv4 logits), and the greedy
# continuation of it (llama-completion vs dsv4 run). The prompt's ids are all < 8192 with the real
# tokenizer, so both engines see the same tokens (checked).
if [[ $CHECK == 1 ]]; then
  prompt="The man said that he would go to the city and the school of the people"
  n=16
  echo
  echo "== agreement on \"$prompt\""
  ids=$("$DSV4" tokenize --model "$ckpt" --text "$prompt" | tail -1)
  echo "[0,${ids#[}" > "$WORK/check_ids.json"
  OMP_NUM_THREADS=$THREADS "$DSV4" logits --model "$ckpt" --tokens "$WORK/check_ids.json" --out "$WORK/check_dsv4.bin" |
    tail -1
  if [[ -x $LLAMA_DEBUG ]]; then
    rm -rf "$WORK/check_llama"
    "$LLAMA_DEBUG" -m "$model" -p "$prompt" -t "$THREADS" -c 256 --save-logits --logits-output-dir "$WORK/check_llama" \
      > "$WORK/check_llama.log" 2>&1 || { tail -5 "$WORK/check_llama.log"; die "llama-debug failed"; }
    stem=$(basename "$model" .gguf)
    "$PYTHON" - "$WORK/check_ids.json" "$WORK/check_dsv4.bin" "$WORK/check_llama/llamacpp-$stem.bin" \
      "$WORK/check_llama/llamacpp-$stem-tokens.bin" <<'PY'
import json, sys
import numpy as np
ids = json.load(open(sys.argv[1]))
d = np.fromfile(sys.argv[2], dtype=np.float32).reshape(len(ids), -1)[-1].astype(np.float64)
l = np.fromfile(sys.argv[3], dtype=np.float32).astype(np.float64)
lt = np.fromfile(sys.argv[4], dtype=np.int32).tolist()
print(f"prompt ids identical in both engines: {lt == ids} ({len(ids)} tokens incl. BOS)")
dd = d - l
top = lambda x, k: set(np.argsort(-x)[:k].tolist())
print(f"last-position logits: max |dsv4 - llama.cpp| {np.abs(dd).max():.4f} (max |logit| {np.abs(d).max():.3f}, "
      f"logit std {d.std():.3f}), relative RMS {np.sqrt((dd ** 2).sum() / (d ** 2).sum()):.2e}, "
      f"correlation {np.corrcoef(d, l)[0, 1]:.6f}")
print(f"argmax dsv4 {int(d.argmax())} / llama.cpp {int(l.argmax())}; top-10 overlap {len(top(d, 10) & top(l, 10))}/10")
PY
  else
    echo "(logits check skipped: no llama-debug at $LLAMA_DEBUG)"
  fi
  if [[ -x $LLAMA_COMPLETION ]]; then
    d_out=$(OMP_NUM_THREADS=$THREADS "$DSV4" run --model "$ckpt" -p "$prompt" -n "$n" --temperature 0 2>/dev/null)
    l_out=$("$LLAMA_COMPLETION" -m "$model" -p "$prompt" -n "$n" --temp 0 --top-k 1 -t "$THREADS" -no-cnv \
      --no-display-prompt -c 256 2>/dev/null)
    "$PYTHON" - "$d_out" "$l_out" <<'PY'
import sys
a, b = (s.encode("utf-8", "surrogateescape") for s in sys.argv[1:3])
k = 0
while k < min(len(a), len(b)) and a[k] == b[k]:
    k += 1
print(f"greedy continuation ({len(a)} / {len(b)} bytes): identical for the first {k} bytes")
print(f"  dsv4:      {a!r}")
print(f"  llama.cpp: {b!r}")
PY
  else
    echo "(greedy check skipped: no llama-completion at $LLAMA_COMPLETION)"
  fi
fi
