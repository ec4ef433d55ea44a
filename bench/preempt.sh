#!/usr/bin/env bash
# Preemption at scale: a real `berth server` and N simulated agents
# (`berth agent --simulate N --cpu 1`), filled by preemptible devel work
# (T tasks of 1/(T/N) cpu in 10 jobs), then P production tasks of the same
# size (one job) that fit only by preempting.
#
# Prints progress to stderr and one final line:
#   prod_tasks=… place_s=… running_s=… victims=… devel_pending=… preempt_per_s=…
# - place_s: from the production submit until every production task is
#   ASSIGNED or later (placed on the room its victims freed);
# - running_s: until every production task is RUNNING;
# - victims: devel tasks preempted (their replacements, which say so);
# - devel_pending: devel tasks waiting for room at the end (victims' replacements).
#
# --down-after D is passed to the server (default: its own, 3s): on a loaded
# machine the simulated agents miss heartbeats and flap, which measures
# liveness, not preemption. --max-victims V is the server's
# --preempt-max-victims (default: its own, 1000 per scheduling round).
#
# Usage: bench/preempt.sh [--agents N] [--fill T] [--prod P] [--timeout SECONDS]
#                         [--down-after D] [--max-victims V]
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
. "$top/bench/lib.sh"
BERTH=${BERTH_BIN:-$top/build/berth}
agents=1000 fill=10000 prod=1000 timeout=600 down_after='' max_victims=''
while [ $# -gt 0 ]; do
	case $1 in
	--agents) agents=$2; shift 2 ;;
	--fill) fill=$2; shift 2 ;;
	--prod) prod=$2; shift 2 ;;
	--timeout) timeout=$2; shift 2 ;;
	--down-after) down_after=$2; shift 2 ;;
	--max-victims) max_victims=$2; shift 2 ;;
	-h|--help) sed -n '2,22p' "$0"; exit 0 ;;
	*) echo "preempt.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
	esac
done
[ -x "$BERTH" ] || { echo "preempt.sh: build first (make): no $BERTH" >&2; exit 2; }
[ $((fill % 10)) -eq 0 ] && [ $((fill % agents)) -eq 0 ] ||
	{ echo "preempt.sh: --fill must be a multiple of 10 and of --agents" >&2; exit 2; }

bench_init preempt
bench_server -q ${down_after:+--down-after "$down_after"} \
	${max_victims:+--preempt-max-victims "$max_victims"}
echo "preempt: server pid $server_pid; starting $agents simulated agents of 1 cpu" >&2
bench_sim sim "$agents" --cpu 1
bench_wait_nodes "$agents" "$timeout"

export PREEMPT_RESULT=$data/result
python3 - "$port" "$server_pid" "$sim_pid" "$agents" "$fill" "$prod" "$timeout" <<'EOF'
import os, sys, time

port, server_pid, sim_pid, agents, fill, prod, timeout = (int(x) for x in sys.argv[1:])
deadline = time.time() + timeout
per_node = fill // agents
cpu = round(1.0 / per_node, 6)
PLACED = {"ASSIGNED", "STARTING", "RUNNING"}

def log(msg):
    print("preempt: " + msg, file=sys.stderr, flush=True)

sys.path.insert(0, os.environ["BENCH_PY"])
from benchapi import alive, call, conn

def check():
    if not alive(sim_pid) or not alive(server_pid):
        sys.exit("preempt: the server or the simulator died (see their logs)")
    if time.time() > deadline:
        sys.exit("preempt: timed out")

def states(c, prefix):
    placed = running = 0
    for j in call(c, "GET", "/v1/jobs"):
        if not j["job"].startswith(prefix):
            continue
        st = j.get("states", {})
        running += st.get("RUNNING", 0)
        placed += sum(v for s, v in st.items() if s in PLACED)
    return placed, running

c = conn()

# 1. Fill every node with preemptible work (10 devel jobs, priority 0).
t0 = time.time()
for k in range(10):
    call(c, "POST", "/v1/jobs", {
        "job": "bench/devel/fill%d" % k, "instances": fill // 10,
        "task": {"command": ["/bin/true"], "resources": {"cpu": cpu, "memory": "4MiB"}}})
last = 0
while True:
    check()
    placed, running = states(c, "bench/devel/")
    if running >= fill:
        break
    if time.time() - last > 5:
        log("%.1fs: %d placed, %d running of %d devel tasks" % (
            time.time() - t0, placed, running, fill))
        last = time.time()
    time.sleep(0.2)
log("%d devel tasks RUNNING after %.1fs (%d per node, cpu %g each)" % (
    fill, time.time() - t0, per_node, cpu))
time.sleep(1)

# 2. Production work of the same size: each task fits only by preempting.
t1 = time.time()
call(c, "POST", "/v1/jobs", {
    "job": "bench/prod/web", "instances": prod,
    "task": {"command": ["/bin/true"], "resources": {"cpu": cpu, "memory": "4MiB"}}})
t_placed = None
last = 0
while True:
    check()
    placed, running = states(c, "bench/prod/")
    now = time.time()
    if t_placed is None and placed >= prod:
        t_placed = now
        log("all %d production tasks placed after %.2fs" % (prod, t_placed - t1))
    if running >= prod:
        break
    if now - last > 1:
        log("%.1fs: %d placed, %d running of %d" % (now - t1, placed, running, prod))
        last = now
    time.sleep(0.05)
t_run = time.time()
log("all %d production tasks RUNNING after %.2fs" % (prod, t_run - t1))

# 3. Victims: the devel replacements that say they were preempted.
time.sleep(1)
victims = pending = 0
for k in range(10):
    st = call(c, "GET", "/v1/jobs/bench/devel/fill%d" % k)
    for t in st["tasks"]:
        ev = t.get("events") or []
        if ev and ev[0]["message"].startswith("preempted by bench/prod/web/"):
            victims += 1
        if t["state"] == "PENDING":
            pending += 1
with open(os.environ["PREEMPT_RESULT"], "w") as f:
    f.write("prod_tasks=%d place_s=%.2f running_s=%.2f victims=%d devel_pending=%d "
            "preempt_per_s=%.0f\n" % (prod, t_placed - t1, t_run - t1, victims, pending,
                                       victims / max(t_placed - t1, 1e-3)))
EOF
cat "$PREEMPT_RESULT"
