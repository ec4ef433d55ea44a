#!/usr/bin/env bats
# make deb: the Debian package of this build, installed with dpkg on this
# machine, then the server and an agent started the way their systemd units
# start them (ExecStart with the package's /etc/default options; systemd is
# not PID 1 here), a job run through the installed CLI, and the package
# purged without leaving its files.

load helpers

setup_file() {
	BUILD_DIR=$(cd "$(dirname "$BERTH_BIN")" && pwd)
	export BUILD_DIR
	# The sanitizer build (make asan-test) is relinked as one, if at all.
	SANITIZE=
	[ "$(basename "$BUILD_DIR")" != build-asan ] || SANITIZE=1
	export SANITIZE
}

setup() {
	require_root
	command -v dpkg-deb >/dev/null || skip "dpkg-deb is missing"
	if dpkg -s berth >/dev/null 2>&1; then
		skip "a berth package is installed on this machine already: not replacing it"
	fi
	TMP=$(mktemp -d /tmp/berth-e2e-pkg.XXXXXX)
	SERVER_PID= AGENT_PID=
}

teardown() {
	if [ -n "${BERTH_ADDR:-}" ] && [ -x /usr/bin/berth ]; then
		/usr/bin/berth job kill pkg/devel/hello >/dev/null 2>&1 || true
	fi
	stop_pids "$AGENT_PID" "$SERVER_PID"
	pkill -KILL -f "berth supervise /var/lib/berth/agent" 2>/dev/null || true
	release_task_netns /var/lib/berth/agent
	if [ "${BATS_TEST_COMPLETED:-}" != 1 ]; then
		for f in "$TMP"/*.log; do
			[ -f "$f" ] && { echo "--- $f ---" >&2; tail -30 "$f" >&2; }
		done
	fi
	dpkg -P berth >/dev/null 2>&1 || true
	for c in /sys/fs/cgroup/*/berth /sys/fs/cgroup/*/"berth-e2e-$$"; do
		[ -d "$c" ] && find "$c" -depth -type d -exec rmdir {} \; 2>/dev/null
	done
	rm -rf "$TMP"
}

# The options a unit's ExecStart passes: $1 = server|agent.
unit_opts() {
	# shellcheck disable=SC1090
	(. "/etc/default/berth-$1" && eval echo "\$BERTH_$(echo "$1" | tr a-z A-Z)_OPTS")
}

@test "make deb builds a package that installs the binary, man pages, completion and units, starts, and purges clean" {
	run make -C "$BATS_TEST_DIRNAME/../.." --no-print-directory BUILD="$BUILD_DIR" SANITIZE="$SANITIZE" deb
	[ "$status" -eq 0 ] || { echo "$output" >&2; false; }
	deb=$(echo "$output" | tail -1)
	case "$deb" in /*) ;; *) deb="$BATS_TEST_DIRNAME/../../$deb" ;; esac
	[ -f "$deb" ]
	dpkg-deb -f "$deb" Package Version Depends | grep -q '^Depends: .*libmicrohttpd'
	dpkg -i "$deb" >"$TMP/dpkg.log" 2>&1

	# The binary, the same version as the build.
	[ "$(/usr/bin/berth --version)" = "$("$BERTH_BIN" --version)" ]
	# A man page per command group, each rendering without a warning, each
	# listing the command's flags from its help text.
	for cmd in $(/usr/bin/berth --help | awk '/^commands:/ {on = 1; next} on && /^  [a-z]/ {print $1}'); do
		page=/usr/share/man/man1/berth-$cmd.1.gz
		[ -f "$page" ] || { echo "no man page for $cmd" >&2; false; }
		if command -v groff >/dev/null; then
			out=$(zcat "$page" | groff -man -Tutf8 -ww 2>"$TMP/groff.err" | col -b)
			[ ! -s "$TMP/groff.err" ] || { cat "$TMP/groff.err" >&2; false; }
			for flag in $(/usr/bin/berth "$cmd" --help | awk '/^options:/ {on = 1; next} on && $1 ~ /^--/ {print $1}'); do
				echo "$out" | grep -q -- "$flag" || { echo "berth-$cmd(1) lacks $flag" >&2; false; }
			done
		fi
	done
	[ -f /usr/share/man/man1/berth.1.gz ]
	zcat /usr/share/man/man1/berth-job.1.gz | grep -q 'detach'

	# Bash completion from the installed file: commands, subcommands, flags.
	run bash -c '. /usr/share/bash-completion/completions/berth
		COMP_WORDS=(berth jo); COMP_CWORD=1; _berth; echo "1:${COMPREPLY[*]}"
		COMP_WORDS=(berth update pa); COMP_CWORD=2; _berth; echo "2:${COMPREPLY[*]}"
		COMP_WORDS=(berth job --deta); COMP_CWORD=2; _berth; echo "3:${COMPREPLY[*]}"'
	[ "$status" -eq 0 ]
	echo "$output" | grep -qx '1:job'
	echo "$output" | grep -qx '2:pause'
	echo "$output" | grep -qx '3:--detach'

	# The units are valid for systemd where systemd-analyze exists.
	[ -f /lib/systemd/system/berth-server.service ]
	[ -f /lib/systemd/system/berth-agent.service ]
	grep -q '^KillMode=process' /lib/systemd/system/berth-agent.service
	if command -v systemd-analyze >/dev/null; then
		run systemd-analyze verify /lib/systemd/system/berth-server.service \
			/lib/systemd/system/berth-agent.service
		[ "$status" -eq 0 ] || { echo "$output" >&2; false; }
	fi

	# Start the server and an agent as the units do, with the package's
	# defaults (only the port changed, so the test cannot collide).
	port=$(free_port)
	server_opts=$(unit_opts server | sed "s/0\.0\.0\.0:7070/127.0.0.1:$port/")
	# shellcheck disable=SC2086
	HOME=$TMP /usr/bin/berth server $server_opts >"$TMP/server.log" 2>&1 3>&- &
	SERVER_PID=$!
	export BERTH_ADDR="https://127.0.0.1:$port"
	wait_for 20 '[ -s /var/lib/berth/server/client/join.token ]'
	use_client_creds /var/lib/berth/server
	install -m 0600 /var/lib/berth/server/client/join.token /etc/berth/join.token
	agent_opts=$(unit_opts agent | sed "s/127\.0\.0\.1:7070/127.0.0.1:$port/")
	# shellcheck disable=SC2086
	/usr/bin/berth agent $agent_opts --port-range 31000-31999 >"$TMP/agent.log" 2>&1 3>&- &
	AGENT_PID=$!
	wait_for 30 '[ "$(/usr/bin/berth node list --json 2>/dev/null | jget "sum(1 for n in d if n[\"state\"]==\"ACTIVE\")" 2>/dev/null)" = 1 ]'
	f=$(spec <<'SPEC'
job: pkg/devel/hello
task:
  command: ["/bin/sh", "-c", "echo packaged berth runs; exec sleep 600"]
  resources: {cpu: 0.01, memory: 16MiB}
SPEC
)
	/usr/bin/berth job run --detach "$f"
	rm -f "$f"
	wait_for 30 '[ "$(BERTH_BIN=/usr/bin/berth running_count pkg/devel/hello)" = 1 ]'
	wait_for 10 '/usr/bin/berth task logs pkg/devel/hello/0 2>/dev/null | grep -q "packaged berth runs"'
	/usr/bin/berth job kill pkg/devel/hello
	# The job is gone once its task ended (its network released).
	wait_for 30 '! /usr/bin/berth job status pkg/devel/hello --json >/dev/null 2>&1'
	wait_for 10 'grep -q "released the network of task" "$TMP/agent.log"'
	stop_pids "$AGENT_PID" "$SERVER_PID"
	AGENT_PID= SERVER_PID=

	# Purge: no binary, no man page, no state left.
	dpkg -P berth >"$TMP/dpkg.log" 2>&1
	[ ! -e /usr/bin/berth ]
	[ ! -e /usr/share/man/man1/berth-job.1.gz ]
	[ ! -e /lib/systemd/system/berth-agent.service ]
	[ ! -e /etc/default/berth-server ]
	[ ! -e /var/lib/berth ]
}

@test "make install honours PREFIX and DESTDIR" {
	run make -C "$BATS_TEST_DIRNAME/../.." --no-print-directory BUILD="$BUILD_DIR" SANITIZE="$SANITIZE" install \
		DESTDIR="$TMP/stage" PREFIX=/opt/berth
	[ "$status" -eq 0 ] || { echo "$output" >&2; false; }
	[ -x "$TMP/stage/opt/berth/bin/berth" ]
	[ -f "$TMP/stage/opt/berth/share/man/man1/berth-node.1.gz" ]
	[ -f "$TMP/stage/opt/berth/share/bash-completion/completions/berth" ]
	grep -q '^ExecStart=/opt/berth/bin/berth server' "$TMP/stage/opt/berth/lib/systemd/system/berth-server.service"
	[ -f "$TMP/stage/etc/default/berth-agent" ]
}

@test "--log-format json: every line berth up writes is one JSON object with time, level, component and msg" {
	port=$(free_port)
	HOME=$TMP "$BERTH_BIN" up --data-dir "$TMP/data" --addr "127.0.0.1:$port" --log-format json \
		--cgroup-parent "berth-e2e-$$" --port-range 31000-31999 >"$TMP/up.out" 2>"$TMP/up.log" 3>&- &
	SERVER_PID=$!
	wait_for 20 'grep -q "registered with" "$TMP/up.log"'
	stop_pids "$SERVER_PID"
	SERVER_PID=
	python3 - "$TMP/up.log" <<'PY'
import json, sys
lines = open(sys.argv[1], encoding="utf-8").read().splitlines()
assert len(lines) >= 5, lines
for l in lines:
    o = json.loads(l)
    assert set(o) == {"time", "level", "component", "msg"}, o
    assert o["level"] in ("debug", "info", "warn", "error"), o
assert any("cluster ready at" in json.loads(l)["msg"] for l in lines)
PY
	run "$BERTH_BIN" up --log-format yaml
	[ "$status" -eq 2 ]
	[[ "$output" == *"--log-format: expected text or json, found 'yaml'"* ]]
}
