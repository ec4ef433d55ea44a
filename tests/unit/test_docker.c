/* test_docker.c - the docker driver against a real dockerd.
 *
 * main() starts one dockerd (Debian's docker.io) for the whole file, with
 * its own data root, exec root and socket under /tmp, no iptables and no
 * bridge, and loads an image built here from busybox-static (a tar with
 * /bin/busybox and a few links, imported), so no network is needed. Tests
 * that need the daemon SKIP with the reason (and the daemon's log) when it
 * cannot start. The daemon is stopped and its dirs removed at the end. */
#include <curl/curl.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <time.h>

#include "agent/driver/docker.h"
#include "unit.h"

#define IMAGE "berth-test/busybox:1"

static char dir[64];
static char sock[128];
static pid_t dockerd_pid;
static char skip_reason[2048];

/* ---- without a daemon ---- */

struct collect {
	struct sbuf out, err;
	pid_t pid;
	char container[80];
	int64_t running_at;
	int64_t stop_after_ms; /* > 0: ask for a stop this long after running */
	int64_t stop_asked_at;
	size_t found_while_running;
	const char *task_id;
};

static void collect_output(void *ud, int stream, const char *data, size_t len)
{
	struct collect *c = ud;
	sbuf_add(stream == 2 ? &c->err : &c->out, data, len);
}

TEST(demux_frames_split_anywhere)
{
	/* stdout "hello\n", stderr "oops", an empty frame, stdout "x" */
	static const char stream[] = "\x01\0\0\0\0\0\0\x06hello\n"
				     "\x02\0\0\0\0\0\0\x04oops"
				     "\x01\0\0\0\0\0\0\0"
				     "\x01\0\0\0\0\0\0\x01x";
	size_t len = sizeof stream - 1;
	for (size_t cut = 0; cut <= len; cut++) {
		struct collect c = {0};
		sbuf_init(&c.out);
		sbuf_init(&c.err);
		struct docker_demux d = {0};
		docker_demux_feed(&d, stream, cut, collect_output, &c);
		/* and the rest byte by byte */
		for (size_t i = cut; i < len; i++)
			docker_demux_feed(&d, stream + i, 1, collect_output, &c);
		CHECK_STR(c.out.buf, "hello\nx");
		CHECK_STR(c.err.buf, "oops");
		CHECK(d.left == 0 && d.have == 0);
		sbuf_release(&c.out);
		sbuf_release(&c.err);
	}
}

TEST(create_config_maps_the_spec)
{
	char *argv[] = {"/bin/sh", "-c", "echo hi"};
	char *env[] = {"GREETING=hi", "BERTH_TASK_ID=forged", "junk"};
	struct docker_port ports[] = {{"http", 31000}, {"admin", 31001}};
	struct docker_spec s = {
	    .task_id = "alice-devel-web-0-0123abcd",
	    .job_key = "alice/devel/web",
	    .instance = 2,
	    .image = "busybox:1.36",
	    .argv = argv,
	    .argc = 3,
	    .env = env,
	    .nenv = 3,
	    .user = "nobody",
	    .workdir = "/srv",
	    .cpu = 0.5,
	    .memory_bytes = 64 << 20,
	    .pids_limit = 100,
	    .ports = ports,
	    .nports = 2,
	};
	json_t *c = docker_create_config(&s);
	json_t *hc = json_object_get(c, "HostConfig");
	CHECK_STR(json_string_value(json_object_get(c, "Image")), "busybox:1.36");
	CHECK_STR(json_string_value(json_array_get(json_object_get(c, "Entrypoint"), 0)),
		  "/bin/sh");
	CHECK(json_array_size(json_object_get(c, "Cmd")) == 2);
	CHECK_STR(json_string_value(json_array_get(json_object_get(c, "Cmd"), 1)), "echo hi");
	json_t *e = json_object_get(c, "Env");
	CHECK(json_array_size(e) == 2);
	CHECK_STR(json_string_value(json_array_get(e, 0)), "GREETING=hi");
	CHECK_STR(json_string_value(json_array_get(e, 1)),
		  "BERTH_TASK_ID=alice-devel-web-0-0123abcd");
	CHECK_STR(json_string_value(json_object_get(c, "User")), "nobody");
	CHECK_STR(json_string_value(json_object_get(c, "WorkingDir")), "/srv");
	CHECK_STR(json_string_value(json_object_get(c, "Hostname")), "alice-devel-web-0-0123abcd");
	json_t *l = json_object_get(c, "Labels");
	CHECK_STR(json_string_value(json_object_get(l, "berth.task")),
		  "alice-devel-web-0-0123abcd");
	CHECK_STR(json_string_value(json_object_get(l, "berth.job")), "alice/devel/web");
	CHECK_STR(json_string_value(json_object_get(l, "berth.instance")), "2");
	CHECK(json_integer_value(json_object_get(hc, "Memory")) == 64 << 20);
	CHECK(json_integer_value(json_object_get(hc, "MemorySwap")) == 64 << 20);
	CHECK(json_integer_value(json_object_get(hc, "NanoCpus")) == 500000000);
	CHECK(json_integer_value(json_object_get(hc, "PidsLimit")) == 100);
	CHECK(json_is_true(json_object_get(hc, "Init")));
	CHECK(json_is_false(json_object_get(hc, "AutoRemove")));
	CHECK_STR(json_string_value(json_array_get(json_object_get(hc, "SecurityOpt"), 0)),
		  "no-new-privileges");
	CHECK_STR(json_string_value(json_object_get(json_object_get(hc, "LogConfig"), "Type")),
		  "json-file");
	/* host networking by default: nothing to publish */
	CHECK_STR(json_string_value(json_object_get(hc, "NetworkMode")), "host");
	CHECK(json_object_get(hc, "PortBindings") == NULL);
	CHECK(json_object_get(hc, "Binds") == NULL);
	json_decref(c);

	/* volumes: HostConfig.Mounts of Type bind, never Binds strings, so a
	 * path cannot carry bind options */
	const char *vh[] = {"/srv/data", "/srv/out:/etc"}, *vp[] = {"/data", "/out"};
	const bool vro[] = {true, false};
	s.volume_host = vh;
	s.volume_path = vp;
	s.volume_ro = vro;
	s.nvolumes = 2;
	c = docker_create_config(&s);
	hc = json_object_get(c, "HostConfig");
	CHECK(json_object_get(hc, "Binds") == NULL);
	json_t *mounts = json_object_get(hc, "Mounts");
	CHECK(json_array_size(mounts) == 2);
	json_t *m0 = json_array_get(mounts, 0), *m1 = json_array_get(mounts, 1);
	CHECK_STR(json_string_value(json_object_get(m0, "Type")), "bind");
	CHECK_STR(json_string_value(json_object_get(m0, "Source")), "/srv/data");
	CHECK_STR(json_string_value(json_object_get(m0, "Target")), "/data");
	CHECK(json_is_true(json_object_get(m0, "ReadOnly")));
	CHECK_STR(json_string_value(json_object_get(m1, "Source")), "/srv/out:/etc");
	CHECK(json_is_false(json_object_get(m1, "ReadOnly")));
	json_decref(c);
	s.nvolumes = 0;

	/* another network: each named port published host P -> container P */
	s.network = "bridge";
	s.argc = 0; /* the image's own command */
	s.memory_bytes = 0;
	c = docker_create_config(&s);
	hc = json_object_get(c, "HostConfig");
	CHECK(json_object_get(c, "Entrypoint") == NULL && json_object_get(c, "Cmd") == NULL);
	CHECK(json_object_get(hc, "Memory") == NULL);
	CHECK_STR(json_string_value(json_object_get(hc, "NetworkMode")), "bridge");
	json_t *b = json_object_get(json_object_get(hc, "PortBindings"), "31001/tcp");
	CHECK_STR(json_string_value(json_object_get(json_array_get(b, 0), "HostPort")), "31001");
	CHECK(json_object_get(json_object_get(c, "ExposedPorts"), "31000/tcp") != NULL);
	json_decref(c);

	/* berth's task network: "none" (the supervisor attaches the veth), no
	 * port published, the agent's resolv.conf bound read-only */
	s.network = "none";
	s.resolv_conf = "/var/lib/berth/tasks/t1/resolv.conf";
	c = docker_create_config(&s);
	hc = json_object_get(c, "HostConfig");
	CHECK_STR(json_string_value(json_object_get(hc, "NetworkMode")), "none");
	CHECK(json_object_get(hc, "PortBindings") == NULL);
	CHECK(json_object_get(c, "ExposedPorts") == NULL);
	mounts = json_object_get(hc, "Mounts");
	CHECK(json_array_size(mounts) == 1);
	m0 = json_array_get(mounts, 0);
	CHECK_STR(json_string_value(json_object_get(m0, "Source")), s.resolv_conf);
	CHECK_STR(json_string_value(json_object_get(m0, "Target")), "/etc/resolv.conf");
	CHECK(json_is_true(json_object_get(m0, "ReadOnly")));
	json_decref(c);

	char *name = docker_container_name("a b/c:d");
	CHECK_STR(name, "berth-a_b_c_d");
	free(name);
}

TEST(unreachable_socket_is_named)
{
	CHECK(!docker_available("/tmp/berth-no-such-docker.sock"));
	struct berr err = {0};
	CHECK(docker_ping("/tmp/berth-no-such-docker.sock", &err) < 0);
	CHECK_CONTAINS(err.msg,
		       "docker is not reachable at '/tmp/berth-no-such-docker.sock': no such file");
	struct docker_spec s = {
	    .socket = "/tmp/berth-no-such-docker.sock", .task_id = "t", .image = "busybox"};
	struct docker_exit ex;
	CHECK(docker_supervise(&s, NULL, &ex, &err) < 0);
	CHECK_CONTAINS(err.msg, "docker is not reachable");
	CHECK(!ex.started && ex.exit_code == 126);
}

/* ---- with the daemon ---- */

#define NEED_DOCKER()                                                                              \
	do {                                                                                       \
		if (skip_reason[0])                                                                \
			SKIP(skip_reason);                                                         \
	} while (0)

static void on_running(void *ud, const char *id, pid_t pid)
{
	struct collect *c = ud;
	c->pid = pid;
	snprintf(c->container, sizeof c->container, "%s", id);
	c->running_at = time_mono_ms();
	if (c->task_id) {
		char *label = xasprintf("berth.task=%s", c->task_id);
		struct docker_found *f = NULL;
		struct berr err = {0};
		if (docker_find_by_label(sock, label, &f, &c->found_while_running, &err) == 0)
			docker_found_free(f, c->found_while_running);
		free(label);
	}
}

static bool on_stop_requested(void *ud)
{
	struct collect *c = ud;
	if (c->stop_after_ms <= 0 || !c->running_at)
		return false;
	if (time_mono_ms() - c->running_at < c->stop_after_ms)
		return false;
	if (!c->stop_asked_at)
		c->stop_asked_at = time_mono_ms();
	return true;
}

static void on_log(void *ud, const char *msg)
{
	fprintf(stderr, "    [supervise] %s\n", msg);
}

static struct docker_hooks hooks_for(struct collect *c)
{
	sbuf_init(&c->out);
	sbuf_init(&c->err);
	return (struct docker_hooks){.ud = c,
				     .wake_fd = -1,
				     .stop_requested = on_stop_requested,
				     .running = on_running,
				     .output = collect_output,
				     .log = on_log};
}

static void collect_free(struct collect *c)
{
	sbuf_release(&c->out);
	sbuf_release(&c->err);
}

static size_t count_label(const char *task_id)
{
	char *label = xasprintf("berth.task=%s", task_id);
	struct docker_found *f = NULL;
	size_t n = 0;
	struct berr err = {0};
	if (docker_find_by_label(sock, label, &f, &n, &err) < 0) {
		fprintf(stderr, "    %s\n", err.msg);
		n = 999;
	}
	docker_found_free(f, n == 999 ? 0 : n);
	free(label);
	return n;
}

TEST(ping_answers)
{
	NEED_DOCKER();
	CHECK(docker_available(sock));
	struct berr err = {0};
	CHECK(docker_ping(sock, &err) == 0);
}

TEST(runs_a_command_with_logs_and_exit_code)
{
	NEED_DOCKER();
	char *argv[] = {"/bin/sh", "-c",
			"echo out; echo err >&2; echo $GREETING $BERTH_TASK_ID; hostname; id -u; "
			"pwd; i=0; while [ $i -lt 3000 ]; do echo line-$i; i=$((i+1)); done >&2; "
			/* still running when inspected after its start: a pid */
			"sleep 1; exit 3"};
	char *env[] = {"GREETING=hi"};
	struct docker_spec s = {.socket = sock,
				.task_id = "alice-devel-web-0-run1",
				.job_key = "alice/devel/web",
				.image = IMAGE,
				.argv = argv,
				.argc = 3,
				.env = env,
				.nenv = 1,
				.user = "65534",
				.workdir = "/work",
				.cpu = 0.5,
				.memory_bytes = 64 << 20,
				.pids_limit = 64};
	struct collect c = {.task_id = s.task_id};
	struct docker_hooks h = hooks_for(&c);
	struct docker_exit ex;
	struct berr err = {0};
	int rc = docker_supervise(&s, &h, &ex, &err);
	if (rc < 0)
		fprintf(stderr, "    %s\n", err.msg);
	CHECK(rc == 0);
	CHECK(ex.started);
	CHECK(ex.exit_code == 3);
	CHECK(ex.signal == 0 && !ex.oom && !ex.stopped && !ex.killed);
	CHECK(c.pid > 0);
	CHECK(c.found_while_running == 1);
	CHECK_STR(c.out.buf,
		  "out\nhi alice-devel-web-0-run1\nalice-devel-web-0-run1\n65534\n/work\n");
	CHECK(!strncmp(c.err.buf, "err\nline-0\nline-1\n", 18));
	CHECK_CONTAINS(c.err.buf, "\nline-2999\n");
	/* "line-" and "\n", then the digits: 3000 numbers have a first,
	 * 2990 a second, 2900 a third, 2000 a fourth */
	CHECK(c.err.len == 4 + 3000 * 6 + 3000 + 2990 + 2900 + 2000);
	/* removed */
	CHECK(count_label(s.task_id) == 0);
	collect_free(&c);
}

static size_t to_sbuf(char *p, size_t size, size_t nmemb, void *ud)
{
	sbuf_add(ud, p, size * nmemb);
	return size * nmemb;
}

static bool memory_limits_work(void)
{
	/* GET /info: MemoryLimit says whether the daemon can set them. */
	CURL *cu = curl_easy_init();
	struct sbuf sb;
	sbuf_init(&sb);
	curl_easy_setopt(cu, CURLOPT_UNIX_SOCKET_PATH, sock);
	curl_easy_setopt(cu, CURLOPT_URL, "http://docker/info");
	curl_easy_setopt(cu, CURLOPT_WRITEFUNCTION, to_sbuf);
	curl_easy_setopt(cu, CURLOPT_WRITEDATA, &sb);
	bool ok = curl_easy_perform(cu) == CURLE_OK;
	curl_easy_cleanup(cu);
	json_t *j = ok ? json_loads(sb.buf, 0, NULL) : NULL;
	bool lim = json_is_true(json_object_get(j, "MemoryLimit"));
	json_decref(j);
	sbuf_release(&sb);
	return lim;
}

TEST(memory_limit_reports_oom)
{
	NEED_DOCKER();
	if (!memory_limits_work())
		SKIP("this dockerd cannot set memory limits (GET /info MemoryLimit false)");
	char *argv[] = {"/bin/sh", "-c",
			"echo start; x=0123456789abcdef; while true; do x=$x$x; done"};
	struct docker_spec s = {.socket = sock,
				.task_id = "alice-devel-oom-0-a",
				.image = IMAGE,
				.argv = argv,
				.argc = 3,
				.memory_bytes = 16 << 20};
	struct collect c = {0};
	struct docker_hooks h = hooks_for(&c);
	struct docker_exit ex;
	struct berr err = {0};
	int rc = docker_supervise(&s, &h, &ex, &err);
	if (rc < 0)
		fprintf(stderr, "    %s\n", err.msg);
	CHECK(rc == 0);
	CHECK(ex.oom);
	CHECK(ex.exit_code == 137 && ex.signal == 9);
	CHECK_STR(c.out.buf, "start\n");
	CHECK(count_label(s.task_id) == 0);
	collect_free(&c);
}

TEST(stop_kills_after_grace)
{
	NEED_DOCKER();
	/* ignores SIGTERM: SIGKILL after the grace */
	char *argv[] = {"/bin/sh", "-c", "trap '' TERM; echo ready; while true; do sleep 1; done"};
	struct docker_spec s = {.socket = sock,
				.task_id = "alice-devel-stop-0-a",
				.image = IMAGE,
				.argv = argv,
				.argc = 3,
				.stop_grace_ms = 1500};
	struct collect c = {.stop_after_ms = 300};
	struct docker_hooks h = hooks_for(&c);
	struct docker_exit ex;
	struct berr err = {0};
	int rc = docker_supervise(&s, &h, &ex, &err);
	int64_t ended = time_mono_ms();
	if (rc < 0)
		fprintf(stderr, "    %s\n", err.msg);
	CHECK(rc == 0);
	CHECK(ex.started && ex.stopped && ex.killed);
	CHECK(ex.exit_code == 137 && ex.signal == 9);
	CHECK(c.stop_asked_at > 0);
	CHECK(ended - c.stop_asked_at >= 1500);
	CHECK(ended - c.stop_asked_at < 8000);
	CHECK_STR(c.out.buf, "ready\n");
	CHECK(count_label(s.task_id) == 0);
	collect_free(&c);

	/* honours SIGTERM (the init forwards it): ends without the kill */
	char *argv2[] = {"/bin/sh", "-c", "echo ready; exec sleep 100"};
	struct docker_spec s2 = s;
	s2.task_id = "alice-devel-stop-0-b";
	s2.argv = argv2;
	s2.stop_grace_ms = 20000;
	struct collect c2 = {.stop_after_ms = 300};
	h = hooks_for(&c2);
	rc = docker_supervise(&s2, &h, &ex, &err);
	ended = time_mono_ms();
	CHECK(rc == 0);
	CHECK(ex.started && ex.stopped && !ex.killed);
	CHECK(ex.exit_code == 143 && ex.signal == 15);
	CHECK(ended - c2.stop_asked_at < 5000);
	CHECK(count_label(s2.task_id) == 0);
	collect_free(&c2);
}

/* As the supervisor wires it: the wake fd is its signalfd, and
 * stop_requested drains it. A timerfd stands in for the signal. */
struct wake {
	struct collect c;
	int tfd;
	bool armed, fired;
	int64_t fired_at;
};

static void wake_running(void *ud, const char *id, pid_t pid)
{
	struct wake *w = ud;
	on_running(&w->c, id, pid);
	struct itimerspec its = {.it_value = {.tv_nsec = 400 * 1000000L}};
	timerfd_settime(w->tfd, 0, &its, NULL);
	w->armed = true;
}

static bool wake_stop_requested(void *ud)
{
	struct wake *w = ud;
	uint64_t n;
	if (read(w->tfd, &n, sizeof n) == sizeof n && !w->fired) {
		w->fired = true;
		w->fired_at = time_mono_ms();
	}
	return w->fired;
}

static void wake_output(void *ud, int stream, const char *data, size_t len)
{
	struct wake *w = ud;
	collect_output(&w->c, stream, data, len);
}

TEST(stop_wakes_on_the_wake_fd)
{
	NEED_DOCKER();
	char *argv[] = {"/bin/sh", "-c",
			"trap 'echo bye; exit 7' TERM; echo up; "
			"while true; do sleep 0.1; done"};
	struct docker_spec s = {.socket = sock,
				.task_id = "alice-devel-wake-0-a",
				.image = IMAGE,
				.argv = argv,
				.argc = 3,
				.stop_grace_ms = 10000};
	struct wake w = {0};
	sbuf_init(&w.c.out);
	sbuf_init(&w.c.err);
	w.tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
	CHECK(w.tfd >= 0);
	struct docker_hooks h = {.ud = &w,
				 .wake_fd = w.tfd,
				 .stop_requested = wake_stop_requested,
				 .running = wake_running,
				 .output = wake_output,
				 .log = on_log};
	struct docker_exit ex;
	struct berr err = {0};
	CHECK(docker_supervise(&s, &h, &ex, &err) == 0);
	int64_t ended = time_mono_ms();
	CHECK(w.fired);
	CHECK(ex.stopped && !ex.killed && ex.exit_code == 7);
	CHECK_STR(w.c.out.buf, "up\nbye\n");
	/* the stop went out at once, not at the next 1 s poll */
	CHECK(ended - w.fired_at < 900);
	close(w.tfd);
	collect_free(&w.c);
}

TEST(stop_before_start_runs_nothing)
{
	NEED_DOCKER();
	char *argv[] = {"/bin/true"};
	struct docker_spec s = {.socket = sock,
				.task_id = "alice-devel-early-0-a",
				.image = IMAGE,
				.argv = argv,
				.argc = 1};
	struct collect c = {0};
	struct docker_hooks h = hooks_for(&c);
	c.stop_after_ms = 1;
	c.running_at = 1; /* "long ago": the very first check says stop */
	struct docker_exit ex;
	struct berr err = {0};
	CHECK(docker_supervise(&s, &h, &ex, &err) == 0);
	CHECK(!ex.started && ex.stopped && ex.exit_code == 0);
	CHECK(c.container[0] == 0);
	CHECK(count_label(s.task_id) == 0);
	collect_free(&c);
}

TEST(labels_find_and_remove_leaves_nothing)
{
	NEED_DOCKER();
	struct berr err = {0};
	CHECK(docker_pull(sock, IMAGE, &err) == 0); /* present: no registry asked */
	char *argv[] = {"/bin/sh", "-c", "trap 'exit 0' TERM; while true; do sleep 1; done"};
	struct docker_spec s = {.socket = sock,
				.task_id = "alice-devel-lbl-3-a",
				.job_key = "alice/devel/lbl",
				.instance = 3,
				.image = IMAGE,
				.argv = argv,
				.argc = 3};
	char *id = NULL;
	CHECK(docker_create(sock, &s, &id, &err) == 0);
	if (!id) {
		fprintf(stderr, "    %s\n", err.msg);
		return;
	}
	/* a second container for the same task is refused (the name) */
	char *id2 = NULL;
	CHECK(docker_create(sock, &s, &id2, &err) < 0 && err.code == 409);
	CHECK_CONTAINS(err.msg, "docker: cannot create container 'berth-alice-devel-lbl-3-a'");

	struct docker_found *f = NULL;
	size_t n = 0;
	CHECK(docker_find_by_label(sock, "berth.task=alice-devel-lbl-3-a", &f, &n, &err) == 0);
	CHECK(n == 1);
	if (n == 1) {
		CHECK_STR(f[0].id, id);
		CHECK_STR(f[0].task, "alice-devel-lbl-3-a");
		CHECK_STR(f[0].name, "berth-alice-devel-lbl-3-a");
		CHECK_STR(f[0].state, "created");
	}
	docker_found_free(f, n);
	CHECK(docker_find_by_label(sock, "berth.job=alice/devel/lbl", &f, &n, &err) == 0 && n == 1);
	docker_found_free(f, n);
	CHECK(docker_find_by_label(sock, "berth.instance=4", &f, &n, &err) == 0 && n == 0);
	docker_found_free(f, n);

	CHECK(docker_start(sock, id, &err) == 0);
	CHECK(docker_start(sock, id, &err) == 0); /* already started: fine */
	struct docker_state st;
	CHECK(docker_inspect(sock, id, &st, &err) == 0);
	CHECK(st.running && st.pid > 0);
	CHECK_STR(st.status, "running");
	CHECK(docker_stop(sock, id, 5, &err) == 0);
	CHECK(docker_stop(sock, id, 5, &err) == 0); /* already stopped: fine */
	int code = -1;
	CHECK(docker_wait(sock, id, &code, &err) == 0 && code == 0);
	CHECK(docker_inspect(sock, id, &st, &err) == 0);
	CHECK(!st.running && st.exit_code == 0 && !st.oom_killed);
	CHECK(docker_kill(sock, id, SIGKILL, &err) == 0); /* not running: fine */
	CHECK(docker_remove(sock, id, false, &err) == 0);
	CHECK(docker_remove(sock, id, true, &err) == 0); /* gone: fine */
	CHECK(count_label("alice-devel-lbl-3-a") == 0);
	CHECK(docker_inspect(sock, id, &st, &err) < 0);
	CHECK_CONTAINS(err.msg, "docker: cannot inspect container '");
	CHECK_CONTAINS(err.msg, "No such container");
	free(id);
}

TEST(logs_follow_demultiplexes)
{
	NEED_DOCKER();
	char *argv[] = {"/bin/sh", "-c", "echo a; sleep 0.3; echo b >&2; echo c"};
	struct docker_spec s = {.socket = sock,
				.task_id = "alice-devel-logs-0-a",
				.image = IMAGE,
				.argv = argv,
				.argc = 3};
	struct berr err = {0};
	char *id = NULL;
	CHECK(docker_create(sock, &s, &id, &err) == 0 && id);
	if (!id)
		return;
	CHECK(docker_start(sock, id, &err) == 0);
	struct collect c = {0};
	sbuf_init(&c.out);
	sbuf_init(&c.err);
	CHECK(docker_logs_follow(sock, id, collect_output, &c, &err) == 0);
	CHECK_STR(c.out.buf, "a\nc\n");
	CHECK_STR(c.err.buf, "b\n");
	CHECK(docker_remove(sock, id, true, &err) == 0);
	free(id);
	collect_free(&c);
}

TEST(adopts_its_own_container)
{
	NEED_DOCKER();
	/* A container of this task exists (a supervisor before this one made
	 * it): supervise takes it over, does not start a second. */
	char *argv[] = {"/bin/sh", "-c", "echo first; exit 5"};
	struct docker_spec s = {.socket = sock,
				.task_id = "alice-devel-adopt-0-a",
				.image = IMAGE,
				.argv = argv,
				.argc = 3};
	struct berr err = {0};
	char *id = NULL;
	CHECK(docker_create(sock, &s, &id, &err) == 0 && id);
	struct collect c = {.task_id = s.task_id};
	struct docker_hooks h = hooks_for(&c);
	struct docker_exit ex;
	CHECK(docker_supervise(&s, &h, &ex, &err) == 0);
	CHECK(ex.started && ex.exit_code == 5);
	CHECK_STR(ex.container_id, id ? id : "");
	CHECK(c.found_while_running == 1);
	CHECK_STR(c.out.buf, "first\n"); /* created, not started: all its output */
	CHECK(count_label(s.task_id) == 0);
	free(id);
	collect_free(&c);
}

TEST(bad_image_and_command_errors)
{
	NEED_DOCKER();
	struct berr err = {0};
	/* a registry that is not there (loopback, refused: no network) */
	CHECK(docker_pull(sock, "127.0.0.1:1/berth/nope:1", &err) < 0);
	CHECK_CONTAINS(err.msg, "docker: cannot pull '127.0.0.1:1/berth/nope:1': ");
	CHECK_CONTAINS(err.msg, "connection refused");
	CHECK(docker_pull(sock, "Bad Name", &err) < 0);
	CHECK_CONTAINS(err.msg, "docker: cannot ");
	CHECK_CONTAINS(err.msg, "'Bad Name': ");
	CHECK_CONTAINS(err.msg, "invalid reference format");

	char *argv[] = {"/bin/true"};
	struct docker_spec s = {.socket = sock,
				.task_id = "alice-devel-bad-0-a",
				.image = "127.0.0.1:1/berth/nope:1",
				.argv = argv,
				.argc = 1};
	struct collect c = {0};
	struct docker_hooks h = hooks_for(&c);
	struct docker_exit ex;
	CHECK(docker_supervise(&s, &h, &ex, &err) < 0);
	CHECK_CONTAINS(err.msg, "docker: cannot pull '127.0.0.1:1/berth/nope:1': ");
	CHECK(!ex.started && ex.exit_code == 126);
	CHECK(count_label(s.task_id) == 0);
	collect_free(&c);

	/* A program the image does not have. Docker starts the init (tini),
	 * which cannot exec it and exits 127 with the reason on stderr, as
	 * a shell would. */
	char *argv2[] = {"/no/such/program", "x"};
	struct docker_spec s2 = {.socket = sock,
				 .task_id = "alice-devel-bad-0-b",
				 .image = IMAGE,
				 .argv = argv2,
				 .argc = 2};
	struct collect c2 = {0};
	h = hooks_for(&c2);
	CHECK(docker_supervise(&s2, &h, &ex, &err) == 0);
	CHECK(ex.exit_code == 127 && ex.signal == 0);
	CHECK_CONTAINS(c2.err.buf, "/no/such/program");
	CHECK(count_label(s2.task_id) == 0);
	collect_free(&c2);
}

/* ---- the daemon ---- */

static const char *find_dockerd(void)
{
	static const char *const paths[] = {"/usr/sbin/dockerd", "/usr/bin/dockerd",
					    "/usr/local/sbin/dockerd", "/usr/local/bin/dockerd"};
	for (size_t i = 0; i < ARRAY_SIZE(paths); i++)
		if (access(paths[i], X_OK) == 0)
			return paths[i];
	return NULL;
}

static void log_tail(char *buf, size_t n)
{
	char *path = xasprintf("%s/dockerd.log", dir), *text = NULL;
	size_t len = 0;
	if (file_read_all(path, &text, &len) == 0) {
		const char *start = len > 1200 ? text + len - 1200 : text;
		snprintf(buf, n, "%s", start);
	} else {
		buf[0] = 0;
	}
	free(text);
	free(path);
}

/* Mounts dockerd leaves under root (its netns bind mount, overlays of a
 * daemon that was killed): unmounted deepest first, then rm -rf. */
static void remove_tree(const char *root)
{
	for (int round = 0; round < 64; round++) {
		char *text = NULL;
		if (file_read_all("/proc/self/mounts", &text, NULL) < 0)
			break;
		char *best = NULL, *save = NULL;
		size_t rl = strlen(root);
		for (char *line = strtok_r(text, "\n", &save); line;
		     line = strtok_r(NULL, "\n", &save)) {
			char mp[4096];
			if (sscanf(line, "%*s %4095s", mp) != 1)
				continue;
			if (!strncmp(mp, root, rl) && (mp[rl] == '/' || !mp[rl]) &&
			    (!best || strlen(mp) > strlen(best))) {
				free(best);
				best = xstrdup(mp);
			}
		}
		free(text);
		if (!best)
			break;
		umount2(best, MNT_DETACH);
		free(best);
	}
	rm_rf(root);
}

/* Dirs of earlier runs whose dockerd is gone (a run killed midway). */
static void sweep_stale(void)
{
	DIR *d = opendir("/tmp");
	if (!d)
		return;
	struct dirent *e;
	while ((e = readdir(d))) {
		if (strncmp(e->d_name, "berth-docker-", 13))
			continue;
		char *path = xasprintf("/tmp/%s", e->d_name);
		char *pidfile = xasprintf("%s/docker.pid", path), *text = NULL;
		bool alive = false;
		if (file_read_all(pidfile, &text, NULL) == 0) {
			long pid = strtol(text, NULL, 10);
			alive = pid > 0 && kill((pid_t)pid, 0) == 0;
		}
		struct stat st;
		/* a run starting right now has no pidfile yet: leave young dirs */
		if (!alive && stat(path, &st) == 0 && time(NULL) - st.st_mtime > 600)
			remove_tree(path);
		free(text);
		free(pidfile);
		free(path);
	}
	closedir(d);
}

static void stop_dockerd(void)
{
	if (dockerd_pid > 0) {
		kill(dockerd_pid, SIGTERM);
		int64_t until = time_mono_ms() + 30000;
		int st;
		while (waitpid(dockerd_pid, &st, WNOHANG) == 0) {
			if (time_mono_ms() > until) {
				kill(dockerd_pid, SIGKILL);
				waitpid(dockerd_pid, &st, 0);
				break;
			}
			usleep(50000);
		}
		dockerd_pid = 0;
	}
	if (dir[0])
		remove_tree(dir);
}

static void start_dockerd(void)
{
	if (getuid() != 0) {
		snprintf(skip_reason, sizeof skip_reason, "dockerd needs root");
		return;
	}
	const char *bin = find_dockerd();
	if (!bin) {
		snprintf(skip_reason, sizeof skip_reason,
			 "dockerd is not installed (Debian package docker.io)");
		return;
	}
	if (access("/bin/busybox", X_OK) != 0) {
		snprintf(skip_reason, sizeof skip_reason,
			 "/bin/busybox is missing (Debian package busybox-static)");
		return;
	}
	sweep_stale();
	snprintf(dir, sizeof dir, "/tmp/berth-docker-XXXXXX");
	if (!mkdtemp(dir)) {
		snprintf(skip_reason, sizeof skip_reason, "cannot create a temporary dir: %s",
			 strerror(errno));
		dir[0] = 0;
		return;
	}
	snprintf(sock, sizeof sock, "%s/docker.sock", dir);
	char *data = xasprintf("%s/data", dir), *exec_root = xasprintf("%s/exec", dir);
	char *pidfile = xasprintf("%s/docker.pid", dir), *logp = xasprintf("%s/dockerd.log", dir);
	char *host = xasprintf("unix://%s", sock);
	fflush(stdout);
	fflush(stderr);
	pid_t pid = fork();
	if (pid == 0) {
		/* Dies with this test binary, however it ends. */
		prctl(PR_SET_PDEATHSIG, SIGTERM);
		int fd = open(logp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
		if (fd >= 0) {
			dup2(fd, 1);
			dup2(fd, 2);
		}
		execl(bin, "dockerd", "--iptables=false", "--ip-masq=false", "--bridge=none",
		      "--data-root", data, "--exec-root", exec_root, "--pidfile", pidfile, "-H",
		      host, (char *)NULL);
		_exit(127);
	}
	dockerd_pid = pid;
	bool up = false;
	for (int i = 0; i < 300 && !up; i++) { /* 30 s */
		int st;
		if (waitpid(pid, &st, WNOHANG) == pid) {
			dockerd_pid = 0;
			break;
		}
		up = docker_available(sock);
		if (!up)
			usleep(100000);
	}
	if (!up) {
		char tail[1400];
		log_tail(tail, sizeof tail);
		snprintf(skip_reason, sizeof skip_reason,
			 "dockerd did not start; its log ends:\n%s", tail);
		goto out;
	}
	/* The test image: busybox and a few of its names. */
	char *root = xasprintf("%s/rootfs", dir), *tar = xasprintf("%s/rootfs.tar", dir);
	char *cmd = xasprintf("mkdir -p %s/bin && cp /bin/busybox %s/bin/ && "
			      "for n in sh echo sleep cat true id hostname pwd; do "
			      "ln -sf busybox %s/bin/$n; done && tar -C %s -cf %s .",
			      root, root, root, root, tar);
	struct berr err = {0};
	if (system(cmd) != 0)
		snprintf(skip_reason, sizeof skip_reason,
			 "cannot build the test image: '%s' failed", cmd);
	else if (docker_import(sock, tar, IMAGE, &err) < 0)
		snprintf(skip_reason, sizeof skip_reason, "cannot load the test image: %s",
			 err.msg);
	free(cmd);
	free(root);
	free(tar);
out:
	free(data);
	free(exec_root);
	free(pidfile);
	free(logp);
	free(host);
}

#define CASE(f)                                                                                    \
	{                                                                                          \
#f, f                                                                              \
	}

int main(void)
{
	struct unit_case cases[] = {
	    CASE(demux_frames_split_anywhere),
	    CASE(create_config_maps_the_spec),
	    CASE(unreachable_socket_is_named),
	    CASE(ping_answers),
	    CASE(runs_a_command_with_logs_and_exit_code),
	    CASE(memory_limit_reports_oom),
	    CASE(stop_kills_after_grace),
	    CASE(stop_wakes_on_the_wake_fd),
	    CASE(stop_before_start_runs_nothing),
	    CASE(labels_find_and_remove_leaves_nothing),
	    CASE(logs_follow_demultiplexes),
	    CASE(adopts_its_own_container),
	    CASE(bad_image_and_command_errors),
	};
	/* Only a daemon-free test asked for: no daemon. */
	const char *only = getenv("UNIT_ONLY");
	bool need = !only || (strcmp(only, "demux_frames_split_anywhere") &&
			      strcmp(only, "create_config_maps_the_spec") &&
			      strcmp(only, "unreachable_socket_is_named"));
	if (need)
		start_dockerd();
	if (skip_reason[0] && need)
		fprintf(stderr, "docker tests will skip: %s\n", skip_reason);
	int r = unit_run(__FILE__, cases, ARRAY_SIZE(cases));
	stop_dockerd();
	return r;
}
