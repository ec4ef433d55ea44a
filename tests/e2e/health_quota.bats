#!/usr/bin/env bats
# A command health check (and `berth task exec`) runs in the task's cgroup,
# but berth's own work to get there (its helper, `berth task-exec`, starting,
# reading the task, joining its namespaces) does not: a task at `cpu: 0.01`
# gets 10 ms of CPU a second, and the check's timeout must not be spent on
# berth. docs/agent.md "Health checks".

load helpers

setup() {
	require_root
	start_up
}

teardown() {
	cleanup_up
}

@test "a command health check at cpu 0.01 with a 1 s timeout keeps passing" {
	f=$(spec <<'EOF2'
job: alice/devel/tiny
instances: 3
task:
  command: ["sleep", "300"]
  resources: {cpu: 0.01, memory: 16MiB}
  health:
    command: ["true"]
    interval: 300ms
    timeout: 1s
    initial_delay: 0s
    failures: 1
EOF2
)
	run "$BERTH_BIN" job run "$f"
	echo "$output"
	[ "$status" -eq 0 ]
	wait_for 60 '[ "$(running_count alice/devel/tiny)" -eq 3 ]'
	# A few more rounds of checks: one failure would kill an instance.
	sleep 3
	status_json alice/devel/tiny | jget 'd["tasks"]'
	[ "$(running_count alice/devel/tiny)" -eq 3 ]
	[ "$(status_json alice/devel/tiny | jget 'len(d["tasks"])')" -eq 3 ]
}

@test "task exec: the command is in the task's cgroup, berth's helper is not" {
	f=$(spec <<'EOF2'
job: alice/devel/box
task:
  command: ["sleep", "300"]
  resources: {cpu: 0.01, memory: 16MiB}
EOF2
)
	run "$BERTH_BIN" job run "$f"
	echo "$output"
	[ "$status" -eq 0 ]
	id=$(status_json alice/devel/box | jget 'd["tasks"][0]["id"]')
	"$BERTH_BIN" task exec alice/devel/box/0 -- sleep 7.5 3>&- &
	exec_pid=$!
	wait_for 30 'pgrep -fx "sleep 7.5" >/dev/null'
	cmd=$(pgrep -fx "sleep 7.5")
	echo "command $cmd:"
	cat /proc/"$cmd"/cgroup
	# The command counts against the task's limits...
	grep -E "^[0-9]+:[^:]*cpu[,:].*/$CGPARENT/$id\$" /proc/"$cmd"/cgroup ||
		grep -E "^0::/.*$CGPARENT/$id\$" /proc/"$cmd"/cgroup
	# ...berth's helper (and its fork that joins the task's namespaces),
	# which wait for it, do not.
	helpers=$(pgrep -f "task-exec $DATA/tasks/$id -- sleep 7.5")
	[ -n "$helpers" ]
	for h in $helpers; do
		echo "helper $h:"
		cat /proc/"$h"/cgroup
		run grep "/$CGPARENT/$id\$" /proc/"$h"/cgroup
		[ "$status" -eq 1 ]
	done
	kill "$exec_pid" 2>/dev/null || true
	wait "$exec_pid" 2>/dev/null || true
}
