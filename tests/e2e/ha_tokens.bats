#!/usr/bin/env bats
# HA tokens: every server of an HA group writes its own DATA/client/
# admin.token and join.token at its start (the store keeps only their
# hashes). Each must work against whichever server leads, also one written
# after the leader loaded its state, and after a failover; a revoked one is
# refused everywhere. The race is made deterministic: the second server
# starts only once the first leads. No root needed (simulated agents).

load helpers

setup() {
	command -v etcd >/dev/null || skip "etcd is not installed (Debian package etcd-server)"
	HA=$(mktemp -d /tmp/berth-hatok.XXXXXX)
	start_etcd "$HA"
	STORE="etcd://127.0.0.1:$EP/berth"
	S1=$(free_port)
	S2=$(free_port)
	S3=$(free_port)
	export BERTH_ADDR="https://127.0.0.1:$S1,https://127.0.0.1:$S2,https://127.0.0.1:$S3"
	# The first server alone on the empty store: it leads and loads the
	# state; only then the second starts and writes its tokens.
	start_server 1 "$S1"
	wait_for 15 "grep -q 'leading: state loaded' '$HA/s1.log'"
	start_server 2 "$S2"
	wait_for 15 "grep -q 'campaigning for leadership' '$HA/s2.log'"
	export BERTH_CACERT="$HA/s1/client/ca.pem"
	unset BERTH_TOKEN
}

start_server() {
	"$BERTH_BIN" server --data-dir "$HA/s$1" --addr "127.0.0.1:$2" --store "$STORE" \
		>>"$HA/s$1.log" 2>&1 3>&- &
	eval "SERVER$1_PID=$!"
}

teardown() {
	stop_pids ${SIM_PIDS:-} ${SERVER1_PID:-} ${SERVER2_PID:-} ${SERVER3_PID:-}
	kill -KILL "${ETCD_PID:-0}" 2>/dev/null || true
	wait 2>/dev/null || true
	if [ "${BATS_TEST_COMPLETED:-}" != 1 ] && [ -n "${HA:-}" ]; then
		tail -n 20 "$HA"/s*.log "$HA"/sim*.log >&2 || true
	fi
	rm -rf "${HA:-/nonexistent}"
}

# The admin token of server $1's data dir, against $2 (an address list).
as_admin_of() {
	local n=$1 addr=$2
	shift 2
	BERTH_TOKEN=$(cat "$HA/s$n/client/admin.token") BERTH_ADDR=$addr "$BERTH_BIN" "$@"
}

leader_of() {
	BERTH_TOKEN=$(cat "$HA/s1/client/admin.token") api_curl -fsS "https://127.0.0.1:$1/v1/leader" |
		jget 'd["leader"]'
}

# A simulated agent named $1 joins with server $2's join token.
join_with() {
	"$BERTH_BIN" agent --simulate 1 --name "$1" --server "127.0.0.1:$S1,127.0.0.1:$S2,127.0.0.1:$S3" \
		--join-token-file "$HA/s$2/client/join.token" --data-dir "$HA/agent-$1" \
		>>"$HA/sim-$1.log" 2>&1 3>&- &
	SIM_PIDS="${SIM_PIDS:-} $!"
}

node_active() {
	as_admin_of 1 "$BERTH_ADDR" node list --json 2>/dev/null |
		jget "sum(1 for n in d if n['name'].startswith('$1') and n['state']=='ACTIVE')"
}

token_id() {
	cut -d. -f2 <"$HA/s$1/client/admin.token"
}

@test "each server's admin and join tokens work against the leader, also ones written after it loaded, and after a failover" {
	[ "$(leader_of "$S1")" = "https://127.0.0.1:$S1" ]
	# Both servers' admin tokens at the leader itself (no redirect).
	run as_admin_of 1 "https://127.0.0.1:$S1" job list
	[ "$status" -eq 0 ]
	run as_admin_of 2 "https://127.0.0.1:$S1" job list
	echo "$output"
	[ "$status" -eq 0 ]
	# ...and at the follower (which redirects the write to the leader).
	printf 'job: ops/test/w\ntype: batch\ntask:\n  command: ["true"]\n  resources: {cpu: 0.01, memory: 8MiB}\n' >"$HA/w.yaml"
	as_admin_of 2 "https://127.0.0.1:$S2" job run --detach "$HA/w.yaml" >/dev/null
	# An agent joins with each server's join token.
	join_with ja 1
	join_with jb 2
	wait_for 20 '[ "$(node_active ja)" -eq 1 ] && [ "$(node_active jb)" -eq 1 ]'
	# The leader lists both servers' tokens.
	ids=$(as_admin_of 1 "https://127.0.0.1:$S1" token list --json | jget '" ".join(sorted(t["id"] for t in d))')
	echo "$ids" | grep -q "$(token_id 1)"
	echo "$ids" | grep -q "$(token_id 2)"

	# Failover: the second server leads; then a third starts, after it.
	kill -KILL "$SERVER1_PID"
	wait_for 20 '[ "$(leader_of "$S2" 2>/dev/null)" = "https://127.0.0.1:$S2" ]'
	start_server 3 "$S3"
	wait_for 15 "grep -q 'campaigning for leadership' '$HA/s3.log'"
	for n in 1 2 3; do
		run as_admin_of "$n" "https://127.0.0.1:$S2" job list
		echo "server $n's admin token: $output"
		[ "$status" -eq 0 ]
	done
	join_with jc 1
	join_with jd 3
	wait_for 20 '[ "$(BERTH_ADDR=https://127.0.0.1:$S2 node_active jc)" -eq 1 ] && [ "$(BERTH_ADDR=https://127.0.0.1:$S2 node_active jd)" -eq 1 ]'
	# The agents of before follow the new leader.
	wait_for 20 '[ "$(BERTH_ADDR=https://127.0.0.1:$S2 node_active ja)" -eq 1 ] && [ "$(BERTH_ADDR=https://127.0.0.1:$S2 node_active jb)" -eq 1 ]'
}

@test "a token revoked at the leader is refused by every server, also one it first learned from the store" {
	[ "$(leader_of "$S1")" = "https://127.0.0.1:$S1" ]
	id2=$(token_id 2)
	# Revoked before the leader ever saw it used.
	run as_admin_of 1 "https://127.0.0.1:$S1" token revoke "$id2"
	echo "$output"
	[ "$status" -eq 0 ]
	for port in "$S1" "$S2"; do
		run as_admin_of 2 "https://127.0.0.1:$port" job list
		echo "$output"
		[ "$status" -ne 0 ]
		echo "$output" | grep -q "unknown or revoked token $id2"
	done
	# A burst of made-up tokens: each refused as unknown (401), and the
	# tokens the leader knows keep working (tests/unit/test_tokens.c: the
	# budget of store look-ups).
	for i in $(seq 1 40); do
		fake="bt1.$(printf '%016x' "$i").$(printf '%064d' 0)"
		code=$(curl -s -o /dev/null -w '%{http_code}' --cacert "$BERTH_CACERT" \
			-H "Authorization: Bearer $fake" "https://127.0.0.1:$S1/v1/jobs")
		[ "$code" = 401 ]
	done
	as_admin_of 1 "https://127.0.0.1:$S1" job list >/dev/null
	# After a failover the revoked token stays refused at the new leader.
	kill -KILL "$SERVER1_PID"
	wait_for 20 '[ "$(leader_of "$S2" 2>/dev/null)" = "https://127.0.0.1:$S2" ]'
	run as_admin_of 2 "https://127.0.0.1:$S2" job list
	[ "$status" -ne 0 ]
	echo "$output" | grep -q "unknown or revoked token $id2"
}
