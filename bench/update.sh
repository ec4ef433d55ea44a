#!/usr/bin/env bash
# Rolling update of a service: N instances (default 100) of httpd-tiny, an
# exec task that exits on SIGTERM, move from version 1 to version 2 with
# batch_size B (default 10), watch W (default 0s), stop_first, no health
# check, on `berth up --cpu 64`.
#
# Prints progress to stderr and one final line:
#   update_s=… policy_wait_s=… overhead_s=… run_s=…
# - update_s: the update's own start -> end (its started_ms and finished_ms);
# - policy_wait_s: what the policy itself demands: watch × batches;
# - overhead_s: update_s - policy_wait_s, the time berth adds (stopping,
#   placing, starting, noticing);
# - run_s: wall clock of `berth job run` (submit -> the CLI saw the end; it
#   polls every 100 ms).
# Target (docs/targets.md): <= 3 s for 100 instances, batch 10, no watch (Docker
# Swarm: ~49 s on the same machine). Needs root.
#
# Usage: bench/update.sh [--instances N] [--batch B] [--watch W]
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
. "$top/bench/lib.sh"
BERTH=${BERTH_BIN:-$top/build/berth}
HTTPD=${BERTH_TOOLS:-$top/build/tests}/httpd-tiny
n=100 batch=10 watch=0s
while [ $# -gt 0 ]; do
	case $1 in
	--instances) n=$2; shift 2 ;;
	--batch) batch=$2; shift 2 ;;
	--watch) watch=$2; shift 2 ;;
	-h|--help) sed -n '2,18p' "$0"; exit 0 ;;
	*) echo "update.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
	esac
done
[ -x "$BERTH" ] && [ -x "$HTTPD" ] || { echo "update.sh: build first (make)" >&2; exit 2; }
[ "$(id -u)" = 0 ] || { echo "update.sh: needs root (namespaces and cgroups)" >&2; exit 2; }

data=$(mktemp -d /tmp/berth-bench-update.XXXXXX)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
# Task ports below the kernel's ephemeral range (32768-60999 here): a task
# binding a port an outgoing connection holds fails with EADDRINUSE.
"$BERTH" up -q --data-dir "$data" --addr 127.0.0.1:$port --cgroup-parent berth-bench-update \
	--cpu 64 --port-range 24000-24999 $(server_tls_flags) >"$data.log" 2>&1 &
up=$!
cleanup() {
	kill -TERM "$up" 2>/dev/null || true
	for _ in $(seq 1 200); do kill -0 "$up" 2>/dev/null || break; sleep 0.05; done
	kill -KILL "$up" 2>/dev/null || true
	wait "$up" 2>/dev/null || true
	rm -rf "$data" "$data.log" "$data".v*.yaml
}
trap cleanup EXIT
trap 'exit 130' INT TERM
bench_connect "$data" "$port" || { echo "update: berth up did not start" >&2; exit 1; }
for _ in $(seq 1 100); do "$BERTH" node list --json 2>/dev/null | grep -q ACTIVE && break; sleep 0.05; done

key=bench/test/update
spec() { # VERSION -> spec file
	local f=$data.v$1.yaml
	cat >"$f" <<EOF
job: $key
instances: $n
task:
  command: ["$HTTPD", "{{ports.http}}", "v$1"]
  resources: {cpu: 0.1, memory: 8MiB, ports: [http]}
  stop_grace: 5s
update: {batch_size: $batch, watch: $watch, order: stop_first}
EOF
	echo "$f"
}

echo "update: starting $n instances of version 1" >&2
"$BERTH" job run --timeout 120s "$(spec 1)" >/dev/null
echo "update: $n instances from version 1 to 2, batch $batch, watch $watch" >&2
t0=$(date +%s.%N)
"$BERTH" job run --timeout 300s "$(spec 2)" >"$data/run.out" || {
	cat "$data/run.out" >&2
	echo "update.sh: the update did not roll forward" >&2
	exit 1
}
t1=$(date +%s.%N)
tail -1 "$data/run.out" >&2

"$BERTH" update status "$key" --json >"$data/update.json"
"$BERTH" job status "$key" --json >"$data/status.json"
python3 - "$data/update.json" "$data/status.json" "$watch" "$batch" "$n" "$t0" "$t1" <<'EOF'
import json, re, sys
u = json.load(open(sys.argv[1]))
st = json.load(open(sys.argv[2]))
watch, batch, n = sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
t0, t1 = float(sys.argv[6]), float(sys.argv[7])
assert u["state"] == "ROLLED_FORWARD", u["state"]
bad = [t for t in st["tasks"] if t["version"] != 2 or t["state"] != "RUNNING"]
assert len(st["tasks"]) == n and not bad, bad[:3]
m = re.fullmatch(r"([0-9.]+)(ms|s|m|h)", watch)
watch_s = float(m.group(1)) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[m.group(2)]
batches = -(-n // batch)
update_s = (u["finished_ms"] - u["started_ms"]) / 1000.0
policy = watch_s * batches
print("update_s=%.2f policy_wait_s=%.2f overhead_s=%.2f run_s=%.2f"
      % (update_s, policy, update_s - policy, t1 - t0))
EOF
