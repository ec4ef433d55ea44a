#!/usr/bin/env bats
# `berth task exec` (a command inside a running task, through its agent,
# with the caller's role checked and audited) and logs that outlive the
# node (the server keeps the tail of tasks that FAILED or were KILLED;
# `berth job logs` merges every instance's lines). docs/operations.md.

load helpers
load dockerd
bats_require_minimum_version 1.5.0

setup() {
	require_root
	AGENT_PIDS=()
}

teardown() {
	if [ -n "${D:-}" ]; then
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
	fi
	cleanup_up
	[ -z "${DOCKERD_PID:-}" ] || dockerd_stop
}

# pty_exec REF CMD...: `berth task exec -it REF -- CMD...` from a pseudo-
# terminal of 33 rows x 101 columns; types "hello" and Enter once the
# command printed the size; prints what the terminal showed, then exit=N.
pty_exec() {
	python3 - "$BERTH_BIN" "$@" <<'EOF'
import fcntl, os, pty, struct, sys, termios
pid, fd = pty.fork()
if pid == 0:
    fcntl.ioctl(0, termios.TIOCSWINSZ, struct.pack("HHHH", 33, 101, 0, 0))
    os.execv(sys.argv[1], [sys.argv[1], "task", "exec", "-it", sys.argv[2], "--"] + sys.argv[3:])
out = b""
sent = False
while True:
    try:
        chunk = os.read(fd, 4096)
    except OSError:
        break
    if not chunk:
        break
    out += chunk
    if not sent and b"33 101" in out:
        os.write(fd, b"hello\r")
        sent = True
_, st = os.waitpid(pid, 0)
sys.stdout.write(out.decode(errors="replace"))
print("\nexit=%d" % os.waitstatus_to_exitcode(st))
EOF
}

sleeper() {
	spec <<EOF
job: $1
instances: ${2:-1}
task:
  command: ["/bin/sh", "-c", "echo hello from instance \$BERTH_INSTANCE; echo warming up >&2; exec sleep 1000"]
  resources: {cpu: 0.01, memory: 32MiB}
EOF
}

@test "task exec runs a command in the task as its user and passes its exit status back" {
	start_up
	"$BERTH_BIN" job run "$(sleeper alice/devel/box)" >/dev/null
	wait_for 20 '[ "$(running_count alice/devel/box)" = 1 ]'
	# The task's user (nobody), not the agent's root.
	run "$BERTH_BIN" task exec alice/devel/box/0 -- id -u
	[ "$status" -eq 0 ]
	[ "$output" = 65534 ]
	# Inside its pid namespace: a handful of processes, its sleep among them.
	run "$BERTH_BIN" task exec alice/devel/box/0 -- sh -c 'for p in /proc/[0-9]*; do tr "\0" " " <$p/cmdline; echo; done'
	echo "$output"
	[ "$status" -eq 0 ]
	[[ "$output" == *"sleep 1000"* ]]
	[ "${#lines[@]}" -lt 10 ]
	# The command's status is the CLI's.
	run "$BERTH_BIN" task exec alice/devel/box/0 -- sh -c 'echo out; echo err >&2; exit 3'
	[ "$status" -eq 3 ]
	[[ "$output" == *out* ]] && [[ "$output" == *err* ]]
	# stdin with -i.
	run sh -c "printf 'line one\nline two\n' | '$BERTH_BIN' task exec -i alice/devel/box/0 -- wc -l"
	[ "$status" -eq 0 ]
	[ "$output" = 2 ]
	# A command that writes while it reads: 8 MiB through cat and back,
	# byte for byte (bench/exec_stream.sh measures how fast).
	head -c 8388608 /dev/urandom >"$DATA.in"
	"$BERTH_BIN" task exec -i alice/devel/box/0 -- cat <"$DATA.in" >"$DATA.out"
	cmp "$DATA.in" "$DATA.out"
	rm -f "$DATA.in" "$DATA.out"
	# Not found in the task: 127, as a shell and docker exec say.
	run -127 "$BERTH_BIN" task exec alice/devel/box/0 -- no-such-command
	echo "$output"
	[ "$status" -eq 127 ]
	[[ "$output" == *"no-such-command"* ]]
	# No such task: 126 and why.
	run "$BERTH_BIN" task exec alice/devel/nope/0 -- id
	[ "$status" -eq 126 ]
	[[ "$output" == *"task not found"* ]]
	# Usage errors: 2.
	run "$BERTH_BIN" task exec alice/devel/box/0
	[ "$status" -eq 2 ]
	# The exec is in the audit log, with who asked.
	grep '"path":"/v1/tasks/alice/devel/box/0/exec"' "$DATA/audit.log" | grep -q '"status":200'
}

@test "task exec -t gives the command a terminal with the caller's window size" {
	command -v python3 >/dev/null || skip "needs python3 (pty)"
	start_up
	"$BERTH_BIN" job run "$(sleeper alice/devel/tty)" >/dev/null
	wait_for 20 '[ "$(running_count alice/devel/tty)" = 1 ]'
	run pty_exec alice/devel/tty/0 sh -c 'tty; stty size; read x; echo got:$x; exit 4'
	echo "$output"
	[[ "$output" == *"/dev/pts/"* ]]
	[[ "$output" == *"33 101"* ]]
	[[ "$output" == *"got:hello"* ]]
	[[ "$output" == *"exit=4"* ]]
	# Without -t the command has no terminal.
	run "$BERTH_BIN" task exec alice/devel/tty/0 -- tty
	[ "$status" -ne 0 ]
	[[ "$output" == *"not a tty"* ]]
}

@test "a role's token cannot exec into another role's task; an ended task is refused" {
	start_up
	"$BERTH_BIN" job run "$(sleeper bob/devel/secret)" >/dev/null
	wait_for 20 '[ "$(running_count bob/devel/secret)" = 1 ]'
	alice=$("$BERTH_BIN" token create --role alice | tail -1)
	run env BERTH_TOKEN="$alice" "$BERTH_BIN" task exec bob/devel/secret/0 -- id -u
	echo "$output"
	[ "$status" -eq 126 ]
	[[ "$output" == *"forbidden"* ]]
	# The same refusal at the API: 403, and no ticket.
	code=$(curl -s -o /dev/null -w '%{http_code}' --cacert "$BERTH_CACERT" \
		-H "Authorization: Bearer $alice" -X POST -d '{"command":["id"]}' \
		"$BERTH_ADDR/v1/tasks/bob/devel/secret/0/exec")
	[ "$code" = 403 ]
	grep '"path":"/v1/tasks/bob/devel/secret/0/exec"' "$DATA/audit.log" | grep -q '"status":403'
	# The agent refuses a request without the server's ticket.
	url=$(api_curl -s -X POST -d '{"command":["id"]}' "$BERTH_ADDR/v1/tasks/bob/devel/secret/0/exec" | jget 'd["url"]')
	code=$(curl -s -o /dev/null -w '%{http_code}' --cacert "$BERTH_CACERT" \
		-H 'Upgrade: berth-exec' -H 'Connection: Upgrade' \
		-H "X-Berth-Command: $(printf '["sh"]' | base64)" "${url%%\?*}?tty=0&ticket=1.00")
	[ "$code" = 403 ]
	# Bad bodies: 400 with a reason.
	run api_curl -s -X POST -d '{"command":[]}' "$BERTH_ADDR/v1/tasks/bob/devel/secret/0/exec"
	[[ "$output" == *"expected"* ]]
	# A task that is not running: 126, says so.
	f=$(spec <<'EOF'
job: bob/devel/done
type: batch
task:
  command: ["/bin/true"]
  resources: {cpu: 0.01, memory: 16MiB}
EOF
)
	"$BERTH_BIN" job run "$f" >/dev/null
	wait_for 20 '"$BERTH_BIN" job status bob/devel/done --json --all | grep -q FINISHED'
	run "$BERTH_BIN" task exec bob/devel/done/0 -- id -u
	echo "$output"
	[ "$status" -eq 126 ]
	[[ "$output" == *"is not running (it is FINISHED)"* ]]
}

# start_server / start_agent: a server and agents as separate processes, so
# that an agent can be killed and its node go DOWN.
start_server() {
	"$BERTH_BIN" server --data-dir "$D/server" --addr "127.0.0.1:$PORT" --down-after 2s "$@" \
		>>"$D/server.log" 2>&1 3>&- &
	SERVER_PID=$!
	use_client_creds "$D/server"
	wait_for 10 'api_curl -fsS "$BERTH_ADDR/v1/health" >/dev/null 2>&1'
}

start_agent() {
	local name=$1
	shift
	"$BERTH_BIN" agent --server "127.0.0.1:$PORT" --data-dir "$D/$name" --name "$name" \
		--cgroup-parent "$CGPARENT" --port-range 31000-31999 \
		--join-token-file "$D/server/client/join.token" "$@" >>"$D/$name.log" 2>&1 3>&- &
	AGENT_PIDS+=($!)
}

node_state() {
	"$BERTH_BIN" node list --json 2>/dev/null | jget "([n['state'] for n in d if n['name']=='$1'] + ['none'])[0]"
}

task_state() {
	"$BERTH_BIN" job status "$1" --json --all 2>/dev/null |
		jget "([t['state'] for t in d['tasks'] if t['instance']==$2] + ['none'])[0]"
}

@test "the logs of a task that failed are shown after its agent was killed and its node went DOWN" {
	D=$(mktemp -d /tmp/berth-e2e-xl.XXXXXX)
	PORT=$(free_port)
	CGPARENT=berth-e2e-xl-$$
	export BERTH_ADDR="https://127.0.0.1:$PORT"
	start_server
	start_agent n1
	wait_for 15 '[ "$(node_state n1)" = ACTIVE ]'
	# Instance 0 dies with its reason on stderr; instance 1 keeps running.
	f=$(spec <<'EOF'
job: alice/devel/crashy
type: batch
instances: 2
max_task_failures: 1
task:
  command: ["/bin/sh", "-c", "echo started $BERTH_INSTANCE; if [ $BERTH_INSTANCE = 0 ]; then echo dying because the answer is 41 >&2; exit 1; fi; exec sleep 1000"]
  resources: {cpu: 0.01, memory: 32MiB}
EOF
)
	"$BERTH_BIN" job run --detach "$f" >/dev/null
	wait_for 20 '[ "$(task_state alice/devel/crashy 0)" = FAILED ]'
	wait_for 20 '[ "$(task_state alice/devel/crashy 1)" = RUNNING ]'
	# While the node is up, the agent serves them.
	run "$BERTH_BIN" task logs alice/devel/crashy/0 --stderr
	[[ "$output" == *"dying because the answer is 41"* ]]
	# Both instances, each line prefixed.
	run "$BERTH_BIN" job logs alice/devel/crashy
	echo "$output"
	[ "$status" -eq 0 ]
	[[ "$output" == *"0| started 0"* ]]
	[[ "$output" == *"1| started 1"* ]]
	# The agent dies; until its node is DOWN the CLI cannot reach it and
	# shows the kept tail all the same.
	kill -KILL "${AGENT_PIDS[0]}"
	AGENT_PIDS=()
	run "$BERTH_BIN" task logs alice/devel/crashy/0
	echo "$output"
	[ "$status" -eq 0 ]
	[[ "$output" == *"dying because the answer is 41"* ]]
	[[ "$output" == *"log tail the server kept"* ]]
	wait_for 15 '[ "$(node_state n1)" = DOWN ]'
	run "$BERTH_BIN" task logs alice/devel/crashy/0
	echo "$output"
	[ "$status" -eq 0 ]
	[[ "$output" == *"dying because the answer is 41"* ]]
	[[ "$output" == *"started 0"* ]]
	[[ "$output" == *"log tail the server kept"*FAILED* ]]
	# --stderr: only that stream.
	run "$BERTH_BIN" task logs alice/devel/crashy/0 --stderr
	[[ "$output" == *"dying because"* ]]
	[[ "$output" != *"started 0"* ]]
	# The kept tail is durable: a restarted server still has it.
	stop_pids "$SERVER_PID"
	start_server
	run "$BERTH_BIN" task logs alice/devel/crashy/0
	echo "$output"
	[[ "$output" == *"dying because the answer is 41"* ]]
	# Instance 1 was LOST with the node, not FAILED or KILLED: no tail.
	run "$BERTH_BIN" job logs alice/devel/crashy
	echo "$output"
	[[ "$output" == *"0| dying because the answer is 41"* ]]
	[[ "$output" == *"alice/devel/crashy/1"* ]]
	# The API names the kept tail's task.
	run api_curl -s "$BERTH_ADDR/v1/tasks/alice/devel/crashy/0/logs?kept=1"
	[[ "$output" == *'"kept": true'* || "$output" == *'"kept":true'* ]]
	# The job's deletion forgets its tails.
	"$BERTH_BIN" job kill alice/devel/crashy >/dev/null || true
}

@test "job logs --follow prints new lines of every running instance" {
	start_up
	f=$(spec <<'EOF'
job: alice/devel/ticker
instances: 2
task:
  command: ["/bin/sh", "-c", "i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.2; done"]
  resources: {cpu: 0.01, memory: 32MiB}
EOF
)
	"$BERTH_BIN" job run "$f" >/dev/null
	out=$(mktemp)
	"$BERTH_BIN" job logs alice/devel/ticker --follow >"$out" 2>&1 3>&- &
	fpid=$!
	wait_for 20 'grep -q "^0| tick 5" "$out" && grep -q "^1| tick 5" "$out"'
	stop_pids "$fpid"
	! grep -v '^[01]| tick [0-9]*$' "$out" || false
	rm -f "$out"
}

@test "task exec into a docker task: its hostname, stdin, a TTY and the exit status" {
	dockerd_start || skip "${DOCKERD_SKIP:-dockerd cannot start}"
	BERTH_UP_FLAGS="--docker-socket $DOCKER_SOCK" start_up
	f=$(spec <<EOF
job: alice/devel/dbox
task:
  driver: docker
  image: $DOCKER_IMAGE
  command: ["/bin/sh", "-c", "exec sleep 1000"]
  resources: {cpu: 0.01, memory: 64MiB}
  stop_grace: 1s # its sleep is pid 1: deaf to SIGTERM
EOF
)
	"$BERTH_BIN" job run "$f" >/dev/null
	wait_for 60 '[ "$(running_count alice/devel/dbox)" = 1 ]'
	run "$BERTH_BIN" task exec alice/devel/dbox/0 -- hostname
	[ "$status" -eq 0 ]
	[ "$output" = "$("$BERTH_BIN" job status alice/devel/dbox --json | jget 'd["tasks"][0]["id"]')" ]
	run "$BERTH_BIN" task exec alice/devel/dbox/0 -- sh -c 'echo err >&2; exit 3'
	[ "$status" -eq 3 ]
	[ "$output" = err ]
	run sh -c "printf 'a\nb\nc\n' | '$BERTH_BIN' task exec -i alice/devel/dbox/0 -- wc -l"
	echo "$output"
	[ "$status" -eq 0 ]
	[ "$(echo "$output" | tr -d ' ')" = 3 ]
	run pty_exec alice/devel/dbox/0 sh -c 'tty; stty size; read x; echo got:$x; exit 4'
	echo "$output"
	[[ "$output" == *"/dev/pts/"* ]]
	[[ "$output" == *"33 101"* ]]
	[[ "$output" == *"got:hello"* ]]
	[[ "$output" == *"exit=4"* ]]
}

@test "task exec into an oci task: the image's files, stdin, a TTY and the exit status" {
	command -v runc >/dev/null || skip "runc is not installed"
	# The image layout oci.bats builds (busybox, users root/app/nobody).
	eval "$(sed -n '/^make_layout() {/,/^}/p' "$BATS_TEST_DIRNAME/oci.bats")"
	IMG=$(mktemp -d /tmp/berth-oci-layout.XXXXXX)
	make_layout "$IMG" v1
	start_up
	f=$(spec <<EOF2
job: alice/devel/obox
task:
  driver: oci
  image: $IMG:v1
  command: ["/bin/sleep", "1000"]
  resources: {cpu: 0.01, memory: 32MiB}
  stop_grace: 1s # its sleep is pid 1: deaf to SIGTERM
EOF2
)
	"$BERTH_BIN" job run "$f" >/dev/null
	wait_for 30 '[ "$(running_count alice/devel/obox)" = 1 ]'
	# The image's files, not the host's.
	run "$BERTH_BIN" task exec alice/devel/obox/0 -- cat /etc/os-release-of-image-marker
	[ "$status" -eq 0 ]
	[ "$output" = "berth test image v1" ]
	run "$BERTH_BIN" task exec alice/devel/obox/0 -- sh -c 'exit 3'
	[ "$status" -eq 3 ]
	run sh -c "printf 'a\\nb\\n' | '$BERTH_BIN' task exec -i alice/devel/obox/0 -- wc -l"
	[ "$status" -eq 0 ]
	[ "$(echo "$output" | tr -d ' ')" = 2 ]
	run pty_exec alice/devel/obox/0 sh -c 'tty; stty size; read x; echo got:$x; exit 4'
	echo "$output"
	rm -rf "$IMG"
	[[ "$output" == *"/dev/pts/"* ]]
	[[ "$output" == *"33 101"* ]]
	[[ "$output" == *"got:hello"* ]]
	[[ "$output" == *"exit=4"* ]]
}
