#!/usr/bin/env bats
# berth up: a single-node cluster, driven through the real CLI and API.

load helpers

setup() {
	require_root
	start_up
}

teardown() {
	cleanup_up
}

@test "a 3-instance service runs each task isolated in its own cgroup with its limits" {
	f=$(spec <<'EOF'
job: alice/devel/web
instances: 3
task:
  command: ["/bin/sh", "-c", "echo started {{instance}}; exec sleep 300"]
  resources: {cpu: 0.5, memory: 64MiB}
EOF
)
	run "$BERTH_BIN" job run "$f"
	[ "$status" -eq 0 ]
	[ "$(running_count alice/devel/web)" -eq 3 ]
	pids=$(status_json alice/devel/web | jget '" ".join(str(t["pid"]) for t in d["tasks"])')
	ids=$(status_json alice/devel/web | jget '" ".join(t["id"] for t in d["tasks"])')
	seen=""
	set -- $ids
	for pid in $pids; do
		id=$1; shift
		kill -0 "$pid"
		mem=$(cgroup_dir_of "$pid" memory)
		case "$seen" in *"$mem"*) echo "two tasks share $mem"; false ;; esac
		seen="$seen $mem"
		if [ -f "$mem/memory.limit_in_bytes" ]; then
			[ "$(cat "$mem/memory.limit_in_bytes")" -eq $((64 * 1024 * 1024)) ]
			cpu=$(cgroup_dir_of "$pid" cpu)
			[ "$(cat "$cpu/cpu.cfs_quota_us")" -eq $(( $(cat "$cpu/cpu.cfs_period_us") / 2 )) ]
		else
			[ "$(cat "$mem/memory.max")" -eq $((64 * 1024 * 1024)) ]
			read -r quota period <"$mem/cpu.max"
			[ "$quota" -eq $((period / 2)) ]
		fi
		# Own pid, mount, uts and ipc namespaces; hostname is the task id.
		for ns in pid mnt uts ipc; do
			[ "$(readlink /proc/$pid/ns/$ns)" != "$(readlink /proc/self/ns/$ns)" ]
		done
		[ "$(nsenter -t "$pid" -u hostname)" = "${id:0:63}" ]
		# The program is not pid 1 of its namespace (an init protects it).
		[ "$(awk '/^NSpid/ {print $NF}' /proc/$pid/status)" != 1 ]
		# no_new_privs is set.
		grep -q '^NoNewPrivs:[[:space:]]*1' /proc/$pid/status
	done
}

@test "a task killed with SIGKILL is replaced by a new task that records its ancestor" {
	f=$(spec <<'EOF'
job: alice/devel/sleeper
instances: 2
task:
  command: sleep 300
  resources: {cpu: 0.1, memory: 32MiB}
EOF
)
	"$BERTH_BIN" job run "$f"
	old_id=$(status_json alice/devel/sleeper | jget 'd["tasks"][0]["id"]')
	old_pid=$(status_json alice/devel/sleeper | jget 'd["tasks"][0]["pid"]')
	kill -KILL "$old_pid"
	wait_for 10 '[ "$(status_json alice/devel/sleeper | jget "d[\"tasks\"][0][\"id\"]")" != "$old_id" ]'
	wait_for 10 '[ "$(running_count alice/devel/sleeper)" -eq 2 ]'
	st=$(status_json alice/devel/sleeper)
	[ "$(echo "$st" | jget 'd["tasks"][0]["ancestor"]')" = "$old_id" ]
	run "$BERTH_BIN" job status alice/devel/sleeper --json --all
	echo "$output" | grep -q "killed by signal 9"
	new_pid=$(echo "$st" | jget 'd["tasks"][0]["pid"]')
	[ "$new_pid" != "$old_pid" ]
	kill -0 "$new_pid"
}

@test "a memory hog fails with a message that says the memory limit was hit" {
	f=$(spec <<EOF
job: alice/devel/hog
type: batch
max_task_failures: 1
task:
  command: ["$BERTH_TOOLS/memhog", "512"]
  resources: {cpu: 0.5, memory: 32MiB}
EOF
)
	run "$BERTH_BIN" job run "$f"
	[ "$status" -ne 0 ]
	st=$(status_json alice/devel/hog)
	run "$BERTH_BIN" job status alice/devel/hog --json --all
	echo "$output" | grep -q '"FAILED"'
	echo "$output" | grep -q 'memory limit 32 MiB exceeded'
	[ "$(echo "$st" | jget 'd["status"]')" = failed ]
}

@test "a batch job finishes and its output is in berth task logs" {
	f=$(spec <<'EOF'
job: bob/test/hello
type: batch
instances: 2
task:
  command: ["/bin/sh", "-c", "echo hello from {{instance}} of $BERTH_JOB; echo oops >&2"]
  resources: {cpu: 0.1, memory: 16MiB}
EOF
)
	run "$BERTH_BIN" job run "$f"
	[ "$status" -eq 0 ]
	echo "$output" | grep -q finished
	run "$BERTH_BIN" task logs bob/test/hello/1
	[ "$status" -eq 0 ]
	[ "$output" = "hello from 1 of bob/test/hello" ]
	run "$BERTH_BIN" task logs bob/test/hello/0 --stderr
	[ "$output" = "oops" ]
	run "$BERTH_BIN" job status bob/test/hello --all --json
	echo "$output" | grep -q '"FINISHED"'
}

@test "job kill stops every task and leaves no process behind" {
	f=$(spec <<'EOF'
job: alice/devel/forker
instances: 2
task:
  # The task leaves a daemonized grandchild behind: the kill must get it too.
  command: ["/bin/sh", "-c", "setsid sleep 400 & trap '' TERM; exec sleep 300"]
  resources: {cpu: 0.1, memory: 32MiB}
  stop_grace: 1s
EOF
)
	"$BERTH_BIN" job run "$f"
	pids=$(status_json alice/devel/forker | jget '" ".join(str(t["pid"]) for t in d["tasks"])')
	cgs=""
	for p in $pids; do cgs="$cgs $(cgroup_dir_of "$p" pids)"; done
	# Every process of the tasks, the daemonized grandchildren included
	# (a global pgrep would also see other users' sleeps on a shared host).
	procs() { cat $(for c in $cgs; do echo "$c/cgroup.procs"; done); }
	wait_for 5 '[ "$(procs | wc -w)" -ge 4 ]'
	all=$(procs)
	run "$BERTH_BIN" job kill alice/devel/forker
	[ "$status" -eq 0 ]
	wait_for 15 '! "$BERTH_BIN" job status alice/devel/forker --json >/dev/null 2>&1'
	for p in $pids; do ! kill -0 "$p" 2>/dev/null || false; done
	for p in $all; do ! kill -0 "$p" 2>/dev/null || false; done
	for c in $cgs; do [ ! -d "$c" ] || [ -z "$(cat "$c/cgroup.procs")" ]; done
	run "$BERTH_BIN" job list --json
	[ "$output" = "[]" ]
}

@test "restarting berth up with the same data dir brings the job back" {
	f=$(spec <<'EOF'
job: alice/prod/durable
instances: 2
task:
  command: sleep 300
  resources: {cpu: 0.1, memory: 16MiB}
EOF
)
	"$BERTH_BIN" job run "$f"
	stop_up
	! pgrep -f "berth supervise $DATA" >/dev/null || false
	start_up "$DATA"
	wait_for 20 '[ "$(running_count alice/prod/durable 2>/dev/null)" = 2 ]'
	run "$BERTH_BIN" job list --json
	echo "$output" | grep -q alice/prod/durable
}

@test "a bad spec is refused with file:line:col and nothing is submitted" {
	f=$(spec <<'EOF'
job: alice/devel/bad
task:
  command: sleep 1
  resources: {cpu: 0.1, memory: 64 potatoes}
EOF
)
	run "$BERTH_BIN" job run "$f"
	[ "$status" -ne 0 ]
	[[ "$output" == *"$f:4:"*"memory"* ]]
	run "$BERTH_BIN" job list --json
	[ "$output" = "[]" ]
}

@test "the API answers bad requests with JSON errors and the right status" {
	code=$(api_curl -s -o /tmp/berth-body.$$ -w '%{http_code}' -X POST -d '{"job": ' "$BERTH_ADDR/v1/jobs")
	[ "$code" = 400 ]
	grep -q '"error"' /tmp/berth-body.$$
	code=$(api_curl -s -o /tmp/berth-body.$$ -w '%{http_code}' "$BERTH_ADDR/v1/nope")
	[ "$code" = 404 ]
	code=$(api_curl -s -o /tmp/berth-body.$$ -w '%{http_code}' "$BERTH_ADDR/v1/jobs/NOT/a/key")
	[ "$code" = 400 ]
	head -c 2000000 /dev/zero | tr '\0' ' ' >/tmp/berth-big.$$
	code=$(api_curl -s -o /tmp/berth-body.$$ -w '%{http_code}' -X POST --data-binary @/tmp/berth-big.$$ "$BERTH_ADDR/v1/jobs")
	[ "$code" = 413 ]
	code=$(api_curl -s -o /tmp/berth-body.$$ -w '%{http_code}' -X POST -d '{"job":"a/devel/x","task":{"command":{"not":"a list"}}}' "$BERTH_ADDR/v1/jobs")
	[ "$code" = 400 ]
	grep -q 'task.command' /tmp/berth-body.$$
	rm -f /tmp/berth-body.$$ /tmp/berth-big.$$
	# Still alive.
	api_curl -fsS "$BERTH_ADDR/v1/health" >/dev/null
}

@test "an agent's bad watch or status is refused with a 400 that says what is wrong; its node stays ACTIVE" {
	node=$("$BERTH_BIN" node list --json | jget 'd[0]["name"]')
	body="$BATS_TEST_TMPDIR/body"
	post() { # ROUTE BODY -> the status code; the answer in $body
		node_curl -s -o "$body" -w '%{http_code}' -X POST --data-binary "$2" "$BERTH_ADDR/v1/agent/$1"
	}
	# Duplicate keys, anywhere in the body.
	[ "$(post watch "{\"name\":\"$node\",\"name\":\"$node\"}")" = 400 ]
	grep -q 'malformed JSON at line 1 column 19: duplicate object key' "$body"
	[ "$(post status "{\"name\":\"$node\",\"updates\":[{\"id\":\"x\",\"logs\":{\"a\":1,\"a\":2}}]}")" = 400 ]
	grep -q 'duplicate object key' "$body"
	# Bad UTF-8, a lone surrogate, a number past int64, nesting past 2048.
	[ "$(post status "$(printf '{"name":"%s","updates":[{"id":"x","message":"\300\200"}]}' "$node")")" = 400 ]
	grep -q 'unable to decode byte 0xc0' "$body"
	[ "$(post status '{"name":"'"$node"'","updates":[{"id":"x","message":"\ud800"}]}')" = 400 ]
	grep -q "invalid Unicode" "$body"
	[ "$(post watch '{"name":"'"$node"'","known_version":9223372036854775808}')" = 400 ]
	grep -q 'too big integer' "$body"
	deep=$(printf '%.0s[' $(seq 2100))
	[ "$(post watch "{\"name\":\"$node\",\"x\":$deep}")" = 400 ]
	grep -q 'maximum parsing depth reached' "$body"
	# Not an object; a list of the wrong type.
	[ "$(post watch '[1]')" = 400 ]
	grep -q 'malformed request: expected a JSON object' "$body"
	[ "$(post watch "{\"name\":\"$node\",\"known_version\":1,\"tasks\":{}}")" = 400 ]
	grep -q "field 'tasks': expected an array" "$body"
	[ "$(post status "{\"name\":\"$node\"}")" = 400 ]
	grep -q "field 'updates': expected an array" "$body"
	# Members the server does not use are skipped; an unknown task is ignored.
	[ "$(post status "{\"name\":\"$node\",\"x\":{\"y\":[1.5e3,null]},\"updates\":[{\"id\":\"nope\",\"state\":\"RUNNING\",\"message\":\"\\u00e9\"}]}")" = 200 ]
	[ "$("$BERTH_BIN" node list --json | jget 'd[0]["state"]')" = ACTIVE ]
}

@test "named ports are allocated without collisions and templates are expanded" {
	f=$(spec <<EOF
job: alice/devel/http
instances: 3
task:
  command: ["$BERTH_TOOLS/httpd-tiny", "{{ports.http}}", "hello {{instance}}"]
  resources: {cpu: 0.1, memory: 16MiB, ports: [http]}
EOF
)
	"$BERTH_BIN" job run "$f"
	ports=$(status_json alice/devel/http | jget '" ".join(str(t["ports"]["http"]) for t in d["tasks"])')
	[ "$(echo $ports | tr ' ' '\n' | sort -u | wc -l)" -eq 3 ]
	i=0
	for p in $ports; do
		[ "$p" -ge 31000 ] && [ "$p" -le 31999 ]
		wait_for 5 "curl -fsS http://127.0.0.1:$p/ >/dev/null 2>&1"
		[ "$(curl -fsS http://127.0.0.1:$p/)" = "hello $i" ]
		i=$((i + 1))
	done
}

@test "a task that keeps dying quickly is throttled with a growing back-off" {
	f=$(spec <<'EOF'
job: alice/devel/flappy
task:
  command: ["/bin/sh", "-c", "exit 3"]
  resources: {cpu: 0.1, memory: 16MiB}
EOF
)
	"$BERTH_BIN" job run --detach "$f"
	wait_for 15 'status_json alice/devel/flappy | grep -q THROTTLED'
	run "$BERTH_BIN" job status alice/devel/flappy --all --json
	echo "$output" | grep -q "exit status 3"
	# The first replacement came at once (no THROTTLED in its history); a
	# later one was throttled, and throttles grow.
	echo "$output" | python3 -c '
import json, sys
d = json.load(sys.stdin)
ts = sorted(d["tasks"], key=lambda t: t["created_ms"])
assert len(ts) >= 3, len(ts)
states = lambda t: [e["state"] for e in t["events"]]
assert "THROTTLED" not in states(ts[1]), states(ts[1])
assert any("THROTTLED" in states(t) for t in ts[2:])
'
}

@test "job status shows each task's transition history and runs as the spec's user" {
	f=$(spec <<'EOF'
job: carol/staging1/whoami
type: batch
task:
  command: ["/bin/sh", "-c", "id -un; hostname; echo $GREETING"]
  user: nobody
  env: {GREETING: "hi {{instance}}"}
  resources: {cpu: 0.1, memory: 16MiB}
EOF
)
	run "$BERTH_BIN" job run "$f"
	[ "$status" -eq 0 ]
	run "$BERTH_BIN" task logs carol/staging1/whoami/0
	[ "${lines[0]}" = nobody ]
	[[ "${lines[1]}" == carol-staging1-whoami-0-* ]]
	[ "${lines[2]}" = "hi 0" ]
	run "$BERTH_BIN" job status carol/staging1/whoami --all
	[ "$status" -eq 0 ]
	echo "$output" | grep -q PENDING
	echo "$output" | grep -q ASSIGNED
	echo "$output" | grep -q FINISHED
}

@test "CLI: --help on every command, unknown commands and missing jobs fail with a reason" {
	for c in up server agent job task node; do
		run "$BERTH_BIN" $c --help
		[ "$status" -eq 0 ]
		[[ "$output" == *usage* ]]
	done
	run "$BERTH_BIN" frobnicate
	[ "$status" -ne 0 ]
	run "$BERTH_BIN" job status alice/devel/nothing
	[ "$status" -ne 0 ]
	[[ "$output" == *"not found"* ]]
	run "$BERTH_BIN" job status not-a-key
	[ "$status" -ne 0 ]
	run "$BERTH_BIN" --addr http://127.0.0.1:1 job list
	[ "$status" -ne 0 ]
	run env BERTH_ADDR=http://127.0.0.1:1 "$BERTH_BIN" job list
	[ "$status" -ne 0 ]
	[[ "$output" == *"cannot reach"* ]]
	run "$BERTH_BIN" node list --json
	echo "$output" | grep -q '"ACTIVE"'
}
