#!/usr/bin/env bats
# Authentication and roles on the API (docs/security.md): every request
# but /v1/health, /v1/leader and /v1/ca needs a token; a role token acts
# only on its role's jobs; node and token administration is the admin's;
# every write is in the audit log.

load helpers

setup() {
	require_root
	start_up
}

teardown() {
	cleanup_up
}

job_json() { printf '{"job": "%s", "task": {"command": ["sleep", "300"], "resources": {"cpu": 0.01, "memory": 8388608}}}' "$1"; }

# code METHOD PATH [TOKEN] [BODY]: the HTTP status only.
code() {
	local args=(-s -o "$BATS_TEST_TMPDIR/body" -w '%{http_code}' --cacert "$BERTH_CACERT" -X "$1")
	[ -n "${3:-}" ] && args+=(-H "Authorization: Bearer $3")
	[ -n "${4:-}" ] && args+=(--data-binary "$4")
	curl "${args[@]}" "$BERTH_ADDR$2"
}

cpu_ticks_in_3s() { # PID: the CPU ticks (user + system) it uses in the next 3 s
	local t0 t1
	t0=$(awk '{print $14 + $15}' "/proc/$1/stat")
	sleep 3
	t1=$(awk '{print $14 + $15}' "/proc/$1/stat")
	echo $((t1 - t0))
}

@test "a request without a valid token gets 401 with a JSON error; health, leader and the CA are public" {
	[ "$(code GET /v1/jobs)" = 401 ]
	jget 'd["error"]' <"$BATS_TEST_TMPDIR/body" | grep -qi token
	[ "$(code POST /v1/jobs "" "$(job_json alice/prod/x)")" = 401 ]
	[ "$(code GET /v1/jobs bt1.0000000000000000.nope)" = 401 ]
	[ "$(code GET /v1/admin/backup)" = 401 ]
	[ "$(code GET /v1/health)" = 200 ]
	[ "$(code GET /v1/leader)" = 200 ]
	[ "$(code GET /v1/ca)" = 200 ]
	# The CLI without credentials says what to do.
	run env -u BERTH_TOKEN XDG_CONFIG_HOME=/nonexistent "$BERTH_BIN" job list
	[ "$status" -ne 0 ]
	echo "$output" | grep -qi "token"
	# Plain HTTP on the TLS port gets nothing.
	run curl -sS -m 3 "http://127.0.0.1:$PORT/v1/jobs"
	[ "$status" -ne 0 ] || ! echo "$output" | grep -q '\['
	# The token is stored hashed: its secret part is nowhere in the store.
	secret=${BERTH_TOKEN##*.}
	! grep -q "$secret" "$DATA/state.db"
	[ "$(stat -c %a "$DATA/client/admin.token")" = 600 ]
	[ "$(stat -c %a "$DATA/client")" = 700 ]
}

@test "a role token acts only on its role's jobs (403 elsewhere); nodes, backups and tokens are the admin's" {
	run "$BERTH_BIN" token create --role alice
	[ "$status" -eq 0 ]
	alice=$(echo "$output" | tail -1)
	[ "$(code POST /v1/jobs "$BERTH_TOKEN" "$(job_json bob/prod/b)")" = 200 ]
	[ "$(code POST /v1/jobs "$alice" "$(job_json alice/prod/a)")" = 200 ]
	[ "$(code POST /v1/jobs "$alice" "$(job_json bob/prod/evil)")" = 403 ]
	jget 'd["error"]' <"$BATS_TEST_TMPDIR/body" | grep -q "role 'alice'"
	[ "$(code GET /v1/jobs/bob/prod/b "$alice")" = 403 ]
	[ "$(code DELETE /v1/jobs/bob/prod/b "$alice")" = 403 ]
	[ "$(code GET /v1/jobs/alice/prod/a "$alice")" = 200 ]
	# Its job list holds its own jobs only.
	[ "$(code GET /v1/jobs "$alice")" = 200 ]
	[ "$(jget '",".join(sorted(j["job"] for j in d))' <"$BATS_TEST_TMPDIR/body")" = alice/prod/a ]
	# Admin only: drain, backup, tokens.
	[ "$(code POST /v1/nodes/vm/drain "$alice")" = 403 ]
	[ "$(code GET /v1/admin/backup "$alice")" = 403 ]
	[ "$(code POST /v1/tokens "$alice" '{"role":"alice"}')" = 403 ]
	[ "$(code GET /v1/tokens "$alice")" = 403 ]
	# Through the CLI too.
	run env BERTH_TOKEN="$alice" "$BERTH_BIN" job kill bob/prod/b
	[ "$status" -ne 0 ]
	echo "$output" | grep -q forbidden
	run env BERTH_TOKEN="$alice" "$BERTH_BIN" job kill alice/prod/a
	[ "$status" -eq 0 ]
	# bob's job is untouched.
	wait_for 10 '[ "$(running_count bob/prod/b)" -eq 1 ]'
}

@test "a role token cannot plan, restart, steer the update of, read the logs or cron runs of, or add secrets to another role's job" {
	alice=$("$BERTH_BIN" token create --role alice | tail -1)
	env_job='{"job": "bob/prod/b", "task": {"command": ["sleep", "300"], "env": {"DB_PASS": "bob-private-value"}, "resources": {"cpu": 0.01, "memory": 8388608}}}'
	[ "$(code POST /v1/jobs "$BERTH_TOKEN" "$env_job")" = 200 ]
	wait_for 10 '[ "$(running_count bob/prod/b)" -eq 1 ]'
	id=$(status_json bob/prod/b | jget 'd["tasks"][0]["id"]')
	# A plan of bob's job would show its current spec (env included).
	[ "$(code POST /v1/jobs/plan "$alice" "$(job_json bob/prod/b)")" = 403 ]
	! grep -q bob-private-value "$BATS_TEST_TMPDIR/body"
	jget 'd["error"]' <"$BATS_TEST_TMPDIR/body" | grep -q "role 'alice'"
	[ "$(code POST /v1/plan "$alice" "$(job_json bob/prod/b)")" = 403 ]
	[ "$(code POST /v1/jobs/plan "$alice" "$(job_json alice/prod/a)")" = 200 ]
	[ "$(code POST /v1/jobs/bob/prod/b/restart "$alice")" = 403 ]
	[ "$(code POST /v1/jobs/bob/prod/b/update/pause "$alice")" = 403 ]
	[ "$(code GET /v1/jobs/bob/prod/b/update "$alice")" = 403 ]
	[ "$(code GET "/v1/tasks/$id" "$alice")" = 403 ]
	[ "$(code GET "/v1/tasks/$id/logs" "$alice")" = 403 ]
	[ "$(code POST "/v1/tasks/$id/exec" "$alice" '{"command":["id"]}')" = 403 ]
	[ "$(code GET "/v1/events?job=bob/prod/b&follow=false" "$alice")" = 403 ]
	# Through the CLI too: job plan says why, and shows nothing of bob's.
	printf 'job: bob/prod/b\ntask:\n  command: ["sleep", "1"]\n  resources: {cpu: 0.01, memory: 8MiB}\n' >"$BATS_TEST_TMPDIR/b.yaml"
	run env BERTH_TOKEN="$alice" "$BERTH_BIN" job plan "$BATS_TEST_TMPDIR/b.yaml"
	echo "$output"
	[ "$status" -ne 0 ]
	echo "$output" | grep -q forbidden
	! echo "$output" | grep -q bob-private-value
	# Cron jobs: a role's token lists its own only.
	for k in bob/prod/tick alice/prod/tick; do
		[ "$(code POST /v1/jobs "$BERTH_TOKEN" "{\"job\": \"$k\", \"type\": \"cron\", \"schedule\": \"0 0 1 1 *\", \"task\": {\"command\": [\"true\"], \"resources\": {\"cpu\": 0.01, \"memory\": 8388608}}}")" = 200 ]
	done
	[ "$(code GET /v1/cron "$alice")" = 200 ]
	[ "$(jget '",".join(sorted(r["job"] for r in d))' <"$BATS_TEST_TMPDIR/body")" = alice/prod/tick ]
	[ "$(code GET /v1/cron "$BERTH_TOKEN")" = 200 ]
	[ "$(jget '",".join(sorted(r["job"] for r in d))' <"$BATS_TEST_TMPDIR/body")" = alice/prod/tick,bob/prod/tick ]
	[ "$(code POST /v1/jobs/bob/prod/tick/cron/start "$alice")" = 403 ]
	# Secrets: its own role's, never another's.
	[ "$(code POST /v1/secrets "$alice" '{"name":"bob/db","data":"eA=="}')" = 403 ]
	[ "$(code POST /v1/secrets "$alice" '{"name":"alice/db","data":"eA=="}')" = 200 ]
	[ "$(code DELETE /v1/secrets/bob/db "$alice")" = 403 ]
	[ "$(code GET "/v1/secrets?role=bob" "$alice")" = 403 ]
}

@test "the user who ran berth up needs no credentials: the CLI reads the client configuration it wrote" {
	cfg="$XDG_CONFIG_HOME/berth/config.json"
	[ "$(stat -c %a "$cfg")" = 600 ]
	[ "$(jget 'd["addr"]' <"$cfg")" = "$BERTH_ADDR" ]
	printf 'job: alice/devel/noconfig\ntask:\n  command: ["sleep", "300"]\n  resources: {cpu: 0.01, memory: 8MiB}\n' >"$BATS_TEST_TMPDIR/n.yaml"
	run env -u BERTH_ADDR -u BERTH_TOKEN -u BERTH_CACERT -u BERTH_TOKEN_FILE "$BERTH_BIN" job run "$BATS_TEST_TMPDIR/n.yaml"
	echo "$output"
	[ "$status" -eq 0 ]
	run env -u BERTH_ADDR -u BERTH_TOKEN -u BERTH_CACERT -u BERTH_TOKEN_FILE "$BERTH_BIN" job list
	[ "$status" -eq 0 ]
	echo "$output" | grep -q alice/devel/noconfig
	# Its token goes only to its own address: another address gets none.
	other=$(free_port)
	python3 -c 'import http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        open(sys.argv[2], "w").write(self.headers.get("Authorization") or "none")
        self.send_response(401); self.end_headers()
    def log_message(self, *a): pass
s = http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), H)
open(sys.argv[2] + ".ready", "w").close()
s.handle_request()' "$other" "$BATS_TEST_TMPDIR/seen" 3>&- &
	catcher=$!
	wait_for 5 '[ -e "$BATS_TEST_TMPDIR/seen.ready" ]'
	run env -u BERTH_TOKEN -u BERTH_CACERT -u BERTH_TOKEN_FILE BERTH_ADDR="http://127.0.0.1:$other" timeout 10 "$BERTH_BIN" job list
	kill "$catcher" 2>/dev/null || true
	wait "$catcher" 2>/dev/null || true
	[ "$status" -ne 0 ]
	[ "$(cat "$BATS_TEST_TMPDIR/seen")" = none ]
}

@test "a revoked token and an expired one are refused; token list shows no secret" {
	tok=$("$BERTH_BIN" token create --role carol | tail -1)
	short=$("$BERTH_BIN" token create --role carol --ttl 2s | tail -1)
	[ "$(code GET /v1/jobs "$tok")" = 200 ]
	[ "$(code GET /v1/jobs "$short")" = 200 ]
	run "$BERTH_BIN" token list --json
	[ "$status" -eq 0 ]
	! echo "$output" | grep -q "${tok##*.}"
	id=$(echo "$tok" | cut -d. -f2)
	echo "$output" | grep -q "$id"
	"$BERTH_BIN" token revoke "$id"
	[ "$(code GET /v1/jobs "$tok")" = 401 ]
	sleep 3
	[ "$(code GET /v1/jobs "$short")" = 401 ]
	jget 'd["error"]' <"$BATS_TEST_TMPDIR/body" | grep -qi expired
	# A bad role and a bad duration are refused clearly.
	run "$BERTH_BIN" token create --role 'no/slash'
	[ "$status" -ne 0 ]
	run "$BERTH_BIN" token create --role dave --ttl forever
	[ "$status" -ne 0 ]
}

@test "every write is in the audit log: who, what, when, result" {
	alice=$("$BERTH_BIN" token create --role alice | tail -1)
	code POST /v1/jobs "$alice" "$(job_json alice/prod/audited)" >/dev/null
	code POST /v1/jobs "$alice" "$(job_json bob/prod/refused)" >/dev/null
	code POST /v1/jobs "" "$(job_json bob/prod/anon)" >/dev/null
	# A backup is a read, but of everything: it is in the log too.
	[ "$(code GET /v1/admin/backup "$BERTH_TOKEN")" = 200 ]
	[ "$(code GET /v1/admin/backup "$alice")" = 403 ]
	log="$DATA/audit.log"
	[ "$(stat -c %a "$log")" = 600 ]
	python3 - "$log" "$(echo "$alice" | cut -d. -f2)" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
tid = sys.argv[2]
def has(**kw):
    return any(all(r.get(k) == v for k, v in kw.items()) for r in rows)
mine = [r for r in rows if tid in r.get("who", "")]
assert any(r["path"] == "/v1/jobs" and r["status"] == 200 and "alice" in r["who"] for r in mine), rows
assert any(r["path"] == "/v1/jobs" and r["status"] == 403 for r in mine), rows
assert any(r["status"] == 401 and r["method"] == "POST" for r in rows), rows
assert all("time" in r for r in rows)
# The admin's token create is there too.
assert has(method="POST", path="/v1/tokens", status=200), rows
# Backups, taken and refused; other reads are not acts.
assert any(r["path"] == "/v1/admin/backup" and r["status"] == 200 and r["who"].startswith("admin") for r in rows), rows
assert any(r["path"] == "/v1/admin/backup" and r["status"] == 403 and tid in r["who"] for r in rows), rows
assert not any(r["method"] == "GET" and r["path"] != "/v1/admin/backup" for r in rows), rows
PY
	! grep -q "${alice##*.}" "$log"
}

@test "a task that calls the API on its host gets 401" {
	command -v curl >/dev/null || skip "no curl on this host"
	f=$(spec <<EOF
job: mallory/prod/probe
type: batch
task:
  network: host # the worst case: the host's own loopback, where berth up listens
  command: ["/bin/sh", "-c", "curl -sk -o /dev/null -w '%{http_code}\\\\n' https://127.0.0.1:$PORT/v1/jobs; curl -sk -o /dev/null -w '%{http_code}\\\\n' -X POST -d '{}' https://127.0.0.1:$PORT/v1/jobs"]
  resources: {cpu: 0.05, memory: 32MiB}
EOF
)
	"$BERTH_BIN" job run --detach "$f" >/dev/null
	wait_for 20 '[ "$(status_json mallory/prod/probe | jget "d[\"status\"]")" = finished ]'
	run "$BERTH_BIN" task logs mallory/prod/probe/0
	echo "$output"
	[ "$(echo "$output" | grep -c '^401$')" -eq 2 ]
}

@test "TLS handshakes waiting for their clients cost the server little CPU (a join storm)" {
	pid=$(pgrep -f "berth up --data-dir $DATA" | head -1)
	[ -n "$pid" ]
	# Ten clients send their hello, get the server's answer and go quiet
	# for 4 s (a slow agent in a join storm): the server waits for them,
	# it does not spin over them (libmicrohttpd's epoll loop did).
	python3 -c 'import socket, ssl, sys, time
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
held = []
for _ in range(10):
    s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    o = ctx.wrap_bio(inc, out, server_hostname="berth")
    try:
        o.do_handshake()
    except ssl.SSLWantReadError:
        pass
    s.sendall(out.read())
    held.append((s, o))
time.sleep(4)' "$PORT" &
	holder=$!
	sleep 0.5
	ticks=$(cpu_ticks_in_3s "$pid")
	wait "$holder"
	echo "# server CPU with 10 handshakes waiting: $ticks ticks in 3 s" >&3
	[ "$ticks" -lt 60 ]
	api_curl -fsS "$BERTH_ADDR/v1/health" >/dev/null
}

@test "clients that stall before or in the TLS handshake cost the server little CPU and are cut off" {
	pid=$(pgrep -f "berth up --data-dir $DATA" | head -1)
	[ -n "$pid" ]
	# Three connections that send nothing, held for 4 s: no CPU.
	python3 -c 'import socket, sys, time
s = [socket.create_connection(("127.0.0.1", int(sys.argv[1]))) for _ in range(3)]
time.sleep(4)' "$PORT" &
	holder=$!
	sleep 0.5
	ticks=$(cpu_ticks_in_3s "$pid")
	wait "$holder"
	echo "# server CPU with 3 idle connections: $ticks ticks in 3 s" >&3
	# A spinning event loop takes a whole core (~300 ticks); idle is ~0.
	[ "$ticks" -lt 60 ]
	# One that sends half a TLS record and stops is cut off within
	# seconds (the handshake timeout), not after the idle timeout.
	run python3 -c 'import socket, sys, time
h = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
h.send(bytes.fromhex("160301020001"))
h.settimeout(15)
t = time.time()
try:
    d = h.recv(100)
except ConnectionResetError:
    d = b""
except Exception:
    d = None
print("closed" if d is not None else "open", round(time.time() - t, 1))' "$PORT"
	echo "# a stalled handshake: $output s" >&3
	[[ "$output" == closed* ]]
	[ "$(echo "$output" | awk '{print int($2)}')" -le 8 ]
	# And the server still answers.
	api_curl -fsS "$BERTH_ADDR/v1/health" >/dev/null
}
