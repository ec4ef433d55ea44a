#!/usr/bin/env bash
# A backup does not stop the server from answering (issue 12): a `berth
# server` with J jobs (no agent: their tasks stay pending, each a record),
# then GET /v1/admin/backup taken while a client calls GET /v1/health in a
# loop. Prints the backup's size and time, and the slowest health answer
# during it (with the scan on the request thread, that was the whole scan).
#
# usage: bench/backup.sh [--jobs J] [--instances I]
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
BERTH=${BERTH:-build/berth}
jobs=20000
instances=1
while [ $# -gt 0 ]; do
	case $1 in
	--jobs) jobs=$2; shift 2 ;;
	--instances) instances=$2; shift 2 ;;
	*) echo "usage: $0 [--jobs J] [--instances I]" >&2; exit 2 ;;
	esac
done
data=$(mktemp -d /tmp/berth-bench-backup.XXXXXX)
port=$(free_port)
"$BERTH" server -q --insecure --data-dir "$data/server" --addr "127.0.0.1:$port" \
	>"$data/server.log" 2>&1 &
server_pid=$!
trap 'stop_pids $server_pid; rm -rf "$data"' EXIT
for _ in $(seq 1 100); do
	curl -fsS "http://127.0.0.1:$port/v1/health" >/dev/null 2>&1 && break
	sleep 0.1
done
python3 - "$port" "$jobs" "$instances" <<'PY'
import http.client, json, sys, threading, time
port, jobs, instances = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
def submit(lo, hi):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    for i in range(lo, hi):
        spec = {"job": "bench/prod/job-%d" % i, "instances": instances,
                "task": {"command": ["/bin/sleep", "1000"],
                         "env": {"PAYLOAD": "x" * 200},
                         "resources": {"cpu": 0.1, "memory": "16MiB"}}}
        c.request("POST", "/v1/jobs", json.dumps(spec), {"Content-Type": "application/json"})
        r = c.getresponse(); r.read()
        if r.status != 200:
            sys.exit("submit: HTTP %d" % r.status)
t0 = time.time()
n = 16
ts = [threading.Thread(target=submit, args=(k * jobs // n, (k + 1) * jobs // n)) for k in range(n)]
for t in ts: t.start()
for t in ts: t.join()
print("backup bench: %d jobs submitted in %.1f s" % (jobs, time.time() - t0))
PY
python3 - "$port" <<'PY'
import http.client, sys, threading, time
port = int(sys.argv[1])
done = threading.Event()
lat = []
# Keep-alive connections, as agents hold them: spread over the server's
# request threads, so that one shares the thread the backup arrives on.
def health():
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    while not done.is_set():
        t = time.time(); c.request("GET", "/v1/health"); c.getresponse().read()
        lat.append((t, time.time() - t))
        time.sleep(0.01)
ths = [threading.Thread(target=health) for _ in range(16)]
for th in ths: th.start()
time.sleep(0.5)
c = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
t0 = time.time(); c.request("GET", "/v1/admin/backup"); r = c.getresponse(); body = r.read()
t1 = time.time()
time.sleep(0.2)
done.set()
for th in ths: th.join()
during = sorted(d for t, d in lat if t0 <= t + d and t <= t1)
print("backup bench: backup HTTP %d, %d keys, %.1f MiB in %.2f s" %
      (r.status, body.count(b"\n"), len(body) / 2**20, t1 - t0))
print("backup bench: GET /v1/health on 16 keep-alive connections during the backup: "
      "%d answers, slowest %.1f ms, median %.1f ms" %
      (len(during), 1000 * (during[-1] if during else 0), 1000 * (during[len(during) // 2] if during else 0)))
PY
echo "backup bench: server RSS $(rss_mib $server_pid) MiB"
