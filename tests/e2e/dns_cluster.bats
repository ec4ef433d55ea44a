#!/usr/bin/env bats
# Names across nodes (docs/networking.md, "Names"): agents each in their
# own network namespace (tests/e2e/netns.bash), each with its DNS server on
# the default address (127.0.0.153:53 in its namespace); every agent answers
# for every job, wherever its instances run.

load helpers
load netns

BATS_TEST_TIMEOUT=${BERTH_CLUSTER_TEST_TIMEOUT:-90}
DNSQ="$BATS_TEST_DIRNAME/fixtures/dnsq.py"

setup_file() {
	if [ "$(id -u)" = 0 ] && command -v ip >/dev/null; then
		ns_reap_stale
	fi
}

setup() {
	ns_require
	grep -q '^nameserver [0-9.]*$' /etc/resolv.conf ||
		skip "no IPv4 nameserver in /etc/resolv.conf: the agents' DNS stays off by default"
	ns_setup
}

teardown() {
	ns_cleanup
}

cli() {
	in_ns "$NS_SRV" env BERTH_ADDR="$NS_SERVER_URL" "$BERTH_BIN" "$@"
}

# dnsq_on K ARGS...: a query to agent nK's DNS server, from its namespace.
dnsq_on() {
	local k=$1
	shift
	in_ns "$(ns_name "$k")" python3 "$DNSQ" query 127.0.0.153:53 "$@"
}

srv_count_on() {
	dnsq_on "$1" "$2" SRV | grep -c '^AN SRV' || true
}

@test "every agent answers for instances on every node, and follows a node's drain" {
	ns_start_server --down-after 2s
	for i in 1 2; do
		ns_add_host "$i"
		ns_start_agent "$i"
	done
	wait_for 10 '[ "$(cli node list --json 2>/dev/null | jget "sum(1 for n in d if n[\"state\"]==\"ACTIVE\")" 2>/dev/null)" = 2 ]'
	grep -q "name server for tasks on 127.0.0.153:53" "$NS_BASE/n1.log"
	cat >"$NS_BASE/web.yaml" <<EOF
job: alice/prod/web
instances: 2
task:
  command: ["$BERTH_TOOLS/httpd-tiny", "{{ports.http}}"]
  resources: {cpu: 0.05, memory: 16MiB, ports: [http]}
  constraints: {host: "limit:1"}
  stop_grace: 1s
EOF
	cli job run "$NS_BASE/web.yaml"
	# Each instance's own address (network: bridge, the default).
	at() { cli job status alice/prod/web --json | jget "[t['address'] for t in d['tasks'] if t['node'] == '$1'][0]"; }
	a1=$(at n1) a2=$(at n2)
	for k in 1 2; do
		wait_for 3 '[ "$(srv_count_on '"$k"' _http._tcp.web.prod.alice.berth)" = 2 ]'
		run dnsq_on "$k" web.prod.alice.berth A
		echo "$output"
		[[ "$output" == *"AN A web.prod.alice.berth $a1"* ]]
		[[ "$output" == *"AN A web.prod.alice.berth $a2"* ]]
	done
	# Inside a task on n1: the instance on n2 by name, and reachable there.
	tid=$(cli job status alice/prod/web --json | jget '[t["id"] for t in d["tasks"] if t["node"] == "n1"][0]')
	n2inst=$(cli job status alice/prod/web --json | jget '[t["instance"] for t in d["tasks"] if t["node"] == "n2"][0]')
	run in_ns "$(ns_name 1)" "$BERTH_BIN" task-exec "$NS_BASE/n1/tasks/$tid" -- getent hosts "$n2inst.web.prod.alice.berth"
	echo "$output"
	[[ "$output" == "$a2"* ]]
	# Drain n2: its instance leaves every agent's answer before it stops.
	cli node drain n2
	wait_for 5 '! dnsq_on 1 web.prod.alice.berth A | grep -q "$a2"'
	run dnsq_on 1 "$n2inst.web.prod.alice.berth" A
	[[ "${lines[0]}" == NXDOMAIN* ]] || [[ "$output" != *"$a2"* ]]
}
