#!/usr/bin/env bats
# An idle `berth agent`'s own memory stays small (docs/agent.md "Memory",
# docs/decisions.md "Idle agent memory"): its private pages (Private_Clean +
# Private_Dirty of /proc/PID/smaps_rollup: heap, stacks, relocated library
# data; not the shared library pages RSS also counts) stay under a bound
# about twice what bench/agent_idle.sh measures (3.4-4.0 MiB), and it still
# starts tasks. A buffer kept per connection slot, a cache that grows while
# idle or a leak in the heartbeat path crosses it.

load helpers

setup() {
	require_root
	DATA=$(mktemp -d /tmp/berth-e2e.XXXXXX)
	CGPARENT=berth-e2e-mem-$$
	local port
	port=$(free_port)
	case " ${BERTH_UP_FLAGS:-} " in
	*" --insecure "*)
		export BERTH_ADDR="http://127.0.0.1:$port"
		set -- --insecure
		;;
	*) export BERTH_ADDR="https://127.0.0.1:$port" ;;
	esac
	"$BERTH_BIN" server -q --data-dir "$DATA/s" --addr "127.0.0.1:$port" "$@" >>"$DATA.log" 2>&1 3>&- &
	SERVER_PID=$!
	use_client_creds "$DATA/s"
	wait_for 10 'api_curl -fsS "$BERTH_ADDR/v1/health" >/dev/null 2>&1'
	local join=()
	[ -s "$DATA/s/client/join.token" ] && join=(--join-token-file "$DATA/s/client/join.token")
	"$BERTH_BIN" agent --server "$BERTH_ADDR" "${join[@]}" --data-dir "$DATA/a" --name idle \
		--cgroup-parent "$CGPARENT" >>"$DATA.log" 2>&1 3>&- &
	UP_PID=$!
	wait_for 15 '[ "$(active_nodes)" = 1 ]'
}

teardown() {
	cleanup_up
	stop_pids "${SERVER_PID:-}"
}

# private_kib PID: Private_Clean + Private_Dirty, in KiB
private_kib() {
	awk '/^Private_(Clean|Dirty):/ {n += $2} END {print n + 0}' "/proc/$1/smaps_rollup"
}

PRIVATE_MAX_KIB=8192

@test "an idle agent's private memory stays under 8 MiB, and it still starts tasks" {
	if ldd "$BERTH_BIN" | grep -q libasan; then
		skip "a sanitizer build: its shadow memory and allocator are not berth's"
	fi
	[ -r "/proc/$UP_PID/smaps_rollup" ] || skip "no /proc/PID/smaps_rollup (Linux < 4.14)"
	# idle for 6 s after the join: heartbeats and reports, no task
	for _ in 1 2 3 4 5 6; do
		kib=$(private_kib "$UP_PID")
		echo "# agent private memory: $kib KiB" >&3
		[ "$kib" -gt 0 ]
		[ "$kib" -le "$PRIVATE_MAX_KIB" ]
		sleep 1
	done
	f=$(spec <<-EOF
		job: alice/devel/sleepers
		instances: 3
		task:
		  command: ["sleep", "3600"]
		  resources: {cpu: 0.01, memory: 16MiB}
	EOF
	)
	run "$BERTH_BIN" job run "$f" --detach
	[ "$status" -eq 0 ]
	wait_for 15 '[ "$(running_count alice/devel/sleepers)" = 3 ]'
	"$BERTH_BIN" job kill alice/devel/sleepers >/dev/null
}
