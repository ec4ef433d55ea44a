#!/usr/bin/env bats
# The event stream (GET /v1/events, berth events) and Prometheus /metrics
# on the server and the agents (docs/operations.md).

load helpers

setup() {
	require_root
	start_up
}

teardown() {
	[ -n "${EV_PID:-}" ] && stop_pids "$EV_PID"
	cleanup_up
}

web_spec() {
	spec <<SPEC
job: $1
instances: ${2:-1}
task:
  command: ["$BERTH_TOOLS/memhog", "8"]
  resources: {cpu: 0.01, memory: 64MiB}
SPEC
}

# The states of the task events of one line-per-event output, in order.
states_of() {
	awk '$2 == "task" {print $4}' "$1" | tr '\n' ' '
}

# A checker of the Prometheus text format (0.0.4): every line a comment,
# a HELP/TYPE header or a sample; label values escaped; every histogram's
# buckets cumulative and its +Inf bucket equal to its count. Prints the
# samples as JSON: [[name, {labels}, value], ...].
PROM_PARSER='
import json, re, sys
text = sys.stdin.read()
assert text.endswith("\n"), "no final newline"
sample = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$")
label = re.compile(r"\s*([a-zA-Z_][a-zA-Z0-9_]*)=\"((?:[^\"\\\\]|\\\\[\\\\\"n])*)\"\s*(,|$)")
types, out = {}, []
for line in text.splitlines():
    if line.startswith("# HELP "):
        continue
    if line.startswith("# TYPE "):
        _, _, name, kind = line.split(" ", 3)
        assert kind in ("counter", "gauge", "histogram", "summary", "untyped"), line
        assert name not in types, "TYPE twice: " + name
        types[name] = kind
        continue
    assert not line.startswith("#") and line.strip(), "bad line: %r" % line
    m = sample.match(line)
    assert m, "bad sample: %r" % line
    labels, rest = {}, m.group(3) or ""
    while rest:
        lm = label.match(rest)
        assert lm, "bad labels: %r" % line
        labels[lm.group(1)] = lm.group(2)
        rest = rest[lm.end():]
    value = float(m.group(4))
    fam = re.sub(r"_(bucket|sum|count)$", "", m.group(1))
    assert m.group(1) in types or types.get(fam) == "histogram", "no TYPE for " + m.group(1)
    out.append([m.group(1), labels, value])
def key(l):
    return json.dumps({k: x for k, x in l.items() if k != "le"}, sort_keys=True)
for name, kind in types.items():
    if kind != "histogram":
        continue
    series = {}
    for n, l, v in out:
        if n == name + "_bucket":
            series.setdefault(key(l), []).append((float(l["le"]), v))
    assert series, name + ": no buckets"
    for k, buckets in series.items():
        les = [b[0] for b in buckets]
        assert les == sorted(les) and les[-1] == float("inf"), name + ": le order"
        vals = [b[1] for b in buckets]
        assert vals == sorted(vals), name + ": buckets not cumulative"
        count = [v for n, l, v in out if n == name + "_count" and key(l) == k]
        assert count == [vals[-1]], name + ": +Inf bucket != count"
print(json.dumps(out))
'

prom_parse() {
	python3 -c "$PROM_PARSER"
}

@test "berth events --follow --job shows a job's whole life in order, as it happens" {
	"$BERTH_BIN" events --follow --job ops/devel/web >"$BATS_TEST_TMPDIR/ev" 2>&1 3>&- &
	EV_PID=$!
	sleep 0.5
	"$BERTH_BIN" job run "$(web_spec ops/devel/web)"
	wait_for 10 'grep -q " RUNNING " "$BATS_TEST_TMPDIR/ev"'
	"$BERTH_BIN" job kill ops/devel/web
	wait_for 15 'grep -q "task .* KILLED " "$BATS_TEST_TMPDIR/ev"'
	cat "$BATS_TEST_TMPDIR/ev"
	[ "$(states_of "$BATS_TEST_TMPDIR/ev")" = "PENDING ASSIGNED STARTING RUNNING KILLING KILLED " ]
	# The job's own events, and nothing of any other job or node.
	grep -Eq "Z +job +ops/devel/web +SUBMITTED" "$BATS_TEST_TMPDIR/ev"
	grep -Eq "Z +job +ops/devel/web +KILLED" "$BATS_TEST_TMPDIR/ev"
	! grep -Eq "Z +(node|leader) " "$BATS_TEST_TMPDIR/ev"
	# Still following (the stream stays open).
	kill -0 "$EV_PID"
}

@test "resuming from an index gives only later events; bad filters are refused" {
	"$BERTH_BIN" job run "$(web_spec ops/devel/one)"
	run "$BERTH_BIN" events --json --job ops/devel/one
	[ "$status" -eq 0 ]
	idx=$(echo "$output" | python3 -c '
import json, sys
evs = [json.loads(l) for l in sys.stdin if l.strip()]
ix = [e["index"] for e in evs]
assert ix == sorted(ix) and len(set(ix)) == len(ix), ix
print([e["index"] for e in evs if e.get("state") == "RUNNING"][0])')
	"$BERTH_BIN" job kill ops/devel/one
	wait_for 15 '"$BERTH_BIN" events --job ops/devel/one | grep -q "task .* KILLED "'
	run "$BERTH_BIN" events --json --job ops/devel/one --since "$idx"
	[ "$status" -eq 0 ]
	echo "$output"
	echo "$output" | python3 -c '
import json, sys
idx = int(sys.argv[1])
evs = [json.loads(l) for l in sys.stdin if l.strip()]
assert evs and all(e["index"] > idx for e in evs), evs
assert [e["state"] for e in evs if e["type"] == "task"] == ["KILLING", "KILLED"], evs
' "$idx"
	# The raw stream: server-sent events with ids, resumable by Last-Event-ID.
	run api_curl -sS -N -H "Last-Event-ID: $idx" "$BERTH_ADDR/v1/events?follow=false&job=ops/devel/one&type=task"
	[ "$status" -eq 0 ]
	echo "$output" | grep -q "^id: [0-9]*$"
	[ "$(echo "$output" | grep -c '^data: ')" -eq 2 ]
	# An index older than what is kept: told so first.
	run "$BERTH_BIN" events --json --since 1 --type leader
	[ "$status" -eq 0 ]
	[ "$(echo "$output" | head -1 | jget 'd["type"]')" = missed ]
	run "$BERTH_BIN" events --type bogus
	[ "$status" -ne 0 ]
	[[ "$output" == *"unknown event type 'bogus'"* ]]
	run "$BERTH_BIN" events --since abc
	[ "$status" -ne 0 ]
	[ "$(curl -s -o /dev/null -w '%{http_code}' --cacert "$BERTH_CACERT" "$BERTH_ADDR/v1/events")" = 401 ]
}

@test "a role token's stream shows only its role's jobs" {
	tok=$("$BERTH_BIN" token create --role alice | tail -1)
	"$BERTH_BIN" job run -d "$(web_spec alice/devel/a)"
	"$BERTH_BIN" job run -d "$(web_spec bob/devel/b)"
	run env BERTH_TOKEN="$tok" "$BERTH_BIN" events --json
	[ "$status" -eq 0 ]
	echo "$output" | grep -q '"job":"alice/devel/a"'
	! echo "$output" | grep -q 'bob/'
	! echo "$output" | grep -q '"type":"node"'
	run env BERTH_TOKEN="$tok" "$BERTH_BIN" events --job bob/devel/b
	[ "$status" -ne 0 ]
	[[ "$output" == *"403"* ]]
}

@test "the server's /metrics parses and its tasks by state match job list" {
	"$BERTH_BIN" job run "$(web_spec ops/devel/m 2)"
	"$BERTH_BIN" job run "$(web_spec ops/devel/n 1)"
	[ "$(curl -s -o /dev/null -w '%{http_code}' --cacert "$BERTH_CACERT" "$BERTH_ADDR/metrics")" = 401 ]
	api_curl -fsS -D "$BATS_TEST_TMPDIR/hdr" "$BERTH_ADDR/metrics" >"$BATS_TEST_TMPDIR/m"
	grep -qi '^content-type: text/plain; version=0.0.4' "$BATS_TEST_TMPDIR/hdr"
	prom_parse <"$BATS_TEST_TMPDIR/m" >"$BATS_TEST_TMPDIR/m.json"
	"$BERTH_BIN" job list --json >"$BATS_TEST_TMPDIR/jobs.json"
	python3 - "$BATS_TEST_TMPDIR/m.json" "$BATS_TEST_TMPDIR/jobs.json" <<'PY'
import json, sys
samples = json.load(open(sys.argv[1]))
jobs = json.load(open(sys.argv[2]))
def get(name, **labels):
    vals = [v for n, l, v in samples if n == name and all(l.get(k) == x for k, x in labels.items())]
    assert len(vals) == 1, (name, labels, vals)
    return vals[0]
listed = {}
for j in jobs:
    for st, n in j["states"].items():
        listed[st] = listed.get(st, 0) + n
assert listed.get("RUNNING") == 3, listed
for n, l, v in samples:
    if n == "berth_tasks":
        assert v == listed.get(l["state"], 0), (l["state"], v, listed)
assert get("berth_jobs", status="running") == 2
assert get("berth_nodes", state="ACTIVE") == 1
assert get("berth_placements_total") >= 3
assert get("berth_placement_latency_seconds_count") >= 3
assert get("berth_store_commit_seconds_count") >= 1
assert get("berth_server_leader") == 1
assert any(n == "berth_node_heartbeat_lag_seconds" for n, l, v in samples)
assert get("berth_tasks_pending", reason="cpu") == 0
PY
}

@test "an agent's /metrics shows its running task's memory, with a metrics ticket" {
	"$BERTH_BIN" job run "$(web_spec ops/devel/mem)"
	agent=$("$BERTH_BIN" node list --json | jget 'd[0]["addr"]')
	[ "$(curl -s -o /dev/null -w '%{http_code}' --cacert "$BERTH_CACERT" "$agent/metrics")" = 401 ]
	[ "$(curl -s -o /dev/null -w '%{http_code}' --cacert "$BERTH_CACERT" -H "Authorization: Bearer $BERTH_TOKEN" "$agent/metrics")" = 401 ]
	ticket=$("$BERTH_BIN" admin metrics-ticket --days 1)
	# memhog touches 8 MiB: wait until the cgroup shows it.
	wait_for 10 'curl -fsS --cacert "$BERTH_CACERT" -H "Authorization: Bearer $ticket" "$agent/metrics" | grep -q "^berth_task_memory_bytes{job=\"ops/devel/mem\",instance=\"0\",task=\"[^\"]*\"} [1-9]"'
	curl -fsS --cacert "$BERTH_CACERT" -H "Authorization: Bearer $ticket" "$agent/metrics" >"$BATS_TEST_TMPDIR/a"
	prom_parse <"$BATS_TEST_TMPDIR/a" >/dev/null
	grep -q '^berth_agent_launches_total 1$' "$BATS_TEST_TMPDIR/a"
	grep -q '^berth_agent_launch_seconds_count 1$' "$BATS_TEST_TMPDIR/a"
	grep -q '^berth_task_pids{job="ops/devel/mem",instance="0",task="[^"]*"} [1-9]' "$BATS_TEST_TMPDIR/a"
	grep -q '^berth_task_cpu_seconds_total{job="ops/devel/mem"' "$BATS_TEST_TMPDIR/a"
	run "$BERTH_BIN" admin metrics-ticket --days 0
	[ "$status" -ne 0 ]
}

@test "a server with open event streams stops promptly" {
	for i in 1 2 3; do
		api_curl -sS -N "$BERTH_ADDR/v1/events" >/dev/null 2>&1 3>&- &
	done
	sleep 1
	start=$SECONDS
	stop_up
	[ $((SECONDS - start)) -le 5 ]
	grep -q "signal 15: stopping" "$DATA.log"
}

@test "node drains and rolling updates are events too" {
	"$BERTH_BIN" node drain vm
	"$BERTH_BIN" node activate vm
	wait_for 10 '"$BERTH_BIN" events --type node | grep -q "activated by the operator"'
	run "$BERTH_BIN" events --type node
	echo "$output"
	[ "$(echo "$output" | awk '{print $4}' | tr '\n' ' ')" = "ACTIVE DRAINING DRAINED ACTIVE " ]
	for v in 1 2; do
		"$BERTH_BIN" job run "$(spec <<SPEC
job: ops/devel/up
instances: 2
task:
  command: ["/bin/sh", "-c", "exec sleep 30$v"]
  resources: {cpu: 0.01, memory: 16MiB}
update: {batch_size: 1, watch: 1s}
SPEC
)"
	done
	run "$BERTH_BIN" events --json --type update --job ops/devel/up
	echo "$output"
	echo "$output" | python3 -c '
import json, sys
evs = [json.loads(l) for l in sys.stdin if l.strip()]
whole = [e["state"] for e in evs if "instance" not in e]
assert whole == ["ROLLING_FORWARD", "ROLLED_FORWARD"], whole
for i in (0, 1):
    assert [e["state"] for e in evs if e.get("instance") == i] == ["UPDATING", "WATCHING", "DONE"], evs
'
}
