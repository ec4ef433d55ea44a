#!/usr/bin/env bats
# Restart policies and the graceful step of a stop.

load helpers

setup() {
	require_root
	start_up
}

teardown() {
	cleanup_up
}

@test "a restart policy delays restarts and gives an instance up after max_attempts" {
	f=$(spec <<'EOF2'
job: alice/devel/crashy
restart: {delay: 200ms, max_delay: 1s, max_attempts: 2, window: 1m}
task:
  command: ["/bin/sh", "-c", "exit 7"]
  resources: {cpu: 0.1, memory: 16MiB}
EOF2
)
	"$BERTH_BIN" job run --detach "$f"
	wait_for 20 '"$BERTH_BIN" job status alice/devel/crashy --all --json | grep -q "instance given up"'
	run "$BERTH_BIN" job status alice/devel/crashy --all --json
	echo "$output" | python3 -c '
import json, sys
d = json.load(sys.stdin)
ts = sorted(d["tasks"], key=lambda t: t["created_ms"])
# the first task plus two restarts, then nothing
assert len(ts) == 3, [t["state"] for t in ts]
assert all(t["state"] == "FAILED" for t in ts)
# the second restart waited ~2x the first (200 ms, then 400 ms)
states = [[e["state"] for e in t["events"]] for t in ts]
assert "THROTTLED" in states[1] and "THROTTLED" in states[2], states
'
	# A restart of the job starts the instance again.
	run "$BERTH_BIN" job restart alice/devel/crashy
	[ "$status" -eq 0 ]
	# --all: the restarted instance may have been given up again already.
	wait_for 10 '"$BERTH_BIN" job status alice/devel/crashy --all --json | grep -q "restarted by user"'
}

@test "a stop takes the graceful step first: POST to the shutdown path before SIGTERM" {
	f=$(spec <<EOF2
job: alice/devel/polite
task:
  command: ["$BERTH_TOOLS/httpd-tiny", "{{ports.http}}"]
  resources: {cpu: 0.1, memory: 16MiB, ports: [http]}
  shutdown: {http: /quitquitquit, port: http, wait: 5s}
EOF2
)
	"$BERTH_BIN" job run "$f"
	id=$(status_json alice/devel/polite | jget 'd["tasks"][0]["id"]')
	run "$BERTH_BIN" job kill alice/devel/polite
	[ "$status" -eq 0 ]
	wait_for 10 '! "$BERTH_BIN" job status alice/devel/polite --json >/dev/null 2>&1'
	log=$(cat "$DATA/tasks/$id/stdout")
	[[ "$log" == *quitquitquit* ]]
	[[ "$log" != *"stopping on SIGTERM"* ]]
}
