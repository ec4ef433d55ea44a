#!/usr/bin/env bash
# Start latency of oci tasks from a cached image, beside `docker run` of the
# same image on the same machine.
#   - berth: 50 single-instance jobs (driver oci, a busybox image built here
#     as an OCI layout), one after another, each submitted with
#     `berth job run` (which returns once the task runs); latency = the
#     task's INIT -> RUNNING transition times as the server records them
#     (API accept -> the container's process runs). One task first warms
#     the image cache, so every measured start is from a cached image.
#   - docker: when dockerd (Debian's docker.io) can run, a private one
#     (--iptables=false --bridge=none, its own data root and socket under
#     /tmp), the same image loaded with skopeo, then 50 times
#     `docker run -d --network none IMAGE sleep 600`, timed by the wall
#     clock (the client returns once the container has started).
# Prints: oci_p50_ms=… oci_p99_ms=… docker_run_p50_ms=… ratio=…
# (ratio = oci p50 / docker run p50; the target in docs/targets.md is <= 0.25).
# Needs root, runc, busybox-static; skopeo and docker.io for the docker side.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
. "$top/bench/lib.sh"
BERTH=${BERTH_BIN:-$top/build/berth}
N=${N:-50}
work=$(mktemp -d /tmp/berth-oci-bench.XXXXXX)
data=$work/data
mkdir -p "$data"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
up="" dockerd_pid=""
cleanup() {
	[ -n "$up" ] && { kill -TERM "$up" 2>/dev/null || true; wait "$up" 2>/dev/null || true; }
	if [ -n "$dockerd_pid" ]; then
		docker -H "unix://$work/docker.sock" ps -aq 2>/dev/null |
			xargs -r docker -H "unix://$work/docker.sock" rm -f >/dev/null 2>&1 || true
		kill -TERM "$dockerd_pid" 2>/dev/null || true
		for _ in $(seq 1 100); do kill -0 "$dockerd_pid" 2>/dev/null || break; sleep 0.1; done
		kill -KILL "$dockerd_pid" 2>/dev/null || true
		wait "$dockerd_pid" 2>/dev/null || true
		# the containerd dockerd started for itself
		if [ -f "$work/exec/containerd/containerd.pid" ]; then
			kill -TERM "$(cat "$work/exec/containerd/containerd.pid")" 2>/dev/null || true
		fi
		umount -R "$work/docker" 2>/dev/null || true
	fi
	for c in /sys/fs/cgroup/*/berth-oci-bench /sys/fs/cgroup/berth-oci-bench; do
		[ -d "$c" ] && rmdir "$c" 2>/dev/null || true
	done
	rm -rf "$work"
}
trap cleanup EXIT

# ---- the image: busybox as an OCI layout ----
layout=$work/layout
mkdir -p "$work/rootfs/bin" "$work/rootfs/etc" "$work/rootfs/tmp" "$layout/blobs/sha256"
cp /bin/busybox "$work/rootfs/bin/busybox"
for a in sh sleep true echo cat ls; do ln -s busybox "$work/rootfs/bin/$a"; done
printf 'root:x:0:0:root:/root:/bin/sh\n' >"$work/rootfs/etc/passwd"
printf 'root:x:0:\n' >"$work/rootfs/etc/group"
tar -C "$work/rootfs" --numeric-owner --owner=0 --group=0 -cf "$work/layer.tar" .
did=$(sha256sum "$work/layer.tar" | cut -d' ' -f1)
gzip -n "$work/layer.tar"
ldg=$(sha256sum "$work/layer.tar.gz" | cut -d' ' -f1)
cp "$work/layer.tar.gz" "$layout/blobs/sha256/$ldg"
printf '{"architecture":"amd64","os":"linux","config":{"Env":["PATH=/bin"],"Cmd":["/bin/sh"]},"rootfs":{"type":"layers","diff_ids":["sha256:%s"]}}' \
	"$did" >"$work/config.json"
cdg=$(sha256sum "$work/config.json" | cut -d' ' -f1)
cp "$work/config.json" "$layout/blobs/sha256/$cdg"
printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%s},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:%s","size":%s}]}' \
	"$cdg" "$(stat -c %s "$work/config.json")" "$ldg" "$(stat -c %s "$work/layer.tar.gz")" >"$work/manifest.json"
mdg=$(sha256sum "$work/manifest.json" | cut -d' ' -f1)
cp "$work/manifest.json" "$layout/blobs/sha256/$mdg"
echo '{"imageLayoutVersion":"1.0.0"}' >"$layout/oci-layout"
printf '{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%s,"annotations":{"org.opencontainers.image.ref.name":"v1"}}]}' \
	"$mdg" "$(stat -c %s "$work/manifest.json")" >"$layout/index.json"

stats() { # latencies on stdin -> "n= p50_ms= p99_ms= max_ms="
	python3 -c '
import sys
v = sorted(float(x) for x in sys.stdin.read().split())
if not v: print("n=0 p50_ms=nan p99_ms=nan max_ms=nan"); sys.exit(0)
p = lambda q: v[min(len(v) - 1, int(q * len(v)))]
print("n=%d p50_ms=%.1f p99_ms=%.1f max_ms=%.1f" % (len(v), p(0.50), p(0.99), v[-1]))'
}
field() { echo "$1" | sed -E "s/.*$2=([0-9.na]+).*/\1/"; }

# ---- berth ----
"$BERTH" up -q --data-dir "$data" --addr "127.0.0.1:$port" --cgroup-parent berth-oci-bench \
	--cpu 64 $(server_tls_flags) >"$work/up.log" 2>&1 &
up=$!
bench_connect "$data" "$port" || { echo "oci: berth up did not start" >&2; exit 1; }
for _ in $(seq 1 100); do "$BERTH" node list --json 2>/dev/null | grep -q ACTIVE && break; sleep 0.05; done

run_job() { # KEY
	local f
	f=$(mktemp /tmp/berth-bench-spec.XXXXXX.yaml)
	printf 'job: %s\ntask:\n  driver: oci\n  image: %s:v1\n  command: ["sleep", "600"]\n  resources: {cpu: 0.1, memory: 16MiB}\n  stop_grace: 1s\n' \
		"$1" "$layout" >"$f"
	"$BERTH" job run "$f" >/dev/null
	rm -f "$f"
}
lat() { # KEY... -> INIT -> RUNNING per task, ms
	for k in "$@"; do "$BERTH" job status "$k" --json; done | python3 -c '
import json, sys
dec = json.JSONDecoder(); s = sys.stdin.read(); i = 0
while i < len(s):
    while i < len(s) and s[i].isspace(): i += 1
    if i >= len(s): break
    d, i = dec.raw_decode(s, i)
    for t in d["tasks"]:
        ev = {e["state"]: e["time_ms"] for e in t["events"]}
        if "RUNNING" in ev: print(ev["RUNNING"] - ev["INIT"])
'
}

if ! run_job bench/test/warm; then
	echo "berth could not start an oci task; its log:" >&2
	tail -20 "$work/up.log" >&2
	exit 1
fi
keys=()
for i in $(seq 1 "$N"); do
	run_job "bench/test/oci$i"
	keys+=("bench/test/oci$i")
done
oci_stats=$(lat "${keys[@]}" | stats)
for k in bench/test/warm "${keys[@]}"; do "$BERTH" job kill "$k" >/dev/null; done
kill -TERM "$up"
wait "$up" 2>/dev/null || true
up=""
echo "berth oci:  $oci_stats"
oci_p50=$(field "$oci_stats" p50_ms)
oci_p99=$(field "$oci_stats" p99_ms)

# ---- docker ----
docker_note=""
if ! command -v dockerd >/dev/null || ! command -v docker >/dev/null; then
	docker_note="dockerd is not installed (Debian package docker.io)"
elif ! command -v skopeo >/dev/null; then
	docker_note="skopeo is not installed (needed to load the image into dockerd)"
else
	sock=$work/docker.sock
	dockerd --iptables=false --ip-masq=false --bridge=none --data-root "$work/docker" \
		--exec-root "$work/exec" --pidfile "$work/docker.pid" --host "unix://$sock" \
		>"$work/dockerd.log" 2>&1 &
	dockerd_pid=$!
	for _ in $(seq 1 200); do docker -H "unix://$sock" info >/dev/null 2>&1 && break; sleep 0.1; done
	if ! docker -H "unix://$sock" info >/dev/null 2>&1; then
		docker_note="dockerd could not start: $(tail -1 "$work/dockerd.log")"
	elif ! skopeo copy --quiet --dest-daemon-host "unix://$sock" "oci:$layout:v1" \
		docker-daemon:berth-bench/busybox:v1 >"$work/skopeo.log" 2>&1; then
		docker_note="could not load the image into dockerd: $(tail -1 "$work/skopeo.log")"
	else
		# one warm-up run, as for berth
		docker -H "unix://$sock" run -d --network none berth-bench/busybox:v1 sleep 600 >/dev/null
		: >"$work/docker.lat"
		for i in $(seq 1 "$N"); do
			t0=$(date +%s%N)
			docker -H "unix://$sock" run -d --network none berth-bench/busybox:v1 sleep 600 >/dev/null
			t1=$(date +%s%N)
			echo $(((t1 - t0) / 1000)) | awk '{printf "%.1f\n", $1 / 1000}' >>"$work/docker.lat"
		done
		docker_stats=$(stats <"$work/docker.lat")
		echo "docker run: $docker_stats"
	fi
fi

if [ -n "$docker_note" ]; then
	echo "docker: $docker_note; oci figures only"
	echo "oci_p50_ms=$oci_p50 oci_p99_ms=$oci_p99"
	exit 0
fi
docker_p50=$(field "$docker_stats" p50_ms)
ratio=$(python3 -c "print('%.3f' % ($oci_p50 / $docker_p50))")
echo "oci_p50_ms=$oci_p50 oci_p99_ms=$oci_p99 docker_run_p50_ms=$docker_p50 ratio=$ratio"
