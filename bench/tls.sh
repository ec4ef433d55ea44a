#!/usr/bin/env bash
# What TLS costs (docs/security.md, "Scale with TLS"): a real `berth server`
# with TLS (the default) and then with --insecure, each with ~100 jobs in
# its state and a few simulated agents (`berth agent --simulate`, which join
# with the join token and speak mutual TLS, as real agents do), measured the
# same way:
#   - GET /v1/jobs requests per second over one keep-alive connection;
#   - a fresh connection per GET /v1/health: ms each (TLS: handshake included),
#     and the server's CPU time per connection (fresh_conn_server_cpu_ms);
#   - `berth job run` of a small job (2 instances) until it runs: ms, median
#     of several runs (a fresh CLI process each time, so a handshake each).
# Prints figures, one line per mode and a last line with the differences:
#   mode=tls jobs_rps=… fresh_conn_ms=… fresh_conn_server_cpu_ms=… job_run_ms=…
#   mode=insecure jobs_rps=… fresh_conn_ms=… fresh_conn_server_cpu_ms=… job_run_ms=…
#   tls_handshake_ms=… jobs_rps_ratio=… job_run_extra_ms=…
# Nothing is asserted: the figures depend on the machine.
#
# Usage: bench/tls.sh [--seconds S] [--jobs J] [--runs R]
# Defaults: 5 s per rate, 100 jobs, 7 job runs.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
. "$top/bench/lib.sh"
BERTH=${BERTH_BIN:-$top/build/berth}
seconds=5 jobs=100 runs=7
while [ $# -gt 0 ]; do
	case $1 in
	--seconds) seconds=$2; shift 2 ;;
	--jobs) jobs=$2; shift 2 ;;
	--runs) runs=$2; shift 2 ;;
	-h|--help) sed -n '2,20p' "$0"; exit 0 ;;
	*) echo "tls.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
	esac
done
[ -x "$BERTH" ] || { echo "tls.sh: build first (make): no $BERTH" >&2; exit 2; }

data=$(mktemp -d /tmp/berth-tls.XXXXXX)
server_pid= sim_pid=
cleanup() {
	stop_pids $sim_pid $server_pid
	rm -rf "$data"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

cat >"$data/small.yaml" <<'EOF'
job: bench/test/small
instances: 2
task:
  command: ["/bin/true"]
  resources: {cpu: 0.1, memory: 16MiB}
EOF

# One mode: start, fill, measure, stop. Its line goes to DATA/MODE.line.
measure() {
	local mode=$1 dir=$data/$1 port
	port=$(free_port)
	if [ "$mode" = insecure ]; then export BENCH_INSECURE=1; else unset BENCH_INSECURE; fi
	# shellcheck disable=SC2046
	"$BERTH" server -q --data-dir "$dir" --addr "127.0.0.1:$port" $(server_tls_flags) \
		>"$dir.log" 2>&1 &
	server_pid=$!
	bench_connect "$dir" "$port" || { echo "tls.sh: the $mode server did not start" >&2; exit 1; }
	# shellcheck disable=SC2046
	"$BERTH" agent -q --simulate 4 --name tls --server "$BERTH_ADDR" $(join_flags) \
		>"$dir.sim.log" 2>&1 &
	sim_pid=$!
	for _ in $(seq 1 200); do
		[ "$("$BERTH" node list --json 2>/dev/null | grep -o '"ACTIVE"' | wc -l)" -ge 4 ] && break
		sleep 0.05
	done
	for k in $(seq 1 "$jobs"); do
		printf '{"job":"bench/prod/j%d","instances":2,"task":{"command":["/bin/true"],"resources":{"cpu":0.01,"memory":"4MiB"}}}' "$k"
		echo
	done >"$dir.jobs"
	python3 - "$BERTH_ADDR" "$seconds" "$dir.jobs" "$server_pid" >"$dir.rates" <<'PY'
import http.client, json, os, ssl, sys, time
addr, seconds, jobs_file, server_pid = sys.argv[1], float(sys.argv[2]), sys.argv[3], sys.argv[4]
def server_cpu_s():
    f = open("/proc/%s/stat" % server_pid).read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")
tls = addr.startswith("https://")
host, port = addr.split("://")[1].rsplit(":", 1)
ctx = ssl.create_default_context(cafile=os.environ["BERTH_CACERT"]) if tls else None
hdrs = {"Authorization": "Bearer " + os.environ["BERTH_TOKEN"]} if tls else {}
def conn():
    if tls:
        return http.client.HTTPSConnection(host, int(port), context=ctx, timeout=30)
    return http.client.HTTPConnection(host, int(port), timeout=30)
c = conn()
for line in open(jobs_file):
    c.request("POST", "/v1/jobs", body=line.strip(), headers=dict(hdrs, **{"Content-Type": "application/json"}))
    r = c.getresponse(); r.read()
    if r.status >= 300:
        sys.exit("POST /v1/jobs: HTTP %d" % r.status)
# GET /v1/jobs over one keep-alive connection.
n, t0 = 0, time.monotonic()
while time.monotonic() - t0 < seconds:
    c.request("GET", "/v1/jobs", headers=hdrs)
    r = c.getresponse(); body = r.read()
    if r.status != 200:
        sys.exit("GET /v1/jobs: HTTP %d" % r.status)
    n += 1
rps = n / (time.monotonic() - t0)
njobs = len(json.loads(body))
c.close()
# A new connection per request: wall time, and the server's CPU (user +
# system) per connection, which the machine's load does not inflate.
n, t0, cpu0 = 0, time.monotonic(), server_cpu_s()
while time.monotonic() - t0 < seconds:
    c = conn()
    c.request("GET", "/v1/health", headers=hdrs)
    r = c.getresponse(); r.read(); c.close()
    n += 1
fresh_ms = (time.monotonic() - t0) * 1000 / n
cpu_ms = (server_cpu_s() - cpu0) * 1000 / n
print("jobs_rps=%.0f fresh_conn_ms=%.2f fresh_conn_server_cpu_ms=%.2f listed_jobs=%d" % (rps, fresh_ms, cpu_ms, njobs))
PY
	local times=()
	for _ in $(seq 1 "$runs"); do
		"$BERTH" job kill bench/test/small >/dev/null 2>&1 || true
		local t0 t1
		t0=$(date +%s%N)
		"$BERTH" job run "$data/small.yaml" >/dev/null
		t1=$(date +%s%N)
		times+=($(((t1 - t0) / 1000000)))
	done
	local median
	median=$(printf '%s\n' "${times[@]}" | sort -n | awk '{a[NR]=$1} END {print a[int((NR + 1) / 2)]}')
	echo "mode=$mode $(cat "$dir.rates") job_run_ms=$median" >"$data/$mode.line"
	stop_pids $sim_pid $server_pid
	sim_pid= server_pid=
}

measure tls
tls_line=$(cat "$data/tls.line")
echo "$tls_line"
measure insecure
plain_line=$(cat "$data/insecure.line")
echo "$plain_line"
get() { echo "$1" | tr ' ' '\n' | sed -n "s/^$2=//p"; }
awk -v tf="$(get "$tls_line" fresh_conn_ms)" -v pf="$(get "$plain_line" fresh_conn_ms)" \
	-v tr="$(get "$tls_line" jobs_rps)" -v pr="$(get "$plain_line" jobs_rps)" \
	-v tj="$(get "$tls_line" job_run_ms)" -v pj="$(get "$plain_line" job_run_ms)" \
	'BEGIN {printf "tls_handshake_ms=%.2f jobs_rps_ratio=%.2f job_run_extra_ms=%d\n", tf - pf, (pr ? tr / pr : 0), tj - pj}'
