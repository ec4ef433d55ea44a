#!/usr/bin/env bash
# Agent loss -> its tasks running elsewhere. A real `berth server`, N-K
# simulated agents in one process and K in another; jobs totalling T tasks,
# spread evenly (a per-job host limit) so the K agents hold their share;
# then kill -9 of the K-agent process.
#
# Prints progress to stderr and one final line:
#   detect_s=… recovered_s=…
# - detect_s: kill -> all K nodes DOWN in GET /v1/nodes;
# - recovered_s: kill -> every one of the T tasks RUNNING again (GET /v1/jobs).
# Target (docs/targets.md): <= 5 s with default settings (down_after 3 s).
# With --poll-clients C (default 1; 0 for none), C clients call
# `berth node list --json`, `job list --json` and `job status` in a loop
# meanwhile (bench/poller.py), and a second line gives their figures and the
# server's DOWN count: poll_reads=… poll_node_list_p50_ms=… down_events=…
#
# Usage: bench/recovery.sh [--agents N] [--tasks T] [--kill K] [--timeout SECONDS]
#                          [--poll-clients C]
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
. "$top/bench/lib.sh"
BERTH=${BERTH_BIN:-$top/build/berth}
agents=100 tasks=1000 kill=10 timeout=600 poll_clients=1
while [ $# -gt 0 ]; do
	case $1 in
	--agents) agents=$2; shift 2 ;;
	--tasks) tasks=$2; shift 2 ;;
	--kill) kill=$2; shift 2 ;;
	--timeout) timeout=$2; shift 2 ;;
	--poll-clients) poll_clients=$2; shift 2 ;;
	-h|--help) sed -n '2,20p' "$0"; exit 0 ;;
	*) echo "recovery.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
	esac
done
[ -x "$BERTH" ] || { echo "recovery.sh: build first (make): no $BERTH" >&2; exit 2; }
if [ "$kill" -le 0 ] || [ "$kill" -ge "$agents" ]; then
	echo "recovery.sh: --kill must be between 1 and --agents - 1" >&2
	exit 2
fi

bench_init recovery
bench_server -q
echo "recovery: server pid $server_pid; $((agents - kill)) + $kill simulated agents" >&2
poll_pid=
if [ "$poll_clients" -gt 0 ]; then
	python3 "$top/bench/poller.py" --berth "$BERTH" --addr "$BERTH_ADDR" \
		--clients "$poll_clients" --prefix poll_ >"$data/poll.out" 2>"$data/poll.err" &
	poll_pid=$!
	bench_track "$poll_pid" "$data/poll.err"
fi
bench_sim keep $((agents - kill)) -q
bench_sim victim "$kill" -q
victim_pid=$sim_pid
disown "$victim_pid" # its kill -9 is the point: no "Killed" job notice
bench_wait_nodes "$agents" "$timeout"

set +e
python3 - "$port" "$server_pid" "$victim_pid" "$agents" "$tasks" "$kill" "$timeout" <<'EOF'
import math, os, sys, threading, time

port, server_pid, victim_pid, agents, tasks, kill, timeout = (int(x) for x in sys.argv[1:])
deadline = time.time() + timeout

def log(msg):
    print("recovery: " + msg, file=sys.stderr, flush=True)

sys.path.insert(0, os.environ["BENCH_PY"])
from benchapi import call, conn

def check_time(what):
    if time.time() > deadline:
        sys.exit("recovery: timed out " + what)

c = conn()

# Jobs of up to 1000 instances; a host limit spreads each one over the nodes
# evenly, with room left to move the victims' share to the survivors.
per_job = min(tasks, 1000)
sizes = [per_job] * (tasks // per_job) + ([tasks % per_job] if tasks % per_job else [])
limit = max(1, math.ceil(per_job / (agents - kill)))
keys = ["rec/prod/j%d" % k for k in range(len(sizes))]

errors = []

def submit(idx):
    cc = conn()
    for k in idx:
        try:
            submit_one(cc, k)
        except Exception as e:  # noqa: BLE001 - reported by the main thread
            errors.append("%s: %s" % (keys[k], e))
            return

def submit_one(cc, k):
    call(cc, "POST", "/v1/jobs", {
        "job": keys[k], "instances": sizes[k],
        "task": {"command": ["/bin/true"],
                 "resources": {"cpu": 0.01, "memory": "4MiB"},
                 "constraints": {"host": "limit:%d" % limit}}})

threads = [threading.Thread(target=submit, args=(range(i, len(sizes), 8),), daemon=True)
           for i in range(8)]
for t in threads:
    t.start()
for t in threads:
    t.join()
if errors:
    sys.exit("recovery: submit failed: " + errors[0])

def running():
    return sum(j.get("states", {}).get("RUNNING", 0) for j in call(c, "GET", "/v1/jobs"))

while running() < tasks:
    check_time("waiting for %d tasks to run" % tasks)
    time.sleep(0.1)
nodes = call(c, "GET", "/v1/nodes")
held = sum(n["resources"].get("tasks", 0) for n in nodes if n["name"].startswith("victim-"))
log("%d tasks RUNNING, %d of them on the %d agents about to die" % (tasks, held, kill))
time.sleep(1)

t_kill = time.time()
os.kill(victim_pid, 9)
detect = recovered = None
poll = 0.02 if agents <= 2000 else 0.1
while recovered is None:
    now = time.time()
    if detect is None:
        nodes = call(c, "GET", "/v1/nodes")
        if sum(1 for n in nodes if n["name"].startswith("victim-") and n["state"] == "DOWN") >= kill:
            detect = now - t_kill
            log("all %d killed nodes DOWN after %.2fs" % (kill, detect))
    else:
        if running() >= tasks:
            recovered = now - t_kill
    check_time("waiting for recovery")
    time.sleep(poll)
print("detect_s=%.2f recovered_s=%.2f" % (detect, recovered), flush=True)
EOF
rc=$?
set -e
# The killed process is gone: never signal its pid again.
bench_untrack "$victim_pid"
if [ -n "$poll_pid" ]; then
	kill -TERM "$poll_pid" 2>/dev/null || true
	wait "$poll_pid" 2>/dev/null || true
	poll_pid=
	cat "$data/poll.err" >&2
	echo "$(cat "$data/poll.out") down_events=$(grep -c 'is down' "$data/server.log" || true)"
fi
exit $rc
