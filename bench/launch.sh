#!/usr/bin/env bash
# Launch latency of exec tasks: API accept -> RUNNING, as the server records
# it (the task's INIT and RUNNING transition times), for 100 tasks:
#   - sequential: 100 single-instance jobs, each submitted with
#     `berth job run` (which returns once the task runs);
#   - burst: one job of 100 instances submitted at once.
# Prints: sequential_p50_ms=… sequential_p99_ms=… burst_p50_ms=… burst_p99_ms=…
# Target (DESIGN.md): p50 <= 20 ms, p99 <= 100 ms. Needs root.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
BERTH=${BERTH_BIN:-$top/build/berth}
N=${N:-100}
data=$(mktemp -d /tmp/berth-bench.XXXXXX)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
export BERTH_ADDR=http://127.0.0.1:$port
"$BERTH" up -q --data-dir "$data" --addr 127.0.0.1:$port --cgroup-parent berth-bench --cpu 64 >"$data.log" 2>&1 &
up=$!
trap 'kill -TERM $up 2>/dev/null; wait $up 2>/dev/null; rm -rf "$data" "$data.log"' EXIT
for _ in $(seq 1 100); do "$BERTH" node list --json 2>/dev/null | grep -q ACTIVE && break; sleep 0.05; done

lat() { # KEY... -> latencies in ms, one per task
	for k in "$@"; do "$BERTH" job status "$k" --json; done | python3 -c '
import json, sys
dec = json.JSONDecoder(); s = sys.stdin.read(); i = 0
while i < len(s):
    while i < len(s) and s[i].isspace(): i += 1
    if i >= len(s): break
    d, i = dec.raw_decode(s, i)
    for t in d["tasks"]:
        ev = {e["state"]: e["time_ms"] for e in t["events"]}
        if "RUNNING" in ev: print(ev["RUNNING"] - ev["INIT"])
'
}
stats() {
	python3 -c '
import sys
v = sorted(float(x) for x in sys.stdin.read().split())
if not v: print("n=0"); sys.exit(0)
p = lambda q: v[min(len(v) - 1, int(q * len(v)))]
print("n=%d p50_ms=%.1f p99_ms=%.1f max_ms=%.1f" % (len(v), p(0.50), p(0.99), v[-1]))'
}

keys=()
for i in $(seq 1 "$N"); do
	f=$(mktemp /tmp/berth-bench-spec.XXXXXX.yaml)
	printf 'job: bench/test/seq%d\ntask:\n  command: ["sleep", "600"]\n  resources: {cpu: 0.1, memory: 8MiB}\n' "$i" >"$f"
	"$BERTH" job run "$f" >/dev/null
	rm -f "$f"
	keys+=("bench/test/seq$i")
done
seq_stats=$(lat "${keys[@]}" | stats)
for k in "${keys[@]}"; do "$BERTH" job kill "$k" >/dev/null; done

f=$(mktemp /tmp/berth-bench-spec.XXXXXX.yaml)
printf 'job: bench/test/burst\ninstances: %d\ntask:\n  command: ["sleep", "600"]\n  resources: {cpu: 0.1, memory: 8MiB}\n' "$N" >"$f"
"$BERTH" job run "$f" >/dev/null
rm -f "$f"
burst_stats=$(lat bench/test/burst | stats)
"$BERTH" job kill bench/test/burst >/dev/null

echo "sequential: $seq_stats"
echo "burst:      $burst_stats"
sp50=$(echo "$seq_stats" | sed -E 's/.*p50_ms=([0-9.]+).*/\1/')
sp99=$(echo "$seq_stats" | sed -E 's/.*p99_ms=([0-9.]+).*/\1/')
bp50=$(echo "$burst_stats" | sed -E 's/.*p50_ms=([0-9.]+).*/\1/')
bp99=$(echo "$burst_stats" | sed -E 's/.*p99_ms=([0-9.]+).*/\1/')
echo "sequential_p50_ms=$sp50 sequential_p99_ms=$sp99 burst_p50_ms=$bp50 burst_p99_ms=$bp99"
