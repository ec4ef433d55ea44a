#!/usr/bin/env bats
# Exec tasks are unprivileged by default: nobody unless the spec names a
# user; root only on an agent started with --allow-root-tasks, and then with
# Docker's default capabilities, no_new_privs and the seccomp allowlist. The
# host's root is read-only to every task; its working directory works by the
# path getcwd() gives, even with the data dir under /tmp.

load helpers

setup() {
	require_root
}

teardown() {
	cleanup_up
}

# Docker's default capability set: CHOWN DAC_OVERRIDE FOWNER FSETID KILL
# SETGID SETUID SETPCAP NET_BIND_SERVICE NET_RAW SYS_CHROOT MKNOD
# AUDIT_WRITE SETFCAP.
DEFAULT_CAPS=00000000a80425fb

# What a task tries: write /etc, the kernel's knobs, its cgroup's parent.
probe_script='id -u
touch /etc/berth-probe 2>&1 || true
{ echo h >/proc/sysrq-trigger; } 2>&1 || true
{ echo 1 >/proc/sys/vm/drop_caches; } 2>&1 || true
cg=$(sed -n "s/^[0-9]*:pids:\\(.*\\)/\\1/p; s/^0::\\(.*\\)/\\1/p" /proc/self/cgroup | head -1)
for f in /sys/fs/cgroup/pids$cg/../cgroup.procs /sys/fs/cgroup/pids$cg/../tasks /sys/fs/cgroup$cg/../cgroup.procs; do
	[ -e "$f" ] || continue
	if { echo $$ >"$f"; } 2>/dev/null; then echo "escaped via $f"; else echo "stayed: $f"; fi
done
grep -E "^(CapEff|CapBnd|NoNewPrivs|Seccomp):" /proc/self/status'

# probe_job KEY [USER]: a batch job running the probe (as USER).
probe_job() {
	local user_line=""
	[ -n "${2:-}" ] && user_line="  user: $2"
	spec <<EOF
job: $1
type: batch
max_task_failures: 1
task:
  command: ["/bin/sh", "-c", $(printf '%s' "$probe_script" | python3 -c 'import json,sys; print(json.dumps(sys.stdin.read()))')]
$user_line
  resources: {cpu: 0.2, memory: 32MiB}
EOF
}

@test "a task without a user runs as nobody and cannot write /etc, /proc/sysrq-trigger nor its cgroup's parent" {
	start_up
	f=$(probe_job alice/devel/probe)
	run "$BERTH_BIN" job run "$f"
	echo "$output"
	[ "$status" -eq 0 ]
	run "$BERTH_BIN" task logs alice/devel/probe/0
	echo "$output"
	[ "${lines[0]}" = 65534 ]
	echo "$output" | grep -q "/etc/berth-probe': Read-only file system"
	[ ! -e /etc/berth-probe ]
	if [ -e /proc/sysrq-trigger ]; then
		echo "$output" | grep -q "sysrq-trigger: \(Read-only file system\|Permission denied\)"
	fi
	echo "$output" | grep -q "drop_caches: \(Read-only file system\|Permission denied\)"
	echo "$output" | grep -q "^stayed: "
	! echo "$output" | grep -q "escaped" || false
	echo "$output" | grep -qx "CapEff:[[:space:]]*0000000000000000"
	echo "$output" | grep -qx "CapBnd:[[:space:]]*$DEFAULT_CAPS"
	echo "$output" | grep -qx "NoNewPrivs:[[:space:]]*1"
	echo "$output" | grep -qx "Seccomp:[[:space:]]*2"
	# The sandbox and what it holds (the task's environment) are root's.
	id=$("$BERTH_BIN" job status alice/devel/probe --json --all | jget 'd["tasks"][0]["id"]')
	[ "$(stat -c %a "$DATA/tasks/$id")" = 700 ]
	[ "$(stat -c %a "$DATA/tasks/$id/launch.json")" = 600 ]
	[ "$(stat -c '%u %a' "$DATA/tasks/$id/work")" = "65534 700" ]
}

@test "a root task is refused unless the agent runs with --allow-root-tasks" {
	start_up
	for user in root 0; do
		f=$(probe_job "alice/devel/root$user" "$user")
		run "$BERTH_BIN" job run "$f"
		echo "$output"
		[ "$status" -ne 0 ]
		run "$BERTH_BIN" job status "alice/devel/root$user" --json --all
		echo "$output" | grep -q '"FAILED"'
		echo "$output" | grep -q "task user '$user' is root, which this agent refuses"
		echo "$output" | grep -q -- "--allow-root-tasks"
	done
}

@test "with --allow-root-tasks a root task runs with Docker's capabilities, no_new_privs, seccomp and a read-only host" {
	BERTH_UP_FLAGS="${BERTH_UP_FLAGS:-} --allow-root-tasks" start_up
	f=$(probe_job alice/devel/rootok root)
	run "$BERTH_BIN" job run "$f"
	echo "$output"
	[ "$status" -eq 0 ]
	run "$BERTH_BIN" task logs alice/devel/rootok/0
	echo "$output"
	[ "${lines[0]}" = 0 ]
	echo "$output" | grep -qx "CapEff:[[:space:]]*$DEFAULT_CAPS"
	echo "$output" | grep -qx "CapBnd:[[:space:]]*$DEFAULT_CAPS"
	echo "$output" | grep -qx "NoNewPrivs:[[:space:]]*1"
	echo "$output" | grep -qx "Seccomp:[[:space:]]*2"
	# Root, but the host is read-only to it, /proc/sys and the cgroups too.
	echo "$output" | grep -q "/etc/berth-probe': Read-only file system"
	[ ! -e /etc/berth-probe ]
	if [ -e /proc/sysrq-trigger ]; then
		echo "$output" | grep -q "sysrq-trigger: Read-only file system"
	fi
	echo "$output" | grep -q "drop_caches: Read-only file system"
	echo "$output" | grep -q "^stayed: "
	! echo "$output" | grep -q "escaped" || false
}

@test "a task's working directory works by its path, the data dir under /tmp: python3 -m http.server serves a file written there" {
	py=/usr/bin/python3
	[ -x "$py" ] || skip "no /usr/bin/python3 (a python a task's user can run)"
	start_up "$(mktemp -d /tmp/berth-cwd.XXXXXX)"
	f=$(spec <<EOF
job: alice/devel/pyhttp
task:
  network: host # it binds 127.0.0.1: the node's loopback
  command: ["/bin/sh", "-c", "echo served from \$(pwd) >hello.txt; exec $py -m http.server {{ports.http}} --bind 127.0.0.1"]
  resources: {cpu: 0.2, memory: 128MiB, ports: [http]}
EOF
)
	run "$BERTH_BIN" job run "$f"
	echo "$output"
	[ "$status" -eq 0 ]
	port=$(status_json alice/devel/pyhttp | jget 'd["tasks"][0]["ports"]["http"]')
	id=$(status_json alice/devel/pyhttp | jget 'd["tasks"][0]["id"]')
	wait_for 20 "curl -fsS http://127.0.0.1:$port/hello.txt >/dev/null"
	run curl -fsS "http://127.0.0.1:$port/hello.txt"
	echo "$output"
	[ "$status" -eq 0 ]
	# the task's cwd is its sandbox's path, as the host names it
	[ "$output" = "served from $DATA/tasks/$id" ]
	# the listing is the task's own directory, not the host's
	run curl -fsS "http://127.0.0.1:$port/"
	echo "$output" | grep -q hello.txt
	[ "$(cat "$DATA/tasks/$id/work/hello.txt")" = "served from $DATA/tasks/$id" ]
}
