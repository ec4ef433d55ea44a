#!/usr/bin/env bash
# netpath.sh - what the path between tasks on two nodes costs: plain routes
# between the nodes' subnets (berth's choice) against a VXLAN overlay with
# static FDB entries (what flannel's vxlan backend does). Builds two "nodes"
# as network namespaces on one bridge, each with a task namespace behind
# its own bridge, exactly as the agent lays them out, and measures TCP
# throughput and request/response latency between the two tasks with a
# small Python client/server (kernel time dominates with 1 MiB writes).
# Needs root and iproute2; touches nothing outside its namespaces.
# Usage: bench/netpath.sh [SECONDS]   (default 3 per measurement)
set -euo pipefail
secs=${1:-3}
p=bnp$$
ns() { ip netns exec "$p-$1" "${@:2}"; }
cleanup() { for n in s a b ta tb; do ip netns del "$p-$n" 2>/dev/null || true; done; }
trap cleanup EXIT

build() { # MODE: routes | vxlan
	cleanup
	for n in s a b ta tb; do ip netns add "$p-$n"; ns "$n" ip link set lo up; done
	ns s ip link add br0 type bridge
	ns s ip link set br0 up
	local i=1 n
	for n in a b; do
		ns s ip link add "v$n" type veth peer name eth0 netns "$p-$n"
		ns s ip link set "v$n" master br0 up
		ns "$n" ip addr add "10.99.0.$i/24" dev eth0
		ns "$n" ip link set eth0 up
		ns "$n" ip link add berth0 type bridge
		ns "$n" ip addr add "10.98.$i.1/24" dev berth0
		ns "$n" ip link set berth0 up
		ns "$n" sysctl -qw net.ipv4.ip_forward=1
		ns "$n" ip link add bv0 type veth peer name eth0 netns "$p-t$n"
		ns "$n" ip link set bv0 master berth0 up
		ns "t$n" ip addr add "10.98.$i.2/24" dev eth0
		ns "t$n" ip link set eth0 up
		ns "t$n" ip route add default via "10.98.$i.1"
		i=$((i + 1))
	done
	if [ "$1" = routes ]; then
		ns a ip route add 10.98.2.0/24 via 10.99.0.2
		ns b ip route add 10.98.1.0/24 via 10.99.0.1
	else
		local me peer
		for n in a b; do
			if [ $n = a ]; then me=1 peer=2; else me=2 peer=1; fi
			ns $n ip link add vx0 type vxlan id 42 dstport 4789 local "10.99.0.$me" dev eth0 nolearning
			ns $n ip addr add "10.97.0.$me/24" dev vx0
			ns $n ip link set vx0 up
			ns $n bridge fdb append 00:00:00:00:00:00 dev vx0 dst "10.99.0.$peer"
			ns $n ip route add "10.98.$peer.0/24" via "10.97.0.$peer" dev vx0 onlink
			# The overlay's 50 bytes: the tasks' MTU shrinks, as flannel's does.
			ns t$n ip link set eth0 mtu 1450
		done
	fi
}

measure() { # prints "MB/s rr_us"
	ns tb python3 - "$secs" <<'PY' &
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", 5001)); s.listen(4)
c, _ = s.accept()
while True:
    b = c.recv(1 << 20)
    if not b: break
c.close()
c, _ = s.accept()
while True:
    b = c.recv(64)
    if not b: break
    c.sendall(b)
PY
	local srv=$!
	sleep 0.3
	ns ta python3 - "$secs" <<'PY'
import socket, sys, time
secs = float(sys.argv[1])
buf = b"x" * (1 << 20)
c = socket.create_connection(("10.98.2.2", 5001))
t0 = time.time(); n = 0
while time.time() - t0 < secs:
    c.sendall(buf); n += len(buf)
c.close()
mbs = n / (time.time() - t0) / 1e6
time.sleep(0.2)
c = socket.create_connection(("10.98.2.2", 5001))
c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
t0 = time.time(); k = 0
while time.time() - t0 < secs:
    c.sendall(b"ping"); c.recv(64); k += 1
c.close()
print("%.0f MB/s  %.1f us per request/response" % (mbs, (time.time() - t0) / k * 1e6))
PY
	wait "$srv" 2>/dev/null || true
}

for mode in routes vxlan; do
	build $mode
	printf '%-7s ' "$mode"
	measure
done
