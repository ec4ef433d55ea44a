#!/usr/bin/env bats
# `berth job restart`: a rolling restart in batches of the job's update
# policy, each batch health-gated (httpd-tiny with an HTTP check), shown by
# `berth update status`; --all-at-once and KEY/INSTANCE.

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

# web_spec [INSTANCES] [WATCH]: 4 health-checked instances, batch_size 1.
web_spec() {
	local n=${1:-4} watch=${2:-300ms}
	spec <<EOF2
job: $KEY
instances: $n
task:
  command: ["$BERTH_TOOLS/httpd-tiny", "{{ports.http}}", "v1"]
  resources: {cpu: 0.01, memory: 16MiB, ports: [http]}
  # cpu 0.01 starts slowly on a loaded machine: the checks give it seconds.
  health: {http: /health, port: http, interval: 200ms, timeout: 1s, initial_delay: 500ms, failures: 15}
  stop_grace: 2s
# A task that fails its first start (a loaded machine) is tolerated twice.
update: {batch_size: 1, watch: $watch, max_instance_failures: 2}
EOF2
}

# The active task ids, in instance order, one line.
task_ids() {
	status_json "$KEY" |
		jget '" ".join(t["instance"].__str__() + "=" + t["id"] for t in sorted(d["tasks"], key=lambda t: t["instance"]))'
}

running_now() {
	status_json "$KEY" | jget 'sum(1 for t in d["tasks"] if t["state"] == "RUNNING")'
}

@test "a rolling restart keeps 3 of 4 instances RUNNING and gives each a new task" {
	run "$BERTH_BIN" job run "$(web_spec 4 1s)"
	[ "$status" -eq 0 ]
	wait_for 30 '[ "$(running_now)" = 4 ]'
	before=$(task_ids)
	run "$BERTH_BIN" job restart "$KEY"
	echo "$output"
	[ "$status" -eq 0 ]
	[[ "$output" == *"restarting in batches"* ]]
	# Poll job status (one kept-alive HTTPS connection, as a dashboard would)
	# until the restart ended: never below 3 RUNNING.
	python3 - "$KEY" <<'EOF2'
import http.client, json, os, ssl, sys, time, urllib.parse
key = sys.argv[1]
u = urllib.parse.urlparse(os.environ["BERTH_ADDR"])
ctx = ssl.create_default_context(cafile=os.environ.get("BERTH_CACERT"))
conn = http.client.HTTPSConnection(u.hostname, u.port, context=ctx, timeout=10)
hdr = {"Authorization": "Bearer " + os.environ.get("BERTH_TOKEN", "")}
def get(path):
    conn.request("GET", path, headers=hdr)
    r = conn.getresponse()
    body = r.read()
    assert r.status == 200, (path, r.status, body)
    return json.loads(body)
least, polls, seen_down, end, worst = 4, 0, False, time.time() + 120, None
while time.time() < end:
    st = get("/v1/jobs/%s" % key)
    running = sum(1 for t in st["tasks"] if t["state"] == "RUNNING")
    if running < least:
        worst = [(t["instance"], t["state"], t["message"]) for t in st["tasks"]]
    least = min(least, running)
    seen_down |= running < 4
    polls += 1
    up = get("/v1/jobs/%s/update" % key)
    assert up["kind"] == "restart", up
    if up["state"] != "ROLLING_FORWARD":
        break
    time.sleep(0.02)
print("polls", polls, "least running", least, "state", up["state"], file=sys.stderr)
assert up["state"] == "ROLLED_FORWARD", up
assert up["updated"] == 4 and up["total"] == 4, up
assert seen_down, "never saw an instance down: the polls missed the restart"
assert least >= 3, "only %d instances RUNNING during the restart: %s" % (least, worst)
# Health-gated: instance k+1's old task was stopped only after instance k's
# new task had been RUNNING for the watch time (1s).
allt = get("/v1/jobs/%s?all=1" % key)["tasks"]
def first(t, state):
    return min((e["time_ms"] for e in t["events"] if e["state"] == state), default=None)
new = {t["instance"]: t for t in allt if t.get("ancestor") and t["state"] == "RUNNING"}
old = {t["id"]: t for t in allt}
for k in range(3):
    up_at = first(new[k], "RUNNING")
    stop_next = first(old[new[k + 1]["ancestor"]], "RESTARTING")
    assert stop_next - up_at >= 1000 - 50, (k, up_at, stop_next)
EOF2
	after=$(task_ids)
	echo "before: $before" >&2
	echo "after:  $after" >&2
	# Same instances, every one with a new task id; the version is unchanged.
	for pair in $before; do
		[[ " $after " != *" $pair "* ]]
		[[ "$after" == *"${pair%%=*}="* ]]
	done
	[ "$(echo "$after" | wc -w)" = 4 ]
	[ "$(status_json "$KEY" | jget 'd["version"]')" = 1 ]
	run "$BERTH_BIN" update status "$KEY"
	[[ "$output" == *"restart ROLLED_FORWARD (version 1): 4/4 restarted"* ]]
}

@test "a rolling restart can be paused, resumed and aborted; no rollback" {
	run "$BERTH_BIN" job run "$(web_spec 3 2s)"
	echo "$output"
	[ "$status" -eq 0 ]
	wait_for 30 '[ "$(running_now)" = 3 ]'
	before=$(task_ids)
	"$BERTH_BIN" job restart "$KEY"
	run "$BERTH_BIN" update pause "$KEY"
	[ "$status" -eq 0 ]
	[[ "$output" == *"ROLL_FORWARD_PAUSED"* ]]
	# A second rolling restart, or a rollback, is refused while it is there.
	run "$BERTH_BIN" job restart "$KEY"
	[ "$status" -ne 0 ]
	[[ "$output" == *"a restart in progress"* ]]
	run "$BERTH_BIN" update rollback "$KEY"
	[ "$status" -ne 0 ]
	[[ "$output" == *"no older version"* ]]
	# Paused: instances 1 and 2 keep their tasks.
	sleep 1
	after=$(task_ids)
	[ "$(echo "$after" | cut -d' ' -f2-)" = "$(echo "$before" | cut -d' ' -f2-)" ]
	run "$BERTH_BIN" update resume "$KEY"
	[ "$status" -eq 0 ]
	run "$BERTH_BIN" update abort "$KEY"
	[ "$status" -eq 0 ]
	[[ "$output" == *"ABORTED"* ]]
	wait_for 30 '[ "$(running_now)" = 3 ]'
}

@test "job restart KEY/INSTANCE restarts one instance; --all-at-once every one" {
	run "$BERTH_BIN" job run "$(web_spec 3)"
	echo "$output"
	[ "$status" -eq 0 ]
	wait_for 30 '[ "$(running_now)" = 3 ]'
	before=$(task_ids)
	run "$BERTH_BIN" job restart "$KEY/1"
	[ "$status" -eq 0 ]
	wait_for 30 '[ "$(running_now)" = 3 ] && [ "$(task_ids)" != "$before" ]'
	after=$(task_ids)
	set -- $before
	b0=$1 b1=$2 b2=$3
	set -- $after
	[ "$1" = "$b0" ] && [ "$3" = "$b2" ] && [ "$2" != "$b1" ]
	run "$BERTH_BIN" job restart "$KEY/7"
	[ "$status" -ne 0 ]
	[[ "$output" == *"has no instance 7"* ]]
	run "$BERTH_BIN" job restart "$KEY/x"
	[ "$status" -ne 0 ]
	[[ "$output" == *"ROLE/ENV/NAME/INSTANCE"* ]]
	# --all-at-once: every task stops together, no rolling restart.
	before=$(task_ids)
	run "$BERTH_BIN" job restart "$KEY" --all-at-once
	[ "$status" -eq 0 ]
	[ "$output" = "$KEY: restarting" ]
	wait_for 30 '[ "$(running_now)" = 3 ]'
	after=$(task_ids)
	for pair in $before; do [[ " $after " != *" $pair "* ]]; done
	run "$BERTH_BIN" update status "$KEY"
	[ "$status" -ne 0 ]
	[[ "$output" == *"has had no update"* ]]
}
