#!/usr/bin/env bash
# The routing mesh under load (docs/networking.md, "Routing mesh"): wrk
# against a published port of a 3-instance HTTP service on `berth up`
# while a rolling update replaces every instance twice, then one instance
# is killed (SIGKILL); then wrk straight to one instance, for comparison.
#
# The service is nginx (Debian's nginx-light) as an exec task listening on
# {{ports.http}} with keep-alive bounded (keepalive_requests 100,
# keepalive_timeout 1s: a connection is recycled well within the drain
# delay), or httpd-tiny with --httpd-tiny (one connection per request).
#
# Prints, per phase (update: the two rolling updates; kill: the kill and
# the replacement; mesh_steady: 3 instances, no change; mesh_one: scaled
# to one instance; direct: that instance without the mesh):
#   phase=… requests=… rps=… p99_ms=… non2xx=… socket_errors=…
# and a last line: mesh_one_rps=… direct_rps=… ratio=… (the mesh over one
# instance against that instance straight, the same load, same run)
# Targets: 0 errors through the update; the kill loses at most the
# connections open on that instance; ratio >= 0.5 (user-space proxy).
#
# Usage: bench/mesh.sh [--duration SECONDS (60)] [--connections C (32)]
#                      [--threads T (2)] [--httpd-tiny]
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
. "$top/bench/lib.sh"
BERTH=${BERTH_BIN:-$top/build/berth}
HTTPD=${BERTH_TOOLS:-$top/build/tests}/httpd-tiny
duration=60 conns=32 threads=2 server=nginx
while [ $# -gt 0 ]; do
	case $1 in
	--duration) duration=$2; shift 2 ;;
	--connections) conns=$2; shift 2 ;;
	--threads) threads=$2; shift 2 ;;
	--httpd-tiny) server=httpd-tiny; shift ;;
	-h|--help) sed -n "2,24p" "$0"; exit 0 ;;
	*) echo "mesh.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
	esac
done
[ -x "$BERTH" ] && [ -x "$HTTPD" ] || { echo "mesh.sh: build first (make)" >&2; exit 2; }
[ "$(id -u)" = 0 ] || { echo "mesh.sh: needs root (namespaces and cgroups)" >&2; exit 2; }
command -v wrk >/dev/null || { echo "mesh.sh: needs wrk (apt-get install wrk)" >&2; exit 2; }
if [ $server = nginx ] && ! command -v nginx >/dev/null; then
	echo "mesh.sh: nginx is not installed (apt-get install nginx-light): using httpd-tiny" >&2
	server=httpd-tiny
fi

data=$(mktemp -d /tmp/berth-bench-mesh.XXXXXX)
port=$(free_port)
pub=$(free_port)
"$BERTH" up -q --data-dir "$data" --addr 127.0.0.1:$port --cgroup-parent berth-bench-mesh \
	--port-range 24000-24999 $(server_tls_flags) >"$data.log" 2>&1 &
up=$!
cleanup() {
	kill -TERM "$up" 2>/dev/null || true
	for _ in $(seq 1 200); do kill -0 "$up" 2>/dev/null || break; sleep 0.05; done
	kill -KILL "$up" 2>/dev/null || true
	wait "$up" 2>/dev/null || true
	remove_cgroup_parent berth-bench-mesh
	rm -rf "$data" "$data.log"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
bench_connect "$data" "$port" || { echo "mesh: berth up did not start" >&2; exit 1; }
for _ in $(seq 1 100); do "$BERTH" node list --json 2>/dev/null | grep -q ACTIVE && break; sleep 0.05; done

key=bench/test/mesh
spec() { # VERSION [INSTANCES] -> spec file
	local f=$data/v$1.yaml cmd n=${2:-3}
	if [ $server = nginx ]; then
		# nginx as nobody, everything under the task's private /tmp; SIGTERM
		# becomes nginx's graceful QUIT.
		cmd="|
    mkdir -p /tmp/ngx
    cat >/tmp/ngx/nginx.conf <<'CONF'
    worker_processes 1; daemon off; pid /tmp/ngx/pid; error_log stderr;
    events { worker_connections 4096; }
    http { access_log off; keepalive_requests 100; keepalive_timeout 1s;
      client_body_temp_path /tmp/ngx; proxy_temp_path /tmp/ngx; fastcgi_temp_path /tmp/ngx;
      uwsgi_temp_path /tmp/ngx; scgi_temp_path /tmp/ngx;
      server { listen {{ports.http}}; location / { return 200 'v$1 {{instance}}'; } } }
    CONF
    nginx -e stderr -p /tmp/ngx -c /tmp/ngx/nginx.conf & p=\$!
    trap 'kill -QUIT \$p' TERM
    wait \$p; wait \$p"
	else
		cmd="[\"$HTTPD\", \"{{ports.http}}\", \"v$1-{{instance}}\"]"
	fi
	cat >"$f" <<EOF
job: $key
instances: $n
publish: [{port: $pub, target: http}]
task:
  command: $cmd
  resources: {cpu: 0.2, memory: 64MiB, ports: [http]}
  health: {http: /, port: http, interval: 200ms, timeout: 1s, initial_delay: 0s}
  stop_grace: 5s
  drain_delay: 3s
update: {batch_size: 1, watch: 1s, order: stop_first}
EOF
	echo "$f"
}

# wrk_phase NAME SECONDS URL: wrk, then its figures as one line.
wrk_phase() {
	local name=$1 secs=$2 url=$3
	wrk -t"$threads" -c"$conns" -d"${secs}s" --latency "$url" >"$data/wrk.$name" 2>&1 || true
	python3 - "$name" "$data/wrk.$name" <<'EOF'
import re, sys
name, text = sys.argv[1], open(sys.argv[2]).read()
def num(pat, default=0.0):
    m = re.search(pat, text)
    return m.group(1) if m else default
def ms(v):
    m = re.fullmatch(r"([0-9.]+)(us|ms|s)", v)
    return float(m.group(1)) * {"us": 0.001, "ms": 1, "s": 1000}[m.group(2)] if m else 0.0
reqs = int(num(r"(\d+) requests in", 0))
rps = float(num(r"Requests/sec:\s+([0-9.]+)", 0))
p99 = ms(num(r"99%\s+(\S+)", "0ms"))
non2xx = int(num(r"Non-2xx or 3xx responses: (\d+)", 0))
m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
errs = sum(map(int, m.groups())) if m else 0
detail = "connect=%s read=%s write=%s timeout=%s" % m.groups() if m else ""
print("phase=%s requests=%d rps=%.0f p99_ms=%.2f non2xx=%d socket_errors=%d %s"
      % (name, reqs, rps, p99, non2xx, errs, detail))
EOF
}

echo "mesh: starting 3 instances of $server, published on port $pub" >&2
"$BERTH" job run --timeout 120s "$(spec 1)" >/dev/null
for _ in $(seq 1 100); do curl -fsS -m 1 "http://127.0.0.1:$pub/" >/dev/null 2>&1 && break; sleep 0.1; done

# Phase 1: two rolling updates under load (2/3 of the time).
upd=$((duration * 2 / 3))
kil=$((duration - upd))
(
	sleep 2
	"$BERTH" job run --timeout 120s "$(spec 2)" >/dev/null && echo "mesh: every instance on version 2" >&2
	"$BERTH" job run --timeout 120s "$(spec 3)" >/dev/null && echo "mesh: every instance on version 3" >&2
) &
updater=$!
wrk_phase update "$upd" "http://127.0.0.1:$pub/" | tee "$data/update.line"
if kill -0 $updater 2>/dev/null; then
	echo "mesh: the updates outlasted the update phase (--duration longer?)" >&2
fi
wait $updater || true
"$BERTH" update status "$key" --json | python3 -c 'import json,sys; d=json.load(sys.stdin); print("mesh: update", d["to_version"], d["state"], file=sys.stderr)'

# Phase 2: one instance killed (SIGKILL of its process) under load.
victim=$("$BERTH" job status "$key" --json | python3 -c 'import json,sys; d=json.load(sys.stdin); print([t["pid"] for t in d["tasks"] if t["state"]=="RUNNING"][0])')
(sleep 2; pkill -KILL -P "$victim" 2>/dev/null; kill -KILL "$victim" 2>/dev/null; echo "mesh: killed instance process $victim" >&2) &
killer=$!
wrk_phase kill "$kil" "http://127.0.0.1:$pub/"
wait $killer || true

# Phase 3: the mesh over 3 instances, then over 1, and straight to that
# one, same load: the proxy's cost is mesh_one against direct.
wrk_phase mesh_steady 10 "http://127.0.0.1:$pub/"
"$BERTH" job run --timeout 60s "$(spec 3 1)" >/dev/null
for _ in $(seq 1 100); do
	[ "$("$BERTH" job status "$key" --json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["tasks"]))')" = 1 ] && break
	sleep 0.1
done
sleep 4 # the stopped instances' drain
one=$("$BERTH" job status "$key" --json | python3 -c 'import json,sys; d=json.load(sys.stdin); print([t["ports"]["http"] for t in d["tasks"] if t["state"]=="RUNNING"][0])')
wrk_phase mesh_one 10 "http://127.0.0.1:$pub/" | tee "$data/mesh.line"
wrk_phase direct 10 "http://127.0.0.1:$one/" | tee "$data/direct.line"
python3 - "$data/mesh.line" "$data/direct.line" <<'EOF'
import re, sys
rps = lambda f: float(re.search(r"rps=([0-9.]+)", open(f).read()).group(1))
m, d = rps(sys.argv[1]), rps(sys.argv[2])
print("mesh_one_rps=%.0f direct_rps=%.0f ratio=%.2f" % (m, d, m / d if d else 0))
EOF
