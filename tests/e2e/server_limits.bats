#!/usr/bin/env bats
# Server hardening (issue 12): one server per data dir, bounded request
# bodies (each and in all), connections per client address, backups off the
# request threads, etcd over TLS with client certificates. No root needed:
# a `berth server` without an agent.

load helpers

setup() {
	T=$(mktemp -d /tmp/berth-e2e-limits.XXXXXX)
	DATA=$T/server
	export PORT=$(free_port)
}

teardown() {
	stop_pids ${SERVER_PID:-} ${ETCD_PID:-}
	if [ "${BATS_TEST_COMPLETED:-}" != 1 ]; then
		for f in "$T"/*.log; do
			[ -f "$f" ] && { echo "--- $f ---" >&2; tail -20 "$f" >&2; }
		done
	fi
	rm -rf "$T"
}

# `berth server` on $DATA and $PORT with $BERTH_UP_FLAGS (--insecure) and
# the arguments; exports BERTH_ADDR and the client's credentials.
start_server() {
	case " ${BERTH_UP_FLAGS:-} " in
	*" --insecure "*) export BERTH_ADDR="http://127.0.0.1:$PORT" ;;
	*) export BERTH_ADDR="https://127.0.0.1:$PORT" ;;
	esac
	# shellcheck disable=SC2086
	"$BERTH_BIN" server --data-dir "$DATA" --addr "127.0.0.1:$PORT" ${BERTH_UP_FLAGS:-} "$@" \
		>>"$T/server.log" 2>&1 3>&- &
	SERVER_PID=$!
	use_client_creds "$DATA"
	wait_for 20 'api_curl -fsS "$BERTH_ADDR/v1/health" >/dev/null 2>&1'
}

# A python3 prologue: conn(src) opens a connection to the server from the
# source address src (TLS when BERTH_ADDR is https), ask(sock, request)
# sends a request and returns the status line ("closed" when the server
# closed the connection instead).
PY_CLIENT='
import os, socket, ssl, sys, time
port = int(os.environ["PORT"])
tls = os.environ["BERTH_ADDR"].startswith("https")
def tcp(src="127.0.0.1"):
    s = socket.socket(); s.bind((src, 0)); s.connect(("127.0.0.1", port)); return s
def conn(src="127.0.0.1"):
    s = tcp(src)
    if tls:
        ctx = ssl.create_default_context(cafile=os.environ["BERTH_CACERT"])
        s = ctx.wrap_socket(s, server_hostname="127.0.0.1")
    return s
def auth():
    t = os.environ.get("BERTH_TOKEN")
    return ("Authorization: Bearer %s\r\n" % t).encode() if t else b""
def response(s):
    """The whole response: (status line, headers text, body), or None when
    the server closed the connection first."""
    s.settimeout(10)
    data = b""
    try:
        while b"\r\n\r\n" not in data:
            d = s.recv(65536)
            if not d:
                return None
            data += d
        head, body = data.split(b"\r\n\r\n", 1)
        n = 0
        for h in head.split(b"\r\n")[1:]:
            k, _, v = h.partition(b":")
            if k.strip().lower() == b"content-length":
                n = int(v)
        while len(body) < n:
            d = s.recv(65536)
            if not d:
                break
            body += d
    except (OSError, ssl.SSLError):
        return None
    return head.split(b"\r\n")[0].decode(), head.decode(), body
def ask(s, req):
    try:
        s.sendall(req)
    except (OSError, ssl.SSLError) as e:
        return "closed (%s)" % e
    r = response(s)
    return r[0] if r else "closed"
'

@test "a second server on the same data dir refuses to start, naming the first; the lock goes with the first" {
	start_server
	other=$(free_port)
	run "$BERTH_BIN" server --data-dir "$DATA" --addr "127.0.0.1:$other" ${BERTH_UP_FLAGS:-}
	[ "$status" -ne 0 ]
	echo "$output"
	[[ "$output" == *"data dir '$DATA' is in use by another berth server (pid $SERVER_PID, serving "*"127.0.0.1:$PORT)"* ]]
	# berth up too, and nothing of the first was disturbed.
	run "$BERTH_BIN" up --data-dir "$DATA" --addr "127.0.0.1:$other" ${BERTH_UP_FLAGS:-}
	[ "$status" -ne 0 ]
	[[ "$output" == *"in use by another berth server (pid $SERVER_PID"* ]]
	api_curl -fsS "$BERTH_ADDR/v1/health" >/dev/null
	# A restore into it is refused as well.
	echo '{"key": "nodes/x", "value": "{}"}' >"$T/backup.jsonl"
	run "$BERTH_BIN" admin restore "$T/backup.jsonl" --data-dir "$DATA"
	[ "$status" -ne 0 ]
	[[ "$output" == *"is in use by a berth server (pid $SERVER_PID"* ]]
	# Once the first is gone (even killed), the next one starts.
	kill -KILL "$SERVER_PID"
	wait "$SERVER_PID" 2>/dev/null || true
	start_server
	grep -q "pid $SERVER_PID addr" "$DATA/lock"
}

@test "a body over 1 MiB is refused with 413 and a JSON error, announced or chunked" {
	start_server
	python3 -c 'print("{\"job\": \"" + "x" * (1100 * 1024) + "\"}")' >"$T/big.json"
	run api_curl -sS -X POST -H 'Content-Type: application/json' --data-binary @"$T/big.json" \
		-w '\n%{http_code}' "$BERTH_ADDR/v1/jobs"
	echo "$output"
	[ "${lines[-1]}" = 413 ]
	[ "$(echo "${lines[0]}" | jget 'd["error"]')" = "request body too large (limit 1048576 bytes)" ]
	run api_curl -sS -X POST -H 'Transfer-Encoding: chunked' --data-binary @"$T/big.json" \
		-w '\n%{http_code}' "$BERTH_ADDR/v1/jobs"
	[ "${lines[-1]}" = 413 ]
	# The server is still there, and a small body is heard.
	run api_curl -sS -X POST --data-binary '{"job": 1}' -w '\n%{http_code}' "$BERTH_ADDR/v1/jobs"
	[ "${lines[-1]}" = 400 ]
	# Without credentials, no body is read at all: 401 from the headers.
	if [ -n "${BERTH_TOKEN:-}" ]; then
		run curl -sS --cacert "$BERTH_CACERT" -X POST --data-binary @"$T/big.json" \
			-w '\n%{http_code}' "$BERTH_ADDR/v1/jobs"
		[ "${lines[-1]}" = 401 ]
	fi
}

@test "request headers up to 5 KiB are served (a browser's cookies); larger ones get 431 and the server goes on" {
	start_server
	cookie=$(python3 -c 'print("a" * 5000)')
	run api_curl -sS -o /dev/null -w '%{http_code}' -H "Cookie: c=$cookie" "$BERTH_ADDR/v1/jobs"
	[ "$output" = 200 ]
	cookie=$(python3 -c 'print("a" * 9000)')
	run api_curl -sS -o /dev/null -w '%{http_code}' -H "Cookie: c=$cookie" "$BERTH_ADDR/v1/jobs"
	[ "$output" = 431 ]
	run api_curl -sS -o /dev/null -w '%{http_code}' "$BERTH_ADDR/v1/jobs"
	[ "$output" = 200 ]
}

@test "bodies past the server's budget for all bodies get 503 with Retry-After, and are heard once it frees" {
	start_server --max-body-buffer 1MiB
	run python3 -c "$PY_CLIENT"'
a = conn()
# 900 KB announced, 400 KB sent: held while the rest is awaited.
a.sendall(b"POST /v1/jobs HTTP/1.1\r\nHost: x\r\n" + auth() + b"Content-Length: 900000\r\n\r\n{" + b" " * 400000)
time.sleep(0.5)
body = b"{\"job\": 1" + b" " * 500000 + b"}"
b = conn()
b.sendall(b"POST /v1/jobs HTTP/1.1\r\nHost: x\r\n" + auth() + b"Content-Length: %d\r\n\r\n" % len(body))
line, head, rbody = response(b)
print(line)
print("retry-after" if "\r\nRetry-After: 1" in head else "no retry-after")
print(rbody.decode().strip())
a.close()
time.sleep(0.5)
c = conn()
print(ask(c, b"POST /v1/jobs HTTP/1.1\r\nHost: x\r\n" + auth() + b"Content-Length: %d\r\n\r\n" % len(body) + body))
'
	echo "$output"
	[ "$status" -eq 0 ]
	[ "${lines[0]}" = "HTTP/1.1 503 Service Unavailable" ]
	[ "${lines[1]}" = "retry-after" ]
	[[ "${lines[2]}" == *'"error":"the server is receiving too many request bodies at once (1 MiB in all); retry"'* ]]
	# Heard, and refused for what it says (a bad spec), not for its size.
	[ "${lines[3]}" = "HTTP/1.1 400 Bad Request" ]
}

@test "more connections than --max-client-conns from one address are refused while another address is served" {
	start_server --max-client-conns 4
	run python3 -c "$PY_CLIENT"'
held = [tcp("127.0.0.1") for _ in range(4)]
time.sleep(0.3)
req = b"GET /v1/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
try:
    print("fifth from 127.0.0.1:", ask(conn("127.0.0.1"), req))
except (OSError, ssl.SSLError) as e:
    print("fifth from 127.0.0.1: closed (%s)" % e)
print("from 127.0.0.2:", ask(conn("127.0.0.2"), req))
for h in held: h.close()
time.sleep(0.3)
print("later from 127.0.0.1:", ask(conn("127.0.0.1"), req))
'
	echo "$output"
	[ "$status" -eq 0 ]
	[[ "${lines[0]}" == "fifth from 127.0.0.1: closed"* ]]
	[ "${lines[1]}" = "from 127.0.0.2: HTTP/1.1 200 OK" ]
	[ "${lines[2]}" = "later from 127.0.0.1: HTTP/1.1 200 OK" ]
	run "$BERTH_BIN" server --data-dir "$T/other" --max-client-conns 0
	[ "$status" -ne 0 ]
	[[ "$output" == *"bad --max-client-conns '0'"* ]]
}

@test "a backup is taken on its own thread: every key, and health answers on a kept connection meanwhile" {
	start_server
	python3 -c "$PY_CLIENT"'
import json
s = conn()
for i in range(300):
    spec = json.dumps({"job": "bk/prod/j%d" % i, "task": {"command": ["/bin/true"], "resources": {"cpu": 0.1, "memory": "16MiB"}}}).encode()
    r = ask(s, b"POST /v1/jobs HTTP/1.1\r\nHost: x\r\n" + auth() + b"Content-Length: %d\r\n\r\n" % len(spec) + spec)
    assert r == "HTTP/1.1 200 OK", r
'
	"$BERTH_BIN" admin backup "$T/backup.jsonl"
	[ "$(grep -c '"key": *"jobs/bk/prod/j' "$T/backup.jsonl")" -eq 300 ]
	# Several at once, while health is asked on kept connections.
	run python3 -c "$PY_CLIENT"'
import threading
keep = [conn() for _ in range(8)]
def backup(out):
    s = conn()
    s.sendall(b"GET /v1/admin/backup HTTP/1.1\r\nHost: x\r\n" + auth() + b"\r\n")
    out.append(response(s))
outs = []
ts = [threading.Thread(target=backup, args=(outs,)) for _ in range(2)]
for t in ts: t.start()
for k in keep:
    print(ask(k, b"GET /v1/health HTTP/1.1\r\nHost: x\r\n\r\n"))
for t in ts: t.join()
for line, head, body in outs:
    print(line, body.count(b"\"key\":\"jobs/bk/prod/j"))
'
	echo "$output"
	[ "$status" -eq 0 ]
	[ "$(grep -c '^HTTP/1.1 200 OK$' <<<"$output")" -eq 8 ]
	# Each backup: 200 and every job (or 503: MAX_BACKUPS at once).
	[ "$(grep -c '^HTTP/1.1 200 OK 300$' <<<"$output")" -eq 2 ]
}

# etcd with TLS on its client port, asking for client certificates; a CA
# made here with the openssl CLI signs its certificate and berth's.
start_tls_etcd() {
	command -v etcd >/dev/null || skip "etcd is not installed (Debian package etcd-server)"
	command -v openssl >/dev/null || skip "openssl is not installed"
	local p=$T/pki
	mkdir -p "$p"
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
		-subj /CN=test-etcd-ca -keyout "$p/ca.key" -out "$p/ca.pem" 2>/dev/null
	printf 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n' >"$p/srv.ext"
	printf 'extendedKeyUsage=clientAuth\n' >"$p/cli.ext"
	local n
	for n in srv cli; do
		openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=$n" \
			-keyout "$p/$n.key" -out "$p/$n.csr" 2>/dev/null
		openssl x509 -req -in "$p/$n.csr" -CA "$p/ca.pem" -CAkey "$p/ca.key" -CAcreateserial \
			-days 2 -extfile "$p/$n.ext" -out "$p/$n.pem" 2>/dev/null
	done
	EP=$(free_port)
	local pp
	pp=$(free_port)
	etcd --name default --data-dir "$T/etcd" --listen-client-urls "https://127.0.0.1:$EP" \
		--advertise-client-urls "https://127.0.0.1:$EP" --listen-peer-urls "http://127.0.0.1:$pp" \
		--initial-advertise-peer-urls "http://127.0.0.1:$pp" \
		--initial-cluster "default=http://127.0.0.1:$pp" \
		--cert-file "$p/srv.pem" --key-file "$p/srv.key" --trusted-ca-file "$p/ca.pem" \
		--client-cert-auth >"$T/etcd.log" 2>&1 3>&- &
	ETCD_PID=$!
	wait_for 15 "curl -fsS --cacert '$p/ca.pem' --cert '$p/cli.pem' --key '$p/cli.key' https://127.0.0.1:$EP/health >/dev/null 2>&1"
	PKI=$p
}

@test "etcd over TLS with a client certificate: the server stores there; without the certificate it says why it cannot" {
	start_tls_etcd
	STORE="etcd://127.0.0.1:$EP/berth"
	# Without the client certificate: a clear error, no server.
	run timeout 60 "$BERTH_BIN" server --data-dir "$T/nocert" --addr "127.0.0.1:$(free_port)" \
		--store "$STORE" --etcd-cacert "$PKI/ca.pem" ${BERTH_UP_FLAGS:-}
	echo "$output"
	[ "$status" -ne 0 ]
	[[ "$output" == *"etcd 127.0.0.1:$EP: "*"give --etcd-cert and --etcd-key"* ]]
	# Plain HTTP to a TLS member is no better.
	run timeout 60 "$BERTH_BIN" server --data-dir "$T/plain" --addr "127.0.0.1:$(free_port)" \
		--store "$STORE" ${BERTH_UP_FLAGS:-}
	[ "$status" -ne 0 ]
	[[ "$output" == *"etcd 127.0.0.1:$EP"* ]]
	# Half a pair, or a file that is not there: refused before anything.
	run "$BERTH_BIN" server --data-dir "$T/half" --store "$STORE" --etcd-cert "$PKI/cli.pem"
	[[ "$output" == *"--etcd-cert and --etcd-key go together"* ]]
	run "$BERTH_BIN" server --data-dir "$T/half" --store "$STORE" --etcd-cacert "$T/nope.pem"
	[[ "$output" == *"cannot read --etcd-cacert '$T/nope.pem'"* ]]
	# With it: a job submitted lands in etcd and is there after a restart.
	start_server --store "$STORE" --etcd-cacert "$PKI/ca.pem" --etcd-cert "$PKI/cli.pem" \
		--etcd-key "$PKI/cli.key"
	wait_for 20 '[ "$(api_curl -fsS "$BERTH_ADDR/v1/leader" | jget "d[\"role\"]")" = leader ]'
	f=$(spec <<'EOF2'
job: alice/prod/over-tls
task:
  command: ["sleep", "300"]
  resources: {cpu: 0.1, memory: 16MiB}
EOF2
)
	"$BERTH_BIN" job run --detach "$f"
	rm -f "$f"
	curl -fsS --cacert "$PKI/ca.pem" --cert "$PKI/cli.pem" --key "$PKI/cli.key" \
		-X POST -d "{\"key\": \"$(printf 'berth/jobs/alice/prod/over-tls' | base64 -w0)\"}" \
		"https://127.0.0.1:$EP/v3/kv/range" | grep -q '"count":"1"'
	stop_pids "$SERVER_PID"
	start_server --store "$STORE" --etcd-cacert "$PKI/ca.pem" --etcd-cert "$PKI/cli.pem" \
		--etcd-key "$PKI/cli.key"
	wait_for 20 '"$BERTH_BIN" job list --json 2>/dev/null | grep -q alice/prod/over-tls'
}
