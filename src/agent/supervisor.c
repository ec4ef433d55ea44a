/* supervisor.c - the per-task supervisor (`berth supervise SANDBOX`) and the
 * agent's side of it. See supervisor.h for the sandbox layout and contract.
 *
 * Choices made here:
 *  - The program's working directory is the sandbox itself (docs/decisions.md),
 *    and its /tmp is SANDBOX/tmp (mode 1777). The sandbox stays root's: a
 *    task running as another user must not be able to replace
 *    supervisor.pid or status.json, so it writes to /tmp, not its cwd.
 *  - Its environment is exactly the launch's env, plus PATH (a default)
 *    and HOME (the user's home, or the sandbox when running as root) when
 *    absent, plus BERTH_TASK_ID.
 *  - The hostname is the task id cut to 63 characters.
 *  - Exit codes when the program could not be started: 127 when it does
 *    not exist, 126 for every other reason (unknown user, exec denied,
 *    namespace or cgroup failure), each with a message saying why.
 *  - A program killed by signal N reports signal N and exit_code 128+N,
 *    as a shell would.
 *  - A supervisor's own diagnostics go to SANDBOX/supervisor.log.
 */
#include "agent/supervisor.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <jansson.h>
#include <limits.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "agent/cgroup.h"
#include "agent/driver/docker.h"
#include "agent/driver/exec_isolation.h"
#include "agent/logfile.h"
#include "agent/driver/oci_bundle.h"

#define DEFAULT_PATH "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
#define DEFAULT_CGROUP_PARENT "berth"
#define DEFAULT_LOG_MAX_BYTES (10ull << 20)
#define DEFAULT_LOG_MAX_FILES 3
/* After the init is gone, how long output may still trickle in. */
#define DRAIN_MS 2000

static const char *errstr(int e)
{
	static char buf[128];
	snprintf(buf, sizeof buf, "%s", strerror(e < 0 ? -e : e));
	buf[0] = (char)tolower((unsigned char)buf[0]);
	return buf;
}

static char *sandbox_file(const char *sandbox, const char *name)
{
	return xasprintf("%s/%s", sandbox, name);
}

/* Replace a file atomically (readers see the old or the new content,
 * never a mix). Only `durable` writes are fsync'ed: a task's launch.json
 * and its transient phases mean nothing after a machine crash (the task
 * died with the machine), and two fsyncs (0.4 ms idle, 5-15 ms on a busy
 * disk here) would be most of the launch latency budget. */
static int write_atomic(const char *path, const char *data, size_t len, bool durable)
{
	if (durable)
		return file_write_atomic(path, data, len);
	char *tmp = xasprintf("%s.tmp.%d", path, (int)getpid());
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	int r = 0;
	if (fd < 0) {
		r = -errno;
		goto out;
	}
	for (size_t off = 0; off < len;) {
		ssize_t w = write(fd, data + off, len - off);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0) {
			r = -errno;
			break;
		}
		off += (size_t)w;
	}
	if (close(fd) < 0 && r == 0)
		r = -errno;
	if (r == 0 && rename(tmp, path) < 0)
		r = -errno;
	if (r < 0)
		unlink(tmp);
out:
	free(tmp);
	return r;
}

/* ---- launch.json ---- */

static json_t *str_array(char *const *v, size_t n)
{
	json_t *a = json_array();
	for (size_t i = 0; i < n; i++)
		json_array_append_new(a, json_string(v[i] ? v[i] : ""));
	return a;
}

static json_t *launch_to_json(const struct task_launch *l, const char *sandbox)
{
	json_t *o = json_object();
	json_object_set_new(o, "task_id", json_string(l->task_id));
	json_object_set_new(o, "job_key", json_string(l->job_key ? l->job_key : ""));
	json_object_set_new(o, "instance", json_integer(l->instance));
	json_object_set_new(o, "driver", json_string(task_driver_name(l->driver)));
	json_object_set_new(o, "sandbox_dir", json_string(sandbox));
	json_object_set_new(o, "image", json_string(l->image ? l->image : ""));
	json_object_set_new(o, "runtime", json_string(l->runtime ? l->runtime : ""));
	json_object_set_new(o, "docker_socket",
			    json_string(l->docker_socket ? l->docker_socket : ""));
	/* absolute: the supervisor works from / */
	char *dd = l->data_dir && *l->data_dir ? realpath(l->data_dir, NULL) : NULL;
	json_object_set_new(o, "data_dir", json_string(dd ? dd : l->data_dir ? l->data_dir : ""));
	free(dd);
	json_object_set_new(o, "argv", str_array(l->argv, l->argc));
	json_object_set_new(o, "env", str_array(l->env, l->nenv));
	json_object_set_new(o, "user", json_string(l->user ? l->user : ""));
	json_object_set_new(o, "cpu", json_real(l->cpu));
	json_object_set_new(o, "memory_bytes", json_integer((json_int_t)l->memory_bytes));
	json_object_set_new(o, "stop_grace_ms", json_integer((json_int_t)l->stop_grace_ms));
	json_object_set_new(o, "cgroup_parent",
			    json_string(l->cgroup_parent ? l->cgroup_parent : ""));
	json_object_set_new(o, "notify_socket",
			    json_string(l->notify_socket ? l->notify_socket : ""));
	json_object_set_new(o, "log_max_bytes", json_integer((json_int_t)l->log_max_bytes));
	json_object_set_new(o, "log_max_files", json_integer(l->log_max_files));
	json_t *vols = json_array();
	for (size_t i = 0; i < l->nvolumes; i++)
		json_array_append_new(vols, json_pack("{s:s,s:s,s:b}", "host", l->volume_host[i],
						      "path", l->volume_path[i], "read_only",
						      l->volume_ro ? l->volume_ro[i] : 0));
	json_object_set_new(o, "volumes", vols);
	return o;
}

/* A task_launch whose strings point into the JSON document it came from. */
struct launch_doc {
	struct task_launch l;
	json_t *root;
	char **argv, **env;
	const char **vhost, **vpath;
	bool *vro;
};

static bool is_oci(const struct task_launch *l)
{
	return l->driver == DRIVER_OCI;
}

static bool is_docker(const struct task_launch *l)
{
	return l->driver == DRIVER_DOCKER;
}

static const char *jstr(json_t *o, const char *key)
{
	const char *s = json_string_value(json_object_get(o, key));
	return s && *s ? s : NULL;
}

static int64_t jint(json_t *o, const char *key)
{
	json_t *v = json_object_get(o, key);
	return json_is_integer(v) ? (int64_t)json_integer_value(v) : 0;
}

static char **jstr_array(json_t *o, const char *key, size_t *n)
{
	json_t *a = json_object_get(o, key);
	size_t len = json_is_array(a) ? json_array_size(a) : 0;
	char **v = xcalloc(len + 1, sizeof *v);
	*n = 0;
	for (size_t i = 0; i < len; i++) {
		const char *s = json_string_value(json_array_get(a, i));
		if (s)
			v[(*n)++] = (char *)s;
	}
	return v;
}

static int launch_read(const char *sandbox, struct launch_doc *d, struct berr *err)
{
	memset(d, 0, sizeof *d);
	char *path = sandbox_file(sandbox, "launch.json");
	json_error_t je;
	d->root = json_load_file(path, 0, &je);
	if (!d->root) {
		berr_set(err, 0, "cannot read '%s': %s", path, je.text);
		free(path);
		return -1;
	}
	free(path);
	json_t *o = d->root;
	struct task_launch *l = &d->l;
	l->task_id = jstr(o, "task_id");
	l->job_key = jstr(o, "job_key");
	l->instance = (int)jint(o, "instance");
	const char *driver = jstr(o, "driver");
	if (driver && task_driver_parse(driver, &l->driver) < 0)
		return berr_set(err, 0, "launch.json: unknown driver '%s'", driver);
	l->sandbox_dir = jstr(o, "sandbox_dir");
	l->image = jstr(o, "image");
	l->runtime = jstr(o, "runtime");
	l->docker_socket = jstr(o, "docker_socket");
	l->data_dir = jstr(o, "data_dir");
	d->argv = jstr_array(o, "argv", &l->argc);
	l->argv = d->argv;
	d->env = jstr_array(o, "env", &l->nenv);
	l->env = d->env;
	l->user = jstr(o, "user");
	json_t *cpu = json_object_get(o, "cpu");
	l->cpu = json_is_number(cpu) ? json_number_value(cpu) : 0;
	l->memory_bytes = (uint64_t)jint(o, "memory_bytes");
	l->stop_grace_ms = (uint64_t)jint(o, "stop_grace_ms");
	l->cgroup_parent = jstr(o, "cgroup_parent");
	l->notify_socket = jstr(o, "notify_socket");
	l->log_max_bytes = (uint64_t)jint(o, "log_max_bytes");
	l->log_max_files = (int)jint(o, "log_max_files");
	json_t *vols = json_object_get(o, "volumes");
	size_t nv = json_is_array(vols) ? json_array_size(vols) : 0;
	d->vhost = xcalloc(nv + 1, sizeof *d->vhost);
	d->vpath = xcalloc(nv + 1, sizeof *d->vpath);
	d->vro = xcalloc(nv + 1, sizeof *d->vro);
	for (size_t i = 0; i < nv; i++) {
		json_t *v = json_array_get(vols, i);
		const char *h = jstr(v, "host"), *p = jstr(v, "path");
		if (!h || !p)
			return berr_set(err, 0, "launch.json: volume %zu without host or path", i);
		d->vhost[l->nvolumes] = h;
		d->vpath[l->nvolumes] = p;
		d->vro[l->nvolumes++] = json_is_true(json_object_get(v, "read_only"));
	}
	l->volume_host = d->vhost;
	l->volume_path = d->vpath;
	l->volume_ro = d->vro;
	if (!l->task_id)
		return berr_set(err, 0, "launch.json: missing 'task_id'");
	if (l->argc == 0 && !is_oci(l) && !is_docker(l))
		return berr_set(err, 0, "launch.json: empty 'argv'");
	return 0;
}

static void launch_doc_free(struct launch_doc *d)
{
	free(d->argv);
	free(d->env);
	free(d->vhost);
	free(d->vpath);
	free(d->vro);
	json_decref(d->root);
	memset(d, 0, sizeof *d);
}

/* ---- status.json ---- */

static const char *phase_name(enum task_phase p)
{
	switch (p) {
	case PHASE_STARTING:
		return "starting";
	case PHASE_RUNNING:
		return "running";
	case PHASE_EXITED:
		return "exited";
	default:
		return "unknown";
	}
}

static enum task_phase phase_parse(const char *s)
{
	if (!s)
		return PHASE_UNKNOWN;
	if (!strcmp(s, "starting"))
		return PHASE_STARTING;
	if (!strcmp(s, "running"))
		return PHASE_RUNNING;
	if (!strcmp(s, "exited"))
		return PHASE_EXITED;
	return PHASE_UNKNOWN;
}

static int report_write(const char *sandbox, const char *task_id, const struct task_report *r)
{
	json_t *o = json_object();
	json_object_set_new(o, "task_id", json_string(task_id ? task_id : ""));
	json_object_set_new(o, "phase", json_string(phase_name(r->phase)));
	json_object_set_new(o, "supervisor_pid", json_integer(r->supervisor_pid));
	json_object_set_new(o, "pid", json_integer(r->pid));
	json_object_set_new(o, "exit_code", json_integer(r->exit_code));
	json_object_set_new(o, "signal", json_integer(r->signal));
	json_object_set_new(o, "oom", json_boolean(r->oom));
	json_object_set_new(o, "stopped", json_boolean(r->stopped));
	json_object_set_new(o, "started_ms", json_integer(r->started_ms));
	json_object_set_new(o, "finished_ms", json_integer(r->finished_ms));
	json_object_set_new(o, "message", json_string(r->message));
	char *text = json_dumps(o, JSON_COMPACT);
	json_decref(o);
	char *path = sandbox_file(sandbox, "status.json");
	/* The final status is the one worth an fsync: it is the task's
	 * outcome, read again by an agent that restarts later. */
	int rc = write_atomic(path, text, strlen(text), r->phase == PHASE_EXITED);
	free(path);
	free(text);
	return rc;
}

int supervisor_read_report(const char *sandbox_dir, struct task_report *r)
{
	memset(r, 0, sizeof *r);
	char *path = sandbox_file(sandbox_dir, "status.json");
	char *text;
	int rc = file_read_all(path, &text, NULL);
	free(path);
	if (rc < 0)
		return rc;
	json_t *o = json_loads(text, 0, NULL);
	free(text);
	if (!json_is_object(o)) {
		json_decref(o);
		return -EINVAL;
	}
	r->phase = phase_parse(json_string_value(json_object_get(o, "phase")));
	r->supervisor_pid = (pid_t)jint(o, "supervisor_pid");
	r->pid = (pid_t)jint(o, "pid");
	r->exit_code = (int)jint(o, "exit_code");
	r->signal = (int)jint(o, "signal");
	r->oom = json_is_true(json_object_get(o, "oom"));
	r->stopped = json_is_true(json_object_get(o, "stopped"));
	r->started_ms = jint(o, "started_ms");
	r->finished_ms = jint(o, "finished_ms");
	const char *msg = json_string_value(json_object_get(o, "message"));
	snprintf(r->message, sizeof r->message, "%s", msg ? msg : "");
	json_decref(o);
	return 0;
}

/* ---- finding a supervisor again ---- */

static char *abs_sandbox(const char *sandbox)
{
	char *rp = realpath(sandbox, NULL);
	return rp ? rp : xstrdup(sandbox);
}

static pid_t read_pidfile(const char *sandbox)
{
	char *path = sandbox_file(sandbox, "supervisor.pid"), *text;
	int rc = file_read_all(path, &text, NULL);
	free(path);
	if (rc < 0)
		return -1;
	long v = strtol(text, NULL, 10);
	free(text);
	return v > 0 && v <= INT_MAX ? (pid_t)v : -1;
}

/* Is pid `berth supervise SANDBOX`? Guards against pid reuse: a recycled
 * pid runs something else, and a zombie has an empty command line. */
const char *supervisor_cmdline_sandbox(const char *cmdline, size_t len)
{
	for (size_t off = 0; off < len;) {
		const char *arg = cmdline + off;
		size_t alen = strnlen(arg, len - off);
		size_t next = off + alen + 1;
		if (alen == 9 && !memcmp(arg, "supervise", 9) && next < len &&
		    strnlen(cmdline + next, len - next) < len - next)
			return cmdline + next;
		off = next;
	}
	return NULL;
}

static bool is_supervisor_of(pid_t pid, const char *sandbox)
{
	char path[64], *text;
	size_t len;
	snprintf(path, sizeof path, "/proc/%d/cmdline", (int)pid);
	if (file_read_all(path, &text, &len) < 0)
		return false;
	const char *sb = supervisor_cmdline_sandbox(text, len);
	bool found = sb && !strcmp(sb, sandbox);
	free(text);
	return found;
}

static pid_t live_supervisor(const char *sandbox_dir)
{
	char *abs = abs_sandbox(sandbox_dir);
	pid_t pid = read_pidfile(abs);
	if (pid > 0 && !is_supervisor_of(pid, abs))
		pid = -1;
	free(abs);
	return pid;
}

bool supervisor_alive(const char *sandbox_dir)
{
	return live_supervisor(sandbox_dir) > 0;
}

int supervisor_stop(const char *sandbox_dir)
{
	pid_t pid = live_supervisor(sandbox_dir);
	if (pid <= 0)
		return -ESRCH;
	return kill(pid, SIGTERM) < 0 ? -errno : 0;
}

/* ---- launching (agent side) ---- */

static bool valid_task_id(const char *id)
{
	if (!id || !*id || !strcmp(id, ".") || !strcmp(id, "..") || strlen(id) > 200)
		return false;
	for (const char *p = id; *p; p++)
		if (*p == '/' || *p == '\n' || (unsigned char)*p < 0x20)
			return false;
	return true;
}

/* Between fork and exec in a possibly multi-threaded agent only
 * async-signal-safe calls are allowed: no malloc, no stdio. */
static void put_pid(char *buf, pid_t pid)
{
	char tmp[16];
	int n = 0;
	unsigned v = (unsigned)pid;
	do
		tmp[n++] = (char)('0' + v % 10);
	while ((v /= 10) && n < 15);
	for (int i = 0; i < n; i++)
		buf[i] = tmp[n - 1 - i];
	buf[n] = '\n';
	buf[n + 1] = 0;
}

static ssize_t read_full(int fd, void *buf, size_t n)
{
	size_t got = 0;
	while (got < n) {
		ssize_t r = read(fd, (char *)buf + got, n - got);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return r < 0 ? -1 : (ssize_t)got;
		got += (size_t)r;
	}
	return (ssize_t)got;
}

struct spawn_args {
	char *const *argv;
	const char *exe;
	const char *pidfile, *pidfile_tmp, *logfile;
	int pipe_w;
};

static __attribute__((noreturn)) void spawn_supervisor(const struct spawn_args *a)
{
	/* A new session, then fork again: the supervisor is no session
	 * leader (cannot get a terminal) and is not the agent's child (the
	 * agent has nothing to reap; its death leaves the supervisor to init). */
	if (setsid() < 0)
		_exit(1);
	pid_t pid = fork();
	if (pid < 0)
		_exit(1);
	if (pid > 0)
		_exit(0);
	pid = getpid();

	/* Until the supervisor has its signalfd a stop request must wait,
	 * not kill it: blocked signals stay pending across exec. */
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	sigprocmask(SIG_SETMASK, &set, NULL);
	struct sigaction dfl = {.sa_handler = SIG_DFL};
	for (int s = 1; s < NSIG; s++)
		sigaction(s, &dfl, NULL);

	int null = open("/dev/null", O_RDWR);
	int log = open(a->logfile, O_WRONLY | O_CREAT | O_APPEND, 0644);
	if (null < 0 || dup2(null, 0) < 0 || dup2(null, 1) < 0 ||
	    dup2(log >= 0 ? log : null, 2) < 0)
		_exit(1);
	/* Nothing of the agent's (sockets, the store, other tasks' pipes)
	 * may leak into the supervisor and from there into the task. */
	if (close_range(3, ~0U, CLOSE_RANGE_CLOEXEC) < 0) {
		struct rlimit rl;
		int max = getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < 65536
			      ? (int)rl.rlim_cur
			      : 65536;
		for (int fd = 3; fd < max; fd++)
			if (fd != a->pipe_w)
				close(fd);
	}
	/* Written before exec, so supervisor_stop() works as soon as
	 * supervisor_launch() has returned. */
	char buf[24];
	put_pid(buf, pid);
	int fd = open(a->pidfile_tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd >= 0) {
		ssize_t w = write(fd, buf, strlen(buf));
		close(fd);
		if (w > 0)
			rename(a->pidfile_tmp, a->pidfile);
	}
	if (write(a->pipe_w, &pid, sizeof pid) != sizeof pid)
		_exit(1);
	execv(a->exe, a->argv);
	int e = errno;
	if (write(a->pipe_w, &e, sizeof e) < 0)
		_exit(127);
	_exit(127);
}

int supervisor_launch(const struct task_launch *l, const char *exe, pid_t *supervisor_pid,
		      struct berr *err)
{
	if (supervisor_pid)
		*supervisor_pid = 0;
	if (!l || !valid_task_id(l->task_id))
		return berr_set(err, 400, "invalid task id '%s'",
				l && l->task_id ? l->task_id : "");
	if (!l->sandbox_dir || !*l->sandbox_dir)
		return berr_set(err, 400, "task '%s': no sandbox directory", l->task_id);
	if ((unsigned)l->driver >= TASK_DRIVER_COUNT)
		return berr_set(err, 400, "task '%s': driver %d is not run by the supervisor",
				l->task_id, (int)l->driver);
	if ((is_oci(l) || is_docker(l)) && (!l->image || !*l->image))
		return berr_set(err, 400, "task '%s': driver %s needs an image", l->task_id,
				task_driver_name(l->driver));
	/* oci, docker: no command = the image's own */
	if (!is_oci(l) && !is_docker(l) &&
	    (l->argc == 0 || !l->argv || !l->argv[0] || !*l->argv[0]))
		return berr_set(err, 400, "task '%s': empty command", l->task_id);
	if (!exe || !*exe)
		return berr_set(err, 0, "task '%s': no supervisor executable", l->task_id);

	int r = mkdir_p(l->sandbox_dir, 0755);
	if (r < 0)
		return berr_set(err, 0, "cannot create sandbox '%s': %s", l->sandbox_dir,
				errstr(r));
	char *sandbox = abs_sandbox(l->sandbox_dir);
	char *launch_path = sandbox_file(sandbox, "launch.json");
	char *status_path = sandbox_file(sandbox, "status.json");
	char *pidfile = sandbox_file(sandbox, "supervisor.pid");
	char *pidfile_tmp = sandbox_file(sandbox, "supervisor.pid.tmp");
	char *logfile = sandbox_file(sandbox, "supervisor.log");
	char *tmp = sandbox_file(sandbox, "tmp");
	char *text = NULL;
	int pipefd[2] = {-1, -1};
	int rc = -1;

	pid_t old = read_pidfile(sandbox);
	if (old > 0 && is_supervisor_of(old, sandbox)) {
		berr_set(err, 409, "task '%s' already has a supervisor (pid %d)", l->task_id,
			 (int)old);
		goto out;
	}
	/* Sticky and world-writable, as /tmp is, whoever the task runs as. */
	if ((mkdir(tmp, 01777) < 0 && errno != EEXIST) || chmod(tmp, 01777) < 0) {
		berr_set(err, 0, "cannot create '%s': %s", tmp, errstr(errno));
		goto out;
	}
	/* A status from an earlier run of this sandbox would be taken for
	 * this run's. */
	unlink(status_path);

	json_t *doc = launch_to_json(l, sandbox);
	text = json_dumps(doc, JSON_INDENT(2));
	json_decref(doc);
	r = write_atomic(launch_path, text, strlen(text), false);
	if (r < 0) {
		berr_set(err, 0, "cannot write '%s': %s", launch_path, errstr(r));
		goto out;
	}

	if (pipe2(pipefd, O_CLOEXEC) < 0) {
		berr_set(err, 0, "cannot create a pipe: %s", errstr(errno));
		goto out;
	}
	char *argv[] = {(char *)exe, "supervise", sandbox, NULL};
	struct spawn_args a = {.argv = argv,
			       .exe = exe,
			       .pidfile = pidfile,
			       .pidfile_tmp = pidfile_tmp,
			       .logfile = logfile,
			       .pipe_w = pipefd[1]};
	pid_t mid = fork();
	if (mid < 0) {
		berr_set(err, 0, "cannot fork: %s", errstr(errno));
		goto out;
	}
	if (mid == 0)
		spawn_supervisor(&a);
	close(pipefd[1]);
	pipefd[1] = -1;
	/* ECHILD: an agent SIGCHLD handler reaped it first; fine. */
	while (waitpid(mid, NULL, 0) < 0 && errno == EINTR)
		;
	pid_t pid = 0;
	int exec_errno = 0;
	if (read_full(pipefd[0], &pid, sizeof pid) != sizeof pid || pid <= 0) {
		berr_set(err, 0, "cannot start the supervisor of task '%s'", l->task_id);
		goto out;
	}
	/* EOF (close-on-exec) = exec succeeded; an int = its errno. */
	if (read_full(pipefd[0], &exec_errno, sizeof exec_errno) == sizeof exec_errno) {
		unlink(pidfile);
		berr_set(err, 0, "cannot run '%s': %s", exe, errstr(exec_errno));
		goto out;
	}
	if (supervisor_pid)
		*supervisor_pid = pid;
	rc = 0;
out:
	if (pipefd[0] >= 0)
		close(pipefd[0]);
	if (pipefd[1] >= 0)
		close(pipefd[1]);
	free(text);
	free(sandbox);
	free(launch_path);
	free(status_path);
	free(pidfile);
	free(pidfile_tmp);
	free(logfile);
	free(tmp);
	return rc;
}

/* ---- the supervisor ---- */

struct sup {
	char *sandbox;
	struct launch_doc doc;
	struct task_report rep;
	int sigfd, ctl_fd, out_fd, err_fd, notify_fd;
	struct logfile out_log, err_log;
	struct cgroup *cg;
	pid_t init_pid;
	bool init_done;
	int init_status;
	bool prog_exited;
	int prog_status;
	bool failed;
	int fail_code;
	char fail_msg[256];
	bool stopping, hard_killed;
	int64_t stop_deadline;
	struct oci_task *oci; /* driver oci: the container's init is init_pid */
	bool docker_oom;      /* driver docker: State.OOMKilled */
};

static void slog(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void slog(const char *fmt, ...)
{
	char ts[40];
	time_format_ms(time_now_ms(), ts, sizeof ts);
	va_list ap;
	va_start(ap, fmt);
	fprintf(stderr, "%s berth-supervisor[%d]: ", ts, (int)getpid());
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
	fflush(stderr);
}

/* One datagram with the task id; the agent may be gone or restarting, so
 * any error is ignored (status.json stays the truth). */
static void notify(struct sup *s)
{
	const char *path = s->doc.l.notify_socket;
	if (!path || !*path || !s->doc.l.task_id)
		return;
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	size_t len = strlen(path);
	if (len >= sizeof sa.sun_path)
		return;
	memcpy(sa.sun_path, path, len);
	socklen_t salen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len + 1);
	if (path[0] == '@') { /* abstract namespace */
		sa.sun_path[0] = 0;
		salen--;
	}
	if (s->notify_fd < 0)
		s->notify_fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (s->notify_fd < 0)
		return;
	/* A unix datagram queue holds only net.unix.max_dgram_qlen (often 10)
	 * messages: when many tasks start at once it fills while the agent is
	 * busy launching. Wait a little for room rather than drop the news;
	 * give up after ~200 ms (the agent re-reads every task each second). */
	for (int tries = 0; tries < 200; tries++) {
		ssize_t r = sendto(s->notify_fd, s->doc.l.task_id, strlen(s->doc.l.task_id),
				   MSG_NOSIGNAL, (struct sockaddr *)&sa, salen);
		if (r >= 0 || errno != EAGAIN)
			return;
		usleep(1000);
	}
}

static void publish(struct sup *s)
{
	int r = report_write(s->sandbox, s->doc.l.task_id, &s->rep);
	if (r < 0)
		slog("cannot write '%s/status.json': %s", s->sandbox, errstr(r));
	notify(s);
}

static void format_size(uint64_t b, char *buf, size_t n)
{
	static const char *const units[] = {"TiB", "GiB", "MiB", "KiB"};
	for (int i = 0; i < 4; i++) {
		uint64_t u = 1ull << (10 * (4 - i));
		if (b >= u && b % u == 0) {
			snprintf(buf, n, "%llu %s", (unsigned long long)(b / u), units[i]);
			return;
		}
	}
	snprintf(buf, n, "%llu bytes", (unsigned long long)b);
}

static void format_duration(uint64_t ms, char *buf, size_t n)
{
	if (ms && ms % 3600000 == 0)
		snprintf(buf, n, "%lluh", (unsigned long long)(ms / 3600000));
	else if (ms && ms % 60000 == 0)
		snprintf(buf, n, "%llum", (unsigned long long)(ms / 60000));
	else if (ms && ms % 1000 == 0)
		snprintf(buf, n, "%llus", (unsigned long long)(ms / 1000));
	else
		snprintf(buf, n, "%llums", (unsigned long long)ms);
}

static void fail(struct sup *s, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void fail(struct sup *s, int code, const char *fmt, ...)
{
	if (s->failed)
		return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(s->fail_msg, sizeof s->fail_msg, fmt, ap);
	va_end(ap);
	s->failed = true;
	s->fail_code = code;
	slog("%s", s->fail_msg);
}

/* Kill everything now: SIGKILL to the init takes its whole pid namespace
 * down; the cgroup sweep catches anything else that got into the cgroup. */
static void hard_kill(struct sup *s)
{
	s->hard_killed = true;
	if (s->oci && s->init_pid > 0 && !s->init_done)
		oci_task_kill(s->oci, SIGKILL, true);
	else if (s->init_pid > 0 && !s->init_done)
		kill(s->init_pid, SIGKILL);
	if (s->cg) {
		int r = cgroup_kill(s->cg);
		if (r < 0)
			slog("cannot empty the task's cgroup: %s", errstr(r));
	}
}

static void begin_stop(struct sup *s)
{
	if (s->stopping || s->init_done || s->prog_exited)
		return;
	s->stopping = true;
	s->rep.stopped = true;
	slog("stop requested, grace %llums", (unsigned long long)s->doc.l.stop_grace_ms);
	if (s->doc.l.stop_grace_ms == 0) {
		hard_kill(s);
		return;
	}
	/* The init forwards it to the program's process group. Not started
	 * yet (init_pid 0): supervisor_main checks for the stop itself. */
	if (s->oci && s->init_pid > 0)
		oci_task_kill(s->oci, SIGTERM, false);
	else if (s->init_pid > 0)
		kill(s->init_pid, SIGTERM);
	s->stop_deadline = time_mono_ms() + (int64_t)s->doc.l.stop_grace_ms;
}

static void handle_signals(struct sup *s)
{
	struct signalfd_siginfo si;
	while (read(s->sigfd, &si, sizeof si) == sizeof si) {
		if (si.ssi_signo == SIGTERM || si.ssi_signo == SIGINT)
			begin_stop(s);
	}
	if (s->init_done)
		return;
	int st;
	pid_t w;
	while ((w = waitpid(-1, &st, WNOHANG)) > 0) {
		if (w == s->init_pid) {
			s->init_done = true;
			s->init_status = st;
			/* oci: the container's init is the program */
			s->prog_exited |= s->oci != NULL;
			s->prog_status = s->oci ? st : s->prog_status;
		}
	}
}

static void handle_ctl(struct sup *s)
{
	for (;;) {
		struct iso_msg m;
		pid_t pid = 0;
		int r = isolation_recv(s->ctl_fd, &m, &pid);
		if (r == -EAGAIN)
			return;
		if (r <= 0) {
			close(s->ctl_fd);
			s->ctl_fd = -1;
			return;
		}
		switch (m.type) {
		case ISO_STARTED:
			s->rep.phase = PHASE_RUNNING;
			s->rep.pid = pid;
			s->rep.started_ms = time_now_ms();
			publish(s);
			break;
		case ISO_FAILED:
			fail(s, m.value, "%s", m.text);
			break;
		case ISO_EXITED:
			s->prog_exited = true;
			s->prog_status = m.value;
			break;
		}
	}
}

static void pump(struct sup *s, int *fd, struct logfile *lf)
{
	char buf[65536];
	for (int i = 0; i < 16; i++) { /* bounded: let the other fds have a turn */
		ssize_t n = read(*fd, buf, sizeof buf);
		if (n > 0) {
			int r = logfile_write(lf, buf, (size_t)n);
			if (r < 0 && r != lf->last_error)
				slog("cannot write '%s': %s", lf->path, errstr(r));
			continue;
		}
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			return;
		close(*fd);
		*fd = -1;
		return;
	}
}

static void run_loop(struct sup *s)
{
	int64_t drain_deadline = 0;
	for (;;) {
		if (s->init_done && s->ctl_fd < 0 && s->out_fd < 0 && s->err_fd < 0)
			return;
		int64_t now = time_mono_ms();
		int timeout = -1;
		if (s->stopping && !s->hard_killed) {
			if (now >= s->stop_deadline) {
				slog("grace period over, killing the task");
				hard_kill(s);
				continue;
			}
			int64_t left = s->stop_deadline - now;
			timeout = left > 60000 ? 60000 : (int)left; /* a grace of days */
		}
		if (s->init_done) {
			/* Everything in the namespace died with the init; output
			 * still buffered in the pipes is read, but nobody gets to
			 * hold the supervisor open forever with a passed fd. */
			if (!drain_deadline)
				drain_deadline = now + DRAIN_MS;
			if (now >= drain_deadline) {
				slog("output pipes still open %dms after the task ended", DRAIN_MS);
				return;
			}
			int t = (int)(drain_deadline - now);
			if (timeout < 0 || t < timeout)
				timeout = t;
		}
		struct pollfd p[4] = {
		    {.fd = s->sigfd, .events = POLLIN},
		    {.fd = s->ctl_fd, .events = POLLIN},
		    {.fd = s->out_fd, .events = POLLIN},
		    {.fd = s->err_fd, .events = POLLIN},
		};
		int n = poll(p, 4, timeout);
		if (n < 0 && errno != EINTR) {
			slog("poll: %s", errstr(errno));
			return;
		}
		if (n <= 0)
			continue;
		if (p[0].revents)
			handle_signals(s);
		if (p[1].revents && s->ctl_fd >= 0)
			handle_ctl(s);
		if (p[2].revents && s->out_fd >= 0)
			pump(s, &s->out_fd, &s->out_log);
		if (p[3].revents && s->err_fd >= 0)
			pump(s, &s->err_fd, &s->err_log);
	}
}

static void decode_status(struct task_report *r, int st)
{
	if (WIFSIGNALED(st)) {
		r->signal = WTERMSIG(st);
		r->exit_code = 128 + r->signal;
		snprintf(r->message, sizeof r->message, "killed by signal %d", r->signal);
	} else {
		r->exit_code = WEXITSTATUS(st);
		snprintf(r->message, sizeof r->message, "exit status %d", r->exit_code);
	}
}

static void finish(struct sup *s)
{
	struct task_report *r = &s->rep;
	uint64_t ooms = 0;
	if (s->cg) {
		cgroup_oom_kills(s->cg, &ooms);
		int e = cgroup_kill(s->cg);
		if (e < 0)
			slog("cannot empty the task's cgroup: %s", errstr(e));
		e = cgroup_remove(s->cg);
		if (e < 0)
			slog("cannot remove the task's cgroup: %s", errstr(e));
	}
	if (s->oci)
		oci_task_cleanup(s->oci);
	r->phase = PHASE_EXITED;
	r->finished_ms = time_now_ms();
	r->oom = ooms > 0 || s->docker_oom;
	if (s->prog_exited) {
		decode_status(r, s->prog_status);
	} else if (s->failed) {
		r->exit_code = s->fail_code;
		r->pid = 0;
	} else if (s->init_pid <= 0) {
		/* Stopped before the program was started: nothing ran. */
		r->exit_code = 0;
	} else if (s->init_done && WIFSIGNALED(s->init_status)) {
		/* The init was killed (by us after the grace period, or by
		 * someone else): the program died with its namespace. */
		r->signal = SIGKILL;
		r->exit_code = 128 + SIGKILL;
		snprintf(r->message, sizeof r->message, "killed by signal %d", SIGKILL);
	} else {
		r->exit_code = 126;
		snprintf(r->message, sizeof r->message, "the task's init exited with status %d",
			 s->init_done ? WEXITSTATUS(s->init_status) : -1);
	}
	if (s->rep.stopped) {
		char grace[32];
		format_duration(s->doc.l.stop_grace_ms, grace, sizeof grace);
		if (s->hard_killed)
			snprintf(r->message, sizeof r->message,
				 "killed by berth (SIGKILL after %s grace)", grace);
		else
			snprintf(r->message, sizeof r->message, "killed by berth (SIGTERM)");
	} else if (s->failed) {
		snprintf(r->message, sizeof r->message, "%s", s->fail_msg);
	} else if (r->oom) {
		char lim[32];
		format_size(s->doc.l.memory_bytes, lim, sizeof lim);
		snprintf(r->message, sizeof r->message, "memory limit %s exceeded", lim);
	}
	slog("task ended: %s", r->message);
	publish(s);
}

/* User, groups and home of the task's user, looked up on the host. */
struct user_info {
	uid_t uid;
	gid_t gid;
	gid_t *groups;
	int ngroups;
	char *home;
};

static int resolve_user(const char *user, struct user_info *u)
{
	memset(u, 0, sizeof *u);
	struct passwd *pw = getpwnam(user);
	int64_t num;
	if (!pw && parse_int64(user, &num) == 0 && num >= 0 && num < UINT_MAX) {
		pw = getpwuid((uid_t)num);
		if (!pw) { /* a bare uid: its own group, no home */
			u->uid = u->gid = (uid_t)num;
			u->home = xstrdup("/");
			return 0;
		}
	}
	if (!pw)
		return -ENOENT;
	u->uid = pw->pw_uid;
	u->gid = pw->pw_gid;
	u->home = xstrdup(pw->pw_dir && *pw->pw_dir ? pw->pw_dir : "/");
	int n = 32;
	u->groups = xcalloc((size_t)n, sizeof *u->groups);
	if (getgrouplist(pw->pw_name, pw->pw_gid, u->groups, &n) < 0) {
		u->groups = xrealloc(u->groups, (size_t)n * sizeof *u->groups);
		if (getgrouplist(pw->pw_name, pw->pw_gid, u->groups, &n) < 0)
			n = 0;
	}
	u->ngroups = n;
	return 0;
}

static bool env_has(char *const *env, size_t n, const char *key)
{
	size_t k = strlen(key);
	for (size_t i = 0; i < n; i++)
		if (!strncmp(env[i], key, k) && env[i][k] == '=')
			return true;
	return false;
}

static char **build_env(const struct task_launch *l, const char *home)
{
	char **env = xcalloc(l->nenv + 4, sizeof *env);
	size_t n = 0;
	for (size_t i = 0; i < l->nenv; i++)
		if (strncmp(l->env[i], "BERTH_TASK_ID=", 14) && strchr(l->env[i], '='))
			env[n++] = xstrdup(l->env[i]);
	if (!env_has(l->env, l->nenv, "PATH"))
		env[n++] = xstrdup("PATH=" DEFAULT_PATH);
	if (!env_has(l->env, l->nenv, "HOME"))
		env[n++] = xasprintf("HOME=%s", home);
	env[n++] = xasprintf("BERTH_TASK_ID=%s", l->task_id);
	env[n] = NULL;
	return env;
}

static void free_strv(char **v)
{
	if (!v)
		return;
	for (char **p = v; *p; p++)
		free(*p);
	free(v);
}

/* The oci driver: image, bundle, `runc run --detach`. A failure is the
 * task's (fail() has the message). Returns the container init's host pid,
 * 0 when a stop came while the image was being prepared, -1 on failure. */
static pid_t start_oci(struct sup *s, int out_fd, int err_fd)
{
	const struct task_launch *l = &s->doc.l;
	struct berr err = {0};
	char *data_dir = NULL;
	if (l->data_dir) {
		data_dir = xstrdup(l->data_dir);
	} else { /* <data-dir>/tasks/<id> */
		data_dir = xstrdup(s->sandbox);
		for (int i = 0; i < 2; i++) {
			char *slash = strrchr(data_dir, '/');
			if (slash && slash != data_dir)
				*slash = 0;
		}
	}
	const char *parent = l->cgroup_parent ? l->cgroup_parent : DEFAULT_CGROUP_PARENT;
	struct oci_params p = {
	    .task_id = l->task_id,
	    .sandbox = s->sandbox,
	    .image = l->image,
	    .data_dir = data_dir,
	    .runtime = l->runtime,
	    .argv = l->argv,
	    .argc = l->argc,
	    .env = l->env,
	    .nenv = l->nenv,
	    .user = l->user,
	    .cpu = 0, /* set once started: runc's own set-up is not the task's */
	    .memory_bytes = l->memory_bytes,
	    .cgroup_parent = parent,
	    .volume_host = l->volume_host,
	    .volume_path = l->volume_path,
	    .volume_ro = l->volume_ro,
	    .nvolumes = l->nvolumes,
	};
	pid_t pid = -1;
	int64_t t0 = time_mono_ms();
	if (oci_task_prepare(s->oci, &p, &err) < 0) {
		fail(s, 126, "%s", err.msg);
		goto out;
	}
	if (s->oci->fetched)
		slog("image '%s' prepared in %lldms", l->image, (long long)(time_mono_ms() - t0));
	handle_signals(s); /* a stop during a long pull */
	if (s->stopping) {
		pid = 0;
		goto out;
	}
	int code;
	pid = oci_task_start(s->oci, out_fd, err_fd, &code, &err);
	if (pid < 0) {
		fail(s, code, "%s", err.msg);
		goto out;
	}
	/* For the cpu limit, the OOM count and the final sweep. */
	enum cgroup_version v = cgroup_detect();
	if (v != CGROUP_NONE && cgroup_open(v, NULL, parent, l->task_id, &s->cg) < 0)
		slog("cannot find the container's cgroup '%s/%s'", parent, l->task_id);
	if (l->cpu > 0 && (!s->cg || cgroup_set_cpu(s->cg, l->cpu, &err) < 0)) {
		/* Never run a task without the limit it asked for. */
		fail(s, 126, "cannot limit the container's cpu: %s",
		     s->cg ? err.msg : "its cgroup was not found");
		oci_task_kill(s->oci, SIGKILL, true);
		return pid; /* the loop reaps it */
	}
	s->rep.phase = PHASE_RUNNING;
	s->rep.pid = pid;
	s->rep.started_ms = time_now_ms();
	publish(s);
out:
	free(data_dir);
	return pid;
}

/* The docker driver (docker.h): Docker owns the container, its cgroup and
 * its init; the supervisor hands it the task and keeps its own duties:
 * status.json, the rotated logs, the stop with grace. init_pid stays 0, so
 * begin_stop/hard_kill signal nothing themselves. */
static bool docker_stop_requested(void *ud)
{
	struct sup *s = ud;
	handle_signals(s); /* drains the signalfd; SIGTERM -> begin_stop */
	return s->stopping;
}

static void docker_running(void *ud, const char *id, pid_t pid)
{
	struct sup *s = ud;
	slog("container '%.12s' running, pid %d", id, (int)pid);
	s->rep.phase = PHASE_RUNNING;
	s->rep.pid = pid;
	s->rep.started_ms = time_now_ms();
	publish(s);
}

static void docker_output(void *ud, int stream, const char *data, size_t len)
{
	struct sup *s = ud;
	struct logfile *lf = stream == 2 ? &s->err_log : &s->out_log;
	int r = logfile_write(lf, data, len);
	if (r < 0 && r != lf->last_error)
		slog("cannot write '%s': %s", lf->path, errstr(r));
}

static void docker_log(void *ud, const char *msg)
{
	slog("%s", msg);
}

static void run_docker(struct sup *s)
{
	const struct task_launch *l = &s->doc.l;
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
	    .stop_grace_ms = l->stop_grace_ms,
	    .volume_host = l->volume_host,
	    .volume_path = l->volume_path,
	    .volume_ro = l->volume_ro,
	    .nvolumes = l->nvolumes,
	};
	struct docker_hooks h = {.ud = s,
				 .wake_fd = s->sigfd,
				 .stop_requested = docker_stop_requested,
				 .running = docker_running,
				 .output = docker_output,
				 .log = docker_log};
	struct docker_exit ex;
	struct berr err = {0};
	if (docker_supervise(&ds, &h, &ex, &err) < 0) {
		fail(s, ex.exit_code, "%s", err.msg);
		return;
	}
	s->docker_oom = ex.oom;
	s->hard_killed = ex.killed;
	if (ex.started) { /* else: stopped first, nothing ran */
		s->prog_exited = true;
		s->prog_status = ex.signal ? ex.signal : (ex.exit_code & 0xff) << 8;
	}
}

static const char *sandbox_arg(int argc, char **argv)
{
	for (int i = 0; i + 1 < argc; i++)
		if (!strcmp(argv[i], "supervise"))
			return argv[i + 1];
	/* Called with the arguments after the command name. */
	return argc >= 1 && strcmp(argv[argc - 1], "supervise") ? argv[argc - 1] : NULL;
}

int supervisor_main(int argc, char **argv)
{
	const char *arg = sandbox_arg(argc, argv);
	if (!arg) {
		fprintf(stderr, "usage: berth supervise SANDBOX_DIR\n");
		return 2;
	}
	struct sup s = {.sigfd = -1, .ctl_fd = -1, .out_fd = -1, .err_fd = -1, .notify_fd = -1};
	s.out_log.fd = s.err_log.fd = -1;
	s.sandbox = abs_sandbox(arg);
	s.rep.supervisor_pid = getpid();
	s.rep.phase = PHASE_STARTING;
	struct user_info user = {0};
	char **env = NULL;
	char *workdir = xstrdup(s.sandbox);
	char *tmpdir = sandbox_file(s.sandbox, "tmp");
	int outp[2] = {-1, -1}, errp[2] = {-1, -1};
	struct berr err = {0};

	/* Stop requests (SIGTERM/SIGINT, possibly already pending since the
	 * launcher blocked them) and the init's death come in by signalfd. */
	signal(SIGPIPE, SIG_IGN);
	signal(SIGHUP, SIG_IGN); /* before unblocking it: one may be pending */
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGCHLD);
	sigprocmask(SIG_SETMASK, &set, NULL);
	s.sigfd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
	umask(022);
	if (chdir("/") < 0) {
		/* cannot happen; and the sandbox path is absolute anyway */
	}

	if (launch_read(s.sandbox, &s.doc, &err) < 0) {
		slog("%s", err.msg);
		/* Without a task id still say something to whoever looks. */
		snprintf(s.rep.message, sizeof s.rep.message, "%.*s", (int)sizeof s.rep.message - 1,
			 err.msg);
		s.rep.phase = PHASE_EXITED;
		s.rep.exit_code = 126;
		s.rep.finished_ms = time_now_ms();
		report_write(s.sandbox, s.doc.l.task_id, &s.rep);
		goto out;
	}
	const struct task_launch *l = &s.doc.l;
	if (read_pidfile(s.sandbox) != getpid()) { /* started by hand */
		char *pidfile = sandbox_file(s.sandbox, "supervisor.pid");
		char *pid = xasprintf("%d\n", (int)getpid());
		write_atomic(pidfile, pid, strlen(pid), false);
		free(pid);
		free(pidfile);
	}
	slog("supervising task '%s'", l->task_id);
	publish(&s);

	if (is_oci(l))
		s.oci = xcalloc(1, sizeof *s.oci);
	/* oci, docker: the image's users */
	if (l->user && !s.oci && !is_docker(l)) {
		if (resolve_user(l->user, &user) < 0) {
			fail(&s, 126, "unknown user '%s'", l->user);
			goto done;
		}
	}
	env = build_env(l, l->user ? user.home : workdir);

	handle_signals(&s); /* stopped before it started? */
	if (s.stopping)
		goto done;

	if (s.oci || is_docker(l)) {
		/* the runtime (Docker) makes the cgroup */
	} else if (cgroup_detect() != CGROUP_NONE) {
		struct cgroup_limits lim = {.cpu = l->cpu, .memory_bytes = l->memory_bytes};
		const char *parent = l->cgroup_parent ? l->cgroup_parent : DEFAULT_CGROUP_PARENT;
		if (cgroup_create(parent, l->task_id, &lim, &s.cg, &err) < 0) {
			fail(&s, 126, "%s", err.msg);
			goto done;
		}
	} else if (l->cpu > 0 || l->memory_bytes) {
		fail(&s, 126, "cannot limit resources: no cgroup filesystem under '%s'",
		     CGROUP_ROOT);
		goto done;
	} else {
		slog("no cgroups on this host: running without");
	}

	if (pipe2(outp, O_CLOEXEC) < 0 || pipe2(errp, O_CLOEXEC) < 0) {
		fail(&s, 126, "cannot create pipes: %s", errstr(errno));
		goto done;
	}
	uint64_t max_bytes = l->log_max_bytes ? l->log_max_bytes : DEFAULT_LOG_MAX_BYTES;
	int max_files = l->log_max_files > 0 ? l->log_max_files : DEFAULT_LOG_MAX_FILES;
	char *p = sandbox_file(s.sandbox, "stdout");
	int r1 = logfile_open(&s.out_log, p, max_bytes, max_files);
	free(p);
	p = sandbox_file(s.sandbox, "stderr");
	int r2 = logfile_open(&s.err_log, p, max_bytes, max_files);
	free(p);
	if (r1 < 0 || r2 < 0) {
		fail(&s, 126, "cannot open the task's log files: %s", errstr(r1 < 0 ? r1 : r2));
		goto done;
	}
	if (is_docker(l)) {
		for (int i = 0; i < 2; i++)
			close(outp[i]), close(errp[i]);
		run_docker(&s);
		goto done;
	}

	struct isolation iso = {
	    .hostname = l->task_id,
	    .workdir = workdir,
	    .tmpdir = tmpdir,
	    .argv = l->argv,
	    .envp = env,
	    .user = l->user,
	    .uid = user.uid,
	    .gid = user.gid,
	    .groups = user.groups,
	    .ngroups = (size_t)user.ngroups,
	    .cg = s.cg,
	    .stdout_fd = outp[1],
	    .stderr_fd = errp[1],
	    .volume_host = l->volume_host,
	    .volume_path = l->volume_path,
	    .volume_ro = l->volume_ro,
	    .nvolumes = l->nvolumes,
	};
	if (s.oci)
		s.init_pid = start_oci(&s, outp[1], errp[1]);
	else
		s.init_pid = isolation_start(&iso, &s.ctl_fd, &err);
	/* Only the program may hold the write ends, or EOF never comes. */
	close(outp[1]);
	close(errp[1]);
	if (s.init_pid <= 0) { /* 0: oci, stopped while the image was prepared */
		if (s.init_pid < 0)
			fail(&s, 126, "%s", err.msg);
		close(outp[0]);
		close(errp[0]);
		goto done;
	}
	s.out_fd = outp[0];
	s.err_fd = errp[0];
	fcntl(s.out_fd, F_SETFL, O_NONBLOCK);
	fcntl(s.err_fd, F_SETFL, O_NONBLOCK);
	if (s.ctl_fd >= 0)
		fcntl(s.ctl_fd, F_SETFL, O_NONBLOCK);
	run_loop(&s);
	if (!s.init_done) { /* left the loop on an error: no orphans */
		kill(s.init_pid, SIGKILL);
		int st;
		if (waitpid(s.init_pid, &st, 0) == s.init_pid) {
			s.init_done = true;
			s.init_status = st;
		}
	}
done:
	finish(&s);
out:
	if (s.ctl_fd >= 0)
		close(s.ctl_fd);
	if (s.out_fd >= 0)
		close(s.out_fd);
	if (s.err_fd >= 0)
		close(s.err_fd);
	if (s.notify_fd >= 0)
		close(s.notify_fd);
	if (s.sigfd >= 0)
		close(s.sigfd);
	logfile_close(&s.out_log);
	logfile_close(&s.err_log);
	cgroup_free(s.cg);
	free(s.oci);
	launch_doc_free(&s.doc);
	free_strv(env);
	free(user.groups);
	free(user.home);
	free(workdir);
	free(tmpdir);
	free(s.sandbox);
	return 0;
}
