#!/usr/bin/env bats
# An idle `berth agent` gives back what its start-up used (docs/agent.md
# "Memory", docs/decisions.md "Idle agent memory"): a few seconds after it
# joined, its resident memory is within the 10 MiB target, and it still
# starts tasks at once afterwards.

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

rss_kib() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }

@test "an idle agent's resident memory falls to 10 MiB or less, and it still starts tasks at once" {
	if ldd "$BERTH_BIN" | grep -q libasan; then
		skip "a sanitizer build: its shadow memory and allocator are not berth's"
	fi
	# start-up (TLS, the join, the first reports) leaves more resident than that
	wait_for 20 '[ "$(rss_kib "$UP_PID")" -le 10240 ]'
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
