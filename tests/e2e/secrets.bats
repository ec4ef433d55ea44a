#!/usr/bin/env bats
# Secrets (docs/security.md, "Secrets"): berth secret create/list/rm,
# task.secrets delivered as 0400 files owned by the task's user on a tmpfs
# of the task's own, absent everywhere else, refused to other nodes, tasks
# and jobs, and rolled out to the jobs that use them on a new version.

load helpers

setup() {
	require_root
	start_up
	VALUE="berth-secret-$RANDOM-$RANDOM-$RANDOM"
	WANT=$(printf %s "$VALUE" | sha256sum | cut -d' ' -f1)
}

teardown() {
	# A secrets tmpfs a failed test left mounted under the data dir.
	if [ -n "${DATA:-}" ]; then
		grep -o " $DATA/tasks/[^ ]*/secrets " /proc/mounts | while read -r m; do
			umount -l "$m" || true
		done
	fi
	cleanup_up
}

# A service whose task checks its secret at PATH against the expected hash
# and logs the verdict with the file's mode and owner, never the value.
app_spec() {
	local path=${1:-/run/secrets/db-pass} want=${2:-$WANT}
	spec <<EOF
job: alice/devel/app
instances: 1
update: {batch_size: 1, watch: 0s}
task:
  command: ["/bin/sh", "-c", "if [ \"\$(sha256sum <$path | cut -d' ' -f1)\" = $want ]; then echo match; else echo MISMATCH; fi; stat -c '%a %U' $path; exec sleep 1000"]
  user: nobody
  resources: {cpu: 0.1, memory: 32MiB}
  secrets: [{name: db-pass, path: $path}]
EOF
}

task_id() {
	status_json alice/devel/app | jget 'd["tasks"][0]["id"]'
}

@test "secret create reads a file or stdin; list shows names, versions and sizes, never a value" {
	printf %s "$VALUE" >"$DATA.value"
	run "$BERTH_BIN" secret create alice/db-pass "$DATA.value"
	[ "$status" -eq 0 ]
	[[ "$output" == *"version 1"* ]]
	run sh -c "printf %s '$VALUE-2' | '$BERTH_BIN' secret create alice/db-pass -"
	[ "$status" -eq 0 ]
	[[ "$output" == *"version 2"* ]]
	run "$BERTH_BIN" secret list --json
	[ "$status" -eq 0 ]
	[[ "$output" != *"$VALUE"* ]]
	[ "$(echo "$output" | jget 'd[0]["name"]')" = alice/db-pass ]
	[ "$(echo "$output" | jget 'd[0]["version"]')" = 2 ]
	[ "$(echo "$output" | jget 'd[0]["size"]')" = "$((${#VALUE} + 2))" ]
	[ "$(echo "$output" | jget 'len(d[0]["versions"])')" = 2 ]
	run api_curl -s "$BERTH_ADDR/v1/secrets?role=alice"
	[[ "$output" == *alice/db-pass* && "$output" != *"$VALUE"* ]]
	run api_curl -s "$BERTH_ADDR/v1/secrets?role=bob"
	[ "$output" = "[]" ]
	# Bad input: a clear error each.
	run "$BERTH_BIN" secret create Alice/x "$DATA.value"
	[ "$status" -ne 0 ]
	[[ "$output" == *"expected a role"* ]]
	run "$BERTH_BIN" secret create alice/x /nonexistent
	[ "$status" -ne 0 ]
	[[ "$output" == *"cannot read '/nonexistent'"* ]]
	run api_curl -s -XPOST "$BERTH_ADDR/v1/secrets" -d '{"name":"alice/x","data":"%%%"}'
	[[ "$output" == *'"status":400'* && "$output" == *base64* ]]
	run api_curl -s -XPOST "$BERTH_ADDR/v1/secrets" -d '{"name":"alice/x","data":"eA==","extra":1}'
	[[ "$output" == *"unknown field 'extra'"* ]]
	run "$BERTH_BIN" secret rm alice/nope
	[ "$status" -ne 0 ]
	[[ "$output" == *"not found"* ]]
	run "$BERTH_BIN" secret rm alice/db-pass
	[ "$status" -eq 0 ]
	run "$BERTH_BIN" secret list --json
	[ "$output" = "[]" ]
	rm -f "$DATA.value"
}

@test "an exec task reads its secret at its path, 0400 and its user's; the value is nowhere else; gone when the task ends" {
	printf %s "$VALUE" | "$BERTH_BIN" secret create alice/db-pass -
	f=$(app_spec)
	run "$BERTH_BIN" job run --detach "$f"
	[ "$status" -eq 0 ]
	wait_for 20 '[ "$(running_count alice/devel/app)" = 1 ]'
	wait_for 10 '"$BERTH_BIN" task logs alice/devel/app/0 | grep -q "^400 "'
	run "$BERTH_BIN" task logs alice/devel/app/0
	[ "${lines[0]}" = match ]
	[ "${lines[1]}" = "400 nobody" ]
	id=$(task_id)
	pid=$(status_json alice/devel/app | jget 'd["tasks"][0]["pid"]')
	sandbox="$DATA/tasks/$id"
	# On a tmpfs of the task's own.
	grep -q " $sandbox/secrets tmpfs " /proc/mounts
	# Nowhere else in clear: job status, launch.json, the task's env, its
	# logs, the store, a backup.
	! status_json alice/devel/app | grep -qF "$VALUE"
	! api_curl -s "$BERTH_ADDR/v1/jobs/alice/devel/app" | grep -qF "$VALUE"
	grep -q '"secrets"' "$sandbox/launch.json"
	! grep -qF "$VALUE" "$sandbox/launch.json"
	! tr '\0' '\n' <"/proc/$pid/environ" | grep -qF "$VALUE"
	! grep -rqF "$VALUE" "$sandbox/stdout" "$sandbox/stderr" "$sandbox/supervisor.log"
	! grep -aqF "$VALUE" "$DATA"/state.db*
	! grep -aqF "$(printf %s "$VALUE" | base64)" "$DATA"/state.db*
	run api_curl -sf "$BERTH_ADDR/v1/admin/backup"
	[ "$status" -eq 0 ]
	[[ "$output" == *"secrets/alice/db-pass"* ]]
	[[ "$output" != *"$VALUE"* ]]
	# The key is outside the store, private.
	[ "$(stat -c %a "$DATA/keys/secrets.key")" = 600 ]
	[ "$(stat -c %a "$DATA/keys")" = 700 ]
	# The host got no mount point.
	[ ! -e /run/secrets/db-pass ] || [ "$(stat -c %s /run/secrets/db-pass)" != "${#VALUE}" ]
	# Gone when the task ends.
	run "$BERTH_BIN" job kill alice/devel/app
	[ "$status" -eq 0 ]
	wait_for 20 '! grep -q " $sandbox/secrets " /proc/mounts'
	wait_for 5 '[ ! -e "$sandbox/secrets" ]'
}

@test "a secret path outside /run is made without touching the host" {
	printf %s "$VALUE" | "$BERTH_BIN" secret create alice/db-pass -
	f=$(app_spec /etc/berth-e2e-$$/app/key.pem)
	run "$BERTH_BIN" job run --detach "$f"
	[ "$status" -eq 0 ]
	wait_for 20 '"$BERTH_BIN" task logs alice/devel/app/0 | grep -q "^400 "'
	run "$BERTH_BIN" task logs alice/devel/app/0
	[ "${lines[0]}" = match ]
	[ ! -e /etc/berth-e2e-$$ ]
}

@test "unknown secrets are refused at submit; a used secret cannot be removed; agents get only their tasks' secrets" {
	f=$(app_spec)
	run "$BERTH_BIN" job run --detach "$f"
	[ "$status" -ne 0 ]
	[[ "$output" == *"secret 'alice/db-pass' does not exist"* ]]
	# Another role's secret of the same name does not count.
	printf %s "$VALUE" | "$BERTH_BIN" secret create bob/db-pass -
	run "$BERTH_BIN" job run --detach "$f"
	[ "$status" -ne 0 ]
	printf %s "$VALUE" | "$BERTH_BIN" secret create alice/db-pass -
	run "$BERTH_BIN" job run --detach "$f"
	[ "$status" -eq 0 ]
	wait_for 20 '[ "$(running_count alice/devel/app)" = 1 ]'
	run "$BERTH_BIN" secret rm alice/db-pass
	[ "$status" -ne 0 ]
	[[ "$output" == *"used by job 'alice/devel/app'"* ]]
	id=$(task_id)
	node=$(status_json alice/devel/app | jget 'd["tasks"][0]["node"]')
	# The task's own node gets the value (the node's own certificate).
	run node_curl -s -XPOST "$BERTH_ADDR/v1/agent/secrets" -d "{\"name\":\"$node\",\"task\":\"$id\"}"
	[[ "$output" == *"\"data\":\"$(printf %s "$VALUE" | base64)\""* ]]
	# Not on that node.
	run node_curl -s -o /dev/null -w '%{http_code}' -XPOST "$BERTH_ADDR/v1/agent/secrets" \
		-d "{\"name\":\"other-node\",\"task\":\"$id\"}"
	[ "$output" = 403 ]
	# A secret the job does not list.
	run node_curl -s -XPOST "$BERTH_ADDR/v1/agent/secrets" \
		-d "{\"name\":\"$node\",\"task\":\"$id\",\"secrets\":[\"other\"]}"
	[[ "$output" == *'"status":403'* && "$output" == *"does not use secret 'other'"* ]]
	# A task whose job lists none, and one that does not exist.
	g=$(spec <<EOF
job: alice/devel/plain
task:
  command: ["sleep", "1000"]
  resources: {cpu: 0.1, memory: 16MiB}
EOF
)
	"$BERTH_BIN" job run --detach "$g"
	wait_for 20 '[ "$(running_count alice/devel/plain)" = 1 ]'
	id2=$(status_json alice/devel/plain | jget 'd["tasks"][0]["id"]')
	run node_curl -s -XPOST "$BERTH_ADDR/v1/agent/secrets" -d "{\"name\":\"$node\",\"task\":\"$id2\"}"
	[[ "$output" == *'"status":403'* && "$output" == *"uses no secrets"* ]]
	run node_curl -s -o /dev/null -w '%{http_code}' -XPOST "$BERTH_ADDR/v1/agent/secrets" \
		-d "{\"name\":\"$node\",\"task\":\"no-such-task\"}"
	[ "$output" = 403 ]
	run node_curl -s -XPOST "$BERTH_ADDR/v1/agent/secrets" -d "{\"name\":\"$node\",\"task\": 1}"
	[[ "$output" == *'"status":400'* ]]
}

@test "a new version of a secret rolls the jobs that use it to a new version with the new value" {
	printf %s "$VALUE" | "$BERTH_BIN" secret create alice/db-pass -
	f=$(app_spec)
	"$BERTH_BIN" job run --detach "$f"
	wait_for 20 '"$BERTH_BIN" task logs alice/devel/app/0 | grep -q "^400 "'
	[ "$(status_json alice/devel/app | jget 'd["tasks"][0]["version"]')" = 1 ]
	old=$(task_id)
	# The same spec again changes nothing.
	run "$BERTH_BIN" job plan "$f"
	[ "$status" -eq 0 ]
	NEW="$VALUE-rotated"
	run sh -c "printf %s '$NEW' | '$BERTH_BIN' secret create alice/db-pass -"
	[ "$status" -eq 0 ]
	[[ "$output" == *"job alice/devel/app rolls out to version 2"* ]]
	wait_for 30 '[ "$(status_json alice/devel/app | jget "d[\"tasks\"][0][\"version\"]")" = 2 ]'
	wait_for 30 '[ "$(running_count alice/devel/app)" = 1 ]'
	[ "$(task_id)" != "$old" ]
	run "$BERTH_BIN" job status alice/devel/app
	[[ "$output" == *"version 2"* ]]
	# The restarted task reads the new value (the spec's hash is the old one's).
	id=$(task_id)
	wait_for 20 'grep -q "^400 " "$DATA/tasks/$id/stdout"'
	run cat "$DATA/tasks/$id/stdout"
	[ "${lines[0]}" = MISMATCH ]
	run node_curl -s -XPOST "$BERTH_ADDR/v1/agent/secrets" \
		-d "{\"name\":\"$(status_json alice/devel/app | jget 'd["tasks"][0]["node"]')\",\"task\":\"$id\"}"
	[[ "$output" == *"\"version\":2"* && "$output" == *"\"data\":\"$(printf %s "$NEW" | base64)\""* ]]
	run "$BERTH_BIN" update status alice/devel/app --json
	[ "$(echo "$output" | jget 'd["to_version"]')" = 2 ]
}
