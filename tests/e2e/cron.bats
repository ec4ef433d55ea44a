#!/usr/bin/env bats
# Cron jobs: runs by schedule and by `berth cron start`, collision policies.

load helpers

setup() {
	require_root
	start_up
}

teardown() {
	cleanup_up
}

@test "a cron job runs when started by hand and by its schedule" {
	f=$(spec <<'EOF2'
job: bob/prod/tick
type: cron
schedule: "* * * * *"
instances: 2
task:
  command: ["/bin/sh", "-c", "echo run {{instance}}"]
  resources: {cpu: 0.1, memory: 16MiB}
EOF2
)
	run "$BERTH_BIN" job run "$f"
	[ "$status" -eq 0 ]
	# Nothing runs before it is due.
	[ "$(status_json bob/prod/tick | jget 'len(d["tasks"])')" -eq 0 ]
	run "$BERTH_BIN" cron list --json
	echo "$output" | jget 'd[0]["next_run"]' | grep -q ':00.000Z'
	# By hand.
	run "$BERTH_BIN" cron start bob/prod/tick
	[ "$status" -eq 0 ]
	wait_for 10 '[ "$("$BERTH_BIN" task logs bob/prod/tick/1 2>/dev/null)" = "run 1" ]'
	wait_for 10 '"$BERTH_BIN" job status bob/prod/tick --all --json | jget "sum(1 for t in d[\"tasks\"] if t[\"state\"]==\"FINISHED\")" | grep -qx 2'
	# By its schedule: the next minute boundary starts a second run.
	wait_for 70 '"$BERTH_BIN" job status bob/prod/tick --all --json | jget "sum(1 for t in d[\"tasks\"] if t[\"state\"]==\"FINISHED\")" | grep -qx 4'
	run "$BERTH_BIN" job status bob/prod/tick --all --json
	echo "$output" | grep -q "cron run scheduled for"
	echo "$output" | grep -q "cron run started by user"
}

@test "cron collision: cancel_new skips a run while the last one goes on, kill_existing replaces it" {
	f=$(spec <<'EOF2'
job: bob/prod/slow
type: cron
schedule: "0 0 1 1 *"
cron_collision: cancel_new
task:
  command: ["sleep", "300"]
  resources: {cpu: 0.1, memory: 16MiB}
EOF2
)
	"$BERTH_BIN" job run "$f"
	"$BERTH_BIN" cron start bob/prod/slow
	wait_for 10 '[ "$(running_count bob/prod/slow)" -eq 1 ]'
	run "$BERTH_BIN" cron start bob/prod/slow
	[ "$status" -ne 0 ]
	[[ "$output" == *cancel_new* ]]
	sed -i 's/cancel_new/kill_existing/' "$f"
	"$BERTH_BIN" job run "$f"
	old=$(status_json bob/prod/slow | jget 'd["tasks"][0]["id"]')
	run "$BERTH_BIN" cron start bob/prod/slow
	[ "$status" -eq 0 ]
	wait_for 15 '"$BERTH_BIN" job status bob/prod/slow --all --json | grep -q "killed by the next cron run"'
	wait_for 10 '[ "$(running_count bob/prod/slow)" -eq 1 ]'
	[ "$(status_json bob/prod/slow | jget 'd["tasks"][0]["id"]')" != "$old" ]
}

@test "a bad cron schedule is refused with its position" {
	f=$(spec <<'EOF2'
job: bob/prod/bad
type: cron
schedule: "61 * * * *"
task:
  command: ["true"]
EOF2
)
	run "$BERTH_BIN" job run "$f"
	[ "$status" -ne 0 ]
	[[ "$output" == *"$f:3:"*minute* ]]
}
