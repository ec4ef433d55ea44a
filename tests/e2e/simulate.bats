#!/usr/bin/env bats
# berth agent --simulate: many agents over the real protocol in one process,
# against a real `berth server`. No root needed: simulated tasks run nothing.
# The server serves HTTPS (the default; --insecure in BERTH_UP_FLAGS runs it
# plain): the simulated agents join with the join token, then mutual TLS.

load helpers

# Start `berth server` on $1 (a data dir) and port $2 with more flags; sets
# SERVER_PID, BERTH_ADDR and the client's credentials.
start_server() {
	local data=$1 port=$2
	shift 2
	case " ${BERTH_UP_FLAGS:-} " in
	*" --insecure "*)
		export BERTH_ADDR="http://127.0.0.1:$port"
		set -- "$@" --insecure
		;;
	*) export BERTH_ADDR="https://127.0.0.1:$port" ;;
	esac
	"$BERTH_BIN" server --data-dir "$data" --addr "127.0.0.1:$port" "$@" >>"$data.log" 2>&1 3>&- &
	SERVER_PID=$!
	use_client_creds "$data"
	wait_for 10 'api_curl -fsS "$BERTH_ADDR/v1/health" >/dev/null 2>&1'
}

# The simulator's join flags for the server on $1 (none when it is plain).
join_flags() {
	case "$BERTH_ADDR" in
	https://*) echo "--join-token-file $1/client/join.token" ;;
	esac
}

tls_only() {
	case "$BERTH_ADDR" in
	https://*) ;;
	*) skip "the server runs --insecure (BERTH_UP_FLAGS): no join, no certificates" ;;
	esac
}

setup() {
	DATA=$(mktemp -d /tmp/berth-e2e-sim.XXXXXX)
	PORT=$(free_port)
	start_server "$DATA/server" "$PORT"
	# shellcheck disable=SC2046
	"$BERTH_BIN" agent --simulate 50 --name sim --server "$BERTH_ADDR" $(join_flags "$DATA/server") \
		--cpu 4 --mem 8GiB --sim-racks 5 >>"$DATA/sim.log" 2>&1 3>&- &
	SIM_PID=$!
	wait_for 30 '[ "$(active_nodes)" -eq 50 ]'
}

teardown() {
	stop_pids ${SIM_PID:-} ${SIM2_PID:-} ${SERVER_PID:-} ${SERVER2_PID:-}
	if [ "${BATS_TEST_COMPLETED:-}" != 1 ]; then
		echo "--- server log ---" >&2
		tail -30 "$DATA/server.log" >&2 || true
		[ -f "$DATA/s2.log" ] && { echo "--- second server log ---" >&2; tail -30 "$DATA/s2.log" >&2; }
		[ -f "$DATA/sim2.log" ] && { echo "--- second simulator log ---" >&2; tail -30 "$DATA/sim2.log" >&2; }
		echo "--- simulator log ---" >&2
		tail -30 "$DATA/sim.log" >&2 || true
	fi
	rm -rf "$DATA"
}


@test "50 simulated agents register as ACTIVE nodes sim-0..sim-49 with their attributes" {
	"$BERTH_BIN" node list --json >"$DATA/nodes.json"
	names=$(jget '" ".join(sorted(n["name"] for n in d))' <"$DATA/nodes.json")
	want=$(for i in $(seq 0 49); do echo "sim-$i"; done | sort | tr '\n' ' ' | sed 's/ $//')
	[ "$names" = "$want" ]
	[ "$(jget 'sum(1 for n in d if n["state"]=="ACTIVE")' <"$DATA/nodes.json")" -eq 50 ]
	# Attributes and resources come from the options.
	[ "$(jget '[n for n in d if n["name"]=="sim-7"][0]["attributes"]["rack"]' <"$DATA/nodes.json")" = r2 ]
	[ "$(jget '[n for n in d if n["name"]=="sim-7"][0]["attributes"]["host"]' <"$DATA/nodes.json")" = sim-7 ]
	[ "$(jget 'int([n for n in d if n["name"]=="sim-7"][0]["resources"]["cpu"])' <"$DATA/nodes.json")" -eq 4 ]
}

@test "a 200-instance job with host limit:4 runs everywhere, never more than 4 on a node" {
	f=$(spec <<'EOF'
job: sim/devel/web
instances: 200
task:
  command: ["/bin/true"]
  resources: {cpu: 0.1, memory: 16MiB}
  constraints: {host: "limit:4"}
EOF
)
	run "$BERTH_BIN" job run "$f"
	rm -f "$f"
	[ "$status" -eq 0 ]
	wait_for 20 '[ "$(running_count sim/devel/web)" -eq 200 ]'
	status_json sim/devel/web >"$DATA/web.json"
	[ "$(jget 'max(__import__("collections").Counter(t["node"] for t in d["tasks"]).values())' <"$DATA/web.json")" -le 4 ]
	[ "$(jget 'len(set(t["node"] for t in d["tasks"]))' <"$DATA/web.json")" -eq 50 ]
}

@test "a task told to fail is reported FAILED and replaced by a task that records its ancestor" {
	f=$(spec <<'EOF'
job: sim/devel/flaky
instances: 2
task:
  command: ["/bin/true"]
  env: {BERTH_SIM_FAIL_AFTER: 1s, BERTH_SIM_EXIT_CODE: "3"}
  resources: {cpu: 0.1, memory: 16MiB}
EOF
)
	run "$BERTH_BIN" job run --detach "$f"
	rm -f "$f"
	[ "$status" -eq 0 ]
	# The first tasks fail after 1 s, with the exit code asked for, and each
	# instance gets a new task whose ancestor is the failed one.
	wait_for 15 '[ "$(flaky_all | jget "sum(1 for t in d[\"tasks\"] if t[\"state\"]==\"FAILED\" and t[\"exit_code\"]==3)")" -ge 2 ]'
	flaky_all >"$DATA/flaky.json"
	[ "$(jget 'sum(1 for t in d["tasks"] if t.get("ancestor") in {x["id"] for x in d["tasks"] if x["state"]=="FAILED"})' <"$DATA/flaky.json")" -ge 2 ]
	# The active tasks are the replacements.
	[ "$(status_json sim/devel/flaky | jget 'sum(1 for t in d["tasks"] if t.get("ancestor"))')" -eq 2 ]
}

flaky_all() {
	"$BERTH_BIN" job status sim/devel/flaky --json --all
}

@test "SIGKILL of the simulator makes its nodes DOWN within a few seconds" {
	kill -KILL "$SIM_PID"
	wait "$SIM_PID" 2>/dev/null || true
	SIM_PID=
	start=$SECONDS
	wait_for 8 '[ "$("$BERTH_BIN" node list --json | jget "sum(1 for n in d if n[\"state\"]==\"DOWN\")")" -eq 50 ]'
	[ $((SECONDS - start)) -le 6 ]
}

@test "each simulated agent joined with its own node certificate and speaks mutual TLS" {
	tls_only
	# One certificate per node, issued on the join token, and the audit log
	# has each join.
	[ "$(grep -c "issued node 'sim-[0-9]*' a certificate (join token)" "$DATA/server.log")" -ge 50 ]
	[ "$(grep -c '"path":"/v1/agent/join","status":200' "$DATA/server/audit.log")" -ge 50 ]
	# The simulator reports progress once a second: its line may follow the
	# nodes' registration by up to a second.
	wait_for 5 "grep -q 'all 50 simulated agents joined (a node certificate each)' '$DATA/sim.log'"
	grep -q 'mutual TLS, a key per agent' "$DATA/sim.log"
}

@test "with a 3s certificate lifetime the simulated agents renew in time and never go DOWN" {
	tls_only
	stop_pids "$SIM_PID"
	SIM_PID=
	P2=$(free_port)
	first=$SERVER_PID
	start_server "$DATA/s2" "$P2" --cert-ttl 3s
	SERVER2_PID=$SERVER_PID
	SERVER_PID=$first
	"$BERTH_BIN" agent --simulate 20 --name ren --server "$BERTH_ADDR" --sim-shared-key \
		--join-token-file "$DATA/s2/client/join.token" >>"$DATA/sim2.log" 2>&1 3>&- &
	SIM2_PID=$!
	wait_for 20 '[ "$(active_nodes)" -eq 20 ]'
	sleep 8
	[ "$(grep -c "renewed node 'ren-[0-9]*' a certificate" "$DATA/s2.log")" -ge 40 ]
	! grep -q 'is down' "$DATA/s2.log"
	[ "$(active_nodes)" -eq 20 ]
}

@test "past --max-heartbeats the agents heartbeat less often and a dead one goes DOWN later, in proportion" {
	stop_pids "$SIM_PID"
	SIM_PID=
	P2=$(free_port)
	first=$SERVER_PID
	# 40 nodes at 1 s would be 40 heartbeats/s: 20/s allowed, so every 2 s,
	# and DOWN after 6 s of silence instead of 3 s
	start_server "$DATA/s2" "$P2" --max-heartbeats 20
	SERVER2_PID=$SERVER_PID
	SERVER_PID=$first
	# shellcheck disable=SC2046
	"$BERTH_BIN" agent --simulate 40 --name hb --server "$BERTH_ADDR" $(join_flags "$DATA/s2") \
		>>"$DATA/sim2.log" 2>&1 3>&- &
	SIM2_PID=$!
	wait_for 30 '[ "$(active_nodes)" -eq 40 ]'
	wait_for 10 "api_curl -fsS '$BERTH_ADDR/metrics' | grep -qx 'berth_heartbeat_seconds 2'"
	api_curl -fsS "$BERTH_ADDR/metrics" | grep -qx 'berth_down_after_seconds 6'
	grep -Eq '[0-9]+ nodes: heartbeats every [0-9.]+ s, DOWN after [0-9.]+ s of silence' "$DATA/s2.log"
	# none goes DOWN; the agents follow: one watch each per 2 s (the
	# simulator counts its replies when it stops: a join, a registration,
	# then the watches)
	sleep 8
	! grep -q 'is down' "$DATA/s2.log"
	[ "$(active_nodes)" -eq 40 ]
	kill -TERM "$SIM2_PID"
	wait "$SIM2_PID" 2>/dev/null || true
	SIM2_PID=
	line=$(grep -o 'traffic over [0-9]*s: [0-9]* replies' "$DATA/sim2.log")
	echo "$line"
	secs=$(echo "$line" | awk '{print $3 + 0}') replies=$(echo "$line" | awk '{print $4}')
	# per agent and second: ~0.5 paced (1 unpaced); the first watches came
	# before the pace reached 2 s
	[ "$(( (replies - 80) * 100 / 40 / secs ))" -le 75 ]
	# gone: silent since their last watch began (up to 2 s before the
	# stop), so DOWN 4 to 6 s after it (unpaced: 2 to 3 s), within 12 s
	sleep 3
	[ "$(active_nodes)" -eq 40 ]
	wait_for 12 '[ "$(active_nodes)" -eq 0 ]'
}

@test "a wrong join token: no simulated agent joins, and the simulator says why" {
	tls_only
	good=$(cat "$DATA/server/client/join.token")
	# The same CA, an unknown secret.
	bad="${good%????}0000"
	[ "$bad" != "$good" ] || bad="${good%????}1111"
	"$BERTH_BIN" agent --simulate 3 --name bad --server "$BERTH_ADDR" --join-token "$bad" \
		>>"$DATA/sim2.log" 2>&1 3>&- &
	SIM2_PID=$!
	wait_for 10 'grep -q "join: HTTP 401" "$DATA/sim2.log"'
	grep -q 'unknown or revoked token' "$DATA/sim2.log"
	! "$BERTH_BIN" node list --json | grep -q '"bad-'
	# A token of another cluster is refused before anything is sent.
	run "$BERTH_BIN" agent --simulate 3 --name bad --server "$BERTH_ADDR" \
		--join-token "bj1.$(printf 'a%.0s' $(seq 64)).0123456789abcdef.$(printf 'b%.0s' $(seq 64))"
	[ "$status" -ne 0 ]
	[[ "$output" == *"is not the cluster CA the join token names"* ]]
	# A TLS server without a token.
	run "$BERTH_BIN" agent --simulate 3 --name bad --server "$BERTH_ADDR"
	[ "$status" -ne 0 ]
	[[ "$output" == *"need its join token"* ]]
}

@test "--sim-source-addrs: each simulated agent connects from its own loopback address" {
	command -v ss >/dev/null || skip "needs ss (iproute2)"
	# shellcheck disable=SC2046
	"$BERTH_BIN" agent --simulate 300 --name src --sim-source-addrs --server "$BERTH_ADDR" \
		$(join_flags "$DATA/server") >>"$DATA/sim2.log" 2>&1 3>&- &
	SIM2_PID=$!
	wait_for 30 '[ "$(active_nodes)" -eq 350 ]'
	# Agent 0 is 127.0.0.1, agent 251 is 127.0.1.2, and so on: 300 addresses.
	n=$(ss -Htn state established "( dport = :$PORT )" | awk '{print $3}' | sed 's/:[0-9]*$//' | sort -u | wc -l)
	[ "$n" -ge 300 ]
	ss -Htn state established "( dport = :$PORT )" | grep -q '127\.0\.1\.2:'
}
