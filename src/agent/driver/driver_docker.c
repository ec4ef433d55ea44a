/* driver_docker.c - the docker driver: Docker Engine runs the task
 * (docker.h); the supervisor keeps its status, logs and stop. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "agent/cgroup.h"

#include "agent/driver/docker.h"
#include "agent/driver/exec_guard.h"
#include "agent/driver/driver.h"
#include "agent/net/node_net.h"
#include "agent/net/task_net.h"
#include "agent/supervisor-internal.h"
#include "core/cidr.h"
#include "core/log.h"

static bool docker_offered(const struct driver_host *h, char *why, size_t n)
{
	/* Offered only where the engine answers (checked at registration). */
	if (docker_available(h->docker_socket))
		return true;
	snprintf(why, n, "docker is not reachable at '%s'",
		 h->docker_socket ? h->docker_socket : DOCKER_DEFAULT_SOCKET);
	return false;
}

/* The container of a task whose supervisor is gone would run on unwatched:
 * remove it. Found by its label, which holds the cluster-unique task id; a
 * no-op without docker. */
static void docker_orphan(const struct driver_host *h, const char *task_id)
{
	char label[600];
	snprintf(label, sizeof label, "berth.task=%s", task_id);
	struct docker_found *f = NULL;
	size_t n = 0;
	struct berr err = {0};
	if (docker_find_by_label(h->docker_socket, label, &f, &n, &err) < 0)
		return;
	for (size_t i = 0; i < n; i++) {
		if (docker_remove(h->docker_socket, f[i].id, true, &err) == 0)
			log_info("task %s: removed its orphan docker container %s", task_id,
				 f[i].name ? f[i].name : f[i].id);
		else
			log_warn("task %s: %s", task_id, err.msg);
	}
	docker_found_free(f, n);
}

/* The docker driver (docker.h): Docker owns the container, its cgroup and
 * its init; the supervisor hands it the task and keeps its own duties:
 * status.json, the rotated logs, the stop with grace. init_pid stays 0, so
 * begin_stop/hard_kill signal nothing themselves. */
static bool docker_stop_requested(void *ud)
{
	struct sup *s = ud;
	sup_handle_signals(s); /* drains the signalfd; SIGTERM -> begin_stop */
	return s->stopping;
}

static void docker_running(void *ud, const char *id, pid_t pid)
{
	struct sup *s = ud;
	sup_log("container '%.12s' running, pid %d", id, (int)pid);
	sup_running(s, pid);
}

static void docker_output(void *ud, int stream, const char *data, size_t len)
{
	struct sup *s = ud;
	struct logfile *lf = stream == 2 ? &s->err_log : &s->out_log;
	int r = logfile_write(lf, data, len);
	if (r < 0 && r != lf->last_error)
		sup_log("cannot write '%s': %s", lf->path, err_str(r));
}

static void docker_log(void *ud, const char *msg)
{
	sup_log("%s", msg);
}

/* network: bridge: the container's namespace (Docker made it, with only
 * lo) gets the task's veth and address (task_net.h), before the task is
 * reported running. */
static int docker_attach(void *ud, const char *id, pid_t init_pid, struct berr *err)
{
	struct sup *s = ud;
	const struct task_launch *l = &s->doc.l;
	if (!l->netns_path || !l->net_address)
		return 0;
	char ifname[IFNAMSIZ], ip[16];
	task_net_host_ifname(l->task_id, ifname);
	int64_t t0 = time_mono_ms();
	if (task_net_attach(l->netns_path, init_pid, ifname, NODE_NET_BRIDGE, l->net_address,
			    l->net_prefix, l->net_gateway, err) < 0) {
		char msg[sizeof err->msg];
		snprintf(msg, sizeof msg, "%s", err->msg);
		return berr_set(err, 0, "cannot attach container '%.12s' to the task network: %s",
				id, msg);
	}
	sup_log("container '%.12s' on the task network: %s (%s) in %lldms", id,
		ip4_format(l->net_address, ip), ifname, (long long)(time_mono_ms() - t0));
	return 0;
}

static void docker_run(struct sup *s)
{
	const struct task_launch *l = &s->doc.l;
	/* The agent's resolv.conf for the task (its name server), when it
	 * wrote one: the container's own network reaches the bridge's .1. */
	char *resolv = NULL;
	if (l->net_address) {
		resolv = sandbox_file(s->sandbox, "resolv.conf");
		if (access(resolv, R_OK) != 0) {
			free(resolv);
			resolv = NULL;
		}
	}
	struct docker_spec ds = {
	    .socket = l->docker_socket,
	    .task_id = l->task_id,
	    .job_key = l->job_key,
	    .instance = l->instance,
	    .image = l->image,
	    .argv = l->argv,
	    .argc = l->argc,
	    .env = l->env,
	    .nenv = l->nenv,
	    .user = l->user,
	    .cpu = l->cpu,
	    .cpu_after_start = true, /* Docker's start-up is not the task's */
	    .memory_bytes = l->memory_bytes,
	    /* As exec and oci tasks: a fork bomb stays inside its task. */
	    .pids_limit = CGROUP_DEFAULT_PIDS_MAX,
	    .stop_grace_ms = l->stop_grace_ms,
	    .volume_host = l->volume_host,
	    .volume_path = l->volume_path,
	    .volume_ro = l->volume_ro,
	    .nvolumes = l->nvolumes,
	    .network = l->net_address ? "none" : "host",
	    .resolv_conf = resolv,
	};
	struct docker_hooks h = {.ud = s,
				 .wake_fd = s->sigfd,
				 .stop_requested = docker_stop_requested,
				 .attach = docker_attach,
				 .running = docker_running,
				 .output = docker_output,
				 .log = docker_log};
	struct docker_exit ex;
	struct berr err = {0};
	int r = docker_supervise(&ds, &h, &ex, &err);
	free(resolv);
	if (r < 0) {
		sup_fail(s, ex.exit_code, "%s", err.msg);
		return;
	}
	s->docker_oom = ex.oom;
	s->hard_killed = ex.killed;
	if (ex.started) { /* else: stopped first, nothing ran */
		s->prog_exited = true;
		s->prog_status = ex.signal ? ex.signal : (ex.exit_code & 0xff) << 8;
	}
}

/* task-exec: the command's output goes to our stdout and stderr. */
static void exec_output(void *ud, int stream, const char *data, size_t len)
{
	(void)ud;
	int fd = stream == 2 ? 2 : 1;
	while (len) {
		ssize_t w = write(fd, data, len);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return; /* nobody reads: the command still runs to its end */
		data += w;
		len -= (size_t)w;
	}
}

struct exec_ref {
	const char *sock;
	const char *exec_id;
};

/* How long the guard watches an exec that has not started: task-exec may
 * have been killed with its start request on the way to the Engine, whose
 * start runs `runc exec` in the container's cgroup (slow at cpu 0.1 on a
 * busy host). Polled every 100 ms at first, then less often. */
#define ORPHAN_START_WAIT_MS 30000
#define ORPHAN_POLL_MS 100
#define ORPHAN_POLL_MAX_MS 1000

/* The guard (exec_guard.h): the command still running once task-exec is
 * gone was left by a kill at the check's timeout. An exec not started yet
 * (no exit code, not running) may still start: a start request sent just
 * before the kill reaches the Engine after it. So it is watched for a
 * while, and killed once it has a pid. */
static void exec_orphaned(void *ud, const char *note)
{
	(void)note;
	const struct exec_ref *r = ud;
	for (int waited = 0, step = ORPHAN_POLL_MS; waited <= ORPHAN_START_WAIT_MS;
	     waited += step, step = step * 2 > ORPHAN_POLL_MAX_MS ? ORPHAN_POLL_MAX_MS : step * 2) {
		struct docker_exec_state st;
		struct berr err = {0};
		int rc = docker_exec_inspect(r->sock, r->exec_id, &st, &err);
		/* Running with no pid yet: the Engine is still starting it
		 * (seen on a busy host: every leftover was in that state). */
		if (rc == 0 && st.running && st.pid > 0) {
			exec_guard_kill(st.pid);
			return;
		}
		if (rc == 0 && st.exit_code >= 0)
			return; /* it ran and ended */
		if (rc < 0 && err.code != 502)
			return; /* gone (the container was removed), or no Engine */
		usleep((useconds_t)step * 1000);
	}
}

/* Docker's exec API: the container's user, working directory and env,
 * in its namespaces and cgroup, under its security options. */
static int docker_exec_in(const struct task_exec *x, struct berr *err)
{
	char *name = docker_container_name(x->task_id);
	char *exec_id = NULL;
	/* `berth task exec` (agent_exec.h): a terminal as stdin asks for a
	 * TTY, BERTH_EXEC_STDIN for stdin; a health check gets neither. */
	bool tty = isatty(0);
	bool in = tty || getenv("BERTH_EXEC_STDIN");
	int rc = docker_exec_create(x->docker_socket, name, x->argv, in, tty, &exec_id, err);
	free(name);
	if (rc < 0)
		return -1;
	struct exec_ref ref = {.sock = x->docker_socket, .exec_id = exec_id};
	int keep = -1; /* open until we exit: the guard waits for that */
	if (exec_guard_start(exec_orphaned, &ref, &keep) < 0)
		fprintf(stderr, "berth task-exec: no guard: a command killed at its timeout may "
				"run on\n");
	struct docker_exec_state st;
	rc = in ? docker_exec_attach(x->docker_socket, exec_id, tty, exec_output, NULL, err)
		: docker_exec_start(x->docker_socket, exec_id, exec_output, NULL, err);
	/* The stream ends with the command; its exit code may take a moment. */
	for (int i = 0; rc == 0; i++) {
		rc = docker_exec_inspect(x->docker_socket, exec_id, &st, err);
		if (rc < 0 || !st.running)
			break;
		if (i == 100) {
			rc = berr_set(err, 502,
				      "docker: exec '%.12s' still runs after its output ended",
				      exec_id);
			break;
		}
		usleep(10000);
	}
	free(exec_id);
	return rc < 0 ? -1 : st.exit_code < 0 ? 126 : st.exit_code;
}

const struct driver_ops driver_docker = {
    .driver = DRIVER_DOCKER,
    .needs_image = true,
    .runtime_isolates = true,
    .available = docker_offered,
    .delete_orphan = docker_orphan,
    .run = docker_run,
    .exec_in = docker_exec_in,
};
