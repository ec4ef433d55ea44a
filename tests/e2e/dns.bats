#!/usr/bin/env bats
# Names (docs/networking.md, "Names"): GET /v1/jobs/KEY/endpoints, and the
# agent's DNS server: NAME.ENV.ROLE.berth, INSTANCE.NAME.ENV.ROLE.berth,
# SRV _PORT._tcp.NAME.ENV.ROLE.berth, answers that follow scaling and health
# within ~1 s, other names forwarded, exec tasks resolving through it.

load helpers

DNSQ="$BATS_TEST_DIRNAME/fixtures/dnsq.py"

setup() {
	require_root
	# A loopback address of our own on port 53 (a task's resolv.conf names
	# no port), and a fake upstream resolver for other names.
	DNS_IP="127.$((RANDOM % 200 + 20)).$((RANDOM % 250 + 1)).$((RANDOM % 250 + 1))"
	UPSTREAM_PORTFILE=$(mktemp /tmp/berth-dns-up.XXXXXX)
	rm -f "$UPSTREAM_PORTFILE"
	python3 "$DNSQ" upstream "$UPSTREAM_PORTFILE" &
	UPSTREAM_PID=$!
	wait_for 5 '[ -s "$UPSTREAM_PORTFILE" ]'
	# A health check tests can fail from outside: instance I is sick while
	# $SICK/I exists (tasks see the host's /var/tmp, read-only).
	SICK=$(mktemp -d /var/tmp/berth-dns-sick.XXXXXX)
	chmod 755 "$SICK"
	# Ports of our own, below the ephemeral range: other clusters on this
	# host use the default range.
	lo=$((22000 + RANDOM % 80 * 100))
	BERTH_UP_FLAGS="--dns-listen $DNS_IP:53 --dns-upstream 127.0.0.1:$(cat "$UPSTREAM_PORTFILE")"
	BERTH_UP_FLAGS="$BERTH_UP_FLAGS --port-range $lo-$((lo + 99))"
	export BERTH_UP_FLAGS
	start_up
}

teardown() {
	cleanup_up
	kill "$UPSTREAM_PID" 2>/dev/null || true
	wait "$UPSTREAM_PID" 2>/dev/null || true
	rm -f "$UPSTREAM_PORTFILE"
	rm -rf "$SICK"
}

dnsq() {
	python3 "$DNSQ" query "$DNS_IP:53" "$@"
}

# The address of instance $1 of alice/devel/web: its own (network: bridge,
# the default; docs/networking.md "Task networks").
addr_of() {
	status_json alice/devel/web | jget "[t['address'] for t in d['tasks'] if t['instance'] == $1 and t['state'] == 'RUNNING'][0]"
}

# How many SRV answers a name has.
srv_count() {
	dnsq "$1" SRV | grep -c '^AN SRV' || true
}

web_spec() {
	spec <<EOF2
job: alice/devel/web
instances: $1
task:
  command: ["$BERTH_TOOLS/httpd-tiny", "{{ports.http}}"]
  resources: {cpu: 0.05, memory: 16MiB, ports: [http]}
  health: {command: ["/bin/sh", "-c", "test ! -e $SICK/{{instance}}"], interval: 200ms, timeout: 1s, initial_delay: 0s, failures: 2}
  stop_grace: 1s
EOF2
}

@test "GET /v1/jobs/KEY/endpoints lists RUNNING instances; another role gets 403" {
	"$BERTH_BIN" job run --detach "$(web_spec 2)"
	wait_for 30 '[ "$(running_count alice/devel/web)" = 2 ]'
	a0=$(addr_of 0) a1=$(addr_of 1)
	run api_curl -fsS "$BERTH_ADDR/v1/jobs/alice/devel/web/endpoints"
	[ "$status" -eq 0 ]
	echo "$output" | python3 -c '
import json, sys
d = json.load(sys.stdin)
assert d["job"] == "alice/devel/web", d
assert isinstance(d["version"], int), d
eps = sorted(d["endpoints"], key=lambda e: e["instance"])
assert [e["instance"] for e in eps] == [0, 1], eps
for e in eps:
    assert set(e) == {"instance", "task", "node", "address", "ports"}, e
    assert e["address"] == sys.argv[1 + e["instance"]], e
    assert 1024 < e["ports"]["http"] < 65536, e
    assert e["task"].startswith("alice-devel-web-%d-" % e["instance"]), e
' "$a0" "$a1"
	run api_curl -sS -o /dev/null -w '%{http_code}' "$BERTH_ADDR/v1/jobs/alice/devel/nope/endpoints"
	[ "$output" = 404 ]
	token=$("$BERTH_BIN" token create --role bob | tail -1)
	run curl -sS --cacert "$BERTH_CACERT" -H "Authorization: Bearer $token" -o /dev/null \
		-w '%{http_code}' "$BERTH_ADDR/v1/jobs/alice/devel/web/endpoints"
	[ "$output" = 403 ]
}

@test "A, instance and SRV answers; unknown berth names are NXDOMAIN; others are forwarded" {
	"$BERTH_BIN" job run --detach "$(web_spec 2)"
	wait_for 30 '[ "$(running_count alice/devel/web)" = 2 ]'
	wait_for 3 '[ "$(srv_count _http._tcp.web.devel.alice.berth)" = 2 ]'
	a0=$(addr_of 0) a1=$(addr_of 1)
	run dnsq web.devel.alice.berth A
	[[ "${lines[0]}" == NOERROR* ]]
	[[ "$output" == *"AN A web.devel.alice.berth $a0"* ]]
	[[ "$output" == *"AN A web.devel.alice.berth $a1"* ]]
	run dnsq 1.web.devel.alice.berth A
	[[ "$output" == *"AN A 1.web.devel.alice.berth $a1"* ]]
	ports=$(api_curl -fsS "$BERTH_ADDR/v1/jobs/alice/devel/web/endpoints" |
		jget '" ".join("%d:%d" % (e["instance"], e["ports"]["http"]) for e in sorted(d["endpoints"], key=lambda e: e["instance"]))')
	run dnsq _http._tcp.web.devel.alice.berth SRV
	echo "$output"
	for ip in $ports; do
		[[ "$output" == *"AN SRV 0 0 ${ip#*:} ${ip%%:*}.web.devel.alice.berth"* ]]
		[[ "$output" == *"AR A ${ip%%:*}.web.devel.alice.berth $(addr_of "${ip%%:*}")"* ]]
	done
	# The same over TCP.
	run dnsq _http._tcp.web.devel.alice.berth SRV --tcp
	[ "$(echo "$output" | grep -c '^AN SRV')" = 2 ]
	for name in nope.devel.alice.berth 5.web.devel.alice.berth _db._tcp.web.devel.alice.berth; do
		run dnsq "$name" A
		[[ "${lines[0]}" == NXDOMAIN* ]]
	done
	run dnsq example.com A
	[[ "$output" == *"AN A example.com 192.0.2.7"* ]]
	# Garbage gets FORMERR or nothing; the server keeps answering.
	run python3 "$DNSQ" raw "$DNS_IP:53" 00010100000200000000000003616263
	[ "$output" = FORMERR ]
	run python3 "$DNSQ" raw "$DNS_IP:53" 0001
	[ "$output" = timeout ]
	run dnsq web.devel.alice.berth A
	[[ "${lines[0]}" == NOERROR* ]]
}

@test "answers follow scaling up and down within two seconds" {
	"$BERTH_BIN" job run --detach "$(web_spec 1)"
	wait_for 20 '[ "$(srv_count _http._tcp.web.devel.alice.berth)" = 1 ]'
	"$BERTH_BIN" job run --detach "$(web_spec 3)"
	wait_for 20 '[ "$(running_count alice/devel/web)" = 3 ]'
	start=$SECONDS
	wait_for 2 '[ "$(srv_count _http._tcp.web.devel.alice.berth)" = 3 ]'
	"$BERTH_BIN" job run --detach "$(web_spec 1)"
	# Scaling down: the instances leave the answer as they leave RUNNING.
	wait_for 3 '[ "$(srv_count _http._tcp.web.devel.alice.berth)" = 1 ]'
	run dnsq 2.web.devel.alice.berth A
	[[ "${lines[0]}" == NXDOMAIN* ]]
	[ $((SECONDS - start)) -le 6 ]
}

@test "an instance whose health check fails leaves the answer" {
	"$BERTH_BIN" job run --detach "$(web_spec 2)"
	wait_for 20 '[ "$(srv_count _http._tcp.web.devel.alice.berth)" = 2 ]'
	touch "$SICK/1"
	# Two failed checks 200 ms apart, then it is killed: gone from DNS
	# (and its replacements stay out: they never pass).
	wait_for 3 '[ "$(srv_count _http._tcp.web.devel.alice.berth)" = 1 ]'
	run dnsq _http._tcp.web.devel.alice.berth SRV
	[[ "$output" == *" 0.web.devel.alice.berth"* ]]
	[[ "$output" != *" 1.web.devel.alice.berth"* ]]
	run dnsq 1.web.devel.alice.berth A
	[[ "${lines[0]}" == NXDOMAIN* ]]
	# Healthy again: back in the answer once its check passes.
	rm "$SICK/1"
	wait_for 10 '[ "$(srv_count _http._tcp.web.devel.alice.berth)" = 2 ]'
}

@test "an exec task resolves berth names and others through the agent" {
	"$BERTH_BIN" job run --detach "$(web_spec 2)"
	wait_for 30 '[ "$(running_count alice/devel/web)" = 2 ]'
	wait_for 3 '[ "$(srv_count _http._tcp.web.devel.alice.berth)" = 2 ]'
	tid=$(status_json alice/devel/web | jget '[t["id"] for t in d["tasks"] if t["state"] == "RUNNING"][0]')
	# A bridge task (the default) asks the agent's twin server on its
	# gateway, the bridge's address: 127.0.0.x is the task's own loopback.
	gw=$(addr_of 0)
	gw=${gw%.*}.1
	run "$BERTH_BIN" task-exec "$DATA/tasks/$tid" -- cat /etc/resolv.conf
	[[ "$output" == *"nameserver $gw"* ]]
	run "$BERTH_BIN" task-exec "$DATA/tasks/$tid" -- getent hosts web.devel.alice.berth
	[ "$status" -eq 0 ]
	[[ "$output" == 10.244.*"web.devel.alice.berth"* ]]
	run "$BERTH_BIN" task-exec "$DATA/tasks/$tid" -- getent hosts 1.web.devel.alice.berth
	[ "$status" -eq 0 ]
	run "$BERTH_BIN" task-exec "$DATA/tasks/$tid" -- getent hosts example.com
	[[ "$output" == "192.0.2.7"* ]]
	run "$BERTH_BIN" task-exec "$DATA/tasks/$tid" -- getent hosts nope.devel.alice.berth
	[ "$status" -ne 0 ]
	# The host's own file is untouched.
	! grep -q "$DNS_IP" /etc/resolv.conf
}
