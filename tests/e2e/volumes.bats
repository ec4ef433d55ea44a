#!/usr/bin/env bats
# task.volumes: host paths bound into an exec task, read-only or read-write.

load helpers

setup() {
	require_root
	VOL=$(mktemp -d /tmp/berth-vol.XXXXXX)
	# Host volumes only from the agent's allowlist (docs/security.md).
	BERTH_UP_FLAGS="${BERTH_UP_FLAGS:-} --volume-root $VOL"
	start_up
}

teardown() {
	cleanup_up
	rm -rf "$VOL"
}

@test "an exec task reads a read-only volume, cannot write to it, and writes through a read-write one" {
	mkdir "$VOL/ro" "$VOL/rw"
	chown 65534:65534 "$VOL/rw" # the task runs as nobody (no user in its spec)
	echo "hello from the host" >"$VOL/ro/greeting"
	# The exec task sees the host's root: the paths are host paths that the
	# binds overlay in the task's mount namespace (made when missing, never
	# on the host: under /tmp that is the task's own tmp/).
	f=$(spec <<EOF
job: alice/devel/vols
type: batch
task:
  command: ["/bin/sh", "-c", "cat $VOL/in-ro/greeting; echo no >$VOL/in-ro/new; echo yes >$VOL/in-rw/out; exit 0"]
  resources: {cpu: 0.1, memory: 16MiB}
  volumes:
    - {host: $VOL/ro, path: $VOL/in-ro, read_only: true}
    - {host: $VOL/rw, path: $VOL/in-rw}
EOF
)
	run "$BERTH_BIN" job run "$f"
	[ "$status" -eq 0 ]
	run "$BERTH_BIN" task logs alice/devel/vols/0
	[ "$output" = "hello from the host" ]
	run "$BERTH_BIN" task logs alice/devel/vols/0 --stderr
	echo "$output" | grep -q "Read-only file system"
	[ ! -e "$VOL/ro/new" ]
	[ "$(cat "$VOL/rw/out")" = yes ]
	# The binds were the task's only (its /tmp is the sandbox's tmp/).
	[ ! -e "$VOL/in-rw" ]
}

@test "a volume whose host path is missing fails the task with the path" {
	f=$(spec <<EOF
job: alice/devel/novol
type: batch
max_task_failures: 1
task:
  command: ["/bin/true"]
  resources: {cpu: 0.1, memory: 16MiB}
  volumes:
    - {host: $VOL/missing, path: /data}
EOF
)
	run "$BERTH_BIN" job run "$f"
	[ "$status" -ne 0 ]
	run "$BERTH_BIN" job status alice/devel/novol --json --all
	echo "$output" | grep -q '"FAILED"'
	echo "$output" | grep -q "volume host path '$VOL/missing': no such file or directory"
}

@test "volumes are checked when the spec is read" {
	f=$(spec <<'EOF'
job: alice/devel/badvol
task:
  command: ["/bin/true"]
  volumes:
    - {host: /srv, path: data}
EOF
)
	run "$BERTH_BIN" job run "$f"
	[ "$status" -ne 0 ]
	echo "$output" | grep -q "task.volumes\[0\].path: expected an absolute path without '..', found 'data'"
}
