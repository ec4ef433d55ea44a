#!/usr/bin/env bash
# Resident memory of an idle agent: a `berth server` and a `berth agent`
# registered with it and running nothing; after SETTLE seconds (default 5)
# the agent's /proc/PID/status and smaps_rollup are read.
# Prints one line:
#   agent_rss_mib=… agent_pss_mib=… agent_private_mib=… agent_private_dirty_mib=… agent_anon_mib=…
# - rss: VmRSS, what `ps` and `top` show: includes the pages of the shared
#   libraries (libcrypto, gnutls, libc, curl…) the agent has mapped, which
#   are page cache shared with every other process using those libraries;
# - pss: shared pages divided among the processes sharing them;
# - private: pages only this process has (Private_Clean + Private_Dirty,
#   /proc/PID/smaps_rollup): what each more agent costs the host;
# - private_dirty: of those, the ones it wrote (heap, stacks, relocated data);
# - anon: its heap and stacks (RssAnon).
# The target (docs/targets.md, "idle agent resident memory <= 10 MiB") is
# about rss; private is printed next to it because rss moves with how many
# shared library pages happen to be mapped, private with what berth itself
# holds. Needs root (the agent makes its cgroup parent).
#
# It runs in a network namespace of its own (loopback only): the agent's
# name servers (127.0.0.153:53 and its bridge's) are then always up, as on
# a host with one agent; on the host's network namespace another berth
# holding those addresses left them out of the measure.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
if [ -z "${BERTH_IDLE_NETNS:-}" ]; then
	export BERTH_IDLE_NETNS=1
	exec unshare --net -- bash -c 'ip link set lo up && exec "$0" "$@"' "$0" "$@"
fi
. "$top/bench/lib.sh"
BERTH=${BERTH_BIN:-$top/build/berth}
settle=${SETTLE:-5}
d=$(mktemp -d /tmp/berth-idle.XXXXXX)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
# shellcheck disable=SC2046
"$BERTH" server -q --data-dir "$d/s" --addr "127.0.0.1:$port" $(server_tls_flags) >"$d/s.log" 2>&1 &
server=$!
bench_connect "$d/s" "$port" || { echo "agent_idle: the server did not start" >&2; exit 1; }
# shellcheck disable=SC2046
"$BERTH" agent -q --server "$BERTH_ADDR" $(join_flags) --data-dir "$d/a" --name idle \
	--cgroup-parent berth-bench-idle >"$d/a.log" 2>&1 &
agent=$!
cleanup() {
	kill -TERM "$agent" "$server" 2>/dev/null || true
	wait 2>/dev/null || true
	for c in /sys/fs/cgroup/*/berth-bench-idle /sys/fs/cgroup/berth-bench-idle; do
		[ -d "$c" ] && rmdir "$c" 2>/dev/null || true
	done
	rm -rf "$d"
}
trap cleanup EXIT
for _ in $(seq 1 100); do
	"$BERTH" node list --json 2>/dev/null | grep -q ACTIVE && break
	sleep 0.1
done
sleep "$settle"
python3 - "$agent" <<'PY'
import sys
pid = sys.argv[1]
st = {l.split(":")[0]: l.split()[1] for l in open(f"/proc/{pid}/status") if l.startswith(("VmRSS", "RssAnon"))}
ro = {}
for l in open(f"/proc/{pid}/smaps_rollup"):
    p = l.split()
    if len(p) >= 2 and p[0].endswith(":") and p[1].isdigit():
        ro[p[0][:-1]] = int(p[1])
mib = lambda kb: "%.1f" % (int(kb) / 1024)
print("agent_rss_mib=%s agent_pss_mib=%s agent_private_mib=%s agent_private_dirty_mib=%s agent_anon_mib=%s" % (
    mib(st["VmRSS"]), mib(ro["Pss"]), mib(ro["Private_Clean"] + ro["Private_Dirty"]),
    mib(ro["Private_Dirty"]), mib(st["RssAnon"])))
PY
