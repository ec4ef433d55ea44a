#!/usr/bin/env bash
# Leader loss on the etcd store: two `berth server`s share one etcd, N
# simulated agents run T tasks; the leader is killed with SIGKILL.
# Prints one final line:
#   failover_s=… reload_s=… from=… tasks=… leader_rss_mib=… follower_rss_mib=…
# - failover_s: kill -> the other server (now leader) acknowledges a write;
# - reload_s: from election to leading, on the new leader (its log): the
#   promotion of its replica (kept warm by an etcd watch), or a load of the
#   whole state from etcd when the replica could not catch up (from=…).
# Target (docs/targets.md): <= 3 s with no acknowledged write lost.
# Usage: bench/failover.sh [--agents N] [--tasks T]   (default 1000, 100000)
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
. "$top/bench/lib.sh"
BERTH=${BERTH_BIN:-$top/build/berth}
agents=1000 tasks=100000
while [ $# -gt 0 ]; do
	case "$1" in
	--agents) agents=$2; shift 2 ;;
	--tasks) tasks=$2; shift 2 ;;
	*) echo "usage: $0 [--agents N] [--tasks T]" >&2; exit 2 ;;
	esac
done
command -v etcd >/dev/null || { echo "failover: etcd is not installed (etcd-server)" >&2; exit 1; }
bench_init failover
d=$data
BENCH_KEEP=${BENCH_KEEP:-${KEEP:-}}
ec=$(free_port) ep=$(free_port) s1=$port s2=$(free_port)
etcd --name default --data-dir "$d/etcd" --listen-client-urls "http://127.0.0.1:$ec" \
	--advertise-client-urls "http://127.0.0.1:$ec" --listen-peer-urls "http://127.0.0.1:$ep" \
	--initial-advertise-peer-urls "http://127.0.0.1:$ep" --initial-cluster "default=http://127.0.0.1:$ep" \
	--quota-backend-bytes 8589934592 --auto-compaction-mode revision --auto-compaction-retention 1000 \
	>"$d/etcd.log" 2>&1 &
bench_track $! "$d/etcd.log"
for _ in $(seq 1 100); do curl -fsS "http://127.0.0.1:$ec/health" >/dev/null 2>&1 && break; sleep 0.1; done
store="etcd://127.0.0.1:$ec/bench"
bench_server_at "$d/s1" "$s1" -q --store "$store"
p1=$server_pid
sleep 0.5
bench_server_at "$d/s2" "$s2" --store "$store"
p2=$server_pid
# The servers share the CA (in the store): s1's credentials are good for both.
bench_connect "$d/s1" "$s1" 20 || { echo "failover: server 1 did not start" >&2; exit 1; }
scheme=${BERTH_ADDR%%://*}
export BERTH_ADDR="$scheme://127.0.0.1:$s1,$scheme://127.0.0.1:$s2"
bench_sim sim "$agents" -q
bench_wait_nodes "$agents" 120
echo "failover: $agents agents ACTIVE; submitting $tasks tasks" >&2
per=1000
jobs=$(( (tasks + per - 1) / per ))
python3 - "$s1" "$jobs" "$per" <<'PY'
import os, sys, threading
port, jobs, per = (int(x) for x in sys.argv[1:])
sys.path.insert(0, os.environ["BENCH_PY"])
from benchapi import call, conn
def run(idx):
    c = conn(port, timeout=300)
    for k in idx:
        call(c, "POST", "/v1/jobs", {"job": "fo/prod/j%d" % k, "instances": per,
             "task": {"command": ["/bin/true"], "resources": {"cpu": 0.01, "memory": "4MiB"}}})
ts = [threading.Thread(target=run, args=(range(i, jobs, 4),)) for i in range(4)]
[t.start() for t in ts]; [t.join() for t in ts]
PY
for _ in $(seq 1 1200); do
	r=$("$BERTH" job list --json 2>/dev/null | python3 -c 'import json,sys; print(sum(j["states"].get("RUNNING",0) for j in json.load(sys.stdin)))' 2>/dev/null || echo 0)
	[ "$r" -ge "$tasks" ] && break
	sleep 0.5
done
rss() { awk '/^VmRSS:/{printf "%.1f", $2/1024}' "/proc/$1/status"; }
sleep 2 # the follower's replica settles
rss1=$(rss "$p1") rss2=$(rss "$p2")
echo "failover: $r tasks RUNNING; server RSS: s1 ${rss1} MiB, s2 ${rss2} MiB; killing the leader" >&2
leader=$(bench_curl -fsS "$scheme://127.0.0.1:$s1/v1/leader" | python3 -c 'import json,sys; print(json.load(sys.stdin)["leader"])')
if [ "$leader" = "$scheme://127.0.0.1:$s1" ]; then victim=$p1 other=$s2 log=$d/s2.log; else victim=$p2 other=$s1 log=$d/s1.log; fi
printf 'job: fo/prod/after\ntype: batch\ntask:\n  command: ["/bin/true"]\n  resources: {cpu: 0.01, memory: 4MiB}\n' >"$d/after.yaml"
t0=$(date +%s%N)
bench_untrack "$victim"
kill -KILL "$victim"
for _ in $(seq 1 1500); do BERTH_ADDR="$scheme://127.0.0.1:$other" "$BERTH" job run --detach "$d/after.yaml" >/dev/null 2>&1 && break; sleep 0.02; done
t1=$(date +%s%N)
line=$(grep -o 'state loaded from [a-z ]* in [0-9]* ms' "$log" | tail -1)
reload=$(echo "$line" | grep -o 'in [0-9]* ms' | grep -o '[0-9]*' || echo 0)
from=$(echo "$line" | sed -n 's/state loaded from \(its replica\|the store\) in.*/\1/p' | tr ' ' _)
if [ "$victim" = "$p1" ]; then lrss=$rss1 frss=$rss2; else lrss=$rss2 frss=$rss1; fi
python3 -c "print('failover_s=%.2f reload_s=%.2f from=%s tasks=%d leader_rss_mib=%s follower_rss_mib=%s' % (($t1-$t0)/1e9, ${reload:-0}/1000.0, '${from:-unknown}', $r, '$lrss', '$frss'))"
