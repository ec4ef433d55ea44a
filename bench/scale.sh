#!/usr/bin/env bash
# Scheduling at scale: a real `berth server` and N simulated agents
# (`berth agent --simulate N`, one process, one connection and heartbeat per
# agent), J jobs of I instances submitted concurrently over the API.
#
# Prints progress to stderr and one final line:
#   placements_per_s=… p99_job_ms=… server_rss_mib=… bytes_per_task=…
# - placements_per_s: tasks / seconds from the first submit until every task
#   is ASSIGNED or later and that is durable (a write acknowledged after it);
# - p99_job_ms: per job, its submit until all its instances are RUNNING
#   (observed by polling GET /v1/jobs, so within one poll of the truth; the
#   poll interval grows with the cost of the list, 50 ms for small runs);
# - server_rss_mib: the server's VmRSS once everything runs and settled;
# - bytes_per_task: (RSS then - RSS before the first submit) / tasks.
# Targets (docs/targets.md): >= 50,000 placements/s with 1M tasks on 10,000 agents;
# <= 1 KiB per task. The jobs are production (tier preferred) and their role
# has a quota with room for them all, so admission does the quota arithmetic.
#
# With --poll-clients C (default 1; 0 for none), C clients call
# `berth node list --json`, `job list --json` and `job status` in a loop
# meanwhile (bench/poller.py), and a second line gives their figures and the
# server's DOWN count: poll_reads=… poll_node_list_p50_ms=… down_events=…
#
# Usage: bench/scale.sh [--agents N] [--jobs J] [--instances I]
#                       [--submitters S] [--sim-threads T] [--timeout SECONDS]
#                       [--poll-clients C]
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
. "$top/bench/lib.sh"
BERTH=${BERTH_BIN:-$top/build/berth}
agents=100 jobs=100 instances=10 submitters=16 sim_threads=1 timeout=600 poll_clients=1
while [ $# -gt 0 ]; do
	case $1 in
	--agents) agents=$2; shift 2 ;;
	--jobs) jobs=$2; shift 2 ;;
	--instances) instances=$2; shift 2 ;;
	--submitters) submitters=$2; shift 2 ;;
	--sim-threads) sim_threads=$2; shift 2 ;;
	--timeout) timeout=$2; shift 2 ;;
	--poll-clients) poll_clients=$2; shift 2 ;;
	-h|--help) sed -n '2,25p' "$0"; exit 0 ;;
	*) echo "scale.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
	esac
done
[ -x "$BERTH" ] || { echo "scale.sh: build first (make): no $BERTH" >&2; exit 2; }

bench_init scale
bench_server -q
echo "scale: server pid $server_pid on 127.0.0.1:$port; starting $agents simulated agents" >&2
bench_sim sim "$agents" --sim-racks 20 --sim-threads "$sim_threads"
poll_pid=
if [ "$poll_clients" -gt 0 ]; then
	python3 "$top/bench/poller.py" --berth "$BERTH" --addr "$BERTH_ADDR" \
		--clients "$poll_clients" --prefix poll_ >"$data/poll.out" 2>"$data/poll.err" &
	poll_pid=$!
	bench_track "$poll_pid" "$data/poll.err"
fi
bench_wait_nodes "$agents" "$timeout"

export SCALE_RESULT=$data/result
python3 - "$port" "$server_pid" "$sim_pid" "$agents" "$jobs" "$instances" "$submitters" \
	"$timeout" <<'EOF'
import os, queue, sys, threading, time

port, server_pid, sim_pid, agents, jobs, instances, submitters, timeout = (
    int(x) for x in sys.argv[1:])
tasks = jobs * instances
deadline = time.time() + timeout
PLACED = {"ASSIGNED", "STARTING", "RUNNING"}

def log(msg):
    print("scale: " + msg, file=sys.stderr, flush=True)

sys.path.insert(0, os.environ["BENCH_PY"])
from benchapi import alive, call, conn, metrics

def cpu_s(pid):
    """CPU seconds (user + system) the process used so far."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

def minflt(pid):
    """Minor page faults of the process so far (fresh memory touched)."""
    with open("/proc/%d/stat" % pid) as f:
        return int(f.read().rsplit(")", 1)[1].split()[7])

def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0

# 1. Every agent registered and ACTIVE (bench_wait_nodes). The role has a
# quota (room for every task, 10 % spare): production work is admitted
# through the quota's arithmetic, as it is in a cluster that has quotas.
c = conn()
call(c, "PUT", "/v1/quotas/scale",
     {"cpu": round(tasks * 0.01 * 1.1, 2), "memory": "%dMiB" % (tasks * 4 * 11 // 10),
      "tasks": tasks + tasks // 10})
time.sleep(1)
rss_before = rss_kib(server_pid)
m_before = metrics(c)
cpu_before = (cpu_s(server_pid), cpu_s(sim_pid))
flt_before = minflt(server_pid)

# 2. Submit the jobs concurrently, each submitter on its own keep-alive
# connection; a job is acknowledged once it is durable.
submitted = {}
errors = []
work = queue.Queue()
for k in range(jobs):
    work.put(k)

def submitter():
    c = conn()
    while True:
        try:
            k = work.get_nowait()
        except queue.Empty:
            return
        key = "scale/prod/j%d" % k
        spec = {"job": key, "instances": instances,
                "task": {"command": ["/bin/true"],
                         "resources": {"cpu": 0.01, "memory": "4MiB"}}}
        submitted[key] = time.time()
        try:
            call(c, "POST", "/v1/jobs", spec)
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append("%s: %s" % (key, e))
            c = conn()

threads = [threading.Thread(target=submitter, daemon=True) for _ in range(submitters)]
t_first = time.time()
for t in threads:
    t.start()

# 3. Watch the job list until everything runs.
done = {}
t_placed = None
last = 0
while True:
    now = time.time()
    lst = call(c, "GET", "/v1/jobs")
    poll_cost = time.time() - now
    placed = running = 0
    for j in lst:
        st = j.get("states", {})
        r = st.get("RUNNING", 0)
        running += r
        placed += sum(v for s, v in st.items() if s in PLACED)
        if j["job"] in submitted and j["job"] not in done and r == j["instances"]:
            done[j["job"]] = now
    if t_placed is None and placed >= tasks:
        # A write acknowledged now is durable after every placement before it.
        any_node = call(c, "GET", "/v1/nodes")[0]["name"]
        call(c, "POST", "/v1/nodes/%s/activate" % any_node)
        t_placed = time.time()
        log("all %d tasks placed and committed after %.2fs" % (tasks, t_placed - t_first))
    if running >= tasks and len(done) >= jobs:
        break
    if errors:
        sys.exit("scale: submit failed: " + errors[0])
    if not alive(server_pid) or not alive(sim_pid):
        sys.exit("scale: the server or the simulator died (see their logs)")
    if now > deadline:
        sys.exit("scale: timed out: %d placed, %d running of %d" % (placed, running, tasks))
    if now - last > 1:
        log("%.1fs: %d jobs submitted, %d placed, %d running of %d" % (
            now - t_first, len(submitted), placed, running, tasks))
        last = now
    # The job list costs the server O(jobs): keep polling under ~10% of its time.
    time.sleep(max(0.05, 9 * poll_cost))
t_all = time.time()
for t in threads:
    t.join()
log("all %d tasks RUNNING after %.2fs" % (tasks, t_all - t_first))

# CPU per task while placing and starting (server, simulator): what the
# figure costs, steadier than the rate on a shared machine.
cpu_after = (cpu_s(server_pid), cpu_s(sim_pid))
log("CPU per task until all ran: server %.1f us, simulator %.1f us (%.1f and %.1f s)" % (
    (cpu_after[0] - cpu_before[0]) * 1e6 / tasks, (cpu_after[1] - cpu_before[1]) * 1e6 / tasks,
    cpu_after[0] - cpu_before[0], cpu_after[1] - cpu_before[1]))
log("server page faults per task until all ran: %.1f" % (
    (minflt(server_pid) - flt_before) / tasks))

# Where the commit loop's time went while placing (its store commits, each
# one fsync, and how many records each carried).
m_after = metrics(c)
d = lambda k: m_after.get(k, 0) - m_before.get(k, 0)
ncommits = d("berth_store_commit_seconds_count")
if ncommits:
    log("store commits while placing: %d, mean %.1f ms and %.0f records each, %.1f s in "
        "all (%.0f%% of the run)" % (
            ncommits, 1000 * d("berth_store_commit_seconds_sum") / ncommits,
            d("berth_store_commit_records_sum") / ncommits, d("berth_store_commit_seconds_sum"),
            100 * d("berth_store_commit_seconds_sum") / (t_all - t_first)))

# The quota counted every task (its use is the role's production work).
q = call(c, "GET", "/v1/quotas/scale")
log("quota of role scale: %d tasks and %s cpu in use, limit %d tasks" % (
    q["use"]["tasks"], q["use"]["cpu"], q["limit"]["tasks"]))

# 4. Memory, once the commit queue and the agents' reports settled.
time.sleep(3)
rss_after = rss_kib(server_pid)
lat = sorted((done[k] - submitted[k]) * 1000 for k in done)
p = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))]
log("job latency ms: p50=%.0f p90=%.0f p99=%.0f max=%.0f" % (p(0.5), p(0.9), p(0.99), lat[-1]))
log("server RSS %.1f MiB before submitting, %.1f MiB after; simulator RSS %.1f MiB "
    "(%d agents, %d tasks)" % (rss_before / 1024, rss_after / 1024, rss_kib(sim_pid) / 1024,
                               agents, tasks))
with open(os.environ["SCALE_RESULT"], "w") as f:
    f.write("placements_per_s=%.0f p99_job_ms=%.0f server_rss_mib=%.1f bytes_per_task=%.0f\n" % (
        tasks / (t_placed - t_first), p(0.99), rss_after / 1024,
        (rss_after - rss_before) * 1024 / tasks))
EOF
# What the protocol cost the simulator (it logs its traffic when it stops).
kill -TERM "$sim_pid"
wait "$sim_pid" 2>/dev/null || true
sim_pid=
grep -h 'traffic over' "$data/sim.log" | sed 's/^.*info  /scale: /' >&2 || true
cat "$SCALE_RESULT"
if [ -n "$poll_pid" ]; then
	kill -TERM "$poll_pid" 2>/dev/null || true
	wait "$poll_pid" 2>/dev/null || true
	poll_pid=
	cat "$data/poll.err" >&2
	echo "$(cat "$data/poll.out") down_events=$(grep -c 'is down' "$data/server.log" || true)"
fi
