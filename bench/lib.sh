# bench/lib.sh - what the benchmarks share; sourced, not run.

# A free TCP port on loopback.
free_port() {
	python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# Stop each process: SIGTERM, up to 5 s to go, then SIGKILL; reap it.
stop_pids() {
	local pid
	for pid in "$@"; do
		[ -n "$pid" ] || continue
		kill -TERM "$pid" 2>/dev/null || true
		for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
		kill -KILL "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
	done
}

# A process's resident memory in MiB (one decimal).
rss_mib() { awk '/VmRSS/ {printf "%.1f", $2 / 1024}' "/proc/$1/status"; }

# Remove a task cgroup parent and everything under it, in every hierarchy.
remove_cgroup_parent() {
	local c
	for c in /sys/fs/cgroup/*/"$1" /sys/fs/cgroup/"$1"; do
		[ -d "$c" ] || continue
		find "$c" -mindepth 1 -depth -type d -exec rmdir {} \; 2>/dev/null
		rmdir "$c" 2>/dev/null || true
	done
}

# ---- TLS and credentials (docs/security.md) --------------------------------
# Servers serve HTTPS with the cluster CA by default; BENCH_INSECURE=1 (or a
# bench's --insecure) runs them with --insecure instead. The client
# configuration `berth server|up` writes for its user goes to a bench
# directory, not the user's.
export XDG_CONFIG_HOME=${BENCH_XDG_CONFIG_HOME:-${TMPDIR:-/tmp}/berth-bench-xdg}

# The flag a server or `berth up` gets: --insecure or nothing.
server_tls_flags() { if [ -n "${BENCH_INSECURE:-}" ]; then echo --insecure; fi; }

# After `berth server|up --data-dir DATA --addr 127.0.0.1:PORT $(server_tls_flags)`
# started: wait (up to $3 s, default 10) until it answers, then export what
# its clients need:
#   BERTH_ADDR       http(s)://127.0.0.1:PORT
#   BERTH_CACERT     DATA/client/ca.pem         (TLS only; CLI, curl, python)
#   BERTH_TOKEN      DATA/client/admin.token's token
#   JOIN_TOKEN_FILE  DATA/client/join.token     (agents and the simulator)
# Returns 1 when it does not answer in time.
bench_connect() {
	local data=$1 port=$2 wait=${3:-10} i
	unset BERTH_CACERT BERTH_TOKEN JOIN_TOKEN_FILE
	if [ -n "${BENCH_INSECURE:-}" ]; then
		export BERTH_ADDR="http://127.0.0.1:$port"
	else
		export BERTH_ADDR="https://127.0.0.1:$port"
		for i in $(seq 1 $((wait * 20))); do
			[ -s "$data/client/admin.token" ] && [ -s "$data/client/join.token" ] && break
			sleep 0.05
		done
		[ -s "$data/client/admin.token" ] || return 1
		export BERTH_CACERT="$data/client/ca.pem" JOIN_TOKEN_FILE="$data/client/join.token"
		BERTH_TOKEN=$(cat "$data/client/admin.token")
		export BERTH_TOKEN
	fi
	for i in $(seq 1 $((wait * 20))); do
		bench_curl -fsS "$BERTH_ADDR/v1/health" >/dev/null 2>&1 && return 0
		sleep 0.05
	done
	return 1
}

# curl with the credentials bench_connect exported (none: plain).
bench_curl() {
	local args=()
	[ -n "${BERTH_CACERT:-}" ] && args+=(--cacert "$BERTH_CACERT")
	[ -n "${BERTH_TOKEN:-}" ] && args+=(-H "Authorization: Bearer $BERTH_TOKEN")
	curl "${args[@]}" "$@"
}

# What an agent or the simulator needs to join: --join-token-file F (none
# with --insecure).
join_flags() { if [ -n "${JOIN_TOKEN_FILE:-}" ]; then echo --join-token-file "$JOIN_TOKEN_FILE"; fi; }

# ---- a cluster of simulated agents ------------------------------------------
# The benches that measure the server (scale, preempt, recovery, fleet,
# failover) start alike: a data directory and a port, a server with TLS,
# simulated agents that join it, a trap that stops them, and a wait for every
# node to be ACTIVE:
#
#   bench_init scale               # data=/tmp/berth-scale.XXXXXX, port, the trap
#   bench_server -q                # DATA/server, log DATA/server.log: server_pid
#   bench_sim sim 100 --sim-racks 20  # log DATA/sim.log: sim_pid
#   bench_wait_nodes 100 600       # or exit 1 (a process died, time ran out)
#
# On exit the processes go, the last started first, then DATA (kept, and
# named, when BENCH_KEEP is set). When the bench failed, the tail of each
# process's log is shown. A bench may define bench_on_exit, called first.
# Python parts of a bench import bench/benchapi.py (BENCH_PY is its folder).

BENCH_PIDS=()
BENCH_LOGS=()
BENCH_PY=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
export BENCH_PY

# bench_init NAME: data, port (exported as BENCH_PORT), the traps; lifts the open-file limit (the
# server and the simulator raise their own from the shell's).
bench_init() {
	BENCH_NAME=$1
	data=$(mktemp -d "/tmp/berth-$1.XXXXXX")
	port=$(free_port)
	export BENCH_PORT=$port
	trap bench_cleanup EXIT
	trap 'exit 130' INT TERM
	ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
}

# bench_track PID [LOG]: stop PID on exit; show LOG's tail if the bench fails.
bench_track() {
	BENCH_PIDS+=("$1")
	BENCH_LOGS+=("${2:-}")
}

# bench_untrack PID: PID is to be killed on purpose (before the kill): no job
# notice for it, and never signalled again.
bench_untrack() {
	local i
	disown "$1" 2>/dev/null || true
	for i in "${!BENCH_PIDS[@]}"; do
		[ "${BENCH_PIDS[i]}" = "$1" ] && BENCH_PIDS[i]= && BENCH_LOGS[i]=
	done
	return 0
}

bench_cleanup() {
	local rc=$? i
	if declare -F bench_on_exit >/dev/null; then bench_on_exit || true; fi
	for ((i = ${#BENCH_PIDS[@]} - 1; i >= 0; i--)); do
		if [ "$rc" -ne 0 ] && [ -n "${BENCH_LOGS[i]}" ] && [ -s "${BENCH_LOGS[i]}" ]; then
			echo "$BENCH_NAME: the last lines of ${BENCH_LOGS[i]##*/}:" >&2
			tail -n 3 "${BENCH_LOGS[i]}" >&2 || true
		fi
		[ -n "${BENCH_PIDS[i]}" ] && stop_pids "${BENCH_PIDS[i]}"
	done
	if [ -n "${BENCH_KEEP:-}" ]; then echo "$BENCH_NAME: kept $data" >&2; else rm -rf "$data"; fi
}

# bench_server_at DIR PORT [FLAGS...]: `berth server` on 127.0.0.1:PORT with
# its state in DIR and its log in DIR.log, TLS unless BENCH_INSECURE, more
# FLAGS; sets server_pid (tracked). Does not wait: see bench_connect.
bench_server_at() {
	local dir=$1 p=$2
	shift 2
	# shellcheck disable=SC2046
	"$BERTH" server --data-dir "$dir" --addr "127.0.0.1:$p" $(server_tls_flags) "$@" \
		>"$dir.log" 2>&1 &
	server_pid=$!
	bench_track "$server_pid" "$dir.log"
}

# bench_server [FLAGS...]: the bench's server (DATA/server, PORT), answering
# with its clients' credentials exported (bench_connect); exits 1 if not.
bench_server() {
	bench_server_at "$data/server" "$port" "$@"
	bench_connect "$data/server" "$port" ||
		{ echo "$BENCH_NAME: the server did not start" >&2; exit 1; }
}

# bench_sim NAME N [FLAGS...]: N simulated agents NAME-0..NAME-(N-1) joining
# $BERTH_ADDR (one address or several, comma-separated), each from its own
# loopback address; log DATA/NAME.log; sets sim_pid (tracked).
bench_sim() {
	local name=$1 n=$2
	shift 2
	# shellcheck disable=SC2046
	"$BERTH" agent --simulate "$n" --name "$name" --server "$BERTH_ADDR" $(join_flags) \
		--sim-source-addrs "$@" >"$data/$name.log" 2>&1 &
	sim_pid=$!
	bench_track "$sim_pid" "$data/$name.log"
}

# The number of ACTIVE nodes, through the CLI ($BERTH_ADDR: one server or
# several, the leader answers); 0 when none answers.
bench_active_nodes() {
	"$BERTH" node list --json 2>/dev/null |
		python3 -c 'import json,sys; print(sum(1 for n in json.load(sys.stdin) if n["state"]=="ACTIVE"))' \
			2>/dev/null || echo 0
}

# bench_wait_nodes N [TIMEOUT_S]: until N nodes are ACTIVE (default 600 s);
# progress every 5 s; exits 1 when a tracked process ends or time runs out.
bench_wait_nodes() {
	local want=$1 timeout=${2:-600} start=$SECONDS last=$SECONDS n pid
	while :; do
		n=$(bench_active_nodes)
		[ "$n" -ge "$want" ] && break
		for pid in "${BENCH_PIDS[@]}"; do
			[ -z "$pid" ] || kill -0 "$pid" 2>/dev/null ||
				{ echo "$BENCH_NAME: process $pid ended while $n of $want nodes were ACTIVE" >&2; exit 1; }
		done
		if [ $((SECONDS - start)) -ge "$timeout" ]; then
			echo "$BENCH_NAME: timed out with $n of $want nodes ACTIVE" >&2
			exit 1
		fi
		if [ $((SECONDS - last)) -ge 5 ]; then
			echo "$BENCH_NAME: $n/$want nodes ACTIVE" >&2
			last=$SECONDS
		fi
		sleep 0.2
	done
	echo "$BENCH_NAME: $want nodes ACTIVE after $((SECONDS - start))s" >&2
}
