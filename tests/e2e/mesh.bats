#!/usr/bin/env bats
# The routing mesh (docs/networking.md): a job's `publish` makes the node
# accept on the published port and spread connections over the job's
# instances in rotation; an instance leaves the rotation before it stops,
# so an update or a scale-down under load loses no request.

load helpers

KEY=alice/devel/web

setup() {
	require_root
	start_up
	PUB=$(free_port)
}

teardown() {
	cleanup_up
	rm -f /tmp/berth-spec.*.yaml 2>/dev/null || true
}

# web_spec BODY [INSTANCES] [KEY] [PORT]: httpd-tiny answering BODY-INSTANCE.
web_spec() {
	local body=$1 n=${2:-3} key=${3:-$KEY} port=${4:-$PUB}
	spec <<EOF2
job: $key
instances: $n
publish: [{port: $port, target: http}]
task:
  command: ["$BERTH_TOOLS/httpd-tiny", "{{ports.http}}", "$body-{{instance}}"]
  resources: {cpu: 0.1, memory: 16MiB, ports: [http]}
  health: {http: /health, port: http, interval: 100ms, timeout: 500ms, initial_delay: 0s, failures: 2}
  stop_grace: 2s
  drain_delay: 1s
update: {batch_size: 1, watch: 300ms, max_instance_failures: 0, max_total_failures: 0}
EOF2
}

# N requests on the published port: the distinct answers, one per line.
answers() {
	for _ in $(seq 1 "${1:-30}"); do
		curl -fsS --max-time 2 "http://127.0.0.1:$PUB/" || echo "(error)"
		echo
	done | sort -u
}

# Load: THREADS python3 clients asking the published port until $1 exists;
# prints "requests errors" into $2.
load_until() {
	python3 - "$PUB" "$1" "$2" <<'PY' &
import os, sys, threading, urllib.request
port, stop, out = int(sys.argv[1]), sys.argv[2], sys.argv[3]
ok = err = 0
lock = threading.Lock()
msgs = []
def run():
    global ok, err
    while not os.path.exists(stop):
        try:
            with urllib.request.urlopen("http://127.0.0.1:%d/" % port, timeout=5) as r:
                r.read()
                good = r.status == 200
        except Exception as e:
            good = False
            msgs.append(repr(e))
        with lock:
            if good: ok += 1
            else: err += 1
ts = [threading.Thread(target=run) for _ in range(8)]
for t in ts: t.start()
for t in ts: t.join()
open(out, "w").write("%d %d %s\n" % (ok, err, msgs[:3]))
PY
	LOAD_PID=$!
}

wait_mesh() { # the published port answers with N distinct instances
	WANT=${1:-3}
	wait_for 20 '[ "$(answers 30 | grep -vc error)" = "$WANT" ]'
}

@test "a published port answers on the node and spreads over the instances" {
	:
	sleep 0.3
	run "$BERTH_BIN" job run "$(web_spec v1 3)"
	[ "$status" -eq 0 ]
	wait_mesh 3
	[ "$(answers 30)" = "$(printf 'v1-0\nv1-1\nv1-2')" ]
}

@test "a second job publishing the same port is refused, naming the owner" {
	run "$BERTH_BIN" job run "$(web_spec v1 1)"
	[ "$status" -eq 0 ]
	run "$BERTH_BIN" job run "$(web_spec v1 1 alice/devel/other)"
	[ "$status" -ne 0 ]
	[[ "$output" == *"port $PUB is already published by job 'alice/devel/web'"* ]]
	# The owner may submit its own port again (no conflict with itself).
	run "$BERTH_BIN" job run "$(web_spec v1 2)"
	[ "$status" -eq 0 ]
	# A port in the agents' task port range is refused too.
	run "$BERTH_BIN" job run "$(web_spec v1 1 alice/devel/third 31500)"
	[ "$status" -ne 0 ]
	[[ "$output" == *"port 31500 is in node"*"task port range"* ]]
	# A publish target must be a declared port.
	f=$(spec <<EOF2
job: alice/devel/bad
publish: [{port: $PUB, target: web}]
task:
  command: ["/bin/true"]
  resources: {ports: [http]}
EOF2
)
	run "$BERTH_BIN" job run "$f"
	[ "$status" -ne 0 ]
	[[ "$output" == *"publish[0].target"*"a port declared in task.resources.ports"* ]]
}

@test "a rolling update under load loses no request" {
	run "$BERTH_BIN" job run "$(web_spec v1 3)"
	[ "$status" -eq 0 ]
	wait_mesh 3
	stop=$BATS_TEST_TMPDIR/stop out=$BATS_TEST_TMPDIR/load
	load_until "$stop" "$out"
	sleep 1
	run "$BERTH_BIN" job run "$(web_spec v2 3)"
	echo "$output"
	[ "$status" -eq 0 ]
	sleep 1
	touch "$stop"
	wait "$LOAD_PID"
	cat "$out"
	read -r ok errors _ <"$out"
	[ "$errors" = 0 ]
	[ "$ok" -gt 100 ]
	[ "$(answers 30)" = "$(printf 'v2-0\nv2-1\nv2-2')" ]
}

@test "a scaled-down instance leaves the rotation before it stops, under load" {
	run "$BERTH_BIN" job run "$(web_spec v1 3)"
	[ "$status" -eq 0 ]
	wait_mesh 3
	stop=$BATS_TEST_TMPDIR/stop out=$BATS_TEST_TMPDIR/load
	load_until "$stop" "$out"
	sleep 0.5
	run "$BERTH_BIN" job run "$(web_spec v1 1)"
	[ "$status" -eq 0 ]
	wait_for 20 '[ "$(running_count $KEY)" = 1 ]'
	sleep 1
	touch "$stop"
	wait "$LOAD_PID"
	cat "$out"
	read -r ok errors _ <"$out"
	[ "$errors" = 0 ]
	[ "$(answers 20)" = "v1-0" ]
	grep -q "leaves the mesh's rotation" "$DATA.log"
}

@test "a killed job stops answering on its published port" {
	run "$BERTH_BIN" job run "$(web_spec v1 2)"
	[ "$status" -eq 0 ]
	wait_mesh 2
	run "$BERTH_BIN" job kill "$KEY"
	[ "$status" -eq 0 ]
	wait_for 10 '! curl -fsS --max-time 1 "http://127.0.0.1:$PUB/" >/dev/null 2>&1'
}
