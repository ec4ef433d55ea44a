#!/usr/bin/env bats
# Task networks (docs/networking.md "Task networks"): task.network: bridge
# gives each task a network namespace, an address of its node's subnet on
# the bridge berth0, outbound masquerade, and routes to the other nodes'
# subnets. Every host is a network namespace (tests/e2e/netns.bash), so the
# machine's own network is never touched.

load helpers
load netns

BATS_TEST_TIMEOUT=${BERTH_CLUSTER_TEST_TIMEOUT:-90}

setup_file() {
	if [ "$(id -u)" = 0 ] && command -v ip >/dev/null; then
		ns_reap_stale
	fi
}

setup() {
	ns_require
	command -v nft >/dev/null || skip "no nft(8) to inspect the rules"
	ns_setup
}

teardown() {
	ns_cleanup
}

cluster() {
	local k=$1 i
	shift
	ns_start_server "$@"
	for i in $(seq 1 "$k"); do
		ns_add_host "$i"
		ns_start_agent "$i"
	done
	wait_active "$k" 10
}

write_spec() {
	cat >"$NS_BASE/$1.yaml"
	echo "$NS_BASE/$1.yaml"
}

# task_field JOB INSTANCE FIELD: a field of the instance's RUNNING task.
task_field() {
	jstatus "$1" | jget "[t.get('$3') for t in d['tasks'] if t['instance']==$2 and t['state']=='RUNNING'][0]"
}

node_subnet() {
	nodes_json | jget "[n.get('subnet') for n in d if n['name']=='$1'][0]"
}

# in_task PID CMD...: CMD in the network namespace of the task's program.
in_task() {
	local pid=$1
	shift
	nsenter --net="/proc/$pid/ns/net" -- "$@"
}

# http_get NS URL: the body, from network namespace NS.
http_get() {
	in_ns "$1" curl -fsS -m 3 "$2"
}

# web_spec NAME INSTANCES [RACK]: httpd-tiny on the fixed port 8080,
# answering NAME-INSTANCE, in bridge mode.
web_spec() {
	local cons=""
	[ -n "${3:-}" ] && cons="  constraints: {rack: $3}"
	write_spec "$1" <<EOF
job: alice/prod/$1
instances: $2
task:
  network: bridge
  command: ["$BERTH_TOOLS/httpd-tiny", "8080", "$1-{{instance}}"]
  resources: {cpu: 0.1, memory: 32MiB}
$cons
EOF
}

@test "a bridge task has its own network namespace: eth0 with an address of its node's subnet, shown by job status" {
	cluster 1
	f=$(web_spec web 1)
	cli job run "$f"
	wait_for 15 '[ "$(nrunning alice/prod/web)" = 1 ]'
	addr=$(task_field alice/prod/web 0 address)
	pid=$(task_field alice/prod/web 0 pid)
	subnet=$(node_subnet n1)
	echo "address $addr subnet $subnet"
	[[ "$subnet" == 10.244.*.0/24 ]]
	[ "${addr%.*}" = "${subnet%.0/24}" ]
	# The program's namespace is not the node's, and holds lo and eth0 only.
	[ "$(readlink /proc/$pid/ns/net)" != "$(readlink /proc/${NS_AGENT_PID[1]}/ns/net)" ]
	in_task "$pid" ip -4 -o addr show dev eth0 | grep -q " $addr/24 "
	[ "$(in_task "$pid" ip -o link | awk -F': ' '{print $2}' | cut -d@ -f1 | sort | tr '\n' ' ')" = "eth0 lo " ]
	in_task "$pid" ip route | grep -q "^default via ${subnet%.0/24}.1 dev eth0"
	# The node reaches it on its address; its bridge holds the gateway.
	[ "$(http_get "$(ns_name 1)" "http://$addr:8080/")" = web-0 ]
	ip -n "$(ns_name 1)" -4 -o addr show dev berth0 | grep -q " ${subnet%.0/24}.1/24 "
	# job status: the ADDRESS column.
	cli job status alice/prod/web | grep -E "RUNNING .* $addr "
}

@test "two instances on one node both listen on the same fixed port" {
	cluster 1
	f=$(web_spec same 2)
	cli job run "$f"
	wait_for 15 '[ "$(nrunning alice/prod/same)" = 2 ]'
	a0=$(task_field alice/prod/same 0 address)
	a1=$(task_field alice/prod/same 1 address)
	[ "$a0" != "$a1" ]
	[ "$(http_get "$(ns_name 1)" "http://$a0:8080/")" = same-0 ]
	[ "$(http_get "$(ns_name 1)" "http://$a1:8080/")" = same-1 ]
}

@test "outbound traffic leaves masqueraded: a task reaches a host that has no route to the cluster network" {
	cluster 1
	# The server's namespace plays the outside world: no route to 10.244/16.
	port=$(free_port)
	in_ns "$NS_SRV" "$BERTH_TOOLS/httpd-tiny" "$port" outside >/dev/null 2>&1 3>&- &
	httpd=$!
	f=$(web_spec out 1)
	cli job run "$f"
	wait_for 15 '[ "$(nrunning alice/prod/out)" = 1 ]'
	pid=$(task_field alice/prod/out 0 pid)
	run in_task "$pid" curl -fsS -m 3 "http://$NS_NET.1:$port/"
	kill "$httpd"
	echo "$output"
	[ "$status" -eq 0 ]
	[ "$output" = outside ]
	ip netns exec "$(ns_name 1)" nft list table ip berth | grep -q "ip saddr 10.244.0.0/16 ip daddr != 10.244.0.0/16 masquerade"
}

@test "an agent restart keeps the task's address and network; a new task never gets an address in use" {
	cluster 1
	f=$(web_spec keep 1)
	cli job run "$f"
	wait_for 15 '[ "$(nrunning alice/prod/keep)" = 1 ]'
	addr=$(task_field alice/prod/keep 0 address)
	id=$(task_field alice/prod/keep 0 id)
	ns_kill_agent 1 KILL
	ns_start_agent 1
	wait_active 1 10
	sleep 2
	[ "$(task_field alice/prod/keep 0 id)" = "$id" ]
	[ "$(task_field alice/prod/keep 0 address)" = "$addr" ]
	[ "$(http_get "$(ns_name 1)" "http://$addr:8080/")" = keep-0 ]
	# Its names still resolve: the name server's twin on the gateway is back.
	if grep -q "name server for tasks on" "$NS_BASE/n1.log"; then
		wait_for 5 'in_ns "$(ns_name 1)" "$BERTH_BIN" task-exec "$NS_BASE/n1/tasks/$id" -- getent hosts keep.prod.alice.berth | grep -q "^$addr "'
	fi
	# Another job's task: another address.
	f2=$(web_spec other 1)
	cli job run "$f2"
	wait_for 15 '[ "$(nrunning alice/prod/other)" = 1 ]'
	[ "$(task_field alice/prod/other 0 address)" != "$addr" ]
}

@test "tasks started next to running ones do not cut those off their gateway (berth0 keeps its MAC)" {
	# A Linux bridge without an address of its own takes its lowest port's:
	# a new task's veth could change the gateway's MAC under the tasks that
	# had resolved it, and their outbound frames were dropped until their
	# ARP entry aged out (15-45 s).
	cluster 1
	# The server's namespace plays the outside world.
	port=$(free_port)
	in_ns "$NS_SRV" "$BERTH_TOOLS/httpd-tiny" "$port" outside >/dev/null 2>&1 3>&- &
	httpd=$!
	f=$(web_spec first 2)
	cli job run "$f"
	wait_for 15 '[ "$(nrunning alice/prod/first)" = 2 ]'
	p0=$(task_field alice/prod/first 0 pid)
	p1=$(task_field alice/prod/first 1 pid)
	# Both went out through the gateway: both know its MAC.
	[ "$(in_task "$p0" curl -fsS -m 3 "http://$NS_NET.1:$port/")" = outside ]
	[ "$(in_task "$p1" curl -fsS -m 3 "http://$NS_NET.1:$port/")" = outside ]
	mac=$(ip -n "$(ns_name 1)" -br link show berth0 | awk '{print $3}')
	f=$(web_spec more 6)
	cli job run "$f"
	wait_for 20 '[ "$(nrunning alice/prod/more)" = 6 ]'
	for p in "$p0" "$p1"; do
		run in_task "$p" curl -fsS -m 3 "http://$NS_NET.1:$port/"
		echo "task pid $p: $output"
		[ "$output" = outside ]
	done
	kill "$httpd"
	[ "$(ip -n "$(ns_name 1)" -br link show berth0 | awk '{print $3}')" = "$mac" ]
}

@test "nothing is left of a task's network after it ends: veth, namespace, address" {
	cluster 1
	f=$(web_spec gone 2)
	cli job run "$f"
	wait_for 15 '[ "$(nrunning alice/prod/gone)" = 2 ]'
	[ "$(ip -n "$(ns_name 1)" -o link | grep -c ': bv')" = 2 ]
	[ "$(ls "$NS_BASE/n1/net/netns" | wc -l)" = 2 ]
	cli job kill alice/prod/gone
	wait_for 15 '[ "$(ip -n "$(ns_name 1)" -o link | grep -c ": bv")" = 0 ]'
	wait_for 5 '[ "$(ls "$NS_BASE/n1/net/netns" | wc -l)" = 0 ]'
	wait_for 5 '[ "$(ls "$NS_BASE/n1/net/addrs" | wc -l)" = 0 ]'
	! grep -q " $NS_BASE/n1/net/netns/" /proc/self/mounts
	# The bridge and berth's table stay while the agent runs.
	ip -n "$(ns_name 1)" link show berth0 >/dev/null
	ip netns exec "$(ns_name 1)" nft list table ip berth >/dev/null
}

@test "a bridge task's {{ports.NAME}} answers on the node's addresses, loopback included, as with host networking" {
	cluster 2
	f=$(write_spec pub <<EOF
job: alice/prod/pub
instances: 2
task:
  network: bridge
  command: ["$BERTH_TOOLS/httpd-tiny", "{{ports.http}}", "pub-{{instance}}"]
  resources: {cpu: 0.1, memory: 32MiB, ports: [http]}
  constraints: {rack: r1}
  health: {http: /, port: http, interval: 1s}
EOF
)
	cli job run "$f"
	wait_for 20 '[ "$(nrunning alice/prod/pub)" = 2 ]'
	for i in 0 1; do
		port=$(jstatus alice/prod/pub | jget "[t['ports']['http'] for t in d['tasks'] if t['instance']==$i and t['state']=='RUNNING'][0]")
		# From the node itself, on loopback and on its own address.
		[ "$(http_get "$(ns_name 1)" "http://127.0.0.1:$port/")" = "pub-$i" ]
		[ "$(http_get "$(ns_name 1)" "http://$NS_NET.11:$port/")" = "pub-$i" ]
		# From another node.
		[ "$(http_get "$(ns_name 2)" "http://$NS_NET.11:$port/")" = "pub-$i" ]
	done
	# A task reaches a port map of its own node (hairpin), even one that
	# leads to the task next to it.
	p0=$(task_field alice/prod/pub 0 pid)
	for i in 0 1; do
		port=$(jstatus alice/prod/pub | jget "[t['ports']['http'] for t in d['tasks'] if t['instance']==$i and t['state']=='RUNNING'][0]")
		run in_task "$p0" curl -sS -m 3 "http://$NS_NET.11:$port/"
		echo "hairpin $i: $output"
		[ "$output" = "pub-$i" ]
	done
	# A task may not use the bridge to reach the node's loopback.
	pid=$(task_field alice/prod/pub 0 pid)
	run in_task "$pid" curl -fsS -m 2 --interface eth0 "http://127.0.0.1:$port/"
	[ "$status" -ne 0 ]
	# The maps go with the tasks.
	cli job kill alice/prod/pub
	wait_for 15 '! ip netns exec "$(ns_name 1)" nft list table ip berth | grep -q "dnat to"'
}

@test "a task on n1 reaches a task on n2 by its address (routes between the nodes' subnets)" {
	cluster 2
	fa=$(web_spec a 1 r1)
	fb=$(web_spec b 1 r2)
	cli job run "$fa"
	cli job run "$fb"
	wait_for 15 '[ "$(nrunning alice/prod/a)" = 1 ] && [ "$(nrunning alice/prod/b)" = 1 ]'
	[ "$(task_field alice/prod/a 0 node)" = n1 ]
	[ "$(task_field alice/prod/b 0 node)" = n2 ]
	pa=$(task_field alice/prod/a 0 pid)
	pb=$(task_field alice/prod/b 0 pid)
	ab=$(task_field alice/prod/b 0 address)
	aa=$(task_field alice/prod/a 0 address)
	[ "${aa%.*}" != "${ab%.*}" ]
	wait_for 10 'in_task "$pa" curl -fsS -m 2 "http://$ab:8080/" >/dev/null'
	[ "$(in_task "$pa" curl -fsS -m 2 "http://$ab:8080/")" = b-0 ]
	[ "$(in_task "$pb" curl -fsS -m 2 "http://$aa:8080/")" = a-0 ]
	# n1's agent restarts, then a third node joins: n1 routes to it too.
	ns_kill_agent 1 KILL
	ns_start_agent 1
	ns_add_host 3
	ns_start_agent 3
	wait_active 3 10
	fc=$(web_spec c 1 r3)
	cli job run "$fc"
	wait_for 15 '[ "$(nrunning alice/prod/c)" = 1 ]'
	ac=$(task_field alice/prod/c 0 address)
	wait_for 10 'in_task "$pa" curl -fsS -m 2 "http://$ac:8080/" >/dev/null'
	[ "$(in_task "$pa" curl -fsS -m 2 "http://$ac:8080/")" = c-0 ]
}

@test "subnets: one /24 per node, kept across restarts; an exhausted range refuses the node clearly" {
	cluster 2 --cluster-cidr 10.250.0.0/23
	s1=$(node_subnet n1)
	s2=$(node_subnet n2)
	[ "$s1" != "$s2" ]
	[[ "$s1" == 10.250.[01].0/24 ]]
	ns_kill_agent 1 KILL
	ns_start_agent 1
	sleep 1
	[ "$(node_subnet n1)" = "$s1" ]
	ns_add_host 3
	ns_start_agent 3
	wait_for 10 'grep -q "cluster network 10.250.0.0/23 is exhausted: no free /24 for node .n3." "$NS_BASE/n3.log"'
}

@test "task.network is checked at submit" {
	cluster 1
	f=$(write_spec bad <<'EOF'
job: alice/prod/bad
task:
  network: overlay
  command: ["sleep", "300"]
EOF
)
	run cli job run "$f"
	[ "$status" -ne 0 ]
	echo "$output" | grep -q "task.network: expected host or bridge, found 'overlay'"
	f=$(write_spec dock <<'EOF'
job: alice/prod/dock
task:
  driver: docker
  image: busybox
  network: bridge
  command: ["sleep", "300"]
EOF
)
	# docker tasks have it too (docker.bats runs them): accepted, and
	# waiting here for a node with docker.
	run cli job run --detach "$f"
	echo "$output"
	[ "$status" -eq 0 ]
	cli job status alice/prod/dock --json | jget 'd["spec"]["task"].get("network", "bridge")' | grep -qx bridge
}

@test "bridge is the default; network: host keeps the node's network" {
	cluster 1
	f=$(write_spec dflt <<'EOF'
job: alice/prod/dflt
task:
  command: ["sleep", "300"]
EOF
)
	h=$(write_spec hostnet <<'EOF'
job: alice/prod/hostnet
task:
  network: host
  command: ["sleep", "300"]
EOF
)
	cli job run "$f"
	cli job run "$h"
	wait_for 15 '[ "$(nrunning alice/prod/dflt)" = 1 ] && [ "$(nrunning alice/prod/hostnet)" = 1 ]'
	[ -n "$(task_field alice/prod/dflt 0 address)" ]
	[ "$(task_field alice/prod/hostnet 0 address)" = None ]
	agent_ns=$(readlink /proc/${NS_AGENT_PID[1]}/ns/net)
	[ "$(readlink /proc/$(task_field alice/prod/dflt 0 pid)/ns/net)" != "$agent_ns" ]
	[ "$(readlink /proc/$(task_field alice/prod/hostnet 0 pid)/ns/net)" = "$agent_ns" ]
}
