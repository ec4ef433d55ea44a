#!/usr/bin/env bats
# A busy node is not a dead node (issue 10): a real `berth server` and a few
# hundred simulated agents heartbeating, while clients read the large views
# in a loop, or while the server itself is paused. No agent is ever judged
# DOWN for the server's own business. No root needed.

load helpers

AGENTS=300

setup() {
	DATA=$(mktemp -d /tmp/berth-e2e-live.XXXXXX)
	PORT=$(free_port)
	export BERTH_ADDR="https://127.0.0.1:$PORT"
	"$BERTH_BIN" server --data-dir "$DATA/server" --addr "127.0.0.1:$PORT" >>"$DATA/server.log" 2>&1 &
	SERVER_PID=$!
	use_client_creds "$DATA/server"
	wait_for 10 'api_curl -fsS "$BERTH_ADDR/v1/health" >/dev/null 2>&1'
	"$BERTH_BIN" agent --simulate "$AGENTS" --name sim --server "https://127.0.0.1:$PORT" --cpu 8 \
		--mem 16GiB --join-token-file "$DATA/server/client/join.token" >>"$DATA/sim.log" 2>&1 &
	SIM_PID=$!
	wait_for 30 '[ "$(active_nodes)" -eq "$AGENTS" ]'
}

teardown() {
	kill -CONT "${SERVER_PID:-}" 2>/dev/null || true
	stop_pids ${POLL_PIDS:-} ${SIM_PID:-} ${SERVER_PID:-}
	if [ "${BATS_TEST_COMPLETED:-}" != 1 ]; then
		echo "--- server log ---" >&2
		grep -v ' info ' "$DATA/server.log" | tail -30 >&2 || true
	fi
	rm -rf "$DATA"
}


downs() {
	grep -c 'is down' "$DATA/server.log" || true
}

# poll_loop N: a client reading the large views in a loop, counting reads
# in $DATA/reads.N (one line per successful read).
poll_loop() {
	local n=$1 key
	while :; do
		"$BERTH_BIN" node list --json >/dev/null && echo node >>"$DATA/reads.$n"
		"$BERTH_BIN" job list --json >/dev/null && echo jobs >>"$DATA/reads.$n"
		"$BERTH_BIN" job status live/prod/web --json >/dev/null && echo status >>"$DATA/reads.$n"
	done
}

@test "clients polling node list and job list while $AGENTS agents heartbeat: no node is ever DOWN" {
	f="$DATA/web.yaml"
	cat >"$f" <<'EOF2'
job: live/prod/web
instances: 600
task:
  command: ["/bin/true"]
  resources: {cpu: 0.01, memory: 4MiB}
EOF2
	"$BERTH_BIN" job run --detach "$f"
	wait_for 30 '[ "$("$BERTH_BIN" job status live/prod/web --json | jget "sum(1 for t in d[\"tasks\"] if t[\"state\"]==\"RUNNING\")")" -eq 600 ]'
	POLL_PIDS=
	for n in 1 2 3; do
		poll_loop "$n" &
		POLL_PIDS="$POLL_PIDS $!"
	done
	sleep 15
	for pid in $POLL_PIDS; do kill "$pid" 2>/dev/null || true; done
	for pid in $POLL_PIDS; do wait "$pid" 2>/dev/null || true; done
	POLL_PIDS=
	reads=$(cat "$DATA"/reads.* | wc -l)
	echo "# $reads reads in 15 s by 3 clients; DOWN events: $(downs)" >&3
	[ "$reads" -ge 30 ]
	[ "$(downs)" -eq 0 ]
	[ "$(api_curl -fsS "$BERTH_ADDR/v1/health" | jget 'd["nodes_down_total"]')" -eq 0 ]
	# Every instance still runs, none was replaced.
	st=$("$BERTH_BIN" job status live/prod/web --all --json)
	[ "$(echo "$st" | jget 'sum(1 for t in d["tasks"] if t["state"]=="RUNNING")')" -eq 600 ]
	[ "$(echo "$st" | jget 'sum(1 for t in d["tasks"] if t["state"]=="LOST")')" -eq 0 ]
}

@test "a server paused for longer than the detection window marks no agent DOWN; a killed simulator's are" {
	kill -STOP "$SERVER_PID"
	sleep 4.5 # down_after is 3 s
	kill -CONT "$SERVER_PID"
	sleep 5
	echo "# after a 4.5 s pause: $(downs) DOWN events; deaf $(api_curl -fsS "$BERTH_ADDR/v1/health" | jget 'd["deaf_ms"]') ms" >&3
	[ "$(downs)" -eq 0 ]
	[ "$(active_nodes)" -eq "$AGENTS" ]
	# A really dead agent is still found out within a few seconds.
	kill -KILL "$SIM_PID"
	wait "$SIM_PID" 2>/dev/null || true
	SIM_PID=
	wait_for 8 '[ "$("$BERTH_BIN" node list --state DOWN --json | jget "len(d)")" -eq "$AGENTS" ]'
}

@test "node list pages through every node exactly once (BERTH_PAGE_LIMIT=7), and --state filters" {
	all=$("$BERTH_BIN" node list --json | jget '" ".join(n["name"] for n in d)')
	paged=$(BERTH_PAGE_LIMIT=7 "$BERTH_BIN" node list --json | jget '" ".join(n["name"] for n in d)')
	[ "$paged" = "$all" ]
	[ "$(echo "$paged" | tr ' ' '\n' | sort -u | wc -l)" -eq "$AGENTS" ]
	"$BERTH_BIN" node drain sim-42
	"$BERTH_BIN" node drain sim-7
	drained=$(BERTH_PAGE_LIMIT=1 "$BERTH_BIN" node list --state DRAINED --json | jget '" ".join(n["name"] for n in d)')
	[ "$drained" = "sim-42 sim-7" ]
	# The plain table is unchanged by paging.
	[ "$(BERTH_PAGE_LIMIT=7 "$BERTH_BIN" node list)" = "$("$BERTH_BIN" node list)" ]
	# Bad query parameters are a 400 that names them.
	run api_curl -sS "$BERTH_ADDR/v1/nodes?limit=-3"
	[[ "$output" == *"query 'limit'"* ]]
	run api_curl -sS -o /dev/null -w '%{http_code}' "$BERTH_ADDR/v1/nodes?state=SLEEPY"
	[ "$output" = 400 ]
	run "$BERTH_BIN" node list --state SLEEPY
	[ "$status" -ne 0 ]
	[[ "$output" == *"query 'state'"* ]]
}
