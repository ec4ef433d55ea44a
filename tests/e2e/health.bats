#!/usr/bin/env bats
# Health checks run by the agent: a task is RUNNING only once its checks
# pass, and a task whose checks keep failing is killed and replaced.

load helpers

setup() {
	require_root
	start_up
}

teardown() {
	cleanup_up
}

@test "an HTTP service becomes RUNNING only after its health check passes" {
	f=$(spec <<EOF2
job: alice/devel/healthy
task:
  command: ["$BERTH_TOOLS/httpd-tiny", "{{ports.http}}"]
  resources: {cpu: 0.1, memory: 16MiB, ports: [http]}
  health: {http: /health, port: http, interval: 200ms, timeout: 500ms, initial_delay: 300ms, successes: 2, failures: 3}
EOF2
)
	run "$BERTH_BIN" job run "$f"
	[ "$status" -eq 0 ]
	st=$(status_json alice/devel/healthy)
	echo "$st" | python3 -c '
import json, sys
t = json.load(sys.stdin)["tasks"][0]
ev = [e["state"] for e in t["events"]]
assert t["state"] == "RUNNING", t
assert "STARTING" in ev and ev.index("STARTING") < ev.index("RUNNING"), ev
starting = [e for e in t["events"] if e["state"] == "STARTING"][0]["time_ms"]
running = [e for e in t["events"] if e["state"] == "RUNNING"][0]["time_ms"]
# initial delay 300 ms, then two passes 200 ms apart
assert running - starting >= 400, (running - starting)
'
}

@test "a task whose HTTP health check keeps failing is killed with a message that says so, and replaced" {
	f=$(spec <<EOF2
job: alice/devel/sick
task:
  command: ["$BERTH_TOOLS/httpd-tiny", "{{ports.http}}"]
  resources: {cpu: 0.1, memory: 16MiB, ports: [http]}
  health: {http: /fail, port: http, interval: 200ms, timeout: 500ms, initial_delay: 0s, failures: 2}
  stop_grace: 1s
EOF2
)
	"$BERTH_BIN" job run --detach "$f"
	wait_for 20 '"$BERTH_BIN" job status alice/devel/sick --all --json | grep -q "health check failed"'
	run "$BERTH_BIN" job status alice/devel/sick --all --json
	echo "$output" | python3 -c '
import json, sys
d = json.load(sys.stdin)
failed = [t for t in d["tasks"] if t["state"] == "FAILED"]
assert failed, [t["state"] for t in d["tasks"]]
assert "health check failed 2 times in a row" in failed[0]["message"], failed[0]["message"]
assert "status 500" in failed[0]["message"], failed[0]["message"]
# never RUNNING: it never passed
assert "RUNNING" not in [e["state"] for e in failed[0]["events"]]
# replaced: a newer task records it as its ancestor
assert any(t.get("ancestor") == failed[0]["id"] for t in d["tasks"])
'
}

@test "a command health check runs as the task's user" {
	f=$(spec <<'EOF2'
job: alice/devel/cmdcheck
task:
  command: ["sleep", "300"]
  user: nobody
  resources: {cpu: 0.1, memory: 16MiB}
  health: {command: ["/bin/sh", "-c", "test $(id -un) = nobody"], interval: 200ms, timeout: 1s, initial_delay: 0s, failures: 2}
EOF2
)
	run "$BERTH_BIN" job run "$f"
	[ "$status" -eq 0 ]
	[ "$(running_count alice/devel/cmdcheck)" -eq 1 ]
}

@test "a command health check runs inside the task: its /tmp, pid namespace, cgroup, env and user; never on the host" {
	esc=/tmp/berth-e2e-health-escape
	rm -f "$esc"
	f=$(spec <<'EOF2'
job: alice/devel/inside
task:
  command: ["/bin/sh", "-c", "echo mine > /tmp/task-marker; exec sleep 300"]
  user: nobody
  resources: {cpu: 0.1, memory: 16MiB}
  health:
    command: 'test "$(id -u)" = 65534 && test -f /tmp/task-marker && grep -q sleep /proc/2/cmdline && grep -q "/$BERTH_TASK_ID$" /proc/self/cgroup && grep -q "^NoNewPrivs:.*1" /proc/self/status && grep -q "^Seccomp:.*2" /proc/self/status && touch /tmp/berth-e2e-health-escape'
    interval: 200ms
    timeout: 2s
    initial_delay: 0s
    failures: 3
EOF2
)
	run "$BERTH_BIN" job run "$f"
	echo "$output"
	[ "$status" -eq 0 ]
	[ "$(running_count alice/devel/inside)" -eq 1 ]
	id=$(status_json alice/devel/inside | jget 'd["tasks"][0]["id"]')
	# The check wrote /tmp: the task's own, not the host's.
	[ -e "$DATA/tasks/$id/tmp/berth-e2e-health-escape" ]
	[ ! -e "$esc" ]
}

@test "a command health check has the uid of the task's program" {
	f=$(spec <<'EOF2'
job: alice/devel/sameuid
task:
  command: ["sleep", "300"]
  resources: {cpu: 0.1, memory: 16MiB}
  health:
    command: 'test "$(id -u)" = "$(sed -n "s/^Uid:[[:space:]]*\([0-9]*\).*/\1/p" /proc/2/status)" && test "$(id -g)" = "$(sed -n "s/^Gid:[[:space:]]*\([0-9]*\).*/\1/p" /proc/2/status)"'
    interval: 200ms
    timeout: 2s
    initial_delay: 0s
    failures: 3
EOF2
)
	run "$BERTH_BIN" job run "$f"
	echo "$output"
	[ "$status" -eq 0 ]
	[ "$(running_count alice/devel/sameuid)" -eq 1 ]
}

@test "a command health check whose program is not in the task fails, saying so" {
	f=$(spec <<EOF2
job: alice/devel/nocheck
task:
  command: ["sleep", "300"]
  resources: {cpu: 0.1, memory: 16MiB}
  health: {command: ["/no/such/check"], interval: 200ms, timeout: 2s, initial_delay: 0s, failures: 2}
  stop_grace: 1s
EOF2
)
	"$BERTH_BIN" job run --detach "$f"
	wait_for 20 '"$BERTH_BIN" job status alice/devel/nocheck --all --json | grep -q "health check failed"'
	run "$BERTH_BIN" job status alice/devel/nocheck --all --json
	echo "$output" | python3 -c '
import json, sys
d = json.load(sys.stdin)
failed = [t for t in d["tasks"] if t["state"] == "FAILED"]
assert failed, [t["state"] for t in d["tasks"]]
m = failed[0]["message"]
assert "command exited 127" in m and "cannot run \x27/no/such/check\x27 in the task" in m, m
'
}

@test "health checks resume on a task re-adopted after its agent restarted" {
	sick=/var/tmp/berth-e2e-sick-$$
	rm -f "$sick"
	f=$(spec <<EOF2
job: alice/devel/readopt
task:
  command: ["sleep", "300"]
  resources: {cpu: 0.1, memory: 16MiB}
  health: {command: ["/bin/sh", "-c", "test ! -e $sick"], interval: 200ms, timeout: 1s, initial_delay: 0s, failures: 2}
  stop_grace: 1s
EOF2
)
	run "$BERTH_BIN" job run "$f"
	[ "$status" -eq 0 ]
	id=$(status_json alice/devel/readopt | jget 'd["tasks"][0]["id"]')
	pid=$(status_json alice/devel/readopt | jget 'd["tasks"][0]["pid"]')
	# The agent (and server) die; the task lives on and is re-adopted.
	kill -KILL "$UP_PID"
	wait "$UP_PID" 2>/dev/null || true
	UP_PID=
	kill -0 "$pid"
	start_up "$DATA"
	wait_for 10 '[ "$(status_json alice/devel/readopt | jget "d[\"tasks\"][0][\"id\"]")" = "$id" ] && [ "$(running_count alice/devel/readopt)" -eq 1 ]'
	[ "$(status_json alice/devel/readopt | jget 'd["tasks"][0]["pid"]')" = "$pid" ]
	# The task turns sick: its re-adopted checks see it, and it is replaced.
	touch "$sick"
	wait_for 20 '"$BERTH_BIN" job status alice/devel/readopt --all --json | grep -q "health check failed"'
	rm -f "$sick"
	run "$BERTH_BIN" job status alice/devel/readopt --all --json
	echo "$output" | jget '[t["state"] for t in d["tasks"] if t["id"]=="'"$id"'"][0]' | grep -qx FAILED
	! kill -0 "$pid" 2>/dev/null || false
	wait_for 10 '[ "$(running_count alice/devel/readopt)" -eq 1 ]'
}
