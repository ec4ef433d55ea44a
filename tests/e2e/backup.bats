#!/usr/bin/env bats
# berth admin backup / restore.

load helpers

setup() {
	require_root
	start_up
}

teardown() {
	cleanup_up
	rm -rf "${RESTORED:-/nonexistent}" "${BACKUP:-/nonexistent}"
}

@test "a backup taken while the server runs restores into an empty store with every job" {
	f=$(spec <<'EOF2'
job: alice/prod/keep
instances: 2
task:
  command: sleep 300
  resources: {cpu: 0.1, memory: 16MiB}
EOF2
)
	"$BERTH_BIN" job run "$f"
	BACKUP=$(mktemp /tmp/berth-backup.XXXXXX)
	run "$BERTH_BIN" admin backup "$BACKUP"
	[ "$status" -eq 0 ]
	grep -q '"key":"jobs/alice/prod/keep"' "$BACKUP"
	stop_up
	RESTORED=$(mktemp -d /tmp/berth-restored.XXXXXX)
	run "$BERTH_BIN" admin restore "$BACKUP" --data-dir "$RESTORED"
	[ "$status" -eq 0 ]
	# Not into a store that has state.
	run "$BERTH_BIN" admin restore "$BACKUP" --data-dir "$RESTORED"
	[ "$status" -ne 0 ]
	[[ "$output" == *"not empty"* ]]
	start_up "$RESTORED"
	wait_for 20 '[ "$(running_count alice/prod/keep 2>/dev/null)" = 2 ]'
}
