#!/usr/bin/env bats
# Host volumes by allowlist (--volume-root), no bind options, no mount point
# made on the host; the modes of the files that hold env values.

load helpers

setup() {
	require_root
	VOL=$(mktemp -d /tmp/berth-vsec.XXXXXX)
	mkdir "$VOL/root" "$VOL/outside"
	echo "allowed" >"$VOL/root/greeting"
	echo "secret" >"$VOL/outside/greeting"
	BERTH_UP_FLAGS="${BERTH_UP_FLAGS:-} --volume-root $VOL/root"
	start_up
}

teardown() {
	cleanup_up
	rm -rf "$VOL" "${MP:-}"
}

# A batch job ($3) reading greeting from a volume of host path $1 (at
# /run/vol: an exec task's mount point is made under an existing directory).
vol_job() {
	spec <<EOF
job: alice/devel/$2
type: batch
max_task_failures: 1
task:
  command: ["/bin/sh", "-c", "cat /run/vol/greeting"]
  resources: {cpu: 0.1, memory: 16MiB}
  volumes:
    - {host: $1, path: /run/vol}
EOF
}

@test "a volume under a volume root works" {
	f=$(vol_job "$VOL/root" ok)
	run "$BERTH_BIN" job run "$f"
	[ "$status" -eq 0 ]
	run "$BERTH_BIN" task logs alice/devel/ok/0
	[ "$output" = "allowed" ]
	# The node tells its roots.
	run "$BERTH_BIN" node list --json
	[ "$(echo "$output" | jget 'd[0]["attributes"]["volume.roots"]')" = "$VOL/root" ]
}

@test "a volume outside every volume root fails the task, naming the rule and --volume-root" {
	f=$(vol_job "$VOL/outside" out)
	run "$BERTH_BIN" job run "$f"
	[ "$status" -ne 0 ]
	run "$BERTH_BIN" job status alice/devel/out --json --all
	echo "$output" | grep -q '"FAILED"'
	echo "$output" | grep -q "volume host path '$VOL/outside' refused: not under a volume root of this agent (--volume-root: $VOL/root)"
	run "$BERTH_BIN" task logs alice/devel/out/0
	! echo "$output" | grep -q secret
}

@test "a symlink inside a volume root that leads out of it is refused" {
	ln -s "$VOL/outside" "$VOL/root/escape"
	f=$(vol_job "$VOL/root/escape" esc)
	run "$BERTH_BIN" job run "$f"
	[ "$status" -ne 0 ]
	run "$BERTH_BIN" job status alice/devel/esc --json --all
	echo "$output" | grep -q '"FAILED"'
	echo "$output" | grep -q "it resolves to '$VOL/outside', which is not under a volume root"
	# '..' is refused at submit; through a symlink it resolves out too.
	ln -s .. "$VOL/root/up"
	f=$(vol_job "$VOL/root/up/outside" up)
	run "$BERTH_BIN" job run "$f"
	[ "$status" -ne 0 ]
}

@test "a missing host path under a root is refused, not created" {
	f=$(vol_job "$VOL/root/missing" missing)
	run "$BERTH_BIN" job run "$f"
	[ "$status" -ne 0 ]
	run "$BERTH_BIN" job status alice/devel/missing --json --all
	echo "$output" | grep -q "volume host path '$VOL/root/missing': no such file or directory (berth never creates it)"
	[ ! -e "$VOL/root/missing" ]
}

@test "'/' and paths with ':' or ',' are refused at submit with 400" {
	code=$(api_curl -s -o "$VOL/body" -w '%{http_code}' -XPOST "$BERTH_ADDR/v1/jobs" \
		-d '{"job":"alice/devel/root","task":{"command":["/bin/true"],"volumes":[{"host":"/","path":"/host"}]}}')
	[ "$code" = 400 ]
	grep -q "nothing but '/'" "$VOL/body"
	code=$(api_curl -s -o "$VOL/body" -w '%{http_code}' -XPOST "$BERTH_ADDR/v1/jobs" \
		-d "{\"job\":\"alice/devel/colon\",\"task\":{\"command\":[\"/bin/true\"],\"volumes\":[{\"host\":\"$VOL/root:/etc:rw\",\"path\":\"/data\"}]}}")
	[ "$code" = 400 ]
	grep -q "without ':', ','" "$VOL/body"
	code=$(api_curl -s -o "$VOL/body" -w '%{http_code}' -XPOST "$BERTH_ADDR/v1/jobs" \
		-d "{\"job\":\"alice/devel/comma\",\"task\":{\"command\":[\"/bin/true\"],\"volumes\":[{\"host\":\"$VOL/root\",\"path\":\"/data,ro\"}]}}")
	[ "$code" = 400 ]
}

@test "a missing mount point outside /tmp is made for the task only, never on the host" {
	MP=$(mktemp -d /var/tmp/berth-mp.XXXXXX)
	chmod 0755 "$MP" # the task runs as nobody
	echo "kept" >"$MP/keep"
	f=$(spec <<EOF
job: alice/devel/mp
type: batch
task:
  command: ["/bin/sh", "-c", "cat $MP/a/b/greeting; cat $MP/keep"]
  resources: {cpu: 0.1, memory: 16MiB}
  volumes:
    - {host: $VOL/root, path: $MP/a/b, read_only: true}
EOF
)
	run "$BERTH_BIN" job run "$f"
	[ "$status" -eq 0 ]
	run "$BERTH_BIN" task logs alice/devel/mp/0
	[ "$output" = "$(printf 'allowed\nkept')" ]
	[ ! -e "$MP/a" ]
	[ "$(ls "$MP")" = keep ]
}

@test "a dangling symlink as a mount point is not followed to the host" {
	# Binding a file onto a missing mount point once created it through a
	# dangling symlink, wherever that pointed on the host.
	MP=$(mktemp -d /var/tmp/berth-mp.XXXXXX)
	mkdir "$MP/elsewhere"
	ln -s "$MP/elsewhere/created" "$MP/link"
	f=$(spec <<EOF
job: alice/devel/mplink
type: batch
max_task_failures: 1
task:
  command: ["/bin/true"]
  resources: {cpu: 0.1, memory: 16MiB}
  volumes:
    - {host: $VOL/root/greeting, path: $MP/link}
EOF
)
	run "$BERTH_BIN" job run "$f"
	[ "$status" -ne 0 ]
	run "$BERTH_BIN" job status alice/devel/mplink --json --all
	echo "$output" | grep -q "volume path '$MP/link': a symlink on the way"
	[ ! -e "$MP/elsewhere/created" ]
}

@test "files that hold env values are 0600 and the data dir is not listable" {
	f=$(spec <<'EOF'
job: alice/devel/modes
task:
  command: ["/bin/sh", "-c", "echo out; echo err >&2; sleep 30"]
  env: {DB_PASSWORD: hunter2}
  resources: {cpu: 0.1, memory: 16MiB}
EOF
)
	run "$BERTH_BIN" job run "$f"
	[ "$status" -eq 0 ]
	wait_for 10 '[ "$(running_count alice/devel/modes)" = 1 ]'
	sandbox=$(ls -d "$DATA"/tasks/*modes* | head -1)
	wait_for 10 '[ -s "$sandbox/stdout" ]'
	# 0700: root's alone
	[ "$(stat -c %a "$DATA")" = 700 ]
	[ "$(stat -c %a "$DATA/tasks")" = 700 ]
	[ "$(stat -c %a "$sandbox/launch.json")" = 600 ]
	[ "$(stat -c %a "$sandbox/stdout")" = 600 ]
	[ "$(stat -c %a "$sandbox/stderr")" = 600 ]
	[ "$(stat -c %a "$DATA/state.db")" = 600 ]
	# An unprivileged user reads none of it.
	if command -v setpriv >/dev/null; then
		run setpriv --reuid=65534 --regid=65534 --clear-groups cat "$sandbox/launch.json"
		[ "$status" -ne 0 ]
		run setpriv --reuid=65534 --regid=65534 --clear-groups ls "$DATA"
		[ "$status" -ne 0 ]
	fi
	# Logs still come through the API.
	run "$BERTH_BIN" task logs alice/devel/modes/0
	[ "$output" = out ]
	# Backups are written 0600.
	"$BERTH_BIN" admin backup "$VOL/backup.jsonl"
	[ "$(stat -c %a "$VOL/backup.jsonl")" = 600 ]
}

@test "a mount point right under / is not made on the host" {
	top="/berth-e2e-mp-$$"
	[ ! -e "$top" ] || skip "$top exists"
	f=$(spec <<EOF
job: alice/devel/mptop
type: batch
max_task_failures: 1
task:
  command: ["/bin/true"]
  resources: {cpu: 0.1, memory: 16MiB}
  volumes:
    - {host: $VOL/root, path: $top/data}
EOF
)
	run "$BERTH_BIN" job run "$f"
	[ "$status" -ne 0 ]
	run "$BERTH_BIN" job status alice/devel/mptop --json --all
	echo "$output" | grep -q "volume path '$top/data': no such file or directory (berth makes no mount point on the host"
	[ ! -e "$top" ]
}

@test "a task running as an unprivileged user reads its cwd but not its launch.json" {
	id nobody >/dev/null 2>&1 || skip "no user nobody"
	# A data dir made 0755 by someone else is tightened to 0700; the
	# task still reaches its working directory by its absolute path
	# (through its own view of the data dir).
	cleanup_up
	D=$(mktemp -d /var/tmp/berth-e2e.XXXXXX)
	chmod 0755 "$D"
	start_up "$D"
	[ "$(stat -c %a "$D")" = 700 ]
	f=$(spec <<'EOF'
job: alice/devel/asnobody
type: batch
max_task_failures: 1
task:
  command: ["/bin/sh", "-c", "id -un; ls \"$(pwd)\" >/dev/null && echo cwd-ok; cat launch.json >/dev/null 2>&1 || echo launch-hidden"]
  user: nobody
  env: {DB_PASSWORD: hunter2}
  resources: {cpu: 0.1, memory: 16MiB}
EOF
)
	run "$BERTH_BIN" job run "$f"
	[ "$status" -eq 0 ]
	run "$BERTH_BIN" task logs alice/devel/asnobody/0
	echo "$output"
	[ "$output" = "$(printf 'nobody\ncwd-ok\nlaunch-hidden')" ]
}

@test "registry credentials not bound to a host stop the agent with a clear error" {
	cleanup_up
	D=$(mktemp -d /tmp/berth-e2e.XXXXXX)
	# shellcheck disable=SC2086
	run env BERTH_REGISTRY_AUTH=me:hunter2 timeout 10 "$BERTH_BIN" up ${BERTH_UP_FLAGS:-} --data-dir "$D" \
		--addr "127.0.0.1:$(free_port)"
	rm -rf "$D"
	[ "$status" -ne 0 ]
	echo "$output" | grep -q "BERTH_REGISTRY_AUTH: an entry is not bound to a registry host; write HOST=USER:PASSWORD"
	! echo "$output" | grep -q hunter2
}
