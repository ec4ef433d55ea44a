#!/usr/bin/env bash
# A busy node is not a dead node (issue 10): a real `berth server`, N
# simulated agents (`berth agent --simulate N`) and C clients calling
# `berth node list --json`, `berth job list --json` and `berth job status`
# in a loop (bench/poller.py) for M minutes. Nothing else runs: every DOWN
# event is the server's own fault.
#
# The server serves HTTPS (the default): each simulated agent joins with the
# join token (a key and a certificate request of its own, or one shared key
# with --shared-key) and then speaks mutual TLS; --insecure runs it all over
# plain HTTP instead, for comparison.
#
# Prints progress to stderr and one final line:
#   tls=on|off agents=… minutes=… stall_s=… down_events=… joined_s=… registered_s=…
#   server_cpu_start_pct=… server_cpu_end_pct=… server_deaf_ms=…
#   server_rss_start_mib=… server_rss_end_mib=…
#   reads=… read_errors=… node_list_p50_ms=… … job_status_max_ms=…
# - down_events: "is down" lines in the server log (target: 0);
# - joined_s: until every agent had its node certificate (n/a: --insecure);
# - server_cpu_*: the server's CPU (100 = one core) over the first and the
#   last 30 s of the polling phase; server_rss_*: its VmRSS then.
#
# --stall S: once, after the first CPU window, the server is paused
# (SIGSTOP) for S seconds, as a long GC-like pause or a stalled VM would:
# it must not blame its agents for it.
#
# Usage: bench/fleet.sh [--agents N] [--minutes M] [--clients C] [--jobs J]
#                       [--sim-threads T] [--stall S] [--insecure] [--shared-key]
# Defaults: 10,000 agents, 10 minutes, 4 clients, 20 jobs of 50 instances.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
. "$top/bench/lib.sh"
BERTH=${BERTH_BIN:-$top/build/berth}
agents=10000 minutes=10 clients=4 jobs=20 sim_threads=1 stall=0 sim_key=
while [ $# -gt 0 ]; do
	case $1 in
	--agents) agents=$2; shift 2 ;;
	--minutes) minutes=$2; shift 2 ;;
	--clients) clients=$2; shift 2 ;;
	--jobs) jobs=$2; shift 2 ;;
	--sim-threads) sim_threads=$2; shift 2 ;;
	--stall) stall=$2; shift 2 ;;
	--insecure) export BENCH_INSECURE=1; shift ;;
	--shared-key) sim_key=--sim-shared-key; shift ;;
	-h|--help) sed -n '2,31p' "$0"; exit 0 ;;
	*) echo "fleet.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
	esac
done
[ -x "$BERTH" ] || { echo "fleet.sh: build first (make): no $BERTH" >&2; exit 2; }

bench_init fleet
BENCH_KEEP=${BENCH_KEEP:-${FLEET_KEEP:-}}
bench_on_exit() { [ -z "${server_pid:-}" ] || kill -CONT "$server_pid" 2>/dev/null; }
bench_server
tls=on
[ -n "${BENCH_INSECURE:-}" ] && tls=off
echo "fleet: server pid $server_pid at $BERTH_ADDR; $agents simulated agents" >&2
t_start=$(date +%s.%N)
# shellcheck disable=SC2086
bench_sim sim "$agents" $sim_key --cpu 64 --mem 256GiB --sim-threads "$sim_threads"

downs() { grep -c 'is down' "$data/server.log" || true; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$server_pid/stat"; }
rss_mib() { awk '/^VmRSS:/ {printf "%.1f", $2 / 1024}' "/proc/$server_pid/status"; }
sim_rss_mib() { awk '/^VmRSS:/ {printf "%.1f", $2 / 1024}' "/proc/$sim_pid/status"; }
hz=$(getconf CLK_TCK)
# CPU % of the server over the next $1 seconds.
cpu_pct() {
	local a b
	a=$(cpu_ticks)
	sleep "$1"
	b=$(cpu_ticks)
	echo "$a $b $1 $hz" | awk '{printf "%.0f", ($2 - $1) * 100 / $4 / $3}'
}

# 1. Every agent registered (the simulator says so), then some jobs.
registered_s=
for _ in $(seq 1 1200); do
	if grep -q 'simulated agents registered in' "$data/sim.log"; then
		registered_s=$(echo "$(date +%s.%N) $t_start" | awk '{printf "%.1f", $1 - $2}')
		break
	fi
	kill -0 "$sim_pid" 2>/dev/null || { echo "fleet: the simulator died" >&2; exit 1; }
	sleep 0.5
done
[ -n "$registered_s" ] || { echo "fleet: agents did not register in 10 minutes" >&2; exit 1; }
echo "fleet: $agents agents registered after ${registered_s}s ($(downs) DOWN events so far)" >&2
for k in $(seq 1 "$jobs"); do
	printf '{"job":"fleet/prod/j%d","instances":50,"task":{"command":["/bin/true"],"resources":{"cpu":0.01,"memory":"4MiB"}}}' "$k" |
		bench_curl -fsS -o /dev/null -X POST -H 'Content-Type: application/json' --data-binary @- \
			"$BERTH_ADDR/v1/jobs"
done
downs_before=$(downs)

# 2. The clients poll for M minutes.
secs=$(echo "$minutes" | awk '{printf "%d", $1 * 60}')
python3 "$top/bench/poller.py" --berth "$BERTH" --addr "$BERTH_ADDR" \
	--clients "$clients" --seconds "$secs" >"$data/poll.out" 2>"$data/poll.err" &
poll_pid=$!
bench_track "$poll_pid" "$data/poll.err"
window=30
[ "$secs" -lt 90 ] && window=$((secs / 3))
rss_start=$(rss_mib)
cpu_start=$(cpu_pct "$window")
if [ "$stall" != 0 ]; then
	echo "fleet: pausing the server for ${stall}s ($(downs) DOWN events so far)" >&2
	kill -STOP "$server_pid"
	sleep "$stall"
	kill -CONT "$server_pid"
fi
t0=$(date +%s)
while [ $(($(date +%s) - t0 + window)) -lt "$((secs - window))" ]; do
	sleep 10
	kill -0 "$server_pid" 2>/dev/null || { echo "fleet: the server died" >&2; exit 1; }
	echo "fleet: $(($(date +%s) - t0 + window))s: $(downs) DOWN events" >&2
done
cpu_end=$(cpu_pct "$window")
rss_end=$(rss_mib)
sim_rss=$(sim_rss_mib)
# The server's own account (servers before issue 10 have none): deaf_ms is
# the time it could not hear agents and did not hold against them.
deaf=$(bench_curl -fsS "$BERTH_ADDR/v1/health" | python3 -c 'import json,sys; print(json.load(sys.stdin).get("deaf_ms", "n/a"))' || echo n/a)
max_lag=$(grep -o 'intake lag [0-9]* ms' "$data/server.log" | awk '{if ($3 > m) m = $3} END {print m + 0}' || echo n/a)
wait "$poll_pid" || true
poll_pid=
cat "$data/poll.err" >&2
echo "fleet: DOWN events: $downs_before before the clients started, $(downs) in all" >&2
joined_s=$(sed -n 's/.*simulated agents joined (a node certificate each) in \([0-9.]*\)s.*/\1/p' "$data/sim.log" | head -1)
echo "tls=$tls agents=$agents minutes=$minutes stall_s=$stall down_events=$(downs)" \
	"joined_s=${joined_s:-n/a} registered_s=$registered_s" \
	"server_cpu_start_pct=$cpu_start server_cpu_end_pct=$cpu_end server_deaf_ms=$deaf" \
	"server_rss_start_mib=$rss_start server_rss_end_mib=$rss_end sim_rss_mib=$sim_rss" \
	"$(cat "$data/poll.out")"
