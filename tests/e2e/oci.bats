#!/usr/bin/env bats
# The oci driver: images from OCI layouts and from a registry, run by runc.
# The test image is built here, by hand, from Debian's busybox-static: one
# gzip layer (busybox, its applet links, a marker file, passwd/group) and
# an optional second layer that deletes a file with a whiteout.

load helpers

# make_layout DIR TAG [memhog]: an OCI image layout with one image tagged TAG.
make_layout() {
	local dir=$1 tag=$2 with_hog=${3:-} w
	w=$(mktemp -d /tmp/berth-img.XXXXXX)
	mkdir -p "$w/rootfs/bin" "$w/rootfs/etc" "$w/rootfs/tmp" "$w/rootfs/home/app" \
		"$w/rootfs/proc" "$w/rootfs/sys" "$w/rootfs/dev" "$w/rootfs/gone"
	cp /bin/busybox "$w/rootfs/bin/busybox"
	for a in $(/bin/busybox --list); do
		[ "$a" = busybox ] || ln -s busybox "$w/rootfs/bin/$a"
	done
	echo "berth test image $tag" >"$w/rootfs/etc/os-release-of-image-marker"
	echo "this file is deleted by layer 2" >"$w/rootfs/gone/file"
	printf 'root:x:0:0:root:/root:/bin/sh\napp:x:1234:1234:app:/home/app:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' \
		>"$w/rootfs/etc/passwd"
	printf 'root:x:0:\napp:x:1234:\nextra:x:4321:app\nnogroup:x:65534:\n' >"$w/rootfs/etc/group"
	chmod 1777 "$w/rootfs/tmp"
	if [ -n "$with_hog" ]; then cp "$BERTH_TOOLS/memhog" "$w/rootfs/bin/memhog"; fi
	mkdir -p "$dir/blobs/sha256"
	# layer 1: the root filesystem
	tar -C "$w/rootfs" --numeric-owner --owner=0 --group=0 -cf "$w/l1.tar" .
	# layer 2: a whiteout for /gone/file and a new file
	mkdir -p "$w/l2/gone" "$w/l2/etc"
	: >"$w/l2/gone/.wh.file"
	echo layer2 >"$w/l2/etc/layer2"
	tar -C "$w/l2" --numeric-owner --owner=0 --group=0 -cf "$w/l2.tar" .
	local layers="" diffids="" n
	for n in 1 2; do
		local did dg size
		did=$(sha256sum "$w/l$n.tar" | cut -d' ' -f1)
		gzip -n -c "$w/l$n.tar" >"$w/l$n.tgz"
		dg=$(sha256sum "$w/l$n.tgz" | cut -d' ' -f1)
		size=$(stat -c %s "$w/l$n.tgz")
		cp "$w/l$n.tgz" "$dir/blobs/sha256/$dg"
		layers="$layers${layers:+,}{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar+gzip\",\"digest\":\"sha256:$dg\",\"size\":$size}"
		diffids="$diffids${diffids:+,}\"sha256:$did\""
	done
	printf '{"architecture":"amd64","os":"linux","config":{"Env":["PATH=/bin","IMAGE_VAR=from-image"],"Cmd":["/bin/sh","-c","echo default command"],"WorkingDir":"/home/app"},"rootfs":{"type":"layers","diff_ids":[%s]}}' \
		"$diffids" >"$w/config.json"
	local cdg csize
	cdg=$(sha256sum "$w/config.json" | cut -d' ' -f1)
	csize=$(stat -c %s "$w/config.json")
	cp "$w/config.json" "$dir/blobs/sha256/$cdg"
	printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%s},"layers":[%s]}' \
		"$cdg" "$csize" "$layers" >"$w/manifest.json"
	local mdg msize
	mdg=$(sha256sum "$w/manifest.json" | cut -d' ' -f1)
	msize=$(stat -c %s "$w/manifest.json")
	cp "$w/manifest.json" "$dir/blobs/sha256/$mdg"
	echo '{"imageLayoutVersion":"1.0.0"}' >"$dir/oci-layout"
	printf '{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%s,"annotations":{"org.opencontainers.image.ref.name":"%s"}}]}' \
		"$mdg" "$msize" "$tag" >"$dir/index.json"
	echo "sha256:$mdg" >"$dir/.manifest-digest"
	rm -rf "$w"
}

need_runc() {
	command -v "${BERTH_OCI_RUNTIME:-runc}" >/dev/null || skip "runc is not installed"
}

setup() {
	require_root
	need_runc
	IMG=$(mktemp -d /tmp/berth-oci-layout.XXXXXX)
	make_layout "$IMG" v1 hog
	start_up
}

teardown() {
	if [ -n "${REG_PID:-}" ]; then
		kill -TERM "$REG_PID" 2>/dev/null || true
		wait "$REG_PID" 2>/dev/null || true
		REG_PID=
	fi
	stop_up
	# Under ASan/UBSan a supervisor's report lands in its own log.
	if grep -l "Sanitizer" "$DATA"/tasks/*/supervisor.log 2>/dev/null; then
		grep -h -A30 "Sanitizer" "$DATA"/tasks/*/supervisor.log >&2
		sanitizer_report=1
	fi
	# Containers a failed test left behind (their supervisors are gone).
	if [ -d "$DATA/runc" ]; then
		for c in $(runc --root "$DATA/runc" list -q 2>/dev/null); do
			runc --root "$DATA/runc" delete --force "$c" >/dev/null 2>&1 || true
		done
	fi
	cleanup_up
	rm -rf "$IMG" "$IMG.tar" "${REG_DIR:-/nonexistent}"
	[ -z "${sanitizer_report:-}" ]
}

# The sandbox of a job's first task (it stays after the job is killed).
sandbox_of() {
	echo "$DATA/tasks/$(status_json "$1" | jget 'd["tasks"][0]["id"]')"
}

@test "an oci task runs in the image's root filesystem, not the host's" {
	f=$(spec <<EOF
job: alice/devel/look
type: batch
task:
  driver: oci
  image: $IMG:v1
  command: ["/bin/sh", "-c", "cat /etc/os-release-of-image-marker; ls /; if [ -e /etc/debian_version ]; then echo host-files; fi; ls /gone; cat /etc/layer2; echo \$IMAGE_VAR \$GREETING; pwd; id -u; hostname; unshare -U true 2>/dev/null && echo userns || echo no-userns"]
  env: {GREETING: hello}
  resources: {cpu: 0.5, memory: 64MiB}
EOF
)
	run "$BERTH_BIN" job run "$f"
	echo "$output"
	[ "$status" -eq 0 ]
	run "$BERTH_BIN" task logs alice/devel/look/0
	echo "$output"
	[ "$status" -eq 0 ]
	echo "$output" | grep -qx "berth test image v1"
	! echo "$output" | grep -q host-files || false
	echo "$output" | grep -qx "layer2"           # the second layer is there
	! echo "$output" | grep -qx "file" || false           # and its whiteout hid /gone/file
	echo "$output" | grep -qx "from-image hello" # image env + task env
	echo "$output" | grep -qx "/home/app"        # the image's WorkingDir
	echo "$output" | grep -qx "0"
	# the allowlist seccomp profile: no unshare, though root may make a
	# user namespace without any capability
	echo "$output" | grep -qx "no-userns"
}

@test "an oci service: host pid, namespaces and limits; a graceful stop; one unpack for two tasks" {
	f=$(spec <<EOF
job: alice/devel/svc
instances: 2
task:
  driver: oci
  image: $IMG:v1
  command: ["/bin/sh", "-c", "trap 'echo got TERM; exit 0' TERM; echo started; while :; do sleep 0.1; done"]
  resources: {cpu: 0.5, memory: 64MiB}
  stop_grace: 10s
EOF
)
	run "$BERTH_BIN" job run "$f"
	echo "$output"
	[ "$status" -eq 0 ]
	[ "$(running_count alice/devel/svc)" -eq 2 ]
	# Both tasks share one unpacked copy of each layer.
	[ "$(ls "$DATA/images/layers" | wc -l)" -eq 2 ]
	[ "$(ls "$DATA/images/images" | wc -l)" -eq 1 ]
	[ -z "$(ls "$DATA/images/tmp")" ]
	# A later task from the image finds everything in the cache.
	g=$(spec <<EOF
job: alice/devel/again
type: batch
task:
  driver: oci
  image: $IMG:v1
  command: ["/bin/true"]
  resources: {cpu: 0.1, memory: 16MiB}
EOF
)
	"$BERTH_BIN" job run "$g"
	again=$DATA/tasks/$("$BERTH_BIN" job status alice/devel/again --json --all | jget 'd["tasks"][0]["id"]')
	cat "$again/supervisor.log"
	! grep -q 'prepared in' "$again/supervisor.log" || false
	for pid in $(status_json alice/devel/svc | jget '" ".join(str(t["pid"]) for t in d["tasks"])'); do
		kill -0 "$pid"
		# the container's root is the image's
		[ "$(cat /proc/$pid/root/etc/os-release-of-image-marker)" = "berth test image v1" ]
		for ns in pid mnt uts ipc; do
			[ "$(readlink /proc/$pid/ns/$ns)" != "$(readlink /proc/self/ns/$ns)" ]
		done
		# network: bridge (the default): a network namespace of its own.
		[ "$(readlink /proc/$pid/ns/net)" != "$(readlink /proc/self/ns/net)" ]
		nsenter --net=/proc/$pid/ns/net ip -4 -o addr show dev eth0 | grep -q ' 10\.244\.'
		grep -q '^NoNewPrivs:[[:space:]]*1' /proc/$pid/status
		grep -q '^Seccomp:[[:space:]]*2' /proc/$pid/status
		mem=$(cgroup_dir_of "$pid" memory)
		if [ -f "$mem/memory.limit_in_bytes" ]; then
			[ "$(cat "$mem/memory.limit_in_bytes")" -eq $((64 * 1024 * 1024)) ]
		else
			[ "$(cat "$mem/memory.max")" -eq $((64 * 1024 * 1024)) ]
		fi
		case "$mem" in *"/$CGPARENT/"*) ;; *) echo "cgroup $mem not under $CGPARENT"; false ;; esac
		# the cpu limit, set once runc started the container
		cpu=$(cgroup_dir_of "$pid" cpu)
		if [ -f "$cpu/cpu.cfs_quota_us" ]; then
			[ "$(cat "$cpu/cpu.cfs_quota_us")" -eq 50000 ]
			[ "$(cat "$cpu/cpu.cfs_period_us")" -eq 100000 ]
		else
			[ "$(cat "$cpu/cpu.max")" = "50000 100000" ]
		fi
	done
	# The overlay is not in the host's mount table (the tasks' network
	# namespaces are: DATA/net/netns/ID, docs/networking.md).
	! grep "$DATA" /proc/self/mountinfo | grep -v " $DATA/net/netns/" | grep -q . || false
	sb=$(sandbox_of alice/devel/svc)
	pid=$(status_json alice/devel/svc | jget 'd["tasks"][0]["pid"]')
	start=$(date +%s%N)
	"$BERTH_BIN" job kill alice/devel/svc
	wait_for 15 '[ "$(jget "d[\"phase\"]" <"$sb/status.json")" = exited ]'
	elapsed_ms=$(( ($(date +%s%N) - start) / 1000000 ))
	echo "stop took ${elapsed_ms}ms"
	[ "$elapsed_ms" -lt 8000 ] # SIGTERM did it, not the SIGKILL after the grace
	grep -qx "got TERM" "$sb/stdout"
	grep -q '"killed by berth (SIGTERM)"' "$sb/status.json"
	! kill -0 "$pid" 2>/dev/null || false
	# runc's state is gone, and so is the task's writable layer
	wait_for 10 '[ -z "$(ls "$DATA/runc" 2>/dev/null)" ]'
	[ ! -e "$sb/bundle/upper" ]
}

@test "an oci task's command health check runs in its container, as its user: a write to / stays in the container" {
	rm -f /berth-e2e-escape
	f=$(spec <<EOF
job: alice/devel/ocicheck
task:
  driver: oci
  image: $IMG:v1
  command: ["/bin/sh", "-c", "exec sleep 300"]
  resources: {cpu: 0.1, memory: 32MiB}
  stop_grace: 1s # its sleep is pid 1: deaf to SIGTERM
  health: {command: "test -f /etc/os-release-of-image-marker && test \$(id -u) = 0 && touch /berth-e2e-escape", interval: 200ms, timeout: 3s, initial_delay: 0s, failures: 3}
EOF
)
	run "$BERTH_BIN" job run "$f"
	echo "$output"
	[ "$status" -eq 0 ]
	[ "$(running_count alice/devel/ocicheck)" -eq 1 ]
	pid=$(status_json alice/devel/ocicheck | jget 'd["tasks"][0]["pid"]')
	[ -e "/proc/$pid/root/berth-e2e-escape" ] # in the container's root
	[ ! -e /berth-e2e-escape ]                # not the host's
	# With a user, the check is that user (the container's process.user).
	g=$(spec <<EOF
job: alice/devel/ocicheckuser
task:
  driver: oci
  image: $IMG:v1
  command: ["/bin/sh", "-c", "exec sleep 300"]
  user: app
  resources: {cpu: 0.1, memory: 32MiB}
  stop_grace: 1s # its sleep is pid 1: deaf to SIGTERM
  health: {command: "test \$(id -u) = 1234", interval: 200ms, timeout: 3s, initial_delay: 0s, failures: 3}
EOF
)
	run "$BERTH_BIN" job run "$g"
	echo "$output"
	[ "$status" -eq 0 ]
	[ "$(running_count alice/devel/ocicheckuser)" -eq 1 ]
}

@test "an oci task's command health check killed at its timeout leaves nothing running in the container" {
	f=$(spec <<EOF
job: alice/devel/ocislowcheck
task:
  driver: oci
  image: $IMG:v1
  command: ["sleep", "300"]
  resources: {cpu: 0.1, memory: 32MiB}
  stop_grace: 1s # its sleep is pid 1: deaf to SIGTERM
  health: {command: "sleep 30", interval: 600ms, timeout: 300ms, initial_delay: 0s, failures: 1000}
EOF
)
	"$BERTH_BIN" job run --detach "$f"
	wait_for 20 '[ "$(status_json alice/devel/ocislowcheck | jget "d[\"tasks\"][0][\"pid\"]")" -gt 0 ]'
	pid=$(status_json alice/devel/ocislowcheck | jget 'd["tasks"][0]["pid"]')
	sleep 4 # several checks started and timed out
	procs=$(cgroup_dir_of "$pid" pids)/cgroup.procs
	for p in $(cat "$procs"); do echo "$p: $(tr '\0' ' ' </proc/$p/cmdline)"; done
	[ "$(wc -l <"$procs")" -le 2 ] # the program, and at most the check in flight
	[ "$(wc -l <"$procs")" -ge 1 ]
	[ "$(status_json alice/devel/ocislowcheck | jget 'd["tasks"][0]["state"]')" = STARTING ]
}

@test "an oci task over its memory limit fails with the limit in its message" {
	f=$(spec <<EOF
job: alice/devel/hog
type: batch
max_task_failures: 1
task:
  driver: oci
  image: $IMG:v1
  command: ["/bin/memhog", "512"]
  resources: {cpu: 0.5, memory: 32MiB}
EOF
)
	run "$BERTH_BIN" job run "$f"
	[ "$status" -ne 0 ]
	run "$BERTH_BIN" job status alice/devel/hog --json --all
	echo "$output"
	echo "$output" | grep -q '"FAILED"'
	echo "$output" | grep -q 'memory limit 32 MiB exceeded'
}

# fails_with JOB IMAGE TEXT: a batch task from IMAGE fails, its message has TEXT.
fails_with() {
	local f
	f=$(spec <<EOF
job: $1
type: batch
max_task_failures: 1
task:
  driver: oci
  image: $2
  command: ["/bin/true"]
  resources: {cpu: 0.1, memory: 16MiB}
EOF
)
	run "$BERTH_BIN" job run "$f"
	echo "job run: $output"
	[ "$status" -ne 0 ]
	run "$BERTH_BIN" job status "$1" --json --all
	echo "$output"
	echo "$output" | grep -q '"FAILED"'
	echo "$output" | grep -qF -- "$3"
}

@test "a missing image, a missing tag or a wrong digest fails the task with a message naming it" {
	fails_with alice/devel/nodir /tmp/no-such-layout-here "image '/tmp/no-such-layout-here' not found"
	fails_with alice/devel/notag "$IMG:v7" "no image tagged 'v7'"
	# Corrupt the top layer: its bytes no longer match its digest.
	m=$(cat "$IMG/.manifest-digest")
	layer=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["layers"][1]["digest"])' \
		"$IMG/blobs/sha256/${m#sha256:}")
	printf 'garbage' >"$IMG/blobs/sha256/${layer#sha256:}"
	fails_with alice/devel/baddigest "$IMG:v1" "digest mismatch"
	fails_with alice/devel/baddigest2 "$IMG:v1" "$layer"
	# nothing of the bad layer reached the cache
	[ "$(ls "$DATA/images/layers" | wc -l)" -eq 1 ]
}

@test "an image pushed to a registry on loopback runs from host:port/name:tag" {
	command -v docker-registry >/dev/null || skip "docker-registry is not installed"
	command -v skopeo >/dev/null || skip "skopeo is not installed"
	REG_DIR=$(mktemp -d /tmp/berth-registry.XXXXXX)
	rport=$(free_port)
	cat >"$REG_DIR/config.yml" <<EOF
version: 0.1
log: {level: error}
storage: {filesystem: {rootdirectory: $REG_DIR/data}}
http: {addr: 127.0.0.1:$rport}
EOF
	docker-registry serve "$REG_DIR/config.yml" >"$REG_DIR/log" 2>&1 &
	REG_PID=$!
	wait_for 20 'curl -fsS "http://127.0.0.1:$rport/v2/" >/dev/null 2>&1'
	skopeo copy --quiet --dest-tls-verify=false "oci:$IMG:v1" "docker://127.0.0.1:$rport/test/busybox:1"
	f=$(spec <<EOF
job: alice/devel/pulled
type: batch
instances: 2
task:
  driver: oci
  image: 127.0.0.1:$rport/test/busybox:1
  command: ["/bin/sh", "-c", "cat /etc/os-release-of-image-marker"]
  resources: {cpu: 0.1, memory: 32MiB}
EOF
)
	run "$BERTH_BIN" job run "$f"
	echo "$output"
	[ "$status" -eq 0 ]
	run "$BERTH_BIN" task logs alice/devel/pulled/1
	[ "$output" = "berth test image v1" ]
	# the cache holds verified blobs, named by their digest
	for b in "$DATA"/images/blobs/sha256/*; do
		[ "$(sha256sum "$b" | cut -d' ' -f1)" = "$(basename "$b")" ]
	done
	# by digest too
	digest=$(skopeo inspect --tls-verify=false "docker://127.0.0.1:$rport/test/busybox:1" |
		python3 -c 'import json,sys; print(json.load(sys.stdin)["Digest"])')
	f=$(spec <<EOF
job: alice/devel/bydigest
type: batch
task:
  driver: oci
  image: 127.0.0.1:$rport/test/busybox@$digest
  command: ["/bin/sh", "-c", "echo by digest"]
  resources: {cpu: 0.1, memory: 32MiB}
EOF
)
	run "$BERTH_BIN" job run "$f"
	[ "$status" -eq 0 ]
	fails_with alice/devel/unknown "127.0.0.1:$rport/test/busybox:404" "MANIFEST_UNKNOWN"
	kill -TERM "$REG_PID"
	wait "$REG_PID" 2>/dev/null || true
	REG_PID=
	fails_with alice/devel/unreachable "127.0.0.1:$rport/test/other:1" "cannot reach registry '127.0.0.1:$rport'"
}

@test "an oci-archive made by skopeo runs" {
	command -v skopeo >/dev/null || skip "skopeo is not installed"
	skopeo copy --quiet "oci:$IMG:v1" "oci-archive:$IMG.tar:v1"
	f=$(spec <<EOF
job: alice/devel/archive
type: batch
task:
  driver: oci
  image: $IMG.tar
  command: ["/bin/sh", "-c", "cat /etc/os-release-of-image-marker"]
  resources: {cpu: 0.1, memory: 32MiB}
EOF
)
	run "$BERTH_BIN" job run "$f"
	[ "$status" -eq 0 ]
	run "$BERTH_BIN" task logs alice/devel/archive/0
	[ "$output" = "berth test image v1" ]
}

@test "an oci task outlives a SIGKILL of berth up and is re-adopted: same id, same pid, still stoppable" {
	f=$(spec <<EOF
job: alice/devel/keep
task:
  driver: oci
  image: $IMG:v1
  command: ["/bin/sh", "-c", "trap 'echo got TERM; exit 0' TERM; while :; do sleep 0.1; done"]
  resources: {cpu: 0.1, memory: 32MiB}
  stop_grace: 10s
EOF
)
	"$BERTH_BIN" job run "$f"
	id=$(status_json alice/devel/keep | jget 'd["tasks"][0]["id"]')
	pid=$(status_json alice/devel/keep | jget 'd["tasks"][0]["pid"]')
	kill -KILL "$UP_PID"
	wait "$UP_PID" 2>/dev/null || true
	UP_PID=
	kill -0 "$pid" # the container does not depend on the agent
	start_up "$DATA"
	wait_for 10 '[ "$(running_count alice/devel/keep)" -eq 1 ]'
	[ "$(status_json alice/devel/keep | jget 'd["tasks"][0]["id"]')" = "$id" ]
	[ "$(status_json alice/devel/keep | jget 'd["tasks"][0]["pid"]')" = "$pid" ]
	sb="$DATA/tasks/$id"
	"$BERTH_BIN" job kill alice/devel/keep
	wait_for 15 '[ "$(jget "d[\"phase\"]" <"$sb/status.json")" = exited ]'
	grep -qx "got TERM" "$sb/stdout"
	! kill -0 "$pid" 2>/dev/null || false
}

@test "an oci task reads its secret at its path, 0400 and its user's; not in config.json; gone when the task ends" {
	value="oci-secret-$RANDOM$RANDOM"
	printf %s "$value" | "$BERTH_BIN" secret create alice/db-pass -
	f=$(spec <<EOF
job: alice/devel/ocisecret
task:
  driver: oci
  image: $IMG:v1
  user: "1234"
  command: ["/bin/sh", "-c", "cat /run/secrets/db-pass; echo; stat -c '%a %u' /run/secrets/db-pass; echo x >/run/secrets/db-pass 2>/dev/null && echo WRITABLE; exec sleep 1000"]
  resources: {cpu: 0.1, memory: 32MiB}
  stop_grace: 1s # its sleep is pid 1: deaf to SIGTERM
  secrets: [{name: db-pass}]
EOF
)
	run "$BERTH_BIN" job run --detach "$f"
	echo "$output"
	[ "$status" -eq 0 ]
	wait_for 30 '"$BERTH_BIN" task logs alice/devel/ocisecret/0 2>/dev/null | grep -q "^400 "'
	run "$BERTH_BIN" task logs alice/devel/ocisecret/0
	echo "$output"
	[ "${lines[0]}" = "$value" ]
	[ "${lines[1]}" = "400 1234" ]
	! echo "$output" | grep -q WRITABLE
	sandbox=$(sandbox_of alice/devel/ocisecret)
	grep -q " $sandbox/secrets tmpfs " /proc/mounts
	! grep -rqF "$value" "$sandbox/launch.json" "$sandbox"/bundle/config.json
	# config.json holds the task's env: root's alone.
	[ "$(stat -c %a "$sandbox/bundle/config.json")" = 600 ]
	[ "$(stat -c %a "$sandbox")" = 700 ]
	! status_json alice/devel/ocisecret | grep -qF "$value"
	"$BERTH_BIN" job kill alice/devel/ocisecret
	wait_for 20 '! grep -q " $sandbox/secrets " /proc/mounts'
}
