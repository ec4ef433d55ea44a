#!/usr/bin/env bats
# The web UI (/ui/, docs/ui.md) in real headless Chromium, driven by
# Playwright (tests/ui/ui-test.mjs): log in, the jobs list, a job's
# instances, a task's logs, cron, draining a node from the nodes page.
# UI_SCREENSHOTS=docs/ui keeps the screenshots there (docs/ui/*.png).

load helpers

UI_DIR=$BATS_TEST_DIRNAME/../ui

# Playwright from npm, installed from the committed lock into tests/ui/
# (kept there: a second run needs no network).
ui_tools() {
	command -v chromium >/dev/null || skip "chromium is not installed (apt-get install chromium)"
	command -v node >/dev/null || skip "node is not installed (apt-get install nodejs)"
	local want have
	want=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["dependencies"]["playwright-core"])' "$UI_DIR/package.json")
	have=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["version"])' \
		"$UI_DIR/node_modules/playwright-core/package.json" 2>/dev/null || true)
	if [ "$want" != "$have" ]; then
		command -v npm >/dev/null || skip "npm is not installed (apt-get install npm)"
		(cd "$UI_DIR" && timeout 120 npm ci --no-audit --no-fund --loglevel=error) >&2 ||
			skip "cannot install playwright-core $want from npm (no network?)"
	fi
}

setup() {
	# The parser's test needs no cluster.
	[[ "$BATS_TEST_DESCRIPTION" == *"stream parser"* ]] && return 0
	require_root
	start_up
}

teardown() {
	cleanup_up
}

@test "the web UI: log in, see the job and its instances RUNNING, read a task's log, drain the node" {
	ui_tools
	f=$(spec <<'EOF'
job: ui/devel/web
instances: 2
task:
  command: ["/bin/sh", "-c", "echo 'ui-line from {{instance}}'; echo 'ui-line to stderr' >&2; exec sleep 300"]
  resources: {cpu: 0.01, memory: 16MiB, ports: [http]}
EOF
)
	"$BERTH_BIN" job run "$f"
	c=$(spec <<'EOF'
job: ui/prod/nightly
type: cron
schedule: "0 3 * * *"
task:
  command: ["/bin/true"]
  resources: {cpu: 0.01, memory: 8MiB}
EOF
)
	"$BERTH_BIN" job run --detach "$c"
	[ "$(running_count ui/devel/web)" -eq 2 ]
	node=$("$BERTH_BIN" node list --json | jget 'd[0]["name"]')
	shots=${UI_SCREENSHOTS:-$BATS_TEST_TMPDIR}
	mkdir -p "$shots"
	# With the event stream the UI must say it is live (curl gives up on
	# the endless stream after 2 s, having seen its status).
	live=0
	[ "$(api_curl -sS -m 2 -o /dev/null -w '%{http_code}' "$BERTH_ADDR/v1/events" 2>/dev/null)" = 200 ] && live=1
	run env UI_EXPECT_LIVE=$live UI_JOB=ui/devel/web UI_CRON_JOB=ui/prod/nightly UI_INSTANCES=2 UI_NODE="$node" \
		UI_LOG_LINE="ui-line from 0" UI_SHOTS="$shots" CHROMIUM="$(command -v chromium)" \
		timeout 60 node "$UI_DIR/ui-test.mjs"
	echo "$output"
	[ "$status" -eq 0 ]
	[[ "$output" == *"ui-test: ok"* ]]
	# What the browser did, the cluster did.
	wait_for 10 '"$BERTH_BIN" node list --json | grep -Eq "\"state\": *\"DRAIN(ING|ED)\""'
	for p in login jobs job task update cron nodes nodes-draining; do
		[ -s "$shots/$p.png" ]
	done
}

@test "the UI's files: content types, ETag and 304, a strict CSP, / leads to /ui/" {
	run api_curl -sS -o /dev/null -w '%{http_code} %{redirect_url}' "$BERTH_ADDR/"
	[ "$output" = "307 $BERTH_ADDR/ui/" ]
	hdr=$(api_curl -sS -D - -o /dev/null "$BERTH_ADDR/ui/")
	echo "$hdr"
	grep -qi '^content-type: text/html; charset=utf-8' <<<"$hdr"
	grep -qi "^content-security-policy: default-src 'none'; script-src 'self';" <<<"$hdr"
	grep -qi '^cache-control: no-cache' <<<"$hdr"
	api_curl -sS -D - -o /dev/null "$BERTH_ADDR/ui/app.js" | grep -qi '^content-type: text/javascript'
	api_curl -sS -D - -o /dev/null "$BERTH_ADDR/ui/style.css" | grep -qi '^content-type: text/css'
	etag=$(api_curl -sS -D - -o /dev/null "$BERTH_ADDR/ui/app.js" | sed -n 's/^[Ee][Tt][Aa][Gg]: *//p' | tr -d '\r')
	[ -n "$etag" ]
	[ "$(api_curl -sS -o /dev/null -w '%{http_code}' -H "If-None-Match: $etag" "$BERTH_ADDR/ui/app.js")" = 304 ]
	[ "$(api_curl -sS -o /dev/null -w '%{http_code}' "$BERTH_ADDR/ui/nope.js")" = 404 ]
	[ "$(api_curl -sS -o /dev/null -w '%{http_code}' -X POST "$BERTH_ADDR/ui/")" = 405 ]
	# The files need no token (the login page is one of them); the logs do.
	[ "$(curl -sS --cacert "$BERTH_CACERT" -o /dev/null -w '%{http_code}' "$BERTH_ADDR/ui/app.js")" = 200 ]
	[ "$(curl -sS --cacert "$BERTH_CACERT" -o /dev/null -w '%{http_code}' "$BERTH_ADDR/ui/logs/x")" = 401 ]
	run api_curl -sS "$BERTH_ADDR/ui/logs/x?stream=nope"
	[[ "$output" == *"query 'stream': expected stdout or stderr"* ]]
}

@test "the UI's event stream parser: lines cut anywhere, CRLF, CR or LF, comments, several data lines" {
	command -v node >/dev/null || skip "node is not installed (apt-get install nodejs)"
	run node "$UI_DIR/sse-test.mjs"
	echo "$output"
	[ "$status" -eq 0 ]
	[ "$output" = "sse-test: ok" ]
}
