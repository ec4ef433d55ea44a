#!/usr/bin/env bats
# Quotas per role (docs/scheduling.md, "Quotas"): berth quota set/list/
# delete, production work over its role's quota refused with 409 naming the
# resource and amounts, preemptible work not counted, `job plan` showing
# the effect, role tokens reading but not setting, and the quota kept
# across a server restart.

load helpers

setup() {
	require_root
	start_up
}

teardown() {
	cleanup_up
	rm -rf "${RESTORED:-/nonexistent}" "${BACKUP:-/nonexistent}"
	[ -z "${FIRST_DATA:-}" ] || rm -rf "$FIRST_DATA" "$FIRST_DATA.log"
}

# job KEY INSTANCES CPU [TIER]: a small service spec.
job_spec() {
	local tier=""
	[ -n "${4:-}" ] && tier="tier: $4"
	spec <<EOF
job: $1
instances: $2
$tier
update: {batch_size: 10, watch: 0s}
task:
  command: ["/bin/sh", "-c", "exec sleep 1000"]
  resources: {cpu: $3, memory: 16MiB}
EOF
}

@test "a prod job under the quota runs, one over it is refused with the amounts; devel is not counted" {
	run "$BERTH_BIN" quota set alice cpu=0.1 memory=1GiB
	[ "$status" -eq 0 ]
	[[ "$output" == *"quota of role alice set"* ]]
	run "$BERTH_BIN" job run --detach "$(job_spec alice/prod/web 3 0.02)"
	[ "$status" -eq 0 ]
	wait_for 30 '[ "$(running_count alice/prod/web)" = 3 ]'
	# 0.06 used: 3 x 0.02 more is 0.12 of 0.1.
	run "$BERTH_BIN" job run --detach "$(job_spec alice/prod/api 3 0.02)"
	[ "$status" -ne 0 ]
	[[ "$output" == *"quota exceeded for role alice: cpu 0.12 of 0.1"* ]]
	run "$BERTH_BIN" job status alice/prod/api --json
	[ "$status" -ne 0 ]
	# The API answers 409.
	body=$(python3 -c 'import json; print(json.dumps({"job": "alice/prod/api", "instances": 3, "task": {"command": ["/bin/true"], "resources": {"cpu": 0.02, "memory": "16MiB"}}}))')
	code=$(api_curl -s -o /dev/null -w '%{http_code}' -XPOST "$BERTH_ADDR/v1/jobs" -d "$body")
	[ "$code" = 409 ]
	# Preemptible work (the devel environment's default) is not counted.
	run "$BERTH_BIN" job run --detach "$(job_spec alice/devel/batchy 2 0.05)"
	[ "$status" -eq 0 ]
	# Scaling the prod job up within the quota is fine, beyond it is not.
	run "$BERTH_BIN" job run --detach "$(job_spec alice/prod/web 5 0.02)"
	[ "$status" -eq 0 ]
	run "$BERTH_BIN" job run --detach "$(job_spec alice/prod/web 6 0.02)"
	[ "$status" -ne 0 ]
	[[ "$output" == *"cpu 0.12 of 0.1"* ]]
	# A resource change rolls out with the update: the new total counts
	# (5 x 0.02 = 0.1), not old + new.
	run "$BERTH_BIN" job run --detach "$(job_spec alice/prod/web 5 0.019)"
	[ "$status" -eq 0 ]
	wait_for 30 '"$BERTH_BIN" update status alice/prod/web --json 2>/dev/null | grep -q ROLLED_FORWARD'
	# Use in the list: what job list and the specs say, preferred work only.
	run "$BERTH_BIN" quota list --json
	[ "$status" -eq 0 ]
	quotas=$output
	jobs=$("$BERTH_BIN" job list --json)
	want=$(echo "$jobs" | python3 -c '
import json, subprocess, sys, os
cpu = mem = tasks = 0
for j in json.load(sys.stdin):
    if not j["job"].startswith("alice/"):
        continue
    st = json.loads(subprocess.check_output([os.environ["BERTH_BIN"], "job", "status", j["job"], "--json"]))
    if st["spec"]["tier"] != "preferred":
        continue
    r = st["spec"]["task"]["resources"]
    cpu += j["instances"] * round(r["cpu"] * 1000)
    mem += j["instances"] * r["memory"]
    tasks += j["instances"]
print(cpu, mem, tasks)')
	got=$(echo "$quotas" | jget '" ".join(str(x) for x in [[round(q["use"]["cpu"]*1000), q["use"]["memory"], q["use"]["tasks"]] for q in d if q["role"]=="alice"][0])')
	[ "$want" = "$got" ]
	[ "$got" = "95 83886080 5" ]
	[ "$(echo "$quotas" | jget '[q for q in d if q["role"]=="alice"][0]["limit"]["cpu"]')" = 0.1 ]
	run "$BERTH_BIN" quota list
	[[ "$output" == *alice*"0.095/0.1"*"80MiB/1GiB"* ]]
}

@test "job plan shows the quota effect; bad quota input gets clear errors" {
	"$BERTH_BIN" quota set alice cpu=1 tasks=4
	"$BERTH_BIN" job run --detach "$(job_spec alice/prod/web 2 0.25)"
	run "$BERTH_BIN" job plan "$(job_spec alice/prod/web 3 0.25)"
	[ "$status" -eq 1 ]
	[[ "$output" == *"quota alice: cpu 0.5 → 0.75 of 1.0, tasks 2 → 3 of 4"* ]]
	run "$BERTH_BIN" job plan "$(job_spec alice/prod/web 5 0.25)"
	[[ "$output" == *"quota alice: would exceed: cpu 1.25 of 1.0, tasks 5 of 4"* ]]
	run "$BERTH_BIN" job plan --json "$(job_spec alice/prod/web 5 0.25)"
	[ "$(echo "$output" | jget 'd["quota"]["fits"]')" = False ]
	[ "$(echo "$output" | jget 'd["quota"]["after"]["tasks"]')" = 5 ]
	run "$BERTH_BIN" job plan "$(job_spec alice/devel/x 5 0.25)"
	[[ "$output" == *"quota alice: not counted (tier preemptible)"* ]]
	# Bad input.
	run "$BERTH_BIN" quota set alice cpu=lots
	[ "$status" -ne 0 ]
	[[ "$output" == *"cpu: expected a number of cores"* ]]
	run "$BERTH_BIN" quota set alice gpus=2
	[ "$status" -ne 0 ]
	[[ "$output" == *"RESOURCE one of cpu, memory, disk, tasks"* ]]
	run "$BERTH_BIN" quota set alice memory=8potatoes
	[[ "$output" == *"memory: expected a size"* ]]
	run "$BERTH_BIN" quota set Alice cpu=1
	[ "$status" -ne 0 ]
	run api_curl -s -XPUT "$BERTH_ADDR/v1/quotas/alice" -d '{"cpu": 1, "extra": 1}'
	[[ "$output" == *'"status":400'* && "$output" == *"unknown field 'extra'"* ]]
	run api_curl -s -XPUT "$BERTH_ADDR/v1/quotas/alice" -d 'not json'
	[[ "$output" == *'"status":400'* ]]
	run "$BERTH_BIN" quota delete nobody
	[ "$status" -ne 0 ]
	[[ "$output" == *"role 'nobody' has no quota"* ]]
	# --clear removes it: the plan says none is set.
	run "$BERTH_BIN" quota set alice --clear
	[ "$status" -eq 0 ]
	run "$BERTH_BIN" job plan "$(job_spec alice/prod/web 5 0.25)"
	[[ "$output" == *"quota alice: none set"* ]]
}

@test "a role token reads its role's quota but cannot set it" {
	"$BERTH_BIN" quota set alice cpu=2 memory=4GiB
	"$BERTH_BIN" quota set bob cpu=1
	alice=$("$BERTH_BIN" token create --role alice | tail -1)
	run env BERTH_TOKEN="$alice" "$BERTH_BIN" quota get alice --json
	[ "$status" -eq 0 ]
	[ "$(echo "$output" | jget 'd["limit"]["cpu"]')" = 2.0 ]
	# Its list shows its own role only.
	run env BERTH_TOKEN="$alice" "$BERTH_BIN" quota list --json
	[ "$status" -eq 0 ]
	[ "$(echo "$output" | jget '[q["role"] for q in d]')" = "['alice']" ]
	run env BERTH_TOKEN="$alice" "$BERTH_BIN" quota get bob
	[ "$status" -ne 0 ]
	run env BERTH_TOKEN="$alice" "$BERTH_BIN" quota set alice cpu=100
	[ "$status" -ne 0 ]
	code=$(BERTH_TOKEN="$alice" api_curl -s -o /dev/null -w '%{http_code}' -XPUT "$BERTH_ADDR/v1/quotas/alice" -d '{"cpu": 100}')
	[ "$code" = 403 ]
	code=$(BERTH_TOKEN="$alice" api_curl -s -o /dev/null -w '%{http_code}' -XDELETE "$BERTH_ADDR/v1/quotas/alice")
	[ "$code" = 403 ]
	[ "$("$BERTH_BIN" quota get alice --json | jget 'd["limit"]["cpu"]')" = 2.0 ]
	# Its own submissions are held to it.
	run env BERTH_TOKEN="$alice" "$BERTH_BIN" job run --detach "$(job_spec alice/prod/big 3 1)"
	[ "$status" -ne 0 ]
	[[ "$output" == *"quota exceeded for role alice: cpu 3.0 of 2.0"* ]]
}

@test "a cron run over the quota does not start and says why" {
	"$BERTH_BIN" quota set alice tasks=2
	"$BERTH_BIN" job run --detach "$(job_spec alice/prod/web 1 0.01)"
	f=$(spec <<'EOF'
job: alice/prod/nightly
type: cron
schedule: "0 3 * * *"
instances: 2
task:
  command: ["sleep", "2"]
  resources: {cpu: 0.01, memory: 16MiB}
EOF
)
	run "$BERTH_BIN" job run --detach "$f"
	[ "$status" -eq 0 ]
	run "$BERTH_BIN" cron start alice/prod/nightly
	[ "$status" -ne 0 ]
	[[ "$output" == *"cron run not started: quota exceeded for role alice: tasks 3 of 2"* ]]
	run "$BERTH_BIN" cron list
	[[ "$output" == *"cron run not started: quota exceeded"* ]]
	run "$BERTH_BIN" job status alice/prod/nightly
	[[ "$output" == *"cron run not started: quota exceeded for role alice: tasks 3 of 2"* ]]
	[ "$(status_json alice/prod/nightly | jget 'len(d["tasks"])')" = 0 ]
	# Room made: the run starts.
	"$BERTH_BIN" job kill alice/prod/web
	run "$BERTH_BIN" cron start alice/prod/nightly
	[ "$status" -eq 0 ]
	[ "$("$BERTH_BIN" quota get alice --json | jget 'd["use"]["tasks"]')" = 2 ]
	# The run ends: its share is given back.
	wait_for 30 '[ "$("$BERTH_BIN" quota get alice --json | jget "d[\"use\"][\"tasks\"]")" = 0 ]'
	[ -z "$(status_json alice/prod/nightly | jget '[t for t in d["tasks"]] or ""')" ]
}

@test "the quota survives a server restart" {
	"$BERTH_BIN" quota set alice cpu=0.05 memory=64MiB disk=1GiB tasks=3
	"$BERTH_BIN" job run --detach "$(job_spec alice/prod/web 2 0.02)"
	stop_up
	start_up "$DATA"
	run "$BERTH_BIN" quota get alice --json
	[ "$status" -eq 0 ]
	[ "$(echo "$output" | jget '[d["limit"][k] for k in ("cpu", "memory", "disk", "tasks")]')" = "[0.05, 67108864, 1073741824, 3]" ]
	[ "$(echo "$output" | jget 'd["use"]["tasks"]')" = 2 ]
	run "$BERTH_BIN" job run --detach "$(job_spec alice/prod/web 3 0.02)"
	[ "$status" -ne 0 ]
	[[ "$output" == *"quota exceeded for role alice: cpu 0.06 of 0.05"* ]]
}

@test "a quota is in backups and comes back with a restore" {
	"$BERTH_BIN" quota set carol cpu=3 tasks=9
	BACKUP=$(mktemp /tmp/berth-backup.XXXXXX)
	run "$BERTH_BIN" admin backup "$BACKUP"
	[ "$status" -eq 0 ]
	grep -q '"key":"quotas/carol"' "$BACKUP"
	stop_up
	FIRST_DATA=$DATA
	RESTORED=$(mktemp -d /tmp/berth-restored.XXXXXX)
	run "$BERTH_BIN" admin restore "$BACKUP" --data-dir "$RESTORED"
	[ "$status" -eq 0 ]
	start_up "$RESTORED"
	[ "$("$BERTH_BIN" quota get carol --json | jget '[d["limit"]["cpu"], d["limit"]["tasks"]]')" = "[3.0, 9]" ]
}
