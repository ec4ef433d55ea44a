# Helpers for multi-host end-to-end tests: every host is a network namespace.
#
# Layout (nothing is added to the host's own network namespace):
#
#   berth-e2e-RUN-srv    bridge br0 10.231.0.1/24; `berth server` listens on
#                        10.231.0.1:7070; every CLI call runs in here (cli).
#   berth-e2e-RUN-nK     eth0 10.231.0.(10+K)/24, the other end of veth vK,
#                        which is a port of br0 in the server's namespace;
#                        `berth agent --name nK --attr rack=rK` runs in here.
#
# RUN is the pid of the bats process plus the test number, so parallel runs
# and leftovers of a killed run never collide. Namespaces share the
# filesystem (data dirs under $NS_BASE) and the cgroup tree (every task goes
# under the cgroup $NS_CGPARENT). ns_cleanup removes all of it.

NS_NET=10.231.0
NS_PORT=7070

ns_require() {
	require_root
	command -v ip >/dev/null || skip "no ip(8)"
	command -v nsenter >/dev/null || skip "no nsenter(1)"
	local probe="berth-e2e-probe-$$"
	ip netns add "$probe" 2>/dev/null || skip "ip netns is unavailable here"
	if ! ip -n "$probe" link add br0 type bridge 2>/dev/null; then
		ip netns del "$probe"
		skip "no bridge support in network namespaces"
	fi
	ip netns del "$probe"
}

# Namespaces whose bats process is gone (a run killed before its teardown).
ns_reap_stale() {
	local ns pid
	for ns in $(ip netns list 2>/dev/null | awk '{print $1}'); do
		[[ "$ns" =~ ^berth-e2e-([0-9]+)-[0-9]+-(srv|n[0-9]+)$ ]] || continue
		pid=${BASH_REMATCH[1]}
		kill -0 "$pid" 2>/dev/null && continue
		ns_kill_ns_procs "$ns"
		ip netns del "$ns" 2>/dev/null || true
	done
}

ns_kill_ns_procs() {
	local p
	for p in $(ip netns pids "$1" 2>/dev/null); do
		kill -KILL "$p" 2>/dev/null || true
	done
}

# ns_setup: the server's namespace and bridge, data dirs, cgroup parent.
ns_setup() {
	NS_RUN="$$-${BATS_TEST_NUMBER:-0}"
	NS_SRV="berth-e2e-$NS_RUN-srv"
	NS_BASE=$(mktemp -d /tmp/berth-e2e-$NS_RUN.XXXXXX)
	NS_CGPARENT="berth-e2e-$NS_RUN"
	NS_AGENTS=""
	declare -gA NS_AGENT_PID=()
	SRV_PID=
	ip netns add "$NS_SRV"
	ip -n "$NS_SRV" link set lo up
	# An address of its own: a Linux bridge without one takes its lowest
	# port's, so wiring in a host could change the server's MAC under the
	# agents that had resolved it, and their new connections were dropped
	# until their ARP entry aged out (15-45 s). Locally administered.
	ip -n "$NS_SRV" link add br0 address 02:00:0a:e7:00:01 type bridge
	ip -n "$NS_SRV" addr add "$NS_NET.1/24" dev br0
	ip -n "$NS_SRV" link set br0 up
	NS_SERVER_URL="https://$NS_NET.1:$NS_PORT"
}

# in_ns NS CMD...: run CMD in network namespace NS only. (`ip netns exec`
# also makes a new mount namespace with a fresh /sys, which hides the
# cgroup filesystems from the agent; a real host has them.) Daemons are
# started with nsenter directly, not through this function, so that $! is
# the daemon's own pid (nsenter execs it; a function would add a subshell).
in_ns() {
	local ns=$1
	shift
	nsenter --net="/run/netns/$ns" -- "$@"
}

ns_name() { echo "berth-e2e-$NS_RUN-n$1"; }

# ns_add_host K: namespace nK wired to the bridge.
ns_add_host() {
	local k=$1 ns
	ns=$(ns_name "$k")
	ip netns add "$ns"
	ip -n "$ns" link set lo up
	ip -n "$NS_SRV" link add "v$k" type veth peer name eth0 netns "$ns"
	ip -n "$NS_SRV" link set "v$k" master br0
	ip -n "$NS_SRV" link set "v$k" up
	ip -n "$ns" addr add "$NS_NET.$((10 + k))/24" dev eth0
	ip -n "$ns" link set eth0 up
	NS_AGENTS="$NS_AGENTS $k"
}

# ns_start_server [extra server flags...]
ns_start_server() {
	mkdir -p "$NS_BASE/server"
	nsenter --net="/run/netns/$NS_SRV" -- "$BERTH_BIN" server --data-dir "$NS_BASE/server" \
		--addr "$NS_NET.1:$NS_PORT" "$@" >>"$NS_BASE/server.log" 2>&1 3>&- &
	SRV_PID=$!
	local i
	for i in $(seq 1 100); do
		if [ -s "$NS_BASE/server/client/ca.pem" ] &&
			in_ns "$NS_SRV" curl --cacert "$NS_BASE/server/client/ca.pem" -fsS -m 1 \
				"$NS_SERVER_URL/v1/health" >/dev/null 2>&1; then
			# The admin's credentials, for the CLI and api().
			export BERTH_CACERT="$NS_BASE/server/client/ca.pem"
			BERTH_TOKEN=$(cat "$NS_BASE/server/client/admin.token")
			export BERTH_TOKEN
			return 0
		fi
		kill -0 "$SRV_PID" 2>/dev/null || break
		sleep 0.05
	done
	echo "berth server did not come up; log:" >&2
	cat "$NS_BASE/server.log" >&2
	return 1
}

# ns_start_agent K: `berth agent` in namespace nK (data dir kept across
# restarts of the same K).
ns_start_agent() {
	local k=$1
	mkdir -p "$NS_BASE/n$k"
	nsenter --net="/run/netns/$(ns_name "$k")" -- "$BERTH_BIN" agent --server "$NS_SERVER_URL" \
		--join-token-file "$NS_BASE/server/client/join.token" --data-dir "$NS_BASE/n$k" --name "n$k" --attr "rack=r$k" \
		--cgroup-parent "$NS_CGPARENT" --port-range 31000-31999 \
		>>"$NS_BASE/n$k.log" 2>&1 3>&- &
	NS_AGENT_PID[$k]=$!
}

ns_kill_agent() {
	local k=$1 sig=${2:-KILL} pid=${NS_AGENT_PID[$1]:-}
	[ -n "$pid" ] || return 0
	# (In braces: bash's "Killed" job notice goes to /dev/null too.)
	{ kill -"$sig" "$pid"; wait "$pid"; } 2>/dev/null || true
	NS_AGENT_PID[$k]=
}

# Every CLI call is made from the server's namespace.
cli() {
	in_ns "$NS_SRV" env BERTH_ADDR="$NS_SERVER_URL" "$BERTH_BIN" "$@"
}

api() {
	in_ns "$NS_SRV" curl --cacert "$BERTH_CACERT" -H "Authorization: Bearer $BERTH_TOKEN" \
		-fsS -m 5 "$NS_SERVER_URL$1"
}

nodes_json() { cli node list --json; }

# node_state NAME
node_state() {
	nodes_json | jget "[n['state'] for n in d if n['name']=='$1'][0]"
}

# Wait for K agents to be ACTIVE.
wait_active() {
	wait_for "${2:-10}" '[ "$(nodes_json 2>/dev/null | jget "sum(1 for n in d if n[\"state\"]==\"ACTIVE\")" 2>/dev/null)" = '"$1"' ]'
}

jstatus() { cli job status "$1" --json; }
jstatus_all() { cli job status "$1" --json --all; }

# RUNNING tasks of job $1 as "instance node id pid" lines.
running_tasks() {
	jstatus "$1" | jget '"\n".join("%d %s %s %s" % (t["instance"], t["node"], t["id"], t["pid"]) for t in sorted(d["tasks"], key=lambda t: t["instance"]) if t["state"]=="RUNNING")'
}

# inst_where JOB INSTANCE: "STATE NODE" of the instance's active task.
inst_where() {
	jstatus "$1" | python3 -c 'import json, sys
d = json.load(sys.stdin)
print(" ".join([t["state"] + " " + str(t["node"]) for t in d["tasks"] if t["instance"] == int(sys.argv[1])][:1]))' "$2"
}

nrunning() {
	jstatus "$1" | jget 'sum(1 for t in d["tasks"] if t["state"]=="RUNNING")'
}

# Count live processes whose whole command line is exactly $1.
nprocs() {
	pgrep -xf "$1" | wc -l
}

# On a failure: the server's log first (CI cuts long output: the most
# useful part goes first, every part short), the nodes, the jobs, then the
# agents' logs.
ns_dump_logs() {
	local f j
	if [ -f "$NS_BASE/server.log" ]; then
		echo "--- server.log (tail) ---" >&2
		tail -25 "$NS_BASE/server.log" >&2
	fi
	if [ -n "${SRV_PID:-}" ] && kill -0 "$SRV_PID" 2>/dev/null; then
		echo "--- nodes ---" >&2
		cli node list >&2 2>&1 || true
		for j in $(cli job list --json 2>/dev/null | jget '" ".join(x["job"] for x in d)' 2>/dev/null); do
			echo "--- job status $j --all ---" >&2
			jstatus_all "$j" | python3 -c '
import json, sys
d = json.load(sys.stdin)
for t in sorted(d["tasks"], key=lambda t: (t["instance"], t.get("created_ms", 0))):
    print(t["instance"], t["id"], t["state"], t["node"], t["pid"], "ancestor=%s" % t.get("ancestor"), "|", t["message"])
' >&2 2>&1 || true
		done
	fi
	for f in "$NS_BASE"/*.log; do
		[ -f "$f" ] && [ "$(basename "$f")" != server.log ] || continue
		echo "--- $(basename "$f") (tail) ---" >&2
		tail -15 "$f" >&2
	done
}


# Remove every process, namespace, cgroup and file of this run.
ns_cleanup() {
	[ -n "${NS_RUN:-}" ] || return 0
	if [ "${BATS_TEST_COMPLETED:-}" != 1 ] && [ -n "${NS_BASE:-}" ]; then
		ns_dump_logs
	fi
	local k p ns c
	for k in $NS_AGENTS; do ns_kill_agent "$k" KILL; done
	if [ -n "${SRV_PID:-}" ]; then
		{ kill -KILL "$SRV_PID"; wait "$SRV_PID"; } 2>/dev/null || true
		SRV_PID=
	fi
	# Supervisors of this run's sandboxes, then whatever is in our cgroups.
	if [ -n "${NS_BASE:-}" ]; then
		for p in $(pgrep -f "supervise $NS_BASE/" 2>/dev/null); do
			kill -KILL "$p" 2>/dev/null || true
		done
	fi
	for _ in 1 2 3; do
		for c in /sys/fs/cgroup/*/"$NS_CGPARENT" /sys/fs/cgroup/"$NS_CGPARENT"; do
			[ -d "$c" ] || continue
			for p in $(find "$c" -name cgroup.procs -exec cat {} + 2>/dev/null); do
				kill -KILL "$p" 2>/dev/null || true
			done
		done
		sleep 0.1
	done
	for c in /sys/fs/cgroup/*/"$NS_CGPARENT" /sys/fs/cgroup/"$NS_CGPARENT"; do
		[ -d "$c" ] || continue
		find "$c" -mindepth 1 -depth -type d -exec rmdir {} \; 2>/dev/null || true
		rmdir "$c" 2>/dev/null || true
	done
	# Namespaces: anything still inside is killed first; deleting an agent
	# namespace destroys its veth end and so the peer in the server's.
	for k in $NS_AGENTS; do
		ns=$(ns_name "$k")
		ns_kill_ns_procs "$ns"
		ip netns del "$ns" 2>/dev/null || true
	done
	ns_kill_ns_procs "$NS_SRV"
	ip netns del "$NS_SRV" 2>/dev/null || true
	# Task network namespaces the agents kept (bind mounts in their data dirs).
	release_task_netns "${NS_BASE:-}"
	[ -n "${NS_BASE:-}" ] && rm -rf "$NS_BASE"
	NS_RUN=
}
