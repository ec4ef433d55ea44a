#!/usr/bin/env bats
# A store written by an earlier berth loads in this one, unchanged.
#
# fixtures/store-2026-12-06.db was written by berth as of 2026-12-06 (before
# the server and agent were split into their current files): a service
# rolled forward from version 1 to 2 (3 instances, ports), a finished batch
# job, a cron job, one node. Its records must load into the same views and
# must not be rewritten by loading them.

load helpers

setup() {
	command -v sqlite3 >/dev/null || skip "sqlite3 is not installed"
	DATA=$(mktemp -d /tmp/berth-compat.XXXXXX)
	cp "$BATS_TEST_DIRNAME/fixtures/store-2026-12-06.db" "$DATA/state.db"
	# The cron job last ran when the fixture was written: from its next slot
	# on (2026-12-07 03:00 UTC) a server would make the missed run at load,
	# by design (docs/spec.md, "Cron schedules"). Its last run is set to now, so that the test
	# reads the same whatever the date; the record keeps its old format.
	sqlite3 "$DATA/state.db" "update kv set value = json_set(value, '$.cron_last_ms', $(date +%s)000) where key = 'jobs/carol/prod/nightly'"
	# Its ended tasks ended then too: a server forgets an ended task 24 h
	# after its end (--task-history-age), so the test keeps them longer.
	PORT=$(free_port)
	export BERTH_ADDR="https://127.0.0.1:$PORT"
	SERVER=
}

teardown() {
	if [ -n "$SERVER" ]; then
		kill -TERM "$SERVER" 2>/dev/null || true
		wait "$SERVER" 2>/dev/null || true
	fi
	rm -rf "$DATA"
}

# No agent runs: --down-after keeps the stored node from going DOWN (and its
# tasks LOST, rewriting their records) while a slow machine or a sanitizer
# build takes more than the default 3 s over the checks.
start_server() {
	"$BERTH_BIN" server -q --data-dir "$DATA" --addr "127.0.0.1:$PORT" --task-history-age 87600h \
		--down-after 10m >>"$DATA/server.log" 2>&1 &
	SERVER=$!
	use_client_creds "$DATA"
	wait_for 10 'api_curl -fsS "$BERTH_ADDR/v1/health" >/dev/null 2>&1'
}

records() { # every record but the node's (its liveness is the server's to judge) and
	# the cluster's CA and tokens (a first start on an old store makes them)
	sqlite3 "$DATA/state.db" "select key, hex(value) from kv where key not like 'nodes/%' and key not like 'auth/%' order by key"
}

@test "a store written by the earlier berth loads with every job, task, update and cron job" {
	before=$(records)
	[ "$(echo "$before" | wc -l)" -eq 12 ]
	start_server
	run "$BERTH_BIN" job list --json
	echo "$output"
	[ "$status" -eq 0 ]
	[ "$(echo "$output" | jget 'sorted((j["job"], j["version"], j["status"]) for j in d)')" = \
		"[('alice/prod/web', 2, 'running'), ('bob/test/once', 1, 'finished'), ('carol/prod/nightly', 1, 'scheduled')]" ]
	# the service: 3 running tasks on version 2, the 3 of version 1 killed by
	# the update, each with its whole history
	st=$("$BERTH_BIN" job status alice/prod/web --all --json)
	[ "$(echo "$st" | jget 'sorted((t["state"], t["version"]) for t in d["tasks"])')" = \
		"[('KILLED', 1), ('KILLED', 1), ('KILLED', 1), ('RUNNING', 2), ('RUNNING', 2), ('RUNNING', 2)]" ]
	[ "$(echo "$st" | jget '[e["state"] for e in [t for t in d["tasks"] if t["state"] == "RUNNING"][0]["events"]]')" = \
		"['INIT', 'PENDING', 'ASSIGNED', 'STARTING', 'RUNNING']" ]
	[ "$(echo "$st" | jget 'all(t["ports"].get("http", 0) > 0 for t in d["tasks"])')" = True ]
	run "$BERTH_BIN" update status alice/prod/web
	echo "$output"
	[[ "$output" == *"ROLLED_FORWARD (version 1 -> 2): 3/3 updated, 0 failed"* ]]
	run "$BERTH_BIN" cron list --json
	echo "$output"
	[ "$(echo "$output" | jget '[(c["job"], c["schedule"]) for c in d]')" = "[('carol/prod/nightly', '0 3 * * *')]" ]
	run "$BERTH_BIN" job status bob/test/once --all --json
	[ "$(echo "$output" | jget 'sorted(t["state"] for t in d["tasks"])')" = "['FINISHED', 'FINISHED']" ]
	# loading rewrote nothing
	kill -TERM "$SERVER"
	wait "$SERVER" 2>/dev/null || true
	SERVER=
	[ "$(records)" = "$before" ]
}

@test "a loaded store takes new writes beside its old records" {
	start_server
	f=$(spec <<'EOF'
job: dave/test/new
type: batch
task:
  command: ["/bin/true"]
EOF
)
	"$BERTH_BIN" job run --detach "$f"
	run "$BERTH_BIN" job list --json
	[ "$(echo "$output" | jget 'len(d)')" -eq 4 ]
	kill -TERM "$SERVER"
	wait "$SERVER" 2>/dev/null || true
	SERVER=
	# and the whole store loads again
	start_server
	run "$BERTH_BIN" job list --json
	[ "$(echo "$output" | jget 'sorted(j["job"] for j in d)')" = \
		"['alice/prod/web', 'bob/test/once', 'carol/prod/nightly', 'dave/test/new']" ]
	rm -f "$f"
}
