#!/usr/bin/env bats
# The docker driver end to end: a private dockerd (tests/e2e/dockerd.bash:
# its own data root, exec root and socket under /tmp, no iptables, no bridge,
# a busybox image imported from Debian's busybox-static, no network needed),
# and `berth up --docker-socket` on a fresh data dir for each test, driven
# through the berth CLI. Everything SKIPs, with the reason, when dockerd
# cannot be started (not root, not installed, or it fails: its log tail).

load helpers
load dockerd

setup_file() {
	# A dockerd that cannot start is not swallowed: dockerd_start records
	# why in DOCKERD_SKIP and every test's setup skips with that reason
	# (bats ignores `skip` inside setup_file).
	dockerd_start || true
	export DOCKERD_DIR DOCKER_SOCK DOCKERD_PID DOCKERD_SKIP DOCKER_IMAGE
}

teardown_file() {
	dockerd_stop
}

# start_up with --docker-socket: start_docker_up [SOCKET [DATA_DIR]].
start_docker_up() {
	BERTH_UP_FLAGS="${BERTH_UP_FLAGS:-} --docker-socket ${1:-$DOCKER_SOCK} ${SPECS:+--volume-root $SPECS}" \
		start_up "${2:-}"
}

setup() {
	[ -z "${DOCKERD_SKIP:-}" ] || skip "$DOCKERD_SKIP"
	SPECS=$(mktemp -d /tmp/berth-e2e-specs.XXXXXX)
	# The agent's name server on a loopback address of our own (the
	# default one may be another cluster's on this host); bridge tasks ask
	# its twin on berth0's .1. Other names go nowhere (no test asks one).
	# A cluster network of our own too: other clusters on this host share
	# berth0, and would hand out the same addresses from 10.244.0.0/24.
	DNS_IP="127.$((RANDOM % 200 + 20)).$((RANDOM % 250 + 1)).$((RANDOM % 250 + 1))"
	NET_FLAGS="--dns-listen $DNS_IP:53 --dns-upstream 127.0.0.1:9"
	CIDR=10.$((RANDOM % 100 + 100)).$((RANDOM % 256)).0/24
	lo=$((22000 + RANDOM % 80 * 100))
	NET_FLAGS="$NET_FLAGS --cluster-cidr $CIDR --port-range $lo-$((lo + 99))"
	BERTH_UP_FLAGS="$NET_FLAGS" start_docker_up
}

teardown() {
	[ -n "${SPECS:-}" ] || return 0 # skipped
	stop_up
	if [ "${BATS_TEST_COMPLETED:-}" != 1 ]; then
		for f in "$DATA"/tasks/*/supervisor.log; do
			if [ -f "$f" ]; then { echo "--- $f ---" && cat "$f"; } >&2; fi
		done
		echo "--- berth containers ---" >&2
		berth_containers >&2 || true
		echo "--- dockerd log ---" >&2
		dockerd_log_tail 20 >&2
	fi
	# Containers a failed test left behind.
	dockerd_remove_berth_containers
	cleanup_up
	rm -rf "$SPECS"
}

task_of() { "$BERTH_BIN" job status "$1" --json --all | jget "d['tasks'][0]['$2']"; }

@test "a node whose docker answers has the attribute driver.docker=true" {
	run "$BERTH_BIN" node list --json
	echo "$output"
	[ "$status" -eq 0 ]
	[ "$(echo "$output" | jget 'd[0]["attributes"].get("driver.docker")')" = true ]
}

@test "a docker batch task runs in the image, its output in the logs, its hostname its task id" {
	cat >"$SPECS/hello.yaml" <<EOF
job: alice/devel/hello
type: batch
task:
  driver: docker
  image: $DOCKER_IMAGE
  command: ["/bin/sh", "-c", "echo hello from docker; cat /etc/hostname"]
  resources: {cpu: 0.5, memory: 64MiB}
EOF
	run "$BERTH_BIN" job run "$SPECS/hello.yaml"
	echo "$output"
	[ "$status" -eq 0 ]
	[ "$(task_of alice/devel/hello state)" = FINISHED ]
	[ "$(task_of alice/devel/hello exit_code)" = 0 ]
	id=$(task_of alice/devel/hello id)
	run "$BERTH_BIN" task logs alice/devel/hello/0
	echo "$output"
	[ "$status" -eq 0 ]
	[ "${#lines[@]}" -eq 2 ]
	[ "${lines[0]}" = "hello from docker" ]
	# The driver sets Hostname to the task id (docker.h; as exec does).
	[ "${lines[1]}" = "$id" ]
	# The supervisor removed the container once it had read its end.
	[ "$(berth_containers "$id")" = "[]" ]
}

@test "a docker volume is a bind Mount: read-only holds, a missing source is not created" {
	mkdir "$SPECS/vol"
	echo "from the host" >"$SPECS/vol/greeting"
	cat >"$SPECS/vol.yaml" <<EOF
job: alice/devel/dvol
type: batch
task:
  driver: docker
  image: $DOCKER_IMAGE
  command: ["/bin/sh", "-c", "cat /data/greeting; touch /data/new || echo refused"]
  resources: {cpu: 0.5, memory: 64MiB}
  volumes:
    - {host: $SPECS/vol, path: /data, read_only: true}
EOF
	run "$BERTH_BIN" job run "$SPECS/vol.yaml"
	echo "$output"
	[ "$status" -eq 0 ]
	run "$BERTH_BIN" task logs alice/devel/dvol/0
	[ "${lines[0]}" = "from the host" ]
	[ "${lines[1]}" = refused ]
	[ ! -e "$SPECS/vol/new" ]
	# Docker's Binds would create a missing source on the host; berth
	# refuses it before docker is asked.
	sed -i "s|host: $SPECS/vol,|host: $SPECS/missing,|; s|dvol|dmiss|" "$SPECS/vol.yaml"
	sed -i "s|^type: batch|type: batch\nmax_task_failures: 1|" "$SPECS/vol.yaml"
	run "$BERTH_BIN" job run "$SPECS/vol.yaml"
	[ "$status" -ne 0 ]
	[ "$(task_of alice/devel/dmiss state)" = FAILED ]
	[ ! -e "$SPECS/missing" ]
}

@test "a docker service runs as a live host pid; job kill stops it and removes its container" {
	cat >"$SPECS/svc.yaml" <<EOF
job: alice/devel/svc
task:
  driver: docker
  image: $DOCKER_IMAGE
  command: ["/bin/sh", "-c", "trap 'echo got TERM; exit 0' TERM; echo started; while :; do sleep 0.1; done"]
  resources: {cpu: 0.5, memory: 64MiB}
  stop_grace: 10s
EOF
	run "$BERTH_BIN" job run "$SPECS/svc.yaml"
	echo "$output"
	[ "$status" -eq 0 ]
	[ "$(running_count alice/devel/svc)" -eq 1 ]
	id=$(task_of alice/devel/svc id)
	pid=$(task_of alice/devel/svc pid)
	[ "$pid" -gt 1 ]
	kill -0 "$pid"
	# That pid is the program, inside the task's container.
	cid=$(berth_containers "$id" | jget 'd[0]["Id"]')
	[ "$(berth_containers "$id" | jget 'd[0]["State"]')" = running ]
	[ "$(berth_containers "$id" | jget 'd[0]["Labels"]["berth.job"]')" = alice/devel/svc ]
	grep -q "$cid" "/proc/$pid/cgroup"
	# The cpu limit is set once the container started (Docker's own start-up
	# runs unthrottled) and holds for the task.
	[ "$(dapi GET "/containers/$cid/json" | jget 'd["HostConfig"]["NanoCpus"]')" = 500000000 ]
	tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q "echo started"
	[ -e "/proc/$pid/root/bin/busybox" ] && [ ! -e "/proc/$pid/root/etc/debian_version" ]
	sb=$DATA/tasks/$id
	start=$(date +%s%N)
	"$BERTH_BIN" job kill alice/devel/svc
	wait_for 15 '[ "$(jget "d[\"phase\"]" <"$sb/status.json")" = exited ]'
	elapsed_ms=$((($(date +%s%N) - start) / 1000000))
	echo "stop took ${elapsed_ms}ms"
	[ "$elapsed_ms" -lt 8000 ] # SIGTERM did it, not the SIGKILL after the grace
	cat "$sb/status.json"
	grep -q '"killed by berth (SIGTERM)"' "$sb/status.json"
	grep -qx "started" "$sb/stdout"
	grep -qx "got TERM" "$sb/stdout"
	run kill -0 "$pid"
	[ "$status" -ne 0 ]
	[ "$(berth_containers "$id")" = "[]" ]
}

@test "a docker task has a pids limit, and its command health check runs in its container: a write to / stays there" {
	rm -f /berth-e2e-escape
	cat >"$SPECS/check.yaml" <<EOF
job: alice/devel/dcheck
task:
  driver: docker
  image: $DOCKER_IMAGE
  command: ["sleep", "300"]
  resources: {cpu: 0.1, memory: 32MiB}
  health: {command: "test -e /bin/busybox && test ! -e /etc/debian_version && test \$(id -u) = 0 && touch /berth-e2e-escape", interval: 300ms, timeout: 5s, initial_delay: 0s, failures: 3}
EOF
	run "$BERTH_BIN" job run "$SPECS/check.yaml"
	echo "$output"
	[ "$status" -eq 0 ]
	[ "$(running_count alice/devel/dcheck)" -eq 1 ]
	id=$(task_of alice/devel/dcheck id)
	pid=$(task_of alice/devel/dcheck pid)
	cid=$(berth_containers "$id" | jget 'd[0]["Id"]')
	[ -e "/proc/$pid/root/berth-e2e-escape" ] # in the container's root
	[ ! -e /berth-e2e-escape ]                # not the host's
	# The same pids limit as exec and oci tasks.
	[ "$(dapi GET "/containers/$cid/json" | jget 'd["HostConfig"]["PidsLimit"]')" = 16384 ]
}

@test "a docker task's command health check killed at its timeout leaves nothing running in the container" {
	cat >"$SPECS/slow.yaml" <<EOF
job: alice/devel/dslow
task:
  driver: docker
  image: $DOCKER_IMAGE
  command: ["sleep", "300"]
  resources: {cpu: 0.1, memory: 32MiB}
  health: {command: "sleep 30", interval: 700ms, timeout: 400ms, initial_delay: 0s, failures: 1000}
EOF
	"$BERTH_BIN" job run --detach "$SPECS/slow.yaml"
	wait_for 30 '[ "$(task_of alice/devel/dslow pid)" -gt 0 ]'
	sleep 5 # several checks started and timed out
	cid=$(berth_containers "$(task_of alice/devel/dslow id)" | jget 'd[0]["Id"]')
	dapi GET "/containers/$cid/top" | tee /dev/stderr |
		jget 'sum(1 for p in d["Processes"] if p[-1] == "sleep 30")' >"$SPECS/n"
	[ "$(cat "$SPECS/n")" -le 1 ] # at most the check in flight
	[ "$(task_of alice/devel/dslow state)" = STARTING ]
}

@test "a docker task over its memory limit fails with the limit in its message" {
	mem=$(dapi GET /info | jget 'd.get("MemoryLimit")')
	[ "$mem" = True ] || skip "this dockerd cannot apply memory limits (GET /info MemoryLimit: $mem)"
	cat >"$SPECS/hog.yaml" <<EOF
job: alice/devel/hog
type: batch
max_task_failures: 1
task:
  driver: docker
  image: $DOCKER_IMAGE
  command: ["/bin/sh", "-c", "echo start; x=0123456789abcdef; while :; do x=\$x\$x; done"]
  resources: {cpu: 0.5, memory: 32MiB}
EOF
	run "$BERTH_BIN" job run "$SPECS/hog.yaml"
	echo "$output"
	[ "$status" -ne 0 ]
	run "$BERTH_BIN" job status alice/devel/hog --json --all
	echo "$output"
	[ "$(echo "$output" | jget 'd["tasks"][0]["state"]')" = FAILED ]
	[ "$(echo "$output" | jget 'd["tasks"][0]["message"]')" = "memory limit 32 MiB exceeded" ]
	[ "$(echo "$output" | jget 'd["tasks"][0]["exit_code"]')" = 137 ]
	id=$(echo "$output" | jget 'd["tasks"][0]["id"]')
	grep -q '"oom":true' "$DATA/tasks/$id/status.json"
	grep -qx start "$DATA/tasks/$id/stdout"
	[ "$(berth_containers "$id")" = "[]" ]
}

@test "a docker task whose image cannot be had fails with a message naming the image" {
	# A registry on loopback that refuses: fails at once, with no network.
	img=127.0.0.1:1/berth-e2e/nope:1
	cat >"$SPECS/missing.yaml" <<EOF
job: alice/devel/missing
type: batch
max_task_failures: 1
task:
  driver: docker
  image: $img
  command: ["/bin/true"]
  resources: {cpu: 0.1, memory: 16MiB}
EOF
	run "$BERTH_BIN" job run "$SPECS/missing.yaml"
	echo "$output"
	[ "$status" -ne 0 ]
	run "$BERTH_BIN" job status alice/devel/missing --json --all
	echo "$output"
	[ "$(echo "$output" | jget 'd["tasks"][0]["state"]')" = FAILED ]
	msg=$(echo "$output" | jget 'd["tasks"][0]["message"]')
	case "$msg" in
	"docker: cannot pull '$img': "*) ;;
	*)
		echo "unexpected message: $msg"
		false
		;;
	esac
	[ "$(berth_containers)" = "[]" ]
}

@test "a node whose docker does not answer has no driver.docker and gets no docker task" {
	stop_up
	cleanup_up
	start_docker_up "$DOCKERD_DIR/no-such.sock"
	run "$BERTH_BIN" node list --json
	echo "$output"
	[ "$(echo "$output" | jget 'd[0]["attributes"].get("driver.docker", "absent")')" = absent ]
	[ "$(echo "$output" | jget 'd[0]["attributes"].get("driver.exec")')" = true ]
	cat >"$SPECS/nodocker.yaml" <<EOF
job: alice/devel/nodocker
type: batch
max_task_failures: 1
task:
  driver: docker
  image: $DOCKER_IMAGE
  command: ["/bin/true"]
  resources: {cpu: 0.1, memory: 16MiB}
EOF
	# The scheduler does not send it there: it waits, and says why.
	"$BERTH_BIN" job run --detach "$SPECS/nodocker.yaml"
	wait_for 10 '"$BERTH_BIN" job status alice/devel/nodocker --json | grep -qF "driver docker not offered on 1 node"'
	[ "$(task_of alice/devel/nodocker state)" = PENDING ]
}

@test "a docker task outlives a SIGKILL of berth up and is re-adopted: same id, same pid, still stoppable" {
	cat >"$SPECS/keep.yaml" <<EOF
job: alice/devel/keep
task:
  driver: docker
  image: $DOCKER_IMAGE
  command: ["/bin/sh", "-c", "trap 'echo got TERM; exit 0' TERM; while :; do sleep 0.1; done"]
  resources: {cpu: 0.1, memory: 32MiB}
  stop_grace: 10s
EOF
	"$BERTH_BIN" job run "$SPECS/keep.yaml"
	id=$(task_of alice/devel/keep id)
	pid=$(task_of alice/devel/keep pid)
	kill -KILL "$UP_PID"
	wait "$UP_PID" 2>/dev/null || true
	UP_PID=
	kill -0 "$pid" # the container depends on neither the agent nor the server
	BERTH_UP_FLAGS="$NET_FLAGS" start_docker_up "$DOCKER_SOCK" "$DATA"
	wait_for 10 '[ "$(running_count alice/devel/keep 2>/dev/null)" = 1 ]'
	[ "$(task_of alice/devel/keep id)" = "$id" ]
	[ "$(task_of alice/devel/keep pid)" = "$pid" ]
	[ "$(berth_containers "$id" | jget 'len(d)')" = 1 ]
	sb=$DATA/tasks/$id
	"$BERTH_BIN" job kill alice/devel/keep
	wait_for 15 '[ "$(jget "d[\"phase\"]" <"$sb/status.json")" = exited ]'
	grep -qx "got TERM" "$sb/stdout"
	run kill -0 "$pid"
	[ "$status" -ne 0 ]
	[ "$(berth_containers "$id")" = "[]" ]
}

@test "a docker task whose supervisor is killed is LOST, its container removed, and it is replaced" {
	cat >"$SPECS/orphan.yaml" <<EOF
job: alice/devel/orphan
task:
  driver: docker
  image: $DOCKER_IMAGE
  command: ["/bin/sh", "-c", "while :; do sleep 0.1; done"]
  resources: {cpu: 0.1, memory: 32MiB}
  stop_grace: 1s
EOF
	"$BERTH_BIN" job run "$SPECS/orphan.yaml"
	id=$(task_of alice/devel/orphan id)
	[ "$(berth_containers "$id" | jget 'len(d)')" = 1 ]
	pkill -KILL -f "berth supervise $DATA/tasks/$id"
	# Nobody watches that container any more: it goes, and the task is
	# replaced by a new one (a new container).
	wait_for 15 '[ "$(berth_containers "$id")" = "[]" ]'
	wait_for 15 '[ "$(running_count alice/devel/orphan 2>/dev/null)" = 1 ] && [ "$(task_of alice/devel/orphan id)" != "$id" ]'
	run "$BERTH_BIN" job status alice/devel/orphan --all --json
	echo "$output" | jget '[t["state"] for t in d["tasks"] if t["id"]=="'"$id"'"][0]' | grep -qx LOST
	grep -q "removed its orphan docker container" "$DATA.log"
	"$BERTH_BIN" job kill alice/devel/orphan
}

# ---- network: bridge (docs/networking.md "Docker tasks on the bridge") ----

# httpd-tiny for the busybox image, through a read-only volume at /opt/t.
tools_volume() {
	mkdir -p "$SPECS/bin"
	cp "$BERTH_TOOLS/httpd-tiny" "$SPECS/bin/httpd-tiny"
	echo "{host: $SPECS/bin, path: /opt/t, read_only: true}"
}

node_subnet() { "$BERTH_BIN" node list --json | jget 'd[0].get("subnet")'; }

# task_field JOB INSTANCE FIELD: a field of the instance's RUNNING task.
task_field() {
	"$BERTH_BIN" job status "$1" --json | jget "[t.get('$3') for t in d['tasks'] if t['instance']==$2 and t['state']=='RUNNING'][0]"
}

# The host end of a task's veth pair (task_net_host_ifname: FNV-1a).
veth_of() {
	python3 -c 'import sys
h = 1469598103934665603
for c in sys.argv[1].encode(): h = ((h ^ c) * 1099511628211) % 2**64
print("bv%012x" % (h & 0xffffffffffff))' "$1"
}

# in_sandbox TASK_ID CMD...: CMD in the task's container (docker exec).
in_sandbox() {
	local id=$1
	shift
	"$BERTH_BIN" task-exec "$DATA/tasks/$id" -- "$@"
}

@test "docker tasks on the bridge: an address of the node's subnet each, both on port 80, reaching each other by address and by name" {
	vol=$(tools_volume)
	cat >"$SPECS/dweb.yaml" <<EOF
job: alice/devel/dweb
instances: 2
task:
  driver: docker
  image: $DOCKER_IMAGE
  command: ["/opt/t/httpd-tiny", "80", "dweb-{{instance}}"]
  # 0.1, not 0.01: the test runs commands in the containers (docker exec),
  # whose set-up (runc) runs in the container's cgroup.
  resources: {cpu: 0.1, memory: 32MiB}
  volumes: [$vol]
  health: {command: "wget -qO- http://127.0.0.1:80/", interval: 300ms, timeout: 3s, initial_delay: 0s, failures: 3}
EOF
	run "$BERTH_BIN" job run "$SPECS/dweb.yaml"
	echo "$output"
	[ "$status" -eq 0 ]
	wait_for 30 '[ "$(running_count alice/devel/dweb)" = 2 ]'
	subnet=$(node_subnet)
	a0=$(task_field alice/devel/dweb 0 address)
	a1=$(task_field alice/devel/dweb 1 address)
	id0=$(task_field alice/devel/dweb 0 id)
	id1=$(task_field alice/devel/dweb 1 id)
	pid0=$(task_field alice/devel/dweb 0 pid)
	echo "subnet $subnet addresses $a0 $a1"
	[[ "$subnet" == */24 ]]
	[ "$a0" != "$a1" ]
	[ "${a0%.*}.0/24" = "$subnet" ] && [ "${a1%.*}.0/24" = "$subnet" ]
	gw=${a0%.*}.1
	# The container's network is its own: lo and eth0 with the address,
	# the default route via the bridge; Docker's own is "none".
	[ "$(readlink "/proc/$pid0/ns/net")" != "$(readlink /proc/self/ns/net)" ]
	nsenter --net="/proc/$pid0/ns/net" ip -4 -o addr show dev eth0 | grep -q " $a0/24 "
	nsenter --net="/proc/$pid0/ns/net" ip route | grep -q "^default via $gw dev eth0"
	cid=$(berth_containers "$id0" | jget 'd[0]["Id"]')
	[ "$(dapi GET "/containers/$cid/json" | jget 'd["HostConfig"]["NetworkMode"]')" = none ]
	# job status: the ADDRESS column.
	"$BERTH_BIN" job status alice/devel/dweb | grep -E "RUNNING .* $a0( |$)"
	# Both listen on 80, each at its own address; the node reaches them.
	[ "$(curl -fsS -m 5 "http://$a0:80/")" = dweb-0 ]
	[ "$(curl -fsS -m 5 "http://$a1:80/")" = dweb-1 ]
	# One reaches the other by address, and by name through the agent's
	# name server on the bridge (the container's resolv.conf).
	run in_sandbox "$id0" wget -qO- "http://$a1:80/"
	echo "$output"
	[ "$output" = dweb-1 ]
	run in_sandbox "$id1" cat /etc/resolv.conf
	echo "$output"
	[[ "$output" == *"nameserver $gw"* ]]
	# (UDP, on a loaded machine: a lost answer is asked again.)
	wait_for 20 'out=$(in_sandbox "$id1" nslookup 0.dweb.devel.alice.berth 2>&1); echo "$out"; [[ "$out" == *"Address: $a0"* ]]'
	run in_sandbox "$id1" wget -qO- "http://0.dweb.devel.alice.berth:80/"
	echo "$output"
	[ "$output" = dweb-0 ]
	wait_for 20 'out=$(in_sandbox "$id0" nslookup dweb.devel.alice.berth 2>&1); echo "$out"; [[ "$out" == *"Address: $a0"* ]] && [[ "$out" == *"Address: $a1"* ]]'
	# Killed: both containers and their veths go.
	v0=$(veth_of "$id0")
	v1=$(veth_of "$id1")
	ip link show "$v0" >/dev/null && ip link show "$v1" >/dev/null
	"$BERTH_BIN" job kill alice/devel/dweb
	wait_for 15 '[ "$(berth_containers)" = "[]" ]'
	wait_for 10 '! ip link show "$v0" >/dev/null 2>&1 && ! ip link show "$v1" >/dev/null 2>&1'
	wait_for 5 '[ -z "$(ls "$DATA/net/addrs")" ] && [ -z "$(ls "$DATA/net/netns")" ]'
}

# node_port_answers PORT BODY: the node's loopback on PORT answers BODY
# (berth's port map to the task). berth's nftables table is one per network
# namespace: when another cluster on this host rewrote it meanwhile (its
# masquerade rule is not ours), the map is not checked.
node_port_answers() {
	local out
	out=$(curl -fsS -m 5 "http://127.0.0.1:$1/") && [ "$out" = "$2" ] && return 0
	if ! nft list table ip berth | grep -q "ip saddr $CIDR "; then
		echo "berth's table is another cluster's now: port map not checked" >&2
		return 0
	fi
	nft list table ip berth >&2
	return 1
}

@test "a docker bridge task's {{ports.NAME}} and published port answer; an agent restart keeps its address; nothing of its network is left after a drain" {
	vol=$(tools_volume)
	pub=$(free_port)
	cat >"$SPECS/dpub.yaml" <<EOF
job: alice/devel/dpub
publish: [{port: $pub, target: http}]
task:
  driver: docker
  image: $DOCKER_IMAGE
  command: ["/opt/t/httpd-tiny", "{{ports.http}}", "dpub-{{instance}}"]
  resources: {cpu: 0.01, memory: 32MiB, ports: [http]}
  volumes: [$vol]
  health: {http: /health, port: http, interval: 200ms, timeout: 1s, initial_delay: 0s, failures: 3}
  drain_delay: 200ms
EOF
	run "$BERTH_BIN" job run "$SPECS/dpub.yaml"
	echo "$output"
	[ "$status" -eq 0 ]
	wait_for 30 '[ "$(running_count alice/devel/dpub)" = 1 ]'
	addr=$(task_field alice/devel/dpub 0 address)
	id=$(task_field alice/devel/dpub 0 id)
	pid=$(task_field alice/devel/dpub 0 pid)
	port=$("$BERTH_BIN" job status alice/devel/dpub --json | jget "[t['ports']['http'] for t in d['tasks'] if t['state']=='RUNNING'][0]")
	veth=$(veth_of "$id")
	echo "address $addr port $port veth $veth"
	[ "${addr%.*}.0/24" = "$(node_subnet)" ]
	# In the container, the program listens on {{ports.http}} at its address;
	# the node's own addresses send that port to it, as with host networking.
	[ "$(curl -fsS -m 5 "http://$addr:$port/")" = dpub-0 ]
	node_port_answers "$port" dpub-0
	# The routing mesh: the published port on the node.
	wait_for 10 '[ "$(curl -fsS -m 3 "http://127.0.0.1:$pub/" 2>/dev/null)" = dpub-0 ]'

	# berth up killed and started again: the container ran on, and the
	# task is re-adopted with its address and network intact.
	kill -KILL "$UP_PID"
	wait "$UP_PID" 2>/dev/null || true
	UP_PID=
	[ "$(curl -fsS -m 5 "http://$addr:$port/")" = dpub-0 ]
	BERTH_UP_FLAGS="$NET_FLAGS" start_docker_up "$DOCKER_SOCK" "$DATA"
	wait_for 15 '[ "$(running_count alice/devel/dpub 2>/dev/null)" = 1 ]'
	[ "$(task_field alice/devel/dpub 0 id)" = "$id" ]
	[ "$(task_field alice/devel/dpub 0 pid)" = "$pid" ]
	[ "$(task_field alice/devel/dpub 0 address)" = "$addr" ]
	[ "$(cat "$DATA/net/addrs/$addr")" = "$id" ]
	ip link show "$veth" >/dev/null
	node_port_answers "$port" dpub-0
	wait_for 10 '[ "$(curl -fsS -m 3 "http://127.0.0.1:$pub/" 2>/dev/null)" = dpub-0 ]'

	# The node drained: the task stops (its replacement waits for a node),
	# and its container, veth, namespace, address and port map go.
	"$BERTH_BIN" node drain "$("$BERTH_BIN" node list --json | jget 'd[0]["name"]')"
	wait_for 15 '[ "$(berth_containers "$id")" = "[]" ]'
	wait_for 10 '! ip link show "$veth" >/dev/null 2>&1'
	wait_for 5 '[ ! -e "$DATA/net/netns/$id" ] && [ ! -e "$DATA/net/addrs/$addr" ]'
	! grep -q " $DATA/net/netns/" /proc/self/mounts
	! nft list table ip berth | grep -q "dnat to $addr"
	run curl -fsS -m 3 "http://$addr:$port/"
	[ "$status" -ne 0 ]
}

@test "a docker task reads its secret at its path, 0400 and its user's; not in the container's config; gone when the task ends" {
	value="docker-secret-$RANDOM$RANDOM"
	printf %s "$value" | "$BERTH_BIN" secret create alice/db-pass -
	cat >"$SPECS/secret.yaml" <<EOF
job: alice/devel/dsecret
task:
  driver: docker
  image: $DOCKER_IMAGE
  user: "1234"
  command: ["/bin/sh", "-c", "cat /run/secrets/db-pass; echo; stat -c '%a %u' /run/secrets/db-pass; echo x >/run/secrets/db-pass 2>/dev/null && echo WRITABLE; exec sleep 300"]
  resources: {cpu: 0.1, memory: 32MiB}
  secrets: [{name: db-pass}]
EOF
	run "$BERTH_BIN" job run --detach "$SPECS/secret.yaml"
	echo "$output"
	[ "$status" -eq 0 ]
	wait_for 30 '"$BERTH_BIN" task logs alice/devel/dsecret/0 2>/dev/null | grep -q "^400 "'
	run "$BERTH_BIN" task logs alice/devel/dsecret/0
	echo "$output"
	[ "${lines[0]}" = "$value" ]
	[ "${lines[1]}" = "400 1234" ]
	! echo "$output" | grep -q WRITABLE
	id=$(task_of alice/devel/dsecret id)
	cid=$(berth_containers "$id" | jget 'd[0]["Id"]')
	! dapi GET "/containers/$cid/json" | grep -qF "$value"
	grep -q " $DATA/tasks/$id/secrets tmpfs " /proc/mounts
	"$BERTH_BIN" job kill alice/devel/dsecret
	wait_for 20 '! grep -q " $DATA/tasks/$id/secrets " /proc/mounts'
}
