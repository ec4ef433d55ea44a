#!/usr/bin/env bats
# The routing mesh across hosts (docs/networking.md): a server and three
# agents, each in its own network namespace (tests/e2e/netns.bash). Every
# node answers on an ingress port, whichever node runs the instances; a
# host-mode port answers only where an instance runs; a drained node's
# instance leaves the rotation.

load helpers
load netns

BATS_TEST_TIMEOUT=${BERTH_CLUSTER_TEST_TIMEOUT:-90}
PUB=18080

setup_file() {
	if [ "$(id -u)" = 0 ] && command -v ip >/dev/null; then
		ns_reap_stale
	fi
}

setup() {
	ns_require
	ns_setup
	ns_start_server
	for i in 1 2 3; do
		ns_add_host "$i"
		ns_start_agent "$i"
	done
	wait_active 3 10
}

teardown() {
	ns_cleanup
}

# web KEY MODE INSTANCES: httpd-tiny answering NODE-INSTANCE, one per node.
web() {
	cat >"$NS_BASE/web.yaml" <<EOF2
job: $1
instances: $3
publish: [{port: $PUB, target: http, mode: $2}]
task:
  command: ["$BERTH_TOOLS/httpd-tiny", "{{ports.http}}", "{{host}}-{{instance}}"]
  resources: {cpu: 0.1, memory: 16MiB, ports: [http]}
  constraints: {host: "limit:1"}
  health: {http: /health, port: http, interval: 100ms, timeout: 500ms, initial_delay: 0s}
  drain_delay: 1s
EOF2
	cli job run "$NS_BASE/web.yaml"
}

# The distinct answers of node K's published port over N tries.
answers_on() {
	for _ in $(seq 1 "${2:-12}"); do
		in_ns "$NS_SRV" curl -fsS -m 2 "http://$NS_NET.$((10 + $1)):$PUB/" 2>/dev/null || echo -n "(error)"
		echo
	done | sort -u | tr '\n' ' '
}

@test "every node answers on an ingress port and spreads over the instances on other nodes" {
	web alice/prod/web ingress 2
	placed=$(running_tasks alice/prod/web | awk '{print $2 "-" $1}' | sort | tr '\n' ' ')
	for k in 1 2 3; do
		wait_for 10 '[ "$(answers_on '"$k"')" = "$placed" ]'
	done
}

@test "a host-mode port answers only on the nodes running an instance, with their own instance" {
	web alice/prod/web host 2
	wait_for 10 '[ "$(running_tasks alice/prod/web | wc -l)" = 2 ]'
	for k in 1 2 3; do
		here=$(running_tasks alice/prod/web | awk -v n="n$k" '$2 == n {print $2 "-" $1 " "}')
		if [ -n "$here" ]; then
			wait_for 10 '[ "$(answers_on '"$k"')" = "$here" ]'
		else
			sleep 0.5
			[ "$(answers_on "$k" 3)" = "(error) " ]
		fi
	done
}

@test "a drained node's instance leaves the rotation of every node" {
	web alice/prod/web ingress 2
	placed=$(running_tasks alice/prod/web | awk '{print $2 "-" $1}' | sort | tr '\n' ' ')
	wait_for 10 '[ "$(answers_on 1)" = "$placed" ]'
	victim=$(running_tasks alice/prod/web | awk '$1 == 0 {print $2}')
	cli node drain "$victim"
	# Instance 0 moves to the free node; nobody answers from the drained one.
	wait_for 20 '[ "$(running_tasks alice/prod/web | awk "\$1 == 0 {print \$2}")" != "$victim" ] && [ "$(running_tasks alice/prod/web | wc -l)" = 2 ]'
	placed=$(running_tasks alice/prod/web | awk '{print $2 "-" $1}' | sort | tr '\n' ' ')
	[[ "$placed" != *"$victim-"* ]]
	for k in 1 2 3; do
		wait_for 10 '[ "$(answers_on '"$k"')" = "$placed" ]'
	done
}
