#!/usr/bin/env bats
# High availability: servers sharing an etcd store elect a leader; when it
# dies another takes over, acknowledged writes survive, agents and the CLI
# follow the leader by themselves, running tasks are not restarted.

load helpers

setup() {
	require_root
	command -v etcd >/dev/null || skip "etcd is not installed (Debian package etcd-server)"
	HA=$(mktemp -d /tmp/berth-ha.XXXXXX)
	start_etcd "$HA"
	STORE="etcd://127.0.0.1:$EP/berth"
	S1=$(free_port)
	S2=$(free_port)
	start_server 1 "$S1"
	start_server 2 "$S2"
	export BERTH_ADDR="https://127.0.0.1:$S1,https://127.0.0.1:$S2"
	# Both servers share the cluster CA and the tokens (in the store).
	use_client_creds "$HA/s1"
	CGPARENT=berth-ha-$$
	mkdir -p /var/tmp/berth-ha-$$
	"$BERTH_BIN" agent --server "127.0.0.1:$S1,127.0.0.1:$S2" \
		--join-token-file "$HA/s1/client/join.token" --data-dir /var/tmp/berth-ha-$$/agent \
		--name a1 --cgroup-parent "$CGPARENT" --port-range 31000-31999 >"$HA/agent.log" 2>&1 3>&- &
	AGENT_PID=$!
	wait_for 15 '"$BERTH_BIN" node list --json 2>/dev/null | grep -q ACTIVE'
}

start_server() {
	"$BERTH_BIN" server --data-dir "$HA/s$1" --addr "127.0.0.1:$2" --store "$STORE" \
		>>"$HA/s$1.log" 2>&1 3>&- &
	eval "SERVER$1_PID=$!"
}

teardown() {
	kill -TERM "${AGENT_PID:-0}" 2>/dev/null || true
	sleep 0.3
	pkill -KILL -f "berth supervise /var/tmp/berth-ha-$$" 2>/dev/null || true
	kill -KILL "${AGENT_PID:-0}" "${SERVER1_PID:-0}" "${SERVER2_PID:-0}" 2>/dev/null || true
	# (Never `kill 0`: that is the whole process group, bats included.)
	for p in "${ETCD_PID:-}" "${S3PID:-}" "${E3PID1:-}" "${E3PID2:-}" "${E3PID3:-}"; do
		[ -n "$p" ] && kill -KILL "$p" 2>/dev/null
	done
	true
	wait 2>/dev/null || true
	for c in /sys/fs/cgroup/*/"${CGPARENT:-none}" /sys/fs/cgroup/"${CGPARENT:-none}"; do
		[ -d "$c" ] && find "$c" -mindepth 1 -depth -type d -exec rmdir {} \; 2>/dev/null
		rmdir "$c" 2>/dev/null || true
	done
	if [ "${BATS_TEST_COMPLETED:-}" != 1 ] && [ -n "${HA:-}" ]; then
		tail -n 20 "$HA"/s1.log "$HA"/s2.log "$HA"/agent.log >&2 || true
	fi
	release_task_netns "${HA:-}"
	release_task_netns "/var/tmp/berth-ha-$$"
	rm -rf "${HA:-/nonexistent}" /var/tmp/berth-ha-$$
}

leader_of() {
	api_curl -fsS "https://127.0.0.1:$1/v1/leader" | jget 'd["leader"]'
}

# each_once ACKFILE: every job named in ACKFILE (one a line) is in the job
# list JSON on stdin exactly once; names the ones that are not.
each_once() {
	python3 -c '
import collections, json, sys
n = collections.Counter(j["job"] for j in json.load(sys.stdin))
bad = [(k, n[k]) for k in open(sys.argv[1]).read().split() if n[k] != 1]
for k, c in bad: print("%s: %d times in the job list" % (k, c))
sys.exit(1 if bad else 0)' "$1"
}

@test "one server leads, the other redirects; killing the leader hands over within seconds and loses no acknowledged job" {
	wait_for 10 '[ -n "$(leader_of $S1 2>/dev/null)" ]'
	leader=$(leader_of "$S1")
	[ "$leader" = "$(leader_of "$S2")" ]
	if [ "$leader" = "https://127.0.0.1:$S1" ]; then lport=$S1; lpid=$SERVER1_PID; fport=$S2; else lport=$S2; lpid=$SERVER2_PID; fport=$S1; fi
	[ "$(api_curl -fsS https://127.0.0.1:$fport/v1/leader | jget 'd["role"]')" = follower ]
	# A write sent to the follower lands (redirected to the leader).
	f=$(spec <<'EOF2'
job: alice/prod/keep
instances: 2
task:
  command: ["sleep", "300"]
  resources: {cpu: 0.1, memory: 16MiB}
EOF2
)
	BERTH_ADDR="https://127.0.0.1:$fport" "$BERTH_BIN" job run "$f"
	pids=$(status_json alice/prod/keep | jget 'sorted(t["pid"] for t in d["tasks"])')
	# A stream of submissions while the leader is killed: every one that
	# was acknowledged must exist afterwards, exactly once.
	ack="$HA/acked"
	: >"$ack"
	(
		for i in $(seq 1 60); do
			printf 'job: bob/test/s%d\ntype: batch\ntask:\n  command: ["true"]\n  resources: {cpu: 0.01, memory: 8MiB}\n' "$i" >"$HA/s$i.yaml"
			if "$BERTH_BIN" job run --detach "$HA/s$i.yaml" >/dev/null 2>&1; then echo "bob/test/s$i" >>"$ack"; fi
			sleep 0.05
		done
	) &
	stream=$!
	sleep 0.5
	t0=$(date +%s%N)
	kill -KILL "$lpid"
	printf 'job: alice/prod/after\ntask:\n  command: ["sleep", "300"]\n  resources: {cpu: 0.1, memory: 16MiB}\n' >"$HA/after.yaml"
	# One call: the CLI rides through the failover by itself (the dead
	# leader refuses, the follower redirects to it, then says "no leader
	# yet", then leads).
	"$BERTH_BIN" job run --detach "$HA/after.yaml" >/dev/null
	t1=$(date +%s%N)
	echo "# failover: a new leader accepted a write $(((t1 - t0) / 1000000)) ms after the kill" >&3
	wait "$stream"
	[ "$(leader_of "$fport")" = "https://127.0.0.1:$fport" ]
	# It led from its replica: nothing to load from etcd.
	if [ "$fport" = "$S1" ]; then flog=$HA/s1.log; else flog=$HA/s2.log; fi
	grep -q "state loaded from its replica" "$flog"
	# Every acknowledged submission exists, once.
	"$BERTH_BIN" job list --json | each_once "$ack"
	[ "$(wc -l <"$ack")" -gt 5 ]
	# Running tasks were not restarted; the agent follows the new leader.
	wait_for 10 '[ "$(status_json alice/prod/keep | jget "sorted(t[\"pid\"] for t in d[\"tasks\"])")" = "$pids" ]'
	wait_for 10 '[ "$(running_count alice/prod/after)" -eq 1 ]'
	[ $(((t1 - t0) / 1000000)) -lt 10000 ]
}

@test "a follower answers reads from its replica, which follows every write; writes and node views go to the leader" {
	wait_for 10 '[ -n "$(leader_of $S1 2>/dev/null)" ] && [ "$(leader_of $S1)" = "$(leader_of $S2 2>/dev/null)" ]'
	if [ "$(leader_of "$S1")" = "https://127.0.0.1:$S1" ]; then lport=$S1; fport=$S2; else lport=$S2; fport=$S1; fi
	for i in 1 2 3 4 5; do
		printf 'job: dave/test/r%d\ninstances: 2\ntask:\n  command: ["sleep", "300"]\n  resources: {cpu: 0.05, memory: 8MiB}\n' "$i" >"$HA/r$i.yaml"
		BERTH_ADDR="https://127.0.0.1:$lport" "$BERTH_BIN" job run --detach "$HA/r$i.yaml" >/dev/null
	done
	# Who is who, asked of each server itself.
	run "$BERTH_BIN" admin servers
	[ "$status" -eq 0 ]
	echo "$output" | grep -q "^https://127.0.0.1:$lport  *leader  *https://127.0.0.1:$lport$"
	echo "$output" | grep -q "^https://127.0.0.1:$fport  *follower  *https://127.0.0.1:$lport$"
	[ "$("$BERTH_BIN" admin servers --json | jget 'sorted(r["role"] for r in d)')" = "['follower', 'leader']" ]
	run "$BERTH_BIN" admin servers --addr "127.0.0.1:$fport,127.0.0.1:1"
	[ "$status" -eq 1 ] # no leader among those
	echo "$output" | grep -q "^https://127.0.0.1:1  *unreachable"
	# The follower itself answers (no redirect), and has every job.
	wait_for 10 '[ "$(api_curl -fsS https://127.0.0.1:$fport/v1/jobs | jget "sum(1 for j in d if j[\"job\"].startswith(\"dave/\"))")" -eq 5 ]'
	run api_curl -sS -o /dev/null -w '%{http_code}' "https://127.0.0.1:$fport/v1/jobs"
	[ "$output" = 200 ]
	api_curl -sS -D "$HA/hdr" -o "$HA/body" "https://127.0.0.1:$fport/v1/jobs/dave/test/r3"
	grep -qi '^X-Berth-Served-By: follower' "$HA/hdr"
	[ "$(jget 'len(d["tasks"])' <"$HA/body")" -eq 2 ]
	# Task states move on the follower as the agent reports them.
	wait_for 10 '[ "$(api_curl -fsS https://127.0.0.1:$fport/v1/jobs/dave/test/r3 | jget "sum(1 for t in d[\"tasks\"] if t[\"state\"]==\"RUNNING\")")" -eq 2 ]'
	id=$(api_curl -fsS "https://127.0.0.1:$fport/v1/jobs/dave/test/r3" | jget 'd["tasks"][0]["id"]')
	[ "$(api_curl -fsS "https://127.0.0.1:$fport/v1/tasks/$id" | jget 'd["state"]')" = RUNNING ]
	# A kill (sent to the follower: redirected) shows on the follower.
	BERTH_ADDR="https://127.0.0.1:$fport" "$BERTH_BIN" job kill dave/test/r3 >/dev/null
	wait_for 10 '! api_curl -fsS https://127.0.0.1:$fport/v1/jobs | grep -q "dave/test/r3\""'
	# What the follower does not answer itself: writes, node liveness, and
	# what it does not know (the leader says "not found").
	run api_curl -sS -o /dev/null -w '%{http_code} %{redirect_url}' "https://127.0.0.1:$fport/v1/nodes"
	[ "$output" = "307 https://127.0.0.1:$lport/v1/nodes" ]
	run api_curl -sS -o /dev/null -w '%{http_code}' -X POST -d '{}' "https://127.0.0.1:$fport/v1/jobs"
	[ "$output" = 307 ]
	run api_curl -sS -o /dev/null -w '%{http_code}' "https://127.0.0.1:$fport/v1/jobs/dave/test/none"
	[ "$output" = 307 ]
	# (--location-trusted: the token goes on to the leader, another port)
	run api_curl -sS -L --location-trusted -o /dev/null -w '%{http_code}' "https://127.0.0.1:$fport/v1/jobs/dave/test/none"
	[ "$output" = 404 ]
}

@test "a leader paused past its lease is fenced: another leads, and on waking the old one writes nothing and exits" {
	wait_for 10 '[ -n "$(leader_of $S1 2>/dev/null)" ] && [ "$(leader_of $S1)" = "$(leader_of $S2 2>/dev/null)" ]'
	if [ "$(leader_of "$S1")" = "https://127.0.0.1:$S1" ]; then lport=$S1; lpid=$SERVER1_PID; fport=$S2; else lport=$S2; lpid=$SERVER2_PID; fport=$S1; fi
	job() { printf '{"job": "erin/test/%s", "type": "batch", "task": {"command": ["true"], "resources": {"cpu": 0.01, "memory": 8388608}}}' "$1"; }
	job before | api_curl -fsS -X POST --data-binary @- "https://127.0.0.1:$lport/v1/jobs" >/dev/null
	# A long pause (a VM stall, a GC, SIGSTOP): its lease expires meanwhile.
	kill -STOP "$lpid"
	wait_for 10 '[ "$(leader_of $fport 2>/dev/null)" = "https://127.0.0.1:$fport" ]'
	job during | api_curl -fsS -X POST --data-binary @- "https://127.0.0.1:$fport/v1/jobs" >/dev/null
	# A write reaches the old leader while it sleeps (its socket queues it).
	(job stale | api_curl -sS -m 15 -o /dev/null -w '%{http_code}' -X POST --data-binary @- \
		"https://127.0.0.1:$lport/v1/jobs" >"$HA/stale.code" 2>/dev/null || true) &
	writer=$!
	sleep 0.5
	kill -CONT "$lpid"
	# It finds its lease gone, or its write refused by the fence: it exits.
	wait_for 10 '! kill -0 $lpid 2>/dev/null || grep -q "^State:.*zombie" /proc/$lpid/status 2>/dev/null'
	wait "$writer" || true
	[ "$(cat "$HA/stale.code")" != 200 ]
	echo "# the stale write got: $(cat "$HA/stale.code"); the old leader said: $(grep -Eho "fatal: .*" "$HA"/s*.log | head -1)" >&3
	grep -Eq "leadership lost|lost the leader lease|fenced" "$HA"/s*.log
	# The new leader has what was acknowledged, and nothing of the stale write.
	list=$(api_curl -fsS "https://127.0.0.1:$fport/v1/jobs")
	echo "$list" | grep -q erin/test/before
	echo "$list" | grep -q erin/test/during
	! echo "$list" | grep -q erin/test/stale
	sleep 1
	! api_curl -fsS "https://127.0.0.1:$fport/v1/jobs" | grep -q erin/test/stale
}

@test "leader kills at random moments, three times in a row: every acknowledged job exists exactly once" {
	ack="$HA/acked"
	: >"$ack"
	n=0
	for round in 1 2 3; do
		wait_for 15 '[ -n "$(leader_of $S1 2>/dev/null)" ] && [ "$(leader_of $S1 2>/dev/null)" = "$(leader_of $S2 2>/dev/null)" ]'
		leader=$(leader_of "$S1")
		(
			for i in $(seq 1 25); do
				k=$((round * 100 + i))
				printf 'job: bob/test/r%d\ntype: batch\ntask:\n  command: ["true"]\n  resources: {cpu: 0.01, memory: 8MiB}\n' "$k" >"$HA/r$k.yaml"
				if "$BERTH_BIN" job run --detach "$HA/r$k.yaml" >/dev/null 2>&1; then echo "bob/test/r$k" >>"$ack"; fi
			done
		) &
		stream=$!
		sleep "0.$((RANDOM % 9 + 1))"
		if [ "$leader" = "https://127.0.0.1:$S1" ]; then
			kill -KILL "$SERVER1_PID"
			wait "$SERVER1_PID" 2>/dev/null || true
			wait "$stream"
			start_server 1 "$S1"
		else
			kill -KILL "$SERVER2_PID"
			wait "$SERVER2_PID" 2>/dev/null || true
			wait "$stream"
			start_server 2 "$S2"
		fi
	done
	wait_for 15 '"$BERTH_BIN" job list --json >/dev/null 2>&1'
	"$BERTH_BIN" job list --json | each_once "$ack"
	n=$(wc -l <"$ack")
	echo "# $n acknowledged submissions across 3 leader kills, all present once" >&3
	[ "$n" -gt 10 ]
}

@test "losing an etcd member of three, at random moments, three times (the raft leader at least once), stops nothing" {
	# A second etcd cluster of three members for this test.
	E3=$HA/e3
	mkdir -p "$E3"
	c1=$(free_port) p1=$(free_port) c2=$(free_port) p2=$(free_port) c3=$(free_port) p3=$(free_port)
	cluster="m1=http://127.0.0.1:$p1,m2=http://127.0.0.1:$p2,m3=http://127.0.0.1:$p3"
	start_member() {
		local m=$1 c p
		eval "c=\$c$m p=\$p$m"
		etcd --name "m$m" --data-dir "$E3/m$m" --listen-client-urls "http://127.0.0.1:$c" \
			--advertise-client-urls "http://127.0.0.1:$c" --listen-peer-urls "http://127.0.0.1:$p" \
			--initial-advertise-peer-urls "http://127.0.0.1:$p" --initial-cluster "$cluster" \
			--initial-cluster-state new >>"$E3/m$m.log" 2>&1 3>&- &
		eval "E3PID$m=$!"
	}
	for m in 1 2 3; do start_member "$m"; done
	wait_for 20 "curl -fsS http://127.0.0.1:$c1/health 2>/dev/null | grep -q true"
	S3=$(free_port)
	"$BERTH_BIN" server --data-dir "$HA/s3" --addr "127.0.0.1:$S3" \
		--store "etcd://127.0.0.1:$c1,127.0.0.1:$c2,127.0.0.1:$c3/three" >"$HA/s3.log" 2>&1 3>&- &
	S3PID=$!
	# Another store, another cluster CA and tokens.
	use_client_creds "$HA/s3"
	wait_for 10 "[ \"\$(leader_of $S3 2>/dev/null)\" = https://127.0.0.1:$S3 ]"
	ack=$HA/e3acked
	: >"$ack"
	for round in 1 2 3; do
		# Round 1 kills etcd's raft leader; the others a member at random.
		victim=$((RANDOM % 3 + 1))
		if [ "$round" = 1 ]; then
			for m in 1 2 3; do
				eval "c=\$c$m"
				st=$(curl -fsS -X POST "http://127.0.0.1:$c/v3/maintenance/status" -d '{}' 2>/dev/null) || continue
				if [ "$(echo "$st" | jget 'd["leader"]==d["header"]["member_id"]')" = True ]; then victim=$m; fi
			done
		fi
		(
			for i in $(seq 1 15); do
				k=$((round * 100 + i))
				printf 'job: carol/prod/e%d\ntype: batch\ntask:\n  command: ["true"]\n  resources: {cpu: 0.01, memory: 8MiB}\n' "$k" >"$HA/e$k.yaml"
				if BERTH_ADDR="https://127.0.0.1:$S3" "$BERTH_BIN" job run --detach "$HA/e$k.yaml" >/dev/null 2>&1; then echo "carol/prod/e$k" >>"$ack"; fi
			done
		) &
		stream=$!
		sleep "0.$((RANDOM % 9 + 1))"
		eval "vpid=\$E3PID$victim"
		kill -KILL "$vpid"
		wait "$vpid" 2>/dev/null || true
		wait "$stream"
		# Still the leader: its lease kept being renewed through the others.
		[ "$(leader_of "$S3")" = "https://127.0.0.1:$S3" ]
		echo "# round $round: etcd member m$victim killed; $(wc -l <"$ack") acknowledged so far" >&3
		start_member "$victim"
		eval "c=\$c$victim"
		wait_for 20 "curl -fsS http://127.0.0.1:$c/health 2>/dev/null | grep -q true"
	done
	run env BERTH_ADDR="https://127.0.0.1:$S3" "$BERTH_BIN" job list --json
	[ "$status" -eq 0 ]
	echo "$output" | each_once "$ack"
	[ "$(wc -l <"$ack")" -ge 40 ]
	kill -KILL "$S3PID" "$E3PID1" "$E3PID2" "$E3PID3" 2>/dev/null || true
}
