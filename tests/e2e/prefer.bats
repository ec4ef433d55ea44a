#!/usr/bin/env bats
# task.prefer (soft constraints) with the simulator: 10 simulated agents
# (rack r<i % 5>), a real `berth server`. No root needed.

load helpers

setup() {
	DATA=$(mktemp -d /tmp/berth-e2e-prefer.XXXXXX)
	PORT=$(free_port)
	case " ${BERTH_UP_FLAGS:-} " in
	*" --insecure "*)
		export BERTH_ADDR="http://127.0.0.1:$PORT"
		SFLAGS=--insecure JOIN=
		;;
	*)
		export BERTH_ADDR="https://127.0.0.1:$PORT"
		SFLAGS= JOIN="--join-token-file $DATA/server/client/join.token"
		;;
	esac
	# shellcheck disable=SC2086
	"$BERTH_BIN" server --data-dir "$DATA/server" --addr "127.0.0.1:$PORT" $SFLAGS \
		>>"$DATA/server.log" 2>&1 3>&- &
	SERVER_PID=$!
	use_client_creds "$DATA/server"
	wait_for 10 'api_curl -fsS "$BERTH_ADDR/v1/health" >/dev/null 2>&1'
	# Each node takes 4 tasks of cpu 0.25.
	# shellcheck disable=SC2086
	"$BERTH_BIN" agent --simulate 10 --name sim --server "$BERTH_ADDR" $JOIN \
		--cpu 1 --mem 8GiB --sim-racks 5 >>"$DATA/sim.log" 2>&1 3>&- &
	SIM_PID=$!
	wait_for 30 '[ "$(active_nodes)" -eq 10 ]'
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

# job_spec KEY INSTANCES PREFER: a job of cpu 0.25 tasks.
job_spec() {
	spec <<EOF
job: $1
instances: $2
task:
  command: ["/bin/true"]
  resources: {cpu: 0.25, memory: 16MiB}
  prefer: $3
EOF
}

# Tasks of job $1 per rack, as "r0=N r1=N ..." (sim-i is in rack r<i % 5>).
per_rack() {
	status_json "$1" | jget '" ".join("r%d=%d" % (r, sum(1 for t in d["tasks"] if t.get("node") and int(t["node"].split("-")[1]) % 5 == r)) for r in range(5))'
}

@test "a job preferring rack r1 lands on r1's nodes while they fit, then elsewhere" {
	run "$BERTH_BIN" job run "$(job_spec sim/devel/web 8 '[{rack: r1, weight: 50}]')"
	echo "$output"
	[ "$status" -eq 0 ]
	wait_for 20 '[ "$(running_count sim/devel/web)" -eq 8 ]'
	# r1 is sim-1 and sim-6: 8 slots, all taken by the job.
	[ "$(per_rack sim/devel/web)" = "r0=0 r1=8 r2=0 r3=0 r4=0" ]
	# 4 more: r1 is full, they are placed elsewhere, not refused.
	run "$BERTH_BIN" job run "$(job_spec sim/devel/web 12 '[{rack: r1, weight: 50}]')"
	[ "$status" -eq 0 ]
	wait_for 20 '[ "$(running_count sim/devel/web)" -eq 12 ]'
	[[ "$(per_rack sim/devel/web)" == *"r1=8 "* ]]
	# A job whose preference no node matches runs all the same.
	run "$BERTH_BIN" job run "$(job_spec sim/devel/other 4 '[{rack: r9, weight: 10}]')"
	[ "$status" -eq 0 ]
	wait_for 20 '[ "$(running_count sim/devel/other)" -eq 4 ]'
}

@test "prefer rack limit:1 spreads a binpacked job over the racks; without it the job packs" {
	run "$BERTH_BIN" job run "$(job_spec sim/devel/spread 5 '[{rack: "limit:1", weight: 50}]')"
	[ "$status" -eq 0 ]
	wait_for 20 '[ "$(running_count sim/devel/spread)" -eq 5 ]'
	# Binpack alone puts the 5 tasks on 2 nodes of one or two racks.
	[ "$(per_rack sim/devel/spread)" = "r0=1 r1=1 r2=1 r3=1 r4=1" ]
	# Without the preference, for comparison.
	run "$BERTH_BIN" job run "$(job_spec sim/devel/packed 5 '[]')"
	[ "$status" -eq 0 ]
	wait_for 20 '[ "$(running_count sim/devel/packed)" -eq 5 ]'
	[ "$(status_json sim/devel/packed | jget 'len(set(t["node"] for t in d["tasks"]))')" -le 2 ]
	# A bad preference is refused with a clear error.
	f=$(job_spec sim/devel/bad 1 '[{rack: r1, weight: 500}]')
	run "$BERTH_BIN" job run "$f"
	[ "$status" -ne 0 ]
	[[ "$output" == *"task.prefer[0].weight: expected an integer between 1 and 100, found '500'"* ]]
}
