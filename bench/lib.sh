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
