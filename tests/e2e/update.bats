#!/usr/bin/env bats
# Rolling updates with real processes: httpd-tiny serves its version string
# on {{ports.http}}, and a health check on it decides when a new task is
# RUNNING. An update to a good version rolls forward; one whose health checks
# fail rolls back by itself; pause/resume, canaries and `berth job plan`.

load helpers

KEY=alice/devel/web

setup() {
	require_root
	start_up
}

teardown() {
	cleanup_up
	rm -f /tmp/berth-spec.*.yaml 2>/dev/null || true
}

# web_spec VERSION [HEALTH_PATH] [INSTANCES] [WATCH]: the service at VERSION
# (the body it answers); a health path of /fail makes its checks fail.
web_spec() {
	local version=$1 path=${2:-/health} n=${3:-3} watch=${4:-300ms}
	spec <<EOF2
job: $KEY
instances: $n
task:
  command: ["$BERTH_TOOLS/httpd-tiny", "{{ports.http}}", "$version"]
  resources: {cpu: 0.1, memory: 16MiB, ports: [http]}
  health: {http: $path, port: http, interval: 100ms, timeout: 500ms, initial_delay: 0s, failures: 2}
  stop_grace: 2s
update: {batch_size: 1, watch: $watch, max_instance_failures: 0, max_total_failures: 0}
EOF2
}

# What every instance answers over HTTP, in instance order, one per line.
served() {
	local ports p
	ports=$(status_json "$KEY" |
		jget '"\n".join(str(t["ports"]["http"]) for t in sorted(d["tasks"], key=lambda t: t["instance"]))')
	for p in $ports; do
		curl -fsS --max-time 2 "http://127.0.0.1:$p/" || echo "(no answer on $p)"
		echo
	done
}

update_field() {
	"$BERTH_BIN" update status "$KEY" --json | jget "d[\"$1\"]"
}

# Start version 1 and wait until every instance answers it.
start_v1() {
	run "$BERTH_BIN" job run "$(web_spec v1 /health "${1:-3}")"
	[ "$status" -eq 0 ]
	[ "$(served | sort -u)" = v1 ]
}

@test "an update to a good version rolls forward and every instance answers it" {
	start_v1
	run "$BERTH_BIN" job run "$(web_spec v2)"
	echo "$output"
	[ "$status" -eq 0 ]
	[[ "$output" == *"updated (version 2)"* ]]
	[[ "$output" == *"ROLLED_FORWARD"* ]]
	[ "$(update_field state)" = ROLLED_FORWARD ]
	[ "$(update_field updated)" = 3 ]
	[ "$(served)" = "$(printf 'v2\nv2\nv2')" ]
	status_json "$KEY" | python3 -c '
import json, sys
d = json.load(sys.stdin)
assert d["version"] == 2, d["version"]
assert [t["version"] for t in d["tasks"]] == [2, 2, 2], d["tasks"]
assert all(t["state"] == "RUNNING" for t in d["tasks"])
'
	# The old tasks stopped gracefully (httpd-tiny exits 0 on SIGTERM).
	"$BERTH_BIN" job status "$KEY" --all --json | python3 -c '
import json, sys
d = json.load(sys.stdin)
old = [t for t in d["tasks"] if t["version"] == 1]
assert len(old) == 3, [(t["version"], t["state"]) for t in d["tasks"]]
assert all(t["state"] == "KILLED" for t in old), [t["state"] for t in old]
'
}

@test "an update whose health checks fail rolls back by itself" {
	start_v1
	run "$BERTH_BIN" job run "$(web_spec v2 /fail)"
	echo "$output"
	[ "$status" -ne 0 ]
	[[ "$output" == *"ROLLED_BACK"* ]]
	[ "$(update_field state)" = ROLLED_BACK ]
	[[ "$(update_field message)" == *"on version 1"* ]]
	[ "$(served)" = "$(printf 'v1\nv1\nv1')" ]
	status_json "$KEY" | python3 -c '
import json, sys
d = json.load(sys.stdin)
assert d["version"] == 1, d["version"]
assert [t["version"] for t in d["tasks"]] == [1, 1, 1], d["tasks"]
assert all(t["state"] == "RUNNING" for t in d["tasks"])
'
	# The first new task failed its health check; the instances after it
	# were never touched (their tasks have no ancestor).
	"$BERTH_BIN" job status "$KEY" --all --json | python3 -c '
import json, sys
d = json.load(sys.stdin)
bad = [t for t in d["tasks"] if t["version"] == 2]
assert bad and all(t["instance"] == 0 for t in bad), [(t["instance"], t["state"]) for t in bad]
assert any("health check failed" in t["message"] for t in bad), [t["message"] for t in bad]
active = {t["instance"]: t for t in d["tasks"] if t["state"] == "RUNNING"}
assert "ancestor" not in active[1] and "ancestor" not in active[2], active
'
}

@test "pause stops an update, resume finishes it" {
	start_v1
	run "$BERTH_BIN" job run --detach "$(web_spec v2 /health 3 1s)"
	[ "$status" -eq 0 ]
	run "$BERTH_BIN" update pause "$KEY"
	echo "$output"
	[ "$status" -eq 0 ]
	[[ "$output" == *"ROLL_FORWARD_PAUSED"* ]]
	before=$(update_field updated)
	sleep 3 # three watch periods: an unpaused update would have finished
	[ "$(update_field state)" = ROLL_FORWARD_PAUSED ]
	[ "$(update_field updated)" = "$before" ]
	# Only the instance in flight when it paused moved.
	[ "$(served | tail -2)" = "$(printf 'v1\nv1')" ]
	run "$BERTH_BIN" update resume "$KEY"
	[ "$status" -eq 0 ]
	[[ "$output" == *"ROLLING_FORWARD"* ]]
	wait_for 30 '[ "$(update_field state)" = ROLLED_FORWARD ]'
	[ "$(served)" = "$(printf 'v2\nv2\nv2')" ]
	# Nothing to pause any more.
	run "$BERTH_BIN" update pause "$KEY"
	[ "$status" -ne 0 ]
	[[ "$output" == *"no update in progress"* ]]
}

@test "a canary updates only the instances asked for" {
	start_v1 4
	run "$BERTH_BIN" job run --instances 0-1 "$(web_spec v2 /health 4)"
	echo "$output"
	[ "$status" -eq 0 ]
	[ "$(update_field state)" = ROLLED_FORWARD ]
	[ "$(update_field total)" = 2 ]
	[ "$(served)" = "$(printf 'v2\nv2\nv1\nv1')" ]
	run "$BERTH_BIN" job run --instances 3-1 "$(web_spec v3 /health 4)"
	[ "$status" -ne 0 ]
	[[ "$output" == *"instances"* ]]
}

@test "job plan: 0 when nothing changes, 1 with a diff when something would, 2 on a bad file" {
	new=$(web_spec v1)
	run "$BERTH_BIN" job plan "$new"
	echo "$output"
	[ "$status" -eq 1 ]
	[[ "$output" == *"would be created"* ]]
	run "$BERTH_BIN" job run "$new"
	[ "$status" -eq 0 ]
	run "$BERTH_BIN" job plan "$new"
	echo "$output"
	[ "$status" -eq 0 ]
	[[ "$output" == *"no changes"* ]]
	run "$BERTH_BIN" job plan "$(web_spec v2)"
	echo "$output"
	[ "$status" -eq 1 ]
	[[ "$output" == *"version 1 -> 2"* ]]
	[[ "$output" == *"task.command"* ]]
	[[ "$output" == *"instances updated: 0 1 2"* ]]
	# Scaling only: a change, same version, no instance updated.
	run "$BERTH_BIN" job plan "$(web_spec v1 /health 5)"
	echo "$output"
	[ "$status" -eq 1 ]
	[[ "$output" == *"version 1 -> 1"* ]]
	[[ "$output" == *"instances added: 3 4"* ]]
	[[ "$output" != *"instances updated"* ]]
	# The plan changed nothing.
	[ "$(served)" = "$(printf 'v1\nv1\nv1')" ]
	bad=$(spec <<'EOF2'
job: alice/devel/web
task:
  command: ["sleep", "1"]
  resources: {cpu: 0.1, memory: 64 potatoes}
EOF2
)
	run "$BERTH_BIN" job plan "$bad"
	echo "$output"
	[ "$status" -eq 2 ]
	[[ "$output" == *"$bad:4:"* ]]
	[[ "$output" == *"memory"* ]]
	run "$BERTH_BIN" job plan /nonexistent/spec.yaml
	[ "$status" -eq 2 ]
}
