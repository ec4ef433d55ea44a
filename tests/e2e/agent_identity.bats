#!/usr/bin/env bats
# Agents' identity (docs/security.md): an agent joins once with the join
# token, gets a node certificate bound to its name, then speaks mutual TLS;
# a node speaks only for itself; certificates expire and are renewed; the
# logs listener serves only holders of a server's ticket.

load helpers

setup() {
	require_root
	D=$(mktemp -d /tmp/berth-e2e-id.XXXXXX)
	PORT=$(free_port)
	CGPARENT=berth-e2e-id-$$
	export BERTH_ADDR="https://127.0.0.1:$PORT"
	AGENT_PIDS=()
}

teardown() {
	stop_pids "${AGENT_PIDS[@]}" "${SERVER_PID:-}"
	pkill -KILL -f "berth supervise $D" 2>/dev/null || true
	for c in /sys/fs/cgroup/*/"$CGPARENT" /sys/fs/cgroup/"$CGPARENT"; do
		[ -d "$c" ] || continue
		find "$c" -mindepth 1 -depth -type d -exec rmdir {} \; 2>/dev/null || true
		rmdir "$c" 2>/dev/null || true
	done
	if [ "${BATS_TEST_COMPLETED:-}" != 1 ]; then
		tail -30 "$D"/*.log >&2 || true
	fi
	release_task_netns "$D"
	rm -rf "$D"
}

# start_server [flags...]
start_server() {
	"$BERTH_BIN" server --data-dir "$D/server" --addr "127.0.0.1:$PORT" "$@" >>"$D/server.log" 2>&1 3>&- &
	SERVER_PID=$!
	use_client_creds "$D/server"
	wait_for 10 'api_curl -fsS "$BERTH_ADDR/v1/health" >/dev/null 2>&1'
}

# start_agent NAME [flags...]
start_agent() {
	local name=$1
	shift
	"$BERTH_BIN" agent --server "127.0.0.1:$PORT" --data-dir "$D/$name" --name "$name" \
		--cgroup-parent "$CGPARENT" --port-range 31000-31999 "$@" >>"$D/$name.log" 2>&1 3>&- &
	AGENT_PIDS+=($!)
}

node_state() {
	"$BERTH_BIN" node list --json 2>/dev/null | jget "([n['state'] for n in d if n['name']=='$1'] + ['none'])[0]"
}

@test "an agent joins with the join token, then speaks mutual TLS with its own certificate" {
	start_server
	start_agent n1 --join-token-file "$D/server/client/join.token"
	wait_for 15 '[ "$(node_state n1)" = ACTIVE ]'
	grep -q "joined the cluster" "$D/n1.log"
	# Its identity: a key only root reads, a certificate naming the node.
	[ "$(stat -c %a "$D/n1/node")" = 700 ]
	[ "$(stat -c %a "$D/n1/node/key.pem")" = 600 ]
	openssl x509 -in "$D/n1/node/cert.pem" -noout -subject | grep -q "CN *= *n1"
	openssl verify -CAfile "$D/server/client/ca.pem" "$D/n1/node/cert.pem"
	# Restarted without the token, it keeps its certificate.
	stop_pids "${AGENT_PIDS[@]}"
	AGENT_PIDS=()
	start_agent n1
	wait_for 15 '[ "$(node_state n1)" = ACTIVE ] && grep -c "registered with" "$D/n1.log" | grep -q 2'
	[ "$(grep -c "joined the cluster" "$D/n1.log")" -eq 1 ]
	# A task runs there, and its logs come through the agent's HTTPS
	# listener with the server's ticket.
	f=$(spec <<'EOF'
job: alice/prod/echo
task:
  command: ["/bin/sh", "-c", "echo hello from n1; sleep 300"]
  resources: {cpu: 0.01, memory: 16MiB}
EOF
)
	"$BERTH_BIN" job run "$f" >/dev/null
	wait_for 10 '"$BERTH_BIN" task logs alice/prod/echo/0 2>/dev/null | grep -q "hello from n1"'
}

@test "an agent without a join token, or with another cluster's, cannot join" {
	start_server
	run "$BERTH_BIN" agent --server "https://127.0.0.1:$PORT" --data-dir "$D/n2" --name n2
	[ "$status" -ne 0 ]
	echo "$output" | grep -q -- "--join-token-file"
	# A token that pins another CA: the agent refuses the server.
	fake="bj1.$(printf '%064d' 0).0123456789abcdef.$(printf '%064d' 1)"
	start_agent n3 --join-token "$fake"
	wait_for 10 'grep -q "other than the one the join token names" "$D/n3.log"'
	[ "$(node_state n3)" = none ]
	# A join token with a wrong secret: 401 from the server.
	real=$(cat "$D/server/client/join.token")
	start_agent n4 --join-token "${real%.*}.$(printf '%064d' 7)"
	wait_for 10 'grep -q "cannot join" "$D/n4.log"'
	[ "$(node_state n4)" = none ]
}

@test "a node speaks only for itself: no certificate 401, another node's name 403, a live name cannot be joined again" {
	start_server
	start_agent n1 --join-token-file "$D/server/client/join.token"
	start_agent n2 --join-token-file "$D/server/client/join.token"
	wait_for 15 '[ "$(node_state n1)" = ACTIVE ] && [ "$(node_state n2)" = ACTIVE ]'
	ca="$D/server/client/ca.pem"
	reg='{"name":"n1","resources":{"cpu":1000000000,"memory":1,"disk":1,"port_lo":1,"port_hi":2},"addr":"","tasks":[]}'
	# No certificate at all.
	run curl -s -o /dev/null -w '%{http_code}' --cacert "$ca" -X POST -d "$reg" "$BERTH_ADDR/v1/agent/register"
	[ "$output" = 401 ]
	# An admin token is not a node.
	run curl -s -o /dev/null -w '%{http_code}' --cacert "$ca" -H "Authorization: Bearer $BERTH_TOKEN" \
		-X POST -d "$reg" "$BERTH_ADDR/v1/agent/register"
	[ "$output" = 401 ] || [ "$output" = 403 ]
	# n2's certificate speaking for n1.
	run curl -s -o "$D/body" -w '%{http_code}' --cacert "$ca" --cert "$D/n2/node/cert.pem" \
		--key "$D/n2/node/key.pem" -H "X-Berth-Node: n1" -X POST -d "$reg" "$BERTH_ADDR/v1/agent/register"
	[ "$output" = 403 ]
	run curl -s -o /dev/null -w '%{http_code}' --cacert "$ca" --cert "$D/n2/node/cert.pem" \
		--key "$D/n2/node/key.pem" -X POST -d '{"name":"n1","updates":[]}' "$BERTH_ADDR/v1/agent/status"
	[ "$output" = 403 ]
	# Nor read n1's desired set (its tasks' specs, env included) or secrets.
	run curl -s -o /dev/null -w '%{http_code}' --cacert "$ca" --cert "$D/n2/node/cert.pem" \
		--key "$D/n2/node/key.pem" -X POST -d '{"name":"n1","wait_ms":0}' "$BERTH_ADDR/v1/agent/watch"
	[ "$output" = 403 ]
	run curl -s -o /dev/null -w '%{http_code}' --cacert "$ca" --cert "$D/n2/node/cert.pem" \
		--key "$D/n2/node/key.pem" -X POST -d '{"name":"n1","task":"x"}' "$BERTH_ADDR/v1/agent/secrets"
	[ "$output" = 403 ]
	# A node certificate is no API credential.
	run curl -s -o /dev/null -w '%{http_code}' --cacert "$ca" --cert "$D/n2/node/cert.pem" \
		--key "$D/n2/node/key.pem" "$BERTH_ADDR/v1/jobs"
	[ "$output" = 403 ] || [ "$output" = 401 ]
	# Joining as n1 while n1 is up: 409.
	openssl ecparam -name prime256v1 -genkey -noout -out "$D/k.pem" 2>/dev/null
	openssl req -new -key "$D/k.pem" -subj "/CN=n1" -out "$D/csr.pem"
	body=$(python3 -c 'import json,sys; print(json.dumps({"name":"n1","csr":open(sys.argv[1]).read()}))' "$D/csr.pem")
	run curl -s -o "$D/body" -w '%{http_code}' --cacert "$ca" \
		-H "Authorization: Bearer $(cat "$D/server/client/join.token")" -X POST -d "$body" "$BERTH_ADDR/v1/agent/join"
	[ "$output" = 409 ]
	# n1 still ACTIVE with its real resources.
	sleep 1
	[ "$(node_state n1)" = ACTIVE ]
	[ "$("$BERTH_BIN" node list --json | jget "[n for n in d if n['name']=='n1'][0]['resources']['cpu'] < 1000")" = True ]
}

@test "certificates expire and are renewed before they do (--cert-ttl 4s); an expired one is refused" {
	start_server --cert-ttl 4s
	lport=$(free_port)
	start_agent n1 --join-token-file "$D/server/client/join.token" --listen "127.0.0.1:$lport"
	wait_for 15 '[ "$(node_state n1)" = ACTIVE ]'
	cp "$D/n1/node/cert.pem" "$D/old-cert.pem"
	cp "$D/n1/node/key.pem" "$D/old-key.pem"
	first=$(openssl x509 -in "$D/old-cert.pem" -noout -enddate)
	sleep 9
	# Renewed (same key), the node never went DOWN.
	grep -q "renewed the node certificate" "$D/n1.log"
	[ "$(openssl x509 -in "$D/n1/node/cert.pem" -noout -enddate)" != "$first" ]
	[ "$(node_state n1)" = ACTIVE ]
	[ "$(api_curl -fsS "$BERTH_ADDR/v1/health" | jget 'd["nodes_down_total"]')" -eq 0 ]
	# The first certificate has expired: refused.
	run curl -s -o "$D/body" -w '%{http_code}' --cacert "$D/server/client/ca.pem" --cert "$D/old-cert.pem" \
		--key "$D/old-key.pem" -X POST -d '{"name":"n1","updates":[]}' "$BERTH_ADDR/v1/agent/status"
	[ "$output" = 401 ] || [ "$output" = 000 ]
	# The agent's listener shows the renewed certificate to new connections.
	served_end() {
		openssl s_client -connect "127.0.0.1:$lport" -CAfile "$D/server/client/ca.pem" </dev/null 2>/dev/null |
			openssl x509 -noout -enddate
	}
	wait_for 5 '[ "$(served_end)" = "$(openssl x509 -in "$D/n1/node/cert.pem" -noout -enddate)" ]'
	[ "$(served_end)" != "$first" ]
	# An exec session goes on across renewals (the listener keeps its
	# connections; only new ones get the new certificate).
	f=$(spec <<'EOF'
job: alice/prod/box
task:
  command: ["/bin/sh", "-c", "exec sleep 300"]
  resources: {cpu: 0.01, memory: 16MiB}
EOF
)
	"$BERTH_BIN" job run "$f" >/dev/null
	renewals=$(grep -c "renewed the node certificate" "$D/n1.log")
	run "$BERTH_BIN" task exec alice/prod/box/0 -- sh -c 'sleep 6; echo still here'
	echo "$output"
	[ "$status" -eq 0 ]
	[ "$output" = "still here" ]
	[ "$(grep -c "renewed the node certificate" "$D/n1.log")" -gt "$renewals" ]
}

@test "the agent's logs listener serves a task's output only with a valid ticket" {
	start_server
	start_agent n1 --join-token-file "$D/server/client/join.token" --listen 127.0.0.1:0
	wait_for 15 '[ "$(node_state n1)" = ACTIVE ]'
	f=$(spec <<'EOF'
job: alice/prod/secretlog
task:
  command: ["/bin/sh", "-c", "echo the-private-output; sleep 300"]
  resources: {cpu: 0.01, memory: 16MiB}
EOF
)
	"$BERTH_BIN" job run "$f" >/dev/null
	wait_for 10 '"$BERTH_BIN" task logs alice/prod/secretlog/0 2>/dev/null | grep -q the-private-output'
	id=$(status_json alice/prod/secretlog | jget 'd["tasks"][0]["id"]')
	# Where the server sends a reader (with a ticket):
	loc=$(api_curl -s -o /dev/null -w '%{redirect_url}' "$BERTH_ADDR/v1/tasks/$id/logs?stream=stdout")
	echo "$loc" | grep -q "^https://.*ticket="
	base=${loc%%\?*}
	# Without the ticket, with a forged one, with one for another task: 403.
	run curl -s --cacert "$D/server/client/ca.pem" "$base?stream=stdout"
	! echo "$output" | grep -q the-private-output
	echo "$output" | grep -q ticket
	ticket=${loc##*ticket=}
	run curl -s --cacert "$D/server/client/ca.pem" "$base?stream=stdout&ticket=${ticket%%.*}.00ff"
	! echo "$output" | grep -q the-private-output
	run curl -s --cacert "$D/server/client/ca.pem" "${base%/*}/other-task?stream=stdout&ticket=$ticket"
	! echo "$output" | grep -q the-private-output
	# With it: the output, over TLS the cluster CA vouches for.
	run curl -fsS --cacert "$D/server/client/ca.pem" "$loc"
	echo "$output" | grep -q the-private-output
}
