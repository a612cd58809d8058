#!/usr/bin/env bash
# Expert parallelism across two "hosts" made of Linux network namespaces (issue 15): namespaces A
# and B joined by a veth pair (MTU 9000, jumbo frames as on a cluster network), OpenMPI's TCP
# transport only (no shared memory), mpirun in A launching rank 1's daemon in B through a
# stand-in for ssh (`ip netns exec`). Checks
#   1. logits of the 2-"host" job equal one process byte for byte (prefill and decode);
#   2. the bytes on the wire per decoded / prefilled token (veth counters, the difference of two
#      runs that differ only in the number of tokens) against the exchange's own count and the
#      README formula that `dsv4 bench` prints.
# Needs root and `ip netns` (exit 77 = skip otherwise).
#   netns_test.sh DSV4 MPIRUN MODEL_DIR|tiny [DECODE_TOKENS] [PREFILL_TOKENS]
# `tiny` (what ctest runs): the tiny preset, logits only - at D = 64 the TCP/IP headers are a large
# part of each message, so the traffic check needs a real-width model (hidden_size >= 1024), e.g.
# `dsv4 tiny --preset flash --layers 1 --vocab 8192` (README "Expert parallelism over MPI").
set -uo pipefail
DSV4=$1 MPIRUN=$2 MODEL=$3 GEN=${4:-96} PRE=${5:-256}
[ "$(id -u)" = 0 ] || { echo "netns test: needs root"; exit 77; }
A=dsv4a-$$ B=dsv4b-$$ VA=va$$ VB=vb$$
NET=10.$((($$ / 250) % 250)).$(($$ % 250))
if ! ip netns add "$A" 2>/dev/null; then echo "netns test: ip netns add failed (no CAP_SYS_ADMIN?)"; exit 77; fi
TMP=$(mktemp -d)
cleanup() { ip netns del "$A" 2>/dev/null; ip netns del "$B" 2>/dev/null; rm -rf "$TMP"; }
trap cleanup EXIT
ip netns add "$B"
ip link add "$VA" type veth peer name "$VB"
ip link set "$VA" netns "$A" && ip link set "$VB" netns "$B"
ip -n "$A" addr add "$NET.1/24" dev "$VA" && ip -n "$B" addr add "$NET.2/24" dev "$VB"
for ns in "$A" "$B"; do ip -n "$ns" link set lo up; done
ip -n "$A" link set "$VA" mtu 9000 up && ip -n "$B" link set "$VB" mtu 9000 up
# Reachability without ping (not always installed): bash's /dev/tcp to a closed port must be refused, not time out.
reach=0
for _ in $(seq 50); do
  if ip netns exec "$A" timeout 3 bash -c "exec 3<>/dev/tcp/$NET.2/9 || true" 2>&1 | grep -q "refused"; then reach=1; break; fi
  sleep 0.1
done
[ $reach = 1 ] || { echo "netns test: $NET.2 not reachable from namespace $A"; exit 1; }

# ssh stand-in: `agent HOST COMMAND...` runs COMMAND in the namespace that owns HOST.
cat > "$TMP/agent" <<EOF
#!/bin/sh
host=\$1; shift
case "\$host" in $NET.1) ns=$A ;; $NET.2) ns=$B ;; *) echo "agent: unknown host \$host" >&2; exit 1 ;; esac
exec ip netns exec "\$ns" sh -c "\$*"
EOF
chmod +x "$TMP/agent"
printf '%s slots=1\n%s slots=1\n' "$NET.1" "$NET.2" > "$TMP/hosts"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 DSV4_THREADS=1
MPI=(ip netns exec "$A" "$MPIRUN" --hostfile "$TMP/hosts" -np 2 --map-by node
     --mca plm_rsh_agent "$TMP/agent" --mca btl self,tcp --mca btl_tcp_if_include "$NET.0/24"
     --mca oob_tcp_if_include "$NET.0/24" -x DSV4_THREADS)
fail=0
check() { if eval "$1"; then echo "ok    $2"; else echo "FAIL  $2"; fail=1; fi; }
wire() { echo $(( $(ip netns exec "$B" cat /sys/class/net/$VB/statistics/rx_bytes) + $(ip netns exec "$B" cat /sys/class/net/$VB/statistics/tx_bytes) )); }

if [ "$MODEL" = tiny ]; then MODEL=$TMP/tiny; "$DSV4" tiny --out "$MODEL" > /dev/null || exit 1; fi
python3 -c "import json; json.dump([(i*7919+13)%8000 for i in range(24)], open('$TMP/t.json','w'))"
for mode in prefill decode; do
  "$DSV4" logits --model "$MODEL" --tokens "$TMP/t.json" --out "$TMP/one.bin" --mode $mode > /dev/null 2>&1
  "${MPI[@]}" "$DSV4" logits --model "$MODEL" --tokens "$TMP/t.json" --out "$TMP/two.bin" --mode $mode > "$TMP/log" 2>&1
  check "cmp -s '$TMP/one.bin' '$TMP/two.bin'" "2 namespaces, $mode: logits identical to one process ($(stat -c %s "$TMP/one.bin") bytes)"
  grep -q "rank 1 holds" "$TMP/log" || { cat "$TMP/log"; fail=1; }
done

D=$(python3 -c "import json; print(json.load(open('$MODEL/config.json'))['hidden_size'])")
if [ "$D" -lt 1024 ]; then echo "traffic: skipped (hidden_size $D < 1024)"; exit $fail; fi
# Traffic: two bench runs per kind that differ only in the decoded (prefilled) tokens.
bench() {  # context gen -> prints wire bytes of the run; keeps the output in $TMP/bench.out
  local w0; w0=$(wire)
  "${MPI[@]}" "$DSV4" bench --model "$MODEL" --contexts "$1" --gen "$2" --chunk 128 > "$TMP/bench.out" 2>&1
  echo $(( $(wire) - w0 ))
}
field() { grep "bench: exchange at .* $1:" "$TMP/bench.out" | tail -1; }
w1=$(bench 128 8); w2=$(bench 128 $((8 + GEN)))
line=$(field decode); echo "$line"
app=$(echo "$line" | sed -E 's/.* ([0-9.]+) bytes\/token sent \+ ([0-9.]+) received, formula ([0-9.]+).*/\1 \2 \3/')
read -r s r f <<< "$app"
per=$(( (w2 - w1) / GEN ))
echo "decode: wire $per bytes/token (veth, $GEN tokens), exchange count $(python3 -c "print($s + $r)") , formula $f"
check "python3 -c 'import sys; sys.exit(abs($per - ($s + $r)) > 0.05 * ($s + $r))'" "decode: wire bytes within 5% of the exchange's count"
check "python3 -c 'import sys; sys.exit(abs($per - $f) > 0.05 * $f)'" "decode: wire bytes within 5% of the README formula"
w1=$(bench 128 1); w2=$(bench $((128 + PRE)) 1)
line=$(field prefill); echo "$line"
read -r s r f <<< "$(echo "$line" | sed -E 's/.* ([0-9.]+) bytes\/token sent \+ ([0-9.]+) received, formula ([0-9.]+).*/\1 \2 \3/')"
per=$(( (w2 - w1) / PRE ))
echo "prefill: wire $per bytes/token (veth, $PRE tokens), exchange count $(python3 -c "print($s + $r)"), formula $f"
check "python3 -c 'import sys; sys.exit(abs($per - ($s + $r)) > 0.05 * ($s + $r))'" "prefill: wire bytes within 5% of the exchange's count"
check "python3 -c 'import sys; sys.exit(abs($per - $f) > 0.05 * $f)'" "prefill: wire bytes within 5% of the README formula"
exit $fail
