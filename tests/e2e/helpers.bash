# Shared helpers for the end-to-end tests: they drive the real berth binary.
# BERTH_BIN and BERTH_TOOLS come from scripts/run-tests.sh.

: "${BERTH_BIN:=$(pwd)/build/berth}"
: "${BERTH_TOOLS:=$(pwd)/build/tests}"

# Exec tasks get a private /tmp, so programs they run must live elsewhere:
# when the tree is under /tmp (a CI clone may be), the test tools are copied
# out of it first.
case "$BERTH_TOOLS" in
/tmp/*)
	_tools=/var/tmp/berth-e2e-tools
	mkdir -p "$_tools"
	for _t in httpd-tiny memhog; do
		[ -x "$BERTH_TOOLS/$_t" ] && cp -u "$BERTH_TOOLS/$_t" "$_tools/$_t"
	done
	BERTH_TOOLS=$_tools
	;;
esac
export BERTH_TOOLS

require_root() {
	[ "$(id -u)" = 0 ] || skip "needs root (namespaces and cgroups)"
	[ -d /sys/fs/cgroup ] || skip "no cgroup filesystem"
}

free_port() {
	python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# start_etcd DIR: a one-member etcd (Debian etcd-server) on free loopback
# ports, its data and log under DIR; sets EP (its client port) and ETCD_PID,
# and waits until it answers. The caller stops ETCD_PID.
start_etcd() {
	local dir=$1 pp
	EP=$(free_port)
	pp=$(free_port)
	etcd --name default --data-dir "$dir/etcd" --listen-client-urls "http://127.0.0.1:$EP" \
		--advertise-client-urls "http://127.0.0.1:$EP" --listen-peer-urls "http://127.0.0.1:$pp" \
		--initial-advertise-peer-urls "http://127.0.0.1:$pp" \
		--initial-cluster "default=http://127.0.0.1:$pp" >"$dir/etcd.log" 2>&1 3>&- &
	ETCD_PID=$!
	wait_for 10 "curl -fsS http://127.0.0.1:$EP/health >/dev/null 2>&1"
}

# curl against the berth API with the client's credentials (BERTH_CACERT,
# BERTH_TOKEN) when set: use it for every raw API call in a test.
api_curl() {
	local args=()
	[ -n "${BERTH_CACERT:-}" ] && args+=(--cacert "$BERTH_CACERT")
	[ -n "${BERTH_TOKEN:-}" ] && args+=(-H "Authorization: Bearer $BERTH_TOKEN")
	curl "${args[@]}" "$@"
}

# curl as the node of `berth up` on $DATA: its own certificate (mutual TLS),
# for the agent protocol's routes.
node_curl() {
	curl --cacert "$DATA/node/ca.pem" --cert "$DATA/node/cert.pem" --key "$DATA/node/key.pem" "$@"
}

# The client configuration berth up/server write stays out of the user's.
export XDG_CONFIG_HOME=${BATS_FILE_TMPDIR:-${TMPDIR:-/tmp}}/berth-xdg

# After a server on $DATA started: the client's credentials from
# DATA/client/ (nothing with --insecure).
use_client_creds() {
	local data=${1:-$DATA}
	case "$BERTH_ADDR" in
	https://*)
		for _ in $(seq 1 100); do
			[ -s "$data/client/admin.token" ] && [ -s "$data/client/ca.pem" ] && break
			sleep 0.05
		done
		export BERTH_CACERT="$data/client/ca.pem"
		BERTH_TOKEN=$(cat "$data/client/admin.token")
		export BERTH_TOKEN
		;;
	*) unset BERTH_CACERT BERTH_TOKEN ;;
	esac
}

# Start `berth up` in the background on a fresh data dir (or $1), with
# $BERTH_UP_FLAGS; exports BERTH_ADDR, BERTH_CACERT and BERTH_TOKEN.
start_up() {
	DATA=${1:-$(mktemp -d /tmp/berth-e2e.XXXXXX)}
	if [ -z "${PORT:-}" ]; then PORT=$(free_port); fi
	CGPARENT=${CGPARENT:-berth-e2e-$$}
	case " ${BERTH_UP_FLAGS:-} " in
	*" --insecure "*) export BERTH_ADDR="http://127.0.0.1:$PORT" ;;
	*) export BERTH_ADDR="https://127.0.0.1:$PORT" ;;
	esac
	# shellcheck disable=SC2086
	"$BERTH_BIN" up --data-dir "$DATA" --addr "127.0.0.1:$PORT" --cgroup-parent "$CGPARENT" \
		--port-range 31000-31999 ${BERTH_UP_FLAGS:-} >>"$DATA.log" 2>&1 &
	UP_PID=$!
	use_client_creds "$DATA"
	for _ in $(seq 1 100); do
		if api_curl -fsS "$BERTH_ADDR/v1/health" >/dev/null 2>&1 &&
			"$BERTH_BIN" node list --json | grep -q ACTIVE; then
			return 0
		fi
		sleep 0.05
	done
	echo "berth up did not come up; log:" >&2
	cat "$DATA.log" >&2
	return 1
}

# Stop each process: SIGTERM, up to $STOP_WAIT_S seconds (5) to go, then
# SIGKILL; reap it.
stop_pids() {
	local pid
	for pid in "$@"; do
		[ -n "$pid" ] || continue
		kill -TERM "$pid" 2>/dev/null || true
		for _ in $(seq 1 $((${STOP_WAIT_S:-5} * 20))); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.05
		done
		kill -KILL "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
	done
}

stop_up() {
	STOP_WAIT_S=15 stop_pids "${UP_PID:-}"
	UP_PID=
}

# How many nodes the server has ACTIVE (0 when it does not answer).
active_nodes() {
	"$BERTH_BIN" node list --json 2>/dev/null | jget 'sum(1 for n in d if n["state"]=="ACTIVE")' || echo 0
}

# Unmount the network namespaces of bridge tasks kept under DIR (an agent's
# DATA/net/netns/ID bind mounts), so that DIR can be removed after an agent
# was killed with its tasks still holding them.
release_task_netns() {
	local dir=$1 p
	[ -n "$dir" ] || return 0
	for p in $(awk -v b="${dir%/}/" 'index($2, b) == 1 {print $2}' /proc/self/mounts); do
		umount -l "$p" 2>/dev/null || true
	done
}

cleanup_up() {
	stop_up
	# Anything a failed test left behind.
	pkill -KILL -f "berth supervise $DATA" 2>/dev/null || true
	for c in /sys/fs/cgroup/*/"$CGPARENT" /sys/fs/cgroup/"$CGPARENT"; do
		[ -d "$c" ] || continue
		find "$c" -mindepth 1 -depth -type d -exec rmdir {} \; 2>/dev/null || true
		rmdir "$c" 2>/dev/null || true
	done
	if [ -n "${DATA:-}" ]; then
		if [ "${BATS_TEST_COMPLETED:-}" != 1 ] && [ -f "$DATA.log" ]; then
			echo "--- berth up log ---" >&2
			tail -50 "$DATA.log" >&2
		fi
		release_task_netns "$DATA"
		rm -rf "$DATA" "$DATA.log"
	fi
}

# Write a spec file and print its path.
spec() {
	local f
	f=$(mktemp /tmp/berth-spec.XXXXXX.yaml)
	cat >"$f"
	echo "$f"
}

# jq-free JSON access through python3.
jget() {
	python3 -c "import json,sys; d=json.load(sys.stdin); print(eval(sys.argv[1]))" "$1"
}

status_json() {
	"$BERTH_BIN" job status "$1" --json
}

# Wait until a shell condition holds (up to $1 seconds).
wait_for() {
	local secs=$1
	shift
	local end=$((SECONDS + secs))
	while [ $SECONDS -le $end ]; do
		if eval "$@"; then return 0; fi
		sleep 0.1
	done
	echo "timed out after ${secs}s waiting for: $*" >&2
	return 1
}

# Count RUNNING tasks of a job.
running_count() {
	status_json "$1" | jget 'sum(1 for t in d["tasks"] if t["state"]=="RUNNING")'
}

# The cgroup v1 directory of a pid for a controller, or the v2 one.
cgroup_dir_of() {
	local pid=$1 ctrl=$2 line
	line=$(grep -E "^[0-9]+:([^:]*,)?$ctrl(,[^:]*)?:" /proc/"$pid"/cgroup | head -1)
	if [ -n "$line" ]; then
		echo "/sys/fs/cgroup/$ctrl${line##*:}"
	else
		line=$(grep -E '^0::' /proc/"$pid"/cgroup)
		echo "/sys/fs/cgroup${line##*:}"
	fi
}
