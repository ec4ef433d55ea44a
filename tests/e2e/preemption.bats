#!/usr/bin/env bats
# Tiers, priorities and preemption (docs/scheduling.md) on a one-node
# cluster offering 1 cpu: preemptible devel work fills it, production work
# takes its room, devel work comes back when production leaves, and nothing
# preempts back and forth.

load helpers

setup() {
	require_root
	BERTH_UP_FLAGS="--cpu 1" start_up
}

teardown() {
	cleanup_up
}

# Tasks of job $1 (with ended ones) in state $2.
count_state() {
	"$BERTH_BIN" job status "$1" --all --json |
		jget "sum(1 for t in d['tasks'] if t['state']=='$2')"
}

# Tasks of job $1 (with ended ones) whose message contains $2.
count_msg() {
	"$BERTH_BIN" job status "$1" --all --json |
		jget "sum(1 for t in d['tasks'] if '''$2''' in t['message'])"
}

devel_fill() {
	f=$(spec <<'EOF'
job: alice/devel/batchy
instances: 4
task:
  command: ["/bin/sh", "-c", "exec sleep 300"]
  resources: {cpu: 0.25, memory: 16MiB}
EOF
)
	run "$BERTH_BIN" job run "$f"
	[ "$status" -eq 0 ]
	[ "$(running_count alice/devel/batchy)" -eq 4 ]
}

@test "a prod job preempts the fewest devel tasks; they wait as PENDING and come back when it goes" {
	devel_fill
	prod=$(spec <<'EOF'
job: alice/prod/web
instances: 1
task:
  command: ["/bin/sh", "-c", "exec sleep 300"]
  resources: {cpu: 0.5, memory: 16MiB}
EOF
)
	# The plan names the two tasks it would preempt, and preempts nothing.
	run "$BERTH_BIN" job plan "$prod"
	[ "$status" -eq 1 ]
	[[ "$output" == *"does NOT fit the cluster now: insufficient cpu on 1 node"* ]]
	[[ "$output" == *"would preempt 2 tasks:"* ]]
	[[ "$output" == *"- alice-devel-batchy-"* ]]
	n=$("$BERTH_BIN" job plan --json "$prod" | jget 'len(d["preempt"])' || true)
	[ "$n" -eq 2 ]
	[ "$(running_count alice/devel/batchy)" -eq 4 ]

	run "$BERTH_BIN" job run "$prod"
	[ "$status" -eq 0 ]
	[ "$(running_count alice/prod/web)" -eq 1 ]
	wait_for 20 '[ "$(count_state alice/devel/batchy KILLED)" -eq 2 ]'
	# Exactly two victims, each through PREEMPTING, saying who preempted it.
	s=$("$BERTH_BIN" job status alice/devel/batchy --all --json)
	echo "$s" | jget "sum(1 for t in d['tasks'] if t['state']=='KILLED' and t['message'].startswith('preempted by alice/prod/web/0') and any(e['state']=='PREEMPTING' for e in t['events']))" | grep -qx 2
	[ "$(running_count alice/devel/batchy)" -eq 2 ]
	# Their replacements wait, saying why.
	[ "$(echo "$s" | jget "sum(1 for t in d['tasks'] if t['state']=='PENDING' and t['message'].startswith('preempted by alice/prod/web/0; waiting for room'))")" -eq 2 ]
	run "$BERTH_BIN" job status alice/devel/batchy --all
	[[ "$output" == *"PREEMPTING  preempted by alice/prod/web/0"* ]]

	# Production goes: devel work comes back.
	run "$BERTH_BIN" job kill alice/prod/web
	[ "$status" -eq 0 ]
	wait_for 30 '[ "$(running_count alice/devel/batchy)" -eq 4 ]'
	[ "$(count_state alice/devel/batchy KILLED)" -eq 2 ]
}

@test "a devel job never preempts a prod job, whatever its priority" {
	prod=$(spec <<'EOF'
job: alice/prod/web
instances: 1
task:
  command: ["/bin/sh", "-c", "exec sleep 300"]
  resources: {cpu: 0.75, memory: 16MiB}
EOF
)
	run "$BERTH_BIN" job run "$prod"
	[ "$status" -eq 0 ]
	id=$(status_json alice/prod/web | jget 'd["tasks"][0]["id"]')
	dev=$(spec <<'EOF'
job: alice/devel/urgent
instances: 1
priority: 1000
task:
  command: ["/bin/sh", "-c", "exec sleep 300"]
  resources: {cpu: 0.5, memory: 16MiB}
EOF
)
	run "$BERTH_BIN" job plan "$dev"
	[[ "$output" == *"preempting lower-ranked tasks would not make room either"* ]]
	run "$BERTH_BIN" job run --detach "$dev"
	[ "$status" -eq 0 ]
	wait_for 10 '[ "$(count_msg alice/devel/urgent "insufficient cpu")" -eq 1 ]'
	sleep 2
	[ "$(count_state alice/devel/urgent PENDING)" -eq 1 ]
	s=$(status_json alice/prod/web)
	[ "$(echo "$s" | jget 'd["tasks"][0]["id"]')" = "$id" ]
	[ "$(echo "$s" | jget 'd["tasks"][0]["state"]')" = RUNNING ]
	[ "$(count_state alice/prod/web KILLED)" -eq 0 ]
}

@test "no ping-pong: a higher priority devel job preempts a lower one once, never the other way" {
	low=$(spec <<'EOF'
job: alice/devel/low
instances: 1
priority: 3
task:
  command: ["/bin/sh", "-c", "exec sleep 300"]
  resources: {cpu: 0.75, memory: 16MiB}
EOF
)
	high=$(spec <<'EOF'
job: alice/devel/high
instances: 1
priority: 5
task:
  command: ["/bin/sh", "-c", "exec sleep 300"]
  resources: {cpu: 0.75, memory: 16MiB}
EOF
)
	run "$BERTH_BIN" job run "$low"
	[ "$status" -eq 0 ]
	run "$BERTH_BIN" job run "$high"
	[ "$status" -eq 0 ]
	[ "$(running_count alice/devel/high)" -eq 1 ]
	id=$(status_json alice/devel/high | jget 'd["tasks"][0]["id"]')
	wait_for 20 '[ "$(count_msg alice/devel/low "preempted by alice/devel/high/0 (")" -eq 1 ]'
	# The low job's replacement waits; nothing moves for a while.
	sleep 4
	[ "$(count_state alice/devel/low PENDING)" -eq 1 ]
	[ "$(count_state alice/devel/low KILLED)" -eq 1 ]
	[ "$(count_state alice/devel/high KILLED)" -eq 0 ]
	[ "$(status_json alice/devel/high | jget 'd["tasks"][0]["id"]')" = "$id" ]
	# Equal priorities never preempt each other either.
	same=$(spec <<'EOF'
job: alice/devel/same
instances: 1
priority: 5
task:
  command: ["/bin/sh", "-c", "exec sleep 300"]
  resources: {cpu: 0.75, memory: 16MiB}
EOF
)
	run "$BERTH_BIN" job run --detach "$same"
	[ "$status" -eq 0 ]
	sleep 2
	[ "$(count_state alice/devel/same PENDING)" -eq 1 ]
	[ "$(count_state alice/devel/high KILLED)" -eq 0 ]
}

@test "pending work is placed preferred tier first, then by priority" {
	# The node is full: a prod task holds it. Three jobs wait; when it
	# goes, the room goes to the preferred one, then the higher priority.
	big=$(spec <<'EOF'
job: alice/prod/big
instances: 1
task:
  command: ["/bin/sh", "-c", "exec sleep 300"]
  resources: {cpu: 1, memory: 16MiB}
EOF
)
	run "$BERTH_BIN" job run "$big"
	[ "$status" -eq 0 ]
	for j in "devel/lo 1" "devel/hi 9" "prod/main 0"; do
		set -- $j
		f=$(spec <<EOF
job: alice/$1
instances: 1
priority: $2
task:
  command: ["/bin/sh", "-c", "exec sleep 300"]
  resources: {cpu: 0.5, memory: 16MiB}
EOF
)
		run "$BERTH_BIN" job run --detach "$f"
		[ "$status" -eq 0 ]
	done
	run "$BERTH_BIN" job kill alice/prod/big
	[ "$status" -eq 0 ]
	wait_for 30 '[ "$(running_count alice/prod/main)" -eq 1 ] && [ "$(running_count alice/devel/hi)" -eq 1 ]'
	[ "$(count_state alice/devel/lo PENDING)" -eq 1 ]
}

@test "--preempt-max-victims: a bad value is refused; with 1, preemptors still get their room, a round at a time" {
	run "$BERTH_BIN" server --data-dir "$DATA/other" --preempt-max-victims 0
	[ "$status" -eq 2 ]
	[[ "$output" == *"bad --preempt-max-victims '0': expected a number from 1 to 1000000"* ]]
	run "$BERTH_BIN" up --data-dir "$DATA/other" --preempt-max-victims lots
	[ "$status" -eq 2 ]
	[[ "$output" == *"bad --preempt-max-victims 'lots'"* ]]
	cleanup_up
	BERTH_UP_FLAGS="--cpu 1 --preempt-max-victims 1" start_up
	devel_fill
	# Two preemptors of two victims each: the round's first may go over
	# the cap, the other preempts in a later round.
	prod=$(spec <<'EOF'
job: alice/prod/web
instances: 2
task:
  command: ["/bin/sh", "-c", "exec sleep 300"]
  resources: {cpu: 0.5, memory: 16MiB}
EOF
)
	run "$BERTH_BIN" job run "$prod"
	[ "$status" -eq 0 ]
	[ "$(running_count alice/prod/web)" -eq 2 ]
	wait_for 20 '[ "$(count_state alice/devel/batchy KILLED)" -eq 4 ]'
	[ "$(running_count alice/devel/batchy)" -eq 0 ]
}
