#!/usr/bin/env bats
# berth agent --simulate: many agents over the real protocol in one process,
# against a real `berth server`. No root needed: simulated tasks run nothing.

load helpers

setup() {
	DATA=$(mktemp -d /tmp/berth-e2e-sim.XXXXXX)
	PORT=$(free_port)
	export BERTH_ADDR="http://127.0.0.1:$PORT"
	"$BERTH_BIN" server --data-dir "$DATA/server" --addr "127.0.0.1:$PORT" >>"$DATA/server.log" 2>&1 &
	SERVER_PID=$!
	wait_for 10 'curl -fsS "$BERTH_ADDR/v1/health" >/dev/null 2>&1'
	"$BERTH_BIN" agent --simulate 50 --name sim --server "127.0.0.1:$PORT" --cpu 4 --mem 8GiB \
		--sim-racks 5 >>"$DATA/sim.log" 2>&1 &
	SIM_PID=$!
	wait_for 20 '[ "$(active_nodes)" -eq 50 ]'
}

teardown() {
	stop_pids ${SIM_PID:-} ${SERVER_PID:-}
	if [ "${BATS_TEST_COMPLETED:-}" != 1 ]; then
		echo "--- server log ---" >&2
		tail -30 "$DATA/server.log" >&2 || true
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
