# A private dockerd for the end-to-end tests of the docker driver, as
# tests/unit/test_docker.c starts one: its own data root, exec root, pidfile
# and socket under one mktemp dir, no iptables, no bridge, and a busybox image
# built here from Debian's busybox-static and imported through the API, so no
# network is needed.
#
#   dockerd_start      sets DOCKERD_DIR, DOCKER_SOCK, DOCKERD_PID, DOCKER_IMAGE
#                      and returns 0; or sets DOCKERD_SKIP to the reason (with
#                      the daemon's log tail) and returns 1.
#   dockerd_stop       removes every container, stops the daemon (and what it
#                      started), unmounts and removes DOCKERD_DIR.
#   dapi METHOD PATH   one Engine API call (curl --unix-socket); body on stdout.
#   berth_containers   the containers labelled berth.task[=$1], as JSON.
#   dockerd_remove_berth_containers   force-removes them all.
#   dockerd_sweep_stale  removes the dirs of killed runs (called by _start).

DOCKER_IMAGE=berth-e2e/busybox:1

dockerd_bin() {
	local p
	for p in /usr/sbin/dockerd /usr/bin/dockerd /usr/local/sbin/dockerd /usr/local/bin/dockerd; do
		if [ -x "$p" ]; then
			echo "$p"
			return 0
		fi
	done
	return 1
}

dapi() {
	local method=$1 path=$2
	shift 2
	curl -sS --max-time 60 --unix-socket "$DOCKER_SOCK" -X "$method" "$@" "http://docker/v1.41$path"
}

# Docker's label filter for $1 ("berth.task" or "berth.task=ID"), URL-encoded.
label_filter() {
	python3 -c 'import json,sys,urllib.parse; print(urllib.parse.quote(json.dumps({"label":[sys.argv[1]]})))' "$1"
}

berth_containers() {
	local label=berth.task
	[ -n "${1:-}" ] && label="berth.task=$1"
	dapi GET "/containers/json?all=1&filters=$(label_filter "$label")"
}

dockerd_remove_berth_containers() {
	[ -S "${DOCKER_SOCK:-}" ] || return 0
	local ids id
	ids=$(berth_containers 2>/dev/null | python3 -c 'import json,sys
try:
    for c in json.load(sys.stdin): print(c["Id"])
except Exception: pass') || true
	for id in $ids; do
		dapi DELETE "/containers/$id?force=1&v=1" >/dev/null 2>&1 || true
	done
}

dockerd_log_tail() {
	tail -n "${1:-20}" "$DOCKERD_DIR/dockerd.log" 2>/dev/null || true
}

# Dirs of earlier runs that were killed midway (no live dockerd, older than
# 10 minutes: a run starting right now has no pidfile yet).
dockerd_sweep_stale() {
	local d pid
	for d in /tmp/berth-e2e-dockerd.*; do
		[ -d "$d" ] || continue
		pid=$(cat "$d/docker.pid" 2>/dev/null) || pid=
		if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then continue; fi
		[ -n "$(find "$d" -maxdepth 0 -mmin +10)" ] && remove_tree "$d"
	done
	return 0
}

dockerd_start() {
	DOCKERD_SKIP=
	if [ "$(id -u)" != 0 ]; then
		DOCKERD_SKIP="dockerd needs root"
		return 1
	fi
	local bin
	if ! bin=$(dockerd_bin); then
		DOCKERD_SKIP="dockerd is not installed (Debian package docker.io)"
		return 1
	fi
	if [ ! -x /bin/busybox ]; then
		DOCKERD_SKIP="/bin/busybox is missing (Debian package busybox-static)"
		return 1
	fi
	dockerd_sweep_stale
	DOCKERD_DIR=$(mktemp -d /tmp/berth-e2e-dockerd.XXXXXX)
	DOCKER_SOCK=$DOCKERD_DIR/docker.sock
	# fd 3 closed: bats waits for whoever holds it.
	"$bin" --iptables=false --ip-masq=false --bridge=none \
		--data-root "$DOCKERD_DIR/data" --exec-root "$DOCKERD_DIR/exec" \
		--pidfile "$DOCKERD_DIR/docker.pid" -H "unix://$DOCKER_SOCK" \
		>"$DOCKERD_DIR/dockerd.log" 2>&1 3>&- </dev/null &
	DOCKERD_PID=$!
	local up=
	for _ in $(seq 1 300); do # 30 s
		if ! kill -0 "$DOCKERD_PID" 2>/dev/null; then
			break
		fi
		if [ "$(curl -sS --max-time 2 --unix-socket "$DOCKER_SOCK" http://docker/_ping 2>/dev/null)" = OK ]; then
			up=1
			break
		fi
		sleep 0.1
	done
	if [ -z "$up" ]; then
		# One line: a TAP skip reason cannot span lines.
		DOCKERD_SKIP="dockerd did not start; its log ends: $(dockerd_log_tail 5 |
			tr -s '\n\t' '  ' | tail -c 1500)"
		return 1
	fi
	# The image: busybox and every applet it has, imported as a rootfs tar.
	local root=$DOCKERD_DIR/rootfs a out
	mkdir -p "$root/bin" "$root/etc" "$root/tmp" "$root/proc" "$root/sys" "$root/dev"
	cp /bin/busybox "$root/bin/busybox"
	for a in $(/bin/busybox --list); do
		[ "$a" = busybox ] || ln -sf busybox "$root/bin/$a"
	done
	printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >"$root/etc/passwd"
	printf 'root:x:0:\nnogroup:x:65534:\n' >"$root/etc/group"
	chmod 1777 "$root/tmp"
	tar -C "$root" --numeric-owner --owner=0 --group=0 -cf "$DOCKERD_DIR/rootfs.tar" .
	out=$(dapi POST "/images/create?fromSrc=-&repo=${DOCKER_IMAGE%:*}&tag=${DOCKER_IMAGE##*:}" \
		-H 'Content-Type: application/x-tar' --data-binary @"$DOCKERD_DIR/rootfs.tar" 2>&1)
	if ! dapi GET "/images/$DOCKER_IMAGE/json" -f >/dev/null 2>&1; then
		DOCKERD_SKIP="cannot load the test image into dockerd: $(echo "$out" | tr -s '\n\t' '  ' | tail -c 1500)"
		return 1
	fi
	return 0
}

# Unmount whatever dockerd left mounted under $1 (deepest first), then rm -rf.
remove_tree() {
	local root=$1 mp
	for _ in $(seq 1 64); do
		mp=$(awk -v r="$root" '$2 == r || index($2, r "/") == 1 { print length($2), $2 }' /proc/self/mounts |
			sort -rn | head -1 | cut -d' ' -f2-)
		[ -n "$mp" ] || break
		umount -l "$mp" 2>/dev/null || break
	done
	rm -rf "$root"
}

dockerd_stop() {
	dockerd_remove_berth_containers
	if [ -n "${DOCKERD_PID:-}" ]; then
		kill -TERM "$DOCKERD_PID" 2>/dev/null || true
		for _ in $(seq 1 300); do # 15 s
			kill -0 "$DOCKERD_PID" 2>/dev/null || break
			sleep 0.05
		done
		kill -KILL "$DOCKERD_PID" 2>/dev/null || true
		wait "$DOCKERD_PID" 2>/dev/null || true
		DOCKERD_PID=
	fi
	if [ -n "${DOCKERD_DIR:-}" ] && [ -d "$DOCKERD_DIR" ]; then
		# What the daemon started and left behind (its containerd, shims):
		# only processes whose command line names this run's dir.
		local p cmd
		for p in /proc/[0-9]*; do
			cmd=$(tr '\0' ' ' 2>/dev/null <"$p/cmdline") || continue
			case "$cmd" in
			*"$DOCKERD_DIR"*) kill -KILL "${p#/proc/}" 2>/dev/null || true ;;
			esac
		done
		remove_tree "$DOCKERD_DIR"
		DOCKERD_DIR=
	fi
}
