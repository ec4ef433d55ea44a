#!/usr/bin/env bats
# Quotas with an etcd store shared by two servers: the follower's replica
# holds them, and after the leader dies the new leader enforces them.

load helpers

setup() {
	require_root
	command -v etcd >/dev/null || skip "etcd is not installed (Debian package etcd-server)"
	HA=$(mktemp -d /tmp/berth-qha.XXXXXX)
	start_etcd "$HA"
	S1=$(free_port)
	S2=$(free_port)
	for i in 1 2; do
		eval "port=\$S$i"
		"$BERTH_BIN" server --data-dir "$HA/s$i" --addr "127.0.0.1:$port" \
			--store "etcd://127.0.0.1:$EP/berth" >>"$HA/s$i.log" 2>&1 3>&- &
		eval "SERVER${i}_PID=$!"
	done
	export BERTH_ADDR="https://127.0.0.1:$S1,https://127.0.0.1:$S2"
	use_client_creds "$HA/s1"
	wait_for 15 '[ -n "$(leader_of $S1 2>/dev/null)" ] && [ "$(leader_of $S1)" = "$(leader_of $S2 2>/dev/null)" ]'
}

teardown() {
	for p in "${SERVER1_PID:-}" "${SERVER2_PID:-}" "${ETCD_PID:-}"; do
		[ -n "$p" ] && kill -KILL "$p" 2>/dev/null
	done
	wait 2>/dev/null || true
	if [ "${BATS_TEST_COMPLETED:-}" != 1 ] && [ -n "${HA:-}" ]; then
		tail -n 20 "$HA"/s1.log "$HA"/s2.log >&2 || true
	fi
	rm -rf "${HA:-/nonexistent}"
}

leader_of() {
	api_curl -fsS "https://127.0.0.1:$1/v1/leader" | jget 'd["leader"]'
}

@test "a quota set on the leader is enforced by the next leader after the first dies" {
	run "$BERTH_BIN" quota set alice cpu=0.5 tasks=3
	[ "$status" -eq 0 ]
	f=$(spec <<'EOF'
job: alice/prod/web
instances: 2
task:
  command: ["sleep", "300"]
  resources: {cpu: 0.2, memory: 16MiB}
EOF
)
	run "$BERTH_BIN" job run --detach "$f"
	[ "$status" -eq 0 ]
	if [ "$(leader_of "$S1")" = "https://127.0.0.1:$S1" ]; then lpid=$SERVER1_PID; fport=$S2; else lpid=$SERVER2_PID; fport=$S1; fi
	kill -KILL "$lpid"
	wait_for 20 '[ "$(leader_of $fport 2>/dev/null)" = "https://127.0.0.1:$fport" ]'
	run "$BERTH_BIN" quota get alice --json
	[ "$status" -eq 0 ]
	[ "$(echo "$output" | jget '[d["limit"]["cpu"], d["limit"]["tasks"], d["use"]["tasks"]]')" = "[0.5, 3, 2]" ]
	sed -i 's/instances: 2/instances: 3/' "$f"
	run "$BERTH_BIN" job run --detach "$f"
	[ "$status" -ne 0 ]
	[[ "$output" == *"quota exceeded for role alice: cpu 0.6 of 0.5"* ]]
}
