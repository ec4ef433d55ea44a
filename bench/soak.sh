#!/usr/bin/env bash
# Soak: a server and an agent (separate processes, default flags) run
# --tasks tasks of mixed small limits for --minutes under churn: every
# couple of seconds one of: a task's program killed with SIGKILL, a rolling
# update of a job, a new job submitted, an added job killed; halfway, the
# agent is killed with SIGKILL and restarted (its tasks must be re-adopted).
# At the end every job is killed and both processes stop.
# Prints progress to stderr and one final line:
#   node_changes=… missing_jobs=… leftover_processes=… leftover_cgroups=…
#   server_rss_mib=START->END agent_rss_mib=START->END actions=…
# - node_changes: the node's state changes after it first came up (target 0);
# - missing_jobs: jobs whose submission was acknowledged and that were not
#   killed, absent from `job list` at the end (target 0);
# - leftover_*: task processes and task cgroups 20 s after the final kill
#   (target 0);
# - RSS: after the first minute of churn and before the final kill (flat
#   within 10 %; the agent's start figure is taken again after its restart);
#   task_records: the task records the server holds at the same two points
#   (ended tasks are kept as history, up to 100 per job: the server's state
#   grows with them until that bound).
# Needs root. `make soak` runs it with the defaults (10 minutes, 500 tasks).
#
# Usage: bench/soak.sh [--minutes M] [--tasks N]
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
. "$top/bench/lib.sh"
BERTH=${BERTH_BIN:-$top/build/berth}
minutes=10 tasks=500
while [ $# -gt 0 ]; do
	case $1 in
	--minutes) minutes=$2; shift 2 ;;
	--tasks) tasks=$2; shift 2 ;;
	-h|--help) sed -n '2,21p' "$0"; exit 0 ;;
	*) echo "soak.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
	esac
done
[ -x "$BERTH" ] || { echo "soak.sh: build first (make): no $BERTH" >&2; exit 2; }

data=$(mktemp -d /tmp/berth-soak.XXXXXX)
cg=berth-soak-$$
port=$(free_port)
server= agent=
cleanup() {
	stop_pids $agent $server
	pkill -KILL -f "berth supervise $data/" 2>/dev/null || true
	remove_cgroup_parent "$cg"
	rm -rf "$data"
}
trap cleanup EXIT
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
log() { echo "soak: $*" >&2; }
# Task records the server holds (live and ended: ended ones are history,
# kept up to 100 per job), read from its store.
task_records() { sqlite3 "$data/server/state.db" "select count(*) from kv where key like 'tasks/%'" 2>/dev/null || echo "?"; }

start_agent() {
	# shellcheck disable=SC2046
	"$BERTH" agent --server "$BERTH_ADDR" $(join_flags) --data-dir "$data/agent" --name soak \
		--cgroup-parent "$cg" >>"$data/agent.log" 2>&1 &
	agent=$!
}
mkdir -p "$data/specs"
# shellcheck disable=SC2046
"$BERTH" server --data-dir "$data/server" --addr "127.0.0.1:$port" $(server_tls_flags) \
	>"$data/server.log" 2>&1 &
server=$!
bench_connect "$data/server" "$port" || { log "the server did not start"; exit 1; }
start_agent
for _ in $(seq 1 200); do "$BERTH" node list --json 2>/dev/null | grep -q ACTIVE && break; sleep 0.05; done

cpus=(0.001 0.002 0.003 0.005)
mems=(4MiB 8MiB 16MiB)
# spec NAME INSTANCES VERSION-TAG -> path
spec() {
	local f="$data/specs/$1.yaml" i=$((RANDOM))
	cat >"$f" <<EOF
job: soak/prod/$1
instances: $2
update: {batch_size: 5, watch: 1s}
task:
  network: host # 500 tasks on one node: more than a node's 253 addresses
  command: ["/bin/sh", "-c", "trap 'exit 0' TERM; while :; do sleep 2; done"]
  env: {TAG: "$3"}
  resources: {cpu: ${cpus[$((i % 4))]}, memory: ${mems[$((i % 3))]}}
  stop_grace: 2s
EOF
	echo "$f"
}

declare -A alive # job name -> 1, for jobs acknowledged and not killed
base=()
per=20
njobs=$(((tasks + per - 1) / per))
for j in $(seq 1 "$njobs"); do
	n=$per
	[ $((j * per)) -gt "$tasks" ] && n=$((tasks - (j - 1) * per))
	"$BERTH" job run --detach "$(spec "base$j" "$n" v0)" >/dev/null
	alive[base$j]=1
	base+=("base$j")
done
for _ in $(seq 1 600); do
	r=$("$BERTH" job list --json | python3 -c 'import json,sys; print(sum(j["states"].get("RUNNING", 0) for j in json.load(sys.stdin)))' 2>/dev/null || echo 0)
	[ "$r" -ge "$tasks" ] && break
	sleep 0.5
done
log "$r of $tasks tasks running; churn for $minutes minutes"
# RSS "at start" is taken after the first minute of churn (a third of a
# shorter run): by then the history of ended tasks, which the server keeps
# bounded per job, has its steady size; growth after that is a leak.
s_rss0= a_rss0=
warm=$((SECONDS + (minutes >= 3 ? 60 : minutes * 20)))

end=$((SECONDS + minutes * 60))
half=$((SECONDS + minutes * 30))
restarted=0 actions=0 added=0
declare -a extra=()
while [ $SECONDS -lt $end ]; do
	if [ $restarted = 0 ] && [ $SECONDS -ge $half ]; then
		log "agent: kill -9 and restart"
		kill -KILL "$agent"
		wait "$agent" 2>/dev/null || true
		start_agent
		restarted=1
		sleep 5
		[ -n "$a_rss0" ] && a_rss0=$(rss_mib "$agent")
		continue
	fi
	if [ -z "$s_rss0" ] && [ $SECONDS -ge $warm ]; then
		s_rss0=$(rss_mib "$server")
		a_rss0=$(rss_mib "$agent")
		recs0=$(task_records)
	fi
	actions=$((actions + 1))
	case $((RANDOM % 4)) in
	0) # a task's program dies
		pid=$("$BERTH" job status "soak/prod/${base[$((RANDOM % ${#base[@]}))]}" --json 2>/dev/null |
			python3 -c 'import json,sys,random; t=[t["pid"] for t in json.load(sys.stdin)["tasks"] if t["state"]=="RUNNING" and t.get("pid")]; print(random.choice(t) if t else "")' 2>/dev/null || true)
		[ -n "$pid" ] && kill -KILL "$pid" 2>/dev/null || true ;;
	1) # a rolling update
		j=${base[$((RANDOM % ${#base[@]}))]}
		"$BERTH" job run --detach "$(spec "$j" "$per" "v$actions")" >/dev/null 2>&1 || true ;;
	2) # a new job
		added=$((added + 1))
		if "$BERTH" job run --detach "$(spec "extra$added" 5 v0)" >/dev/null 2>&1; then
			alive[extra$added]=1
			extra+=("extra$added")
		fi ;;
	3) # an added job goes
		if [ ${#extra[@]} -gt 0 ]; then
			j=${extra[0]}
			extra=("${extra[@]:1}")
			"$BERTH" job kill "soak/prod/$j" >/dev/null 2>&1 && unset "alive[$j]" || true
		fi ;;
	esac
	sleep 2
done
s_rss1=$(rss_mib "$server")
a_rss1=$(rss_mib "$agent")
recs1=$(task_records)

listed=$("$BERTH" job list --json | python3 -c 'import json,sys; print(" ".join(j["job"] for j in json.load(sys.stdin)))')
missing=0
for j in "${!alive[@]}"; do
	case " $listed " in *" soak/prod/$j "*) ;; *) missing=$((missing + 1)); log "missing: soak/prod/$j" ;; esac
done
# the node's state changes after it first came up
changes=$(($(grep -cE 'node soak is (down|up)' "$data/server.log" || true) - 1))
[ "$changes" -lt 0 ] && changes=0

log "killing every job"
for j in $listed; do "$BERTH" job kill "$j" >/dev/null 2>&1 || true; done
sleep 20
procs=$(pgrep -fc "berth supervise $data/" || true)
cgs=$( (find /sys/fs/cgroup/*/"$cg" /sys/fs/cgroup/"$cg" -mindepth 1 -maxdepth 1 -type d 2>/dev/null || true) | wc -l)
echo "node_changes=$changes missing_jobs=$missing leftover_processes=$procs leftover_cgroups=$cgs server_rss_mib=$s_rss0->$s_rss1 agent_rss_mib=$a_rss0->$a_rss1 task_records=$recs0->$recs1 actions=$actions"
