#!/usr/bin/env bash
# Throughput of `berth task exec` streams (docs/protocol.md, "Exec stream";
# docs/agent.md, "The listener"): a `berth up` with TLS (the default), one
# exec task (`sleep`, cpu 1 unless --cpu), then for N MiB:
#   - in:   N MiB from the CLI's stdin to the command (`cat >/dev/null`);
#   - out:  N MiB from the command (`dd if=/dev/zero bs=1M`) to the CLI's stdout;
#   - both: N MiB through `cat` and back (`exec -i TASK -- cat <in >out`),
#           which both directions carry at once; the copy is compared;
#   - true: `task exec TASK -- true`, what every run pays before a byte moves
#           (the CLI's request to the server, the TLS handshake with the
#           agent, task-exec entering the task).
# Each is run R times; medians are printed, as MB/s (10^6 bytes a second, of
# the N MiB one way): *_mb_s over the whole run, *_stream_mb_s over the run
# less the median `true` (the stream alone):
#   mib=… runs=… cpu=… true_ms=… in_mb_s=… out_mb_s=… both_mb_s=…
#     in_stream_mb_s=… out_stream_mb_s=… both_stream_mb_s=…
# The command runs in the task's cgroup: at a small --cpu (0.01) its own
# copying, not the stream, sets the pace. Nothing is asserted: the figures
# depend on the machine. Needs root.
#
# Usage: bench/exec_stream.sh [--mib N (32)] [--runs R (3)] [--cpu CPU (1)]
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
. "$top/bench/lib.sh"
BERTH=${BERTH_BIN:-$top/build/berth}
mib=32 runs=3 cpu=1
while [ $# -gt 0 ]; do
	case $1 in
	--mib) mib=$2; shift 2 ;;
	--runs) runs=$2; shift 2 ;;
	--cpu) cpu=$2; shift 2 ;;
	-h|--help) sed -n '2,23p' "$0"; exit 0 ;;
	*) echo "exec_stream.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
	esac
done
[ -x "$BERTH" ] || { echo "exec_stream.sh: build first (make): no $BERTH" >&2; exit 2; }
[ "$(id -u)" = 0 ] || { echo "exec_stream.sh: needs root (namespaces and cgroups)" >&2; exit 2; }

bench_init exec-stream
cgparent=berth-bench-exec-$$
bench_on_exit() {
	[ -n "${up:-}" ] && stop_pids "$up"
	remove_cgroup_parent "$cgparent"
}
# shellcheck disable=SC2046
"$BERTH" up -q --data-dir "$data/up" --addr "127.0.0.1:$port" --cgroup-parent "$cgparent" \
	$(server_tls_flags) >"$data/up.log" 2>&1 &
up=$!
bench_connect "$data/up" "$port" || { echo "exec_stream.sh: berth up did not start" >&2; exit 1; }
for _ in $(seq 1 100); do "$BERTH" node list --json 2>/dev/null | grep -q ACTIVE && break; sleep 0.05; done

cat >"$data/box.yaml" <<EOF
job: bench/test/box
task:
  command: ["/bin/sh", "-c", "exec sleep 100000"]
  resources: {cpu: $cpu, memory: 64MiB}
EOF
"$BERTH" job run "$data/box.yaml" >/dev/null
task=bench/test/box/0
bytes=$((mib * 1048576))
head -c "$bytes" /dev/urandom >"$data/in"

# timed CMD...: the seconds CMD took (its status must be 0).
timed() {
	local t0=$EPOCHREALTIME
	"$@"
	python3 -c "import sys; print(float(sys.argv[2]) - float(sys.argv[1]))" "$t0" "$EPOCHREALTIME"
}
run_true() { "$BERTH" task exec "$task" -- true; }
run_in() { "$BERTH" task exec -i "$task" -- sh -c 'cat >/dev/null' <"$data/in"; }
run_out() { "$BERTH" task exec "$task" -- dd if=/dev/zero bs=1M count="$mib" status=none >"$data/out"; }
run_both() {
	"$BERTH" task exec -i "$task" -- cat <"$data/in" >"$data/out"
	cmp -s "$data/in" "$data/out" || { echo "exec_stream.sh: the copy through cat differs" >&2; return 1; }
}
# median_s KIND: the median seconds of R runs of run_KIND.
median_s() {
	local i
	for i in $(seq 1 "$runs"); do timed "run_$1"; done |
		python3 -c 'import statistics, sys; print(statistics.median(float(x) for x in sys.stdin.read().split()))'
}
run_out
[ "$(stat -c %s "$data/out")" = "$bytes" ] ||
	{ echo "exec_stream.sh: the task's output has $(stat -c %s "$data/out") bytes, not $bytes" >&2; exit 1; }
t_true=$(median_s true)
t_in=$(median_s in)
t_out=$(median_s out)
t_both=$(median_s both)
python3 - "$mib" "$runs" "$cpu" "$bytes" "$t_true" "$t_in" "$t_out" "$t_both" <<'PY'
import sys
mib, runs, cpu, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
t0, t = float(sys.argv[5]), dict(zip(("in", "out", "both"), map(float, sys.argv[6:9])))
rate = lambda s: "%.1f" % (n / s / 1e6) if s > 0 else "nan"
print("mib=%s runs=%s cpu=%s true_ms=%.0f %s %s" % (
    mib, runs, cpu, t0 * 1000,
    " ".join("%s_mb_s=%s" % (k, rate(v)) for k, v in t.items()),
    " ".join("%s_stream_mb_s=%s" % (k, rate(v - t0)) for k, v in t.items())))
PY
