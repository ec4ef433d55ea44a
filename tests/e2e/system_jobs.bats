#!/usr/bin/env bats
# System jobs (type: system): one instance on every eligible node, as
# simulated agents join, drain and differ in attributes; then one real
# agent under `berth up`.

load helpers

start_server() {
	local data=$1 port=$2
	case " ${BERTH_UP_FLAGS:-} " in
	*" --insecure "*)
		export BERTH_ADDR="http://127.0.0.1:$port"
		set -- --insecure
		;;
	*)
		export BERTH_ADDR="https://127.0.0.1:$port"
		set --
		;;
	esac
	"$BERTH_BIN" server --data-dir "$data" --addr "127.0.0.1:$port" "$@" >>"$data.log" 2>&1 3>&- &
	SERVER_PID=$!
	use_client_creds "$data"
	wait_for 10 'api_curl -fsS "$BERTH_ADDR/v1/health" >/dev/null 2>&1'
}

join_flags() {
	case "$BERTH_ADDR" in
	https://*) echo "--join-token-file $1/client/join.token" ;;
	esac
}

# $1 simulated agents named $2-N (racks r0..r4 by N % 5).
start_sim() {
	# shellcheck disable=SC2046
	"$BERTH_BIN" agent --simulate "$1" --name "$2" --server "$BERTH_ADDR" \
		$(join_flags "$DATA/server") --cpu 4 --mem 8GiB --sim-racks 5 \
		>>"$DATA/sim-$2.log" 2>&1 3>&- &
}

sim_setup() {
	DATA=$(mktemp -d /tmp/berth-e2e-sys.XXXXXX)
	PORT=$(free_port)
	start_server "$DATA/server" "$PORT"
	start_sim 20 sim
	SIM_PID=$!
	wait_for 30 '[ "$(active_nodes)" -eq 20 ]'
}

teardown() {
	if [ -n "${UP_PID:-}" ]; then
		cleanup_up
		return
	fi
	stop_pids ${SIM_PID:-} ${SIM2_PID:-} ${SERVER_PID:-}
	if [ "${BATS_TEST_COMPLETED:-}" != 1 ]; then
		echo "--- server log ---" >&2
		tail -40 "$DATA/server.log" >&2 || true
	fi
	rm -rf "$DATA"
}

# The job's live tasks: "NODE STATE INSTANCE" lines.
placed() {
	status_json ops/prod/exporter | jget '"\n".join("%s %s %d" % (t.get("node") or "-", t["state"], t["instance"]) for t in d["tasks"])'
}

# How many distinct nodes run a RUNNING task of the job.
running_nodes() {
	status_json ops/prod/exporter | jget 'len({t.get("node") for t in d["tasks"] if t["state"]=="RUNNING"})'
}

exporter_spec() {
	spec <<EOF
job: ops/prod/exporter
type: system
update: {batch_size: 5, watch: 1s}
task:
  command: ["/bin/sh", "-c", "${1:-exec sleep 1000}"]
  resources: {cpu: ${2:-0.01}, memory: 16MiB}
${3:-}
EOF
}

@test "a system job runs one instance on each of 20 simulated nodes; 10 joining agents get one each" {
	sim_setup
	f=$(exporter_spec)
	run "$BERTH_BIN" job run "$f"
	rm -f "$f"
	[ "$status" -eq 0 ]
	[[ "$output" == *"all 20 instances running version 1"* ]]
	[ "$(running_count ops/prod/exporter)" -eq 20 ]
	[ "$(running_nodes)" -eq 20 ]
	status_json ops/prod/exporter >"$DATA/st.json"
	[ "$(jget 'd["type"]' <"$DATA/st.json")" = system ]
	[ "$(jget 'd["instances"]' <"$DATA/st.json")" -eq 20 ]
	[ "$(jget 'sorted(t["instance"] for t in d["tasks"]) == list(range(20))' <"$DATA/st.json")" = True ]
	start_sim 10 more
	SIM2_PID=$!
	wait_for 30 '[ "$(running_count ops/prod/exporter)" -eq 30 ]'
	[ "$(running_nodes)" -eq 30 ]
	# The newcomers took instances 20..29; nothing else moved.
	status_json ops/prod/exporter >"$DATA/st2.json"
	[ "$(jget 'sorted(t["instance"] for t in d["tasks"] if t["node"].startswith("more-")) == list(range(20, 30))' <"$DATA/st2.json")" = True ]
	[ "$(jget 'd["instances"]' <"$DATA/st2.json")" -eq 30 ]
	# Kill removes every instance.
	"$BERTH_BIN" job kill ops/prod/exporter
	wait_for 20 '! "$BERTH_BIN" job status ops/prod/exporter >/dev/null 2>&1'
}

@test "draining a node stops its instance without moving it; activating it brings the instance back" {
	sim_setup
	f=$(exporter_spec)
	"$BERTH_BIN" job run "$f" >/dev/null
	rm -f "$f"
	inst=$(placed | awk '$1 == "sim-3" {print $3}')
	[ -n "$inst" ]
	"$BERTH_BIN" node drain sim-3
	wait_for 20 '[ "$("$BERTH_BIN" node list --json | jget "[n for n in d if n[\"name\"]==\"sim-3\"][0][\"state\"]")" = DRAINED ]'
	[ "$(running_count ops/prod/exporter)" -eq 19 ]
	! placed | grep -q '^sim-3 '
	# Not rescheduled elsewhere: still one per node, and nothing waiting.
	[ "$(running_nodes)" -eq 19 ]
	! placed | grep -q PENDING
	[ "$(status_json ops/prod/exporter | jget 'd["instances"]')" -eq 19 ]
	"$BERTH_BIN" node activate sim-3
	wait_for 20 '[ "$(running_count ops/prod/exporter)" -eq 20 ]'
	[ "$(placed | awk '$1 == "sim-3" {print $3}')" = "$inst" ]
}

@test "a constraint limits a system job to the matching nodes; one that cannot fit says why" {
	sim_setup
	f=$(exporter_spec "exec sleep 1000" 0.01 "  constraints: {rack: r1}")
	run "$BERTH_BIN" job run "$f"
	rm -f "$f"
	[ "$status" -eq 0 ]
	[ "$(running_count ops/prod/exporter)" -eq 4 ]
	[ "$(placed | awk '{print $1}' | sort | tr '\n' ' ')" = "sim-1 sim-11 sim-16 sim-6 " ]
	# Too big for the nodes (4 cpu): every instance waits, and says why.
	f=$(spec <<'EOF'
job: ops/prod/big
type: system
task:
  command: ["/bin/true"]
  resources: {cpu: 8, memory: 16MiB}
  constraints: {rack: r2}
EOF
)
	"$BERTH_BIN" job run --detach "$f" >/dev/null
	rm -f "$f"
	wait_for 10 '[ "$(status_json ops/prod/big | jget "sum(1 for t in d[\"tasks\"] if t[\"state\"]==\"PENDING\")")" -eq 4 ]'
	run "$BERTH_BIN" job status ops/prod/big
	[[ "$output" == *"insufficient cpu (4.00 free, 8.00 wanted)"* ]]
}

@test "a new config of a system job rolls out with the update policy, node by node" {
	sim_setup
	f=$(exporter_spec)
	"$BERTH_BIN" job run "$f" >/dev/null
	rm -f "$f"
	f=$(exporter_spec "exec sleep 2000")
	run "$BERTH_BIN" job run "$f"
	rm -f "$f"
	[ "$status" -eq 0 ]
	run "$BERTH_BIN" update status ops/prod/exporter --json
	[ "$(echo "$output" | jget 'd["state"]')" = ROLLED_FORWARD ]
	[ "$(echo "$output" | jget 'd["total"]')" -eq 20 ]
	[ "$(status_json ops/prod/exporter | jget 'sum(1 for t in d["tasks"] if t["version"]==2 and t["state"]=="RUNNING")')" -eq 20 ]
	[ "$(running_nodes)" -eq 20 ]
}

@test "system job specs: instances and limit constraints are refused with a clear message" {
	DATA=$(mktemp -d /tmp/berth-e2e-sys.XXXXXX)
	f=$(spec <<'EOF'
job: ops/prod/exporter
type: system
instances: 3
task: {command: sleep 1}
EOF
)
	run "$BERTH_BIN" job plan "$f"
	rm -f "$f"
	[ "$status" -ne 0 ]
	[[ "$output" == *"instances: expected no instances for a system job (it runs one instance on every eligible node)"* ]]
}

@test "berth up: a system exec job runs on the single node" {
	require_root
	start_up
	f=$(spec <<'EOF'
job: ops/prod/exporter
type: system
task:
  command: ["/bin/sh", "-c", "echo on {{host}}; exec sleep 300"]
  resources: {cpu: 0.01, memory: 32MiB}
EOF
)
	run "$BERTH_BIN" job run "$f"
	rm -f "$f"
	[ "$status" -eq 0 ]
	[[ "$output" == *"all 1 instances running version 1"* ]]
	status_json ops/prod/exporter >"$DATA.st.json"
	[ "$(jget 'd["instances"]' <"$DATA.st.json")" -eq 1 ]
	pid=$(jget 'd["tasks"][0]["pid"]' <"$DATA.st.json")
	node=$(jget 'd["tasks"][0]["node"]' <"$DATA.st.json")
	rm -f "$DATA.st.json"
	kill -0 "$pid"
	wait_for 10 '"$BERTH_BIN" task logs ops/prod/exporter/0 | grep -q "on "'
	"$BERTH_BIN" job kill ops/prod/exporter
	wait_for 15 '! kill -0 '"$pid"' 2>/dev/null'
	[ -n "$node" ]
}
