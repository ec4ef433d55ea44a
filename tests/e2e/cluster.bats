#!/usr/bin/env bats
# A real multi-host cluster: `berth server` and every `berth agent` run as
# separate hosts, each in its own network namespace (tests/e2e/netns.bash
# draws the layout). Tasks are real exec tasks.

load helpers
load netns

# No test may hang the suite.
BATS_TEST_TIMEOUT=${BERTH_CLUSTER_TEST_TIMEOUT:-60}

setup_file() {
	if [ "$(id -u)" = 0 ] && command -v ip >/dev/null; then
		ns_reap_stale
	fi
}

setup() {
	ns_require
	ns_setup
}

teardown() {
	ns_cleanup
}

# cluster K [server flags...]: a server and agents n1..nK, all ACTIVE.
cluster() {
	local k=$1 i
	shift
	ns_start_server "$@"
	for i in $(seq 1 "$k"); do
		ns_add_host "$i"
		ns_start_agent "$i"
	done
	wait_active "$k" 10
}

# write_spec NAME: stdin to $NS_BASE/NAME.yaml, prints the path.
write_spec() {
	cat >"$NS_BASE/$1.yaml"
	echo "$NS_BASE/$1.yaml"
}

# A command line unique to this test run, for counting real processes.
# MARK is the whole command line of the task's program (no shell in between,
# so the pid berth reports is that program's).
marker_cmd() {
	MARK_SECS="3${$}${BATS_TEST_NUMBER}"
	MARK="sleep $MARK_SECS"
}

@test "three agents register with their attributes; host limit:1 spreads a job and says why a 4th instance waits" {
	cluster 3 --down-after 2s
	nodes=$(nodes_json)
	echo "$nodes" | python3 -c '
import json, sys
d = json.load(sys.stdin)
by = {n["name"]: n for n in d}
assert sorted(by) == ["n1", "n2", "n3"], sorted(by)
for k in (1, 2, 3):
    n = by["n%d" % k]
    assert n["state"] == "ACTIVE", n
    assert n["attributes"]["rack"] == "r%d" % k, n
    assert n["attributes"]["host"] == "n%d" % k, n
    assert n["id"] and n["resources"]["cpu"] > 0, n
'
	f=$(write_spec web <<'EOF'
job: alice/prod/web
instances: 3
task:
  command: sleep 300
  resources: {cpu: 0.1, memory: 16MiB}
  constraints: {host: "limit:1"}
EOF
)
	run cli job run "$f"
	echo "$output"
	[ "$status" -eq 0 ]
	[ "$(nrunning alice/prod/web)" -eq 3 ]
	# One instance on each node.
	[ "$(running_tasks alice/prod/web | awk '{print $2}' | sort | tr '\n' ' ')" = "n1 n2 n3 " ]
	# Each task really runs (host pid, alive).
	for pid in $(running_tasks alice/prod/web | awk '{print $4}'); do
		kill -0 "$pid"
	done
	# A 4th instance has nowhere to go.
	sed -i 's/^instances: 3/instances: 4/' "$f"
	run cli job run --detach "$f"
	[ "$status" -eq 0 ]
	wait_for 10 '[ "$(jstatus alice/prod/web | jget "[t[\"state\"] for t in d[\"tasks\"] if t[\"instance\"]==3][0]")" = PENDING ]'
	msg=$(jstatus alice/prod/web | jget '[t["message"] for t in d["tasks"] if t["instance"]==3][0]')
	echo "pending message: $msg"
	[[ "$msg" == *"limit constraint host:limit:1"* ]]
	# ... and it keeps waiting: the other three are untouched.
	sleep 1
	[ "$(jstatus alice/prod/web | jget "[t['state'] for t in d['tasks'] if t['instance']==3][0]")" = PENDING ]
	[ "$(nrunning alice/prod/web)" -eq 3 ]
	run cli job list --json
	echo "$output" | jget 'd[0]["states"]' | grep -q "'PENDING': 1"
}

@test "an agent killed with SIGKILL: its node goes DOWN and its tasks run again elsewhere" {
	cluster 3 --down-after 2s
	f=$(write_spec svc <<'EOF'
job: alice/prod/svc
instances: 2
task:
  command: sleep 300
  resources: {cpu: 0.1, memory: 16MiB}
  constraints: {host: "limit:1"}
EOF
)
	cli job run "$f"
	[ "$(nrunning alice/prod/svc)" -eq 2 ]
	read -r inst victim old_id old_pid < <(running_tasks alice/prod/svc | sed -n 1p)
	k=${victim#n}
	# The one node left for it: neither its own nor the other instance's.
	other=$(running_tasks alice/prod/svc | awk -v i="$inst" '$1!=i {print $2}')
	free=$(printf '%s\n' n1 n2 n3 | grep -vx -e "$victim" -e "$other")
	t0=$(date +%s%3N)
	ns_kill_agent "$k" KILL
	wait_for 8 '[ "$(node_state "$victim")" = DOWN ]'
	down_ms=$(($(date +%s%3N) - t0))
	# Its instance runs again, as a new task, on the one node left for it.
	wait_for 8 '[ "$(inst_where alice/prod/svc "$inst")" = "RUNNING $free" ]'
	elsewhere_ms=$(($(date +%s%3N) - t0))
	echo "# node DOWN after ${down_ms} ms, task RUNNING elsewhere after ${elsewhere_ms} ms (--down-after 2s)" >&3
	[ "$elsewhere_ms" -le 8000 ]
	[ "$(nrunning alice/prod/svc)" -eq 2 ]
	st=$(jstatus_all alice/prod/svc)
	echo "$st" | python3 -c '
import json, sys
d = json.load(sys.stdin)
inst, victim, old_id = int(sys.argv[1]), sys.argv[2], sys.argv[3]
old = [t for t in d["tasks"] if t["id"] == old_id]
assert old, "the lost task is not in --all"
old = old[0]
assert old["state"] == "LOST", old
assert "agent %s missed heartbeats" % victim in old["message"], old["message"]
assert any(e["state"] == "LOST" and "missed heartbeats" in e["message"] for e in old["events"]), old["events"]
new = [t for t in d["tasks"] if t["instance"] == inst and t["state"] == "RUNNING"]
assert len(new) == 1, new
new = new[0]
assert new["id"] != old_id and new["node"] != victim, new
assert new["ancestor"] == old_id, new
' "$inst" "$victim" "$old_id"
	# The dead agent's task outlived it (nobody was there to stop it) ...
	kill -0 "$old_pid"
	# ... until the agent comes back: it reports the task, the server does
	# not want it any more, and the agent kills it.
	ns_start_agent "$k"
	wait_for 10 '[ "$(node_state "$victim")" = ACTIVE ]'
	wait_for 10 '! kill -0 "$old_pid" 2>/dev/null'
	[ "$(nrunning alice/prod/svc)" -eq 2 ]
}

@test "a partitioned agent: its tasks are replaced, and on reconnect the old ones are killed (exactly N live)" {
	cluster 3 --down-after 2s
	marker_cmd
	f=$(write_spec part <<EOF
job: alice/prod/part
instances: 2
task:
  command: ["sleep", "$MARK_SECS"]
  resources: {cpu: 0.1, memory: 16MiB}
  constraints: {host: "limit:1"}
EOF
)
	cli job run "$f"
	[ "$(nrunning alice/prod/part)" -eq 2 ]
	[ "$(nprocs "$MARK")" -eq 2 ]
	# Twice, a random instance's host, cut off for a random time.
	for round in 1 2; do
		read -r inst victim old_id old_pid < <(running_tasks alice/prod/part | sed -n "$((RANDOM % 2 + 1))p")
		k=${victim#n}
		ns=$(ns_name "$k")
		t0=$(date +%s%3N)
		ip -n "$ns" link set eth0 down
		wait_for 8 '[ "$(node_state "$victim")" = DOWN ]'
		wait_for 8 '[ "$(nrunning alice/prod/part)" -eq 2 ] && ! running_tasks alice/prod/part | grep -q " $victim "'
		echo "# replaced elsewhere $(($(date +%s%3N) - t0)) ms after the cut; live processes while cut off: $(nprocs "$MARK")" >&3
		# The old instance still runs on the cut-off host, its agent alive.
		kill -0 "${NS_AGENT_PID[$k]}"
		kill -0 "$old_pid"
		# Stay cut off a random while past the detection time, then heal.
		sleep "0.$((RANDOM % 9 + 1))"
		t1=$(date +%s%3N)
		ip -n "$ns" link set eth0 up
		wait_for 20 '[ "$(node_state "$victim")" = ACTIVE ]'
		wait_for 20 '[ "$(nprocs "$MARK")" -eq 2 ]'
		echo "# healed: ACTIVE and old instance killed $(($(date +%s%3N) - t1)) ms after the link came back" >&3
		! kill -0 "$old_pid" 2>/dev/null || false
		# Settled: exactly one RUNNING task per instance, and they are the live processes.
		sleep 1
		[ "$(nprocs "$MARK")" -eq 2 ]
		st=$(jstatus alice/prod/part)
		echo "$st" | python3 -c '
import json, sys
d = json.load(sys.stdin)
ts = d["tasks"]
assert sorted(t["instance"] for t in ts) == [0, 1], ts
assert all(t["state"] == "RUNNING" for t in ts), ts
'
		want=$(echo "$st" | jget '" ".join(sorted(str(t["pid"]) for t in d["tasks"]))')
		have=$(pgrep -xf "$MARK" | sort | tr '\n' ' ' | sed 's/ $//')
		echo "status pids: $want; live pids: $have"
		[ "$want" = "$have" ]
		jstatus_all alice/prod/part | jget '[t["state"] for t in d["tasks"] if t["id"]=="'"$old_id"'"][0]' | grep -qx LOST
	done
}

@test "node drain moves tasks off one instance at a time; DRAINED gets nothing new; activate takes it back" {
	cluster 3 --down-after 2s
	# Two jobs; their tasks take 0.3 s to stop, so a move is not instant
	# and the sampler below sees every step.
	for name in dr dr2; do
		write_spec "$name" >/dev/null <<EOF
job: alice/prod/$name
instances: 4
task:
  command: ["/bin/sh", "-c", "trap 'sleep 0.3; exit 0' TERM; sleep 300 & wait"]
  resources: {cpu: 0.1, memory: 16MiB}
  stop_grace: 5s
EOF
		cli job run "$NS_BASE/$name.yaml"
		[ "$(nrunning alice/prod/$name)" -eq 4 ]
	done
	# Drain the node with the most instances.
	victim=$( (running_tasks alice/prod/dr; running_tasks alice/prod/dr2) | awk '{print $2}' | sort | uniq -c | sort -rn | awk 'NR==1 {print $2}')
	on_victim=$( (running_tasks alice/prod/dr; running_tasks alice/prod/dr2) | awk -v n="$victim" '$2==n' | wc -l)
	echo "# draining $victim with $on_victim of 8 tasks" >&3
	# Sample both jobs and the node every 20 ms while the drain runs.
	in_ns "$NS_SRV" python3 - "$NS_SERVER_URL" "$victim" alice/prod/dr alice/prod/dr2 \
		>"$NS_BASE/sampler.out" 2>&1 3>&- <<'EOF' &
import json, os, ssl, sys, time, urllib.request
url, node, jobs = sys.argv[1], sys.argv[2], sys.argv[3:]
ctx = ssl.create_default_context(cafile=os.environ["BERTH_CACERT"])
def get(p):
    req = urllib.request.Request(url + p, headers={"Authorization": "Bearer " + os.environ["BERTH_TOKEN"]})
    with urllib.request.urlopen(req, timeout=2, context=ctx) as r:
        return json.load(r)
low, states, end = {j: 99 for j in jobs}, [], time.time() + 30
while time.time() < end:
    try:
        sts = [get("/v1/jobs/" + j) for j in jobs]
        ns = [n["state"] for n in get("/v1/nodes") if n["name"] == node][0]
    except Exception as e:
        print("error", e, flush=True)
        time.sleep(0.02)
        continue
    for j, st in zip(jobs, sts):
        low[j] = min(low[j], sum(1 for t in st["tasks"] if t["state"] == "RUNNING"))
    if not states or states[-1] != ns:
        states.append(ns)
    print("min", min(low.values()), "states", ",".join(states), flush=True)
    if ns == "DRAINED":
        break
    time.sleep(0.02)
EOF
	sampler=$!
	# The drain goes only once the sampler saw the node ACTIVE (it may take
	# a while to start on a busy machine; a fixed sleep made this flaky).
	wait_for 15 'grep -q "states ACTIVE" "$NS_BASE/sampler.out"'
	grep -m1 "^min" "$NS_BASE/sampler.out" | grep -q "states ACTIVE$"
	t0=$(date +%s%3N)
	cli node drain "$victim"
	wait_for 30 '[ "$(node_state "$victim")" = DRAINED ]'
	echo "# DRAINED $(($(date +%s%3N) - t0)) ms after the drain" >&3
	wait "$sampler"
	last=$(tail -1 "$NS_BASE/sampler.out")
	echo "sampler: $last"
	echo "# sampler: $last" >&3
	[[ "$last" == "min "* ]]
	set -- $last
	low=$2 seen=$4
	[ "$low" -ge 3 ]
	[[ "$seen" == ACTIVE,DRAINING,DRAINED ]]
	for j in dr dr2; do
		# Every instance runs, none on the drained node.
		wait_for 10 '[ "$(nrunning alice/prod/$j)" -eq 4 ]'
		! running_tasks alice/prod/$j | grep -q " $victim " || false
		# From the recorded history: each moved instance was down from its
		# DRAINING to its replacement's RUNNING, and no two of those
		# windows of one job overlap.
		jstatus_all alice/prod/$j | python3 -c '
import json, sys
d, victim = json.load(sys.stdin), sys.argv[1]
ts = {t["id"]: t for t in d["tasks"]}
def at(t, state):
    return [e["time_ms"] for e in t["events"] if e["state"] == state][0]
wins = []
for t in d["tasks"]:
    a = ts.get(t.get("ancestor") or "")
    if not a or a["node"] != victim:
        continue
    assert "node %s is draining" % victim in [e["message"] for e in a["events"] if e["state"] == "DRAINING"][0], a["events"]
    wins.append((at(a, "DRAINING"), at(t, "RUNNING"), t["instance"]))
wins.sort()
print("down windows:", wins)
assert wins, "nothing moved"
for x, y in zip(wins, wins[1:]):
    assert y[0] >= x[1], ("two instances down at once", x, y)
' "$victim"
	done
	# A DRAINED node gets no new tasks: 3 instances with host limit:1 on
	# 3 nodes leave one PENDING.
	g=$(write_spec spread <<'EOF'
job: alice/prod/spread
instances: 3
task:
  command: sleep 300
  resources: {cpu: 0.1, memory: 16MiB}
  constraints: {host: "limit:1"}
EOF
)
	cli job run --detach "$g"
	wait_for 10 '[ "$(nrunning alice/prod/spread)" -eq 2 ]'
	sleep 0.5
	[ "$(nrunning alice/prod/spread)" -eq 2 ]
	! running_tasks alice/prod/spread | grep -q " $victim " || false
	[ "$(node_state "$victim")" = DRAINED ]
	# activate: ACTIVE again, and the waiting instance lands there.
	cli node activate "$victim"
	[ "$(node_state "$victim")" = ACTIVE ]
	wait_for 10 '[ "$(nrunning alice/prod/spread)" -eq 3 ]'
	running_tasks alice/prod/spread | grep -q " $victim "
}

@test "tasks outlive their agent: a quick SIGKILL and restart re-adopts them (same ids, same pids)" {
	cluster 2 --down-after 3s
	marker_cmd
	f=$(write_spec keep <<EOF
job: alice/prod/keep
instances: 2
task:
  command: ["sleep", "$MARK_SECS"]
  resources: {cpu: 0.1, memory: 16MiB}
  constraints: {host: "limit:1"}
EOF
)
	cli job run "$f"
	# And one task on n1 that dies while its agent is away.
	g=$(write_spec gone <<'EOF'
job: alice/prod/gone
task:
  command: ["sleep", "301"]
  resources: {cpu: 0.1, memory: 16MiB}
  constraints: {host: "n1"}
EOF
)
	cli job run "$g"
	before=$(running_tasks alice/prod/keep)
	[ "$(echo "$before" | wc -l)" -eq 2 ]
	read -r _ gone_node gone_id gone_pid < <(running_tasks alice/prod/gone)
	[ "$gone_node" = n1 ]
	t0=$SECONDS
	for k in 1 2; do
		ns_kill_agent "$k" KILL
	done
	# Their tasks are still there without them.
	[ "$(nprocs "$MARK")" -eq 2 ]
	kill -KILL "$gone_pid"
	for k in 1 2; do
		ns_start_agent "$k"
	done
	wait_active 2 5
	# The task that died while n1's agent was away is reported and replaced.
	wait_for 10 '[ "$(running_tasks alice/prod/gone | awk "{print \$3}")" != "" ] && [ "$(running_tasks alice/prod/gone | awk "{print \$3}")" != "$gone_id" ]'
	jstatus alice/prod/gone | jget 'd["tasks"][0]["ancestor"]' | grep -qx "$gone_id"
	jstatus_all alice/prod/gone | grep -q "killed by signal 9"
	# Past the detection time since the kill: nothing else was restarted or replaced.
	sleep $((t0 + 4 - SECONDS))
	after=$(running_tasks alice/prod/keep)
	echo "before: $before"
	echo "after:  $after"
	[ "$before" = "$after" ]
	[ "$(nprocs "$MARK")" -eq 2 ]
	for pid in $(echo "$after" | awk '{print $4}'); do kill -0 "$pid"; done
	# No task ended: the job's history has only these two.
	[ "$(jstatus_all alice/prod/keep | jget 'len(d["tasks"])')" -eq 2 ]
	[ "$(nodes_json | jget 'sorted(n["state"] for n in d)')" = "['ACTIVE', 'ACTIVE']" ]
	! grep -q "is down" "$NS_BASE/server.log" || false
	# Again, twice, at random moments: kill -9 at a random time, back after
	# a random absence (inside the detection time).
	for round in 2 3; do
		sleep "0.$((RANDOM % 9 + 1))"
		for k in 1 2; do
			ns_kill_agent "$k" KILL
		done
		sleep "0.$((RANDOM % 9 + 1))"
		for k in 1 2; do
			ns_start_agent "$k"
		done
		wait_active 2 5
		sleep 1
		[ "$(running_tasks alice/prod/keep)" = "$before" ]
		[ "$(nprocs "$MARK")" -eq 2 ]
		[ "$(jstatus_all alice/prod/keep | jget 'len(d["tasks"])')" -eq 2 ]
	done
	! grep -q "is down" "$NS_BASE/server.log" || false
	# The agents did re-adopt: a kill through berth still reaches the tasks.
	cli job kill alice/prod/keep
	wait_for 15 '[ "$(nprocs "$MARK")" -eq 0 ]'
}

@test "an agent restarted after more hosts were wired to the server's bridge registers again at once" {
	# A Linux bridge without an address of its own takes its lowest port's,
	# so wiring in a host could change the server's MAC under an agent that
	# had resolved it: that agent's new connections went to the old MAC and
	# were dropped until its ARP entry aged out (15-45 s; the CI flake of
	# `cluster 3`, where n1 joined, then n2 and n3 were wired in). The
	# ports' MACs are set so that each new one is the lowest.
	ns_start_server --down-after 2s
	ns_add_host 1
	ip -n "$NS_SRV" link set v1 address 02:00:00:00:00:30
	ns_add_host 2
	ip -n "$NS_SRV" link set v2 address 02:00:00:00:00:20
	ns_start_agent 1
	wait_active 1 10
	mac=$(ip -n "$NS_SRV" -br link show br0 | awk '{print $3}')
	# Down and quiet (the server's last packets to it sent), then a host is
	# wired in.
	ns_kill_agent 1 KILL
	wait_for 10 '[ "$(node_state n1)" = DOWN ]'
	sleep 0.5
	ns_add_host 3
	ip -n "$NS_SRV" link set v3 address 02:00:00:00:00:10
	ns_start_agent 1
	wait_active 1 5
	run grep -E "cannot reach" "$NS_BASE/n1.log"
	echo "$output"
	[ "$status" -eq 1 ]
	[ "$(ip -n "$NS_SRV" -br link show br0 | awk '{print $3}')" = "$mac" ]
}
