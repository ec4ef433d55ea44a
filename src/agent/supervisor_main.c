/* supervisor_main.c - the per-task supervisor, `berth supervise SANDBOX`.
 * See supervisor.h for the sandbox layout and contract; what differs per
 * driver is in driver/driver_*.c.
 *
 * Choices made here:
 *  - exec: the program runs as the spec's user, else as nobody (uid 65534;
 *    a bare 65534:65534 where the host has no such user); a user that is
 *    root (by name or number) only when the agent allows root tasks.
 *  - Its working directory is SANDBOX/work (mode 0700, its user's), shown
 *    to the task at the sandbox's path (docs/decisions.md: the cwd is the
 *    sandbox); its /tmp is SANDBOX/tmp (mode 1777). The sandbox itself
 *    stays root's (0700): a task must not replace supervisor.pid or
 *    status.json, nor read launch.json.
 *  - Its environment is exactly the launch's env, plus PATH (a default)
 *    and HOME (the spec's user's home, else the working directory) when
 *    absent, plus BERTH_TASK_ID.
 *  - The hostname is the task id cut to 63 characters.
 *  - Exit codes when the program could not be started: 127 when it does
 *    not exist, 126 for every other reason (unknown user, exec denied,
 *    namespace or cgroup failure), each with a message saying why.
 *  - A program killed by signal N reports signal N and exit_code 128+N,
 *    as a shell would.
 *  - A supervisor's own diagnostics go to SANDBOX/supervisor.log.
 */

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
#include "agent/driver/driver.h"
#include "agent/driver/exec_isolation.h"
#include "agent/supervisor-internal.h"
#include "agent/secret_files.h"

#define DEFAULT_PATH "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
#define DEFAULT_LOG_MAX_BYTES (10ull << 20)
#define DEFAULT_LOG_MAX_FILES 3
/* After the init is gone, how long output may still trickle in. */
#define DRAIN_MS 2000

void sup_log(const char *fmt, ...)
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

void sup_publish(struct sup *s)
{
	int r = report_write(s->sandbox, s->doc.l.task_id, &s->rep);
	if (r < 0)
		sup_log("cannot write '%s/status.json': %s", s->sandbox, err_str(r));
	notify(s);
}

void sup_running(struct sup *s, pid_t pid)
{
	s->rep.phase = PHASE_RUNNING;
	s->rep.pid = pid;
	s->rep.started_ms = time_now_ms();
	sup_publish(s);
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

void sup_fail(struct sup *s, int code, const char *fmt, ...)
{
	if (s->failed)
		return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(s->fail_msg, sizeof s->fail_msg, fmt, ap);
	va_end(ap);
	s->failed = true;
	s->fail_code = code;
	sup_log("%s", s->fail_msg);
}

/* Kill everything now: SIGKILL to the init takes its whole pid namespace
 * down; the cgroup sweep catches anything else that got into the cgroup. */
static void hard_kill(struct sup *s)
{
	s->hard_killed = true;
	if (s->driver->kill)
		s->driver->kill(s, SIGKILL);
	if (s->cg) {
		int r = cgroup_kill(s->cg);
		if (r < 0)
			sup_log("cannot empty the task's cgroup: %s", err_str(r));
	}
}

static void begin_stop(struct sup *s)
{
	if (s->stopping || s->init_done || s->prog_exited)
		return;
	s->stopping = true;
	s->rep.stopped = true;
	sup_log("stop requested, grace %llums", (unsigned long long)s->doc.l.stop_grace_ms);
	if (s->doc.l.stop_grace_ms == 0) {
		hard_kill(s);
		return;
	}
	/* The init forwards it to the program's process group. Not started
	 * yet (init_pid 0): supervisor_main checks for the stop itself. */
	if (s->driver->kill)
		s->driver->kill(s, SIGTERM);
	s->stop_deadline = time_mono_ms() + (int64_t)s->doc.l.stop_grace_ms;
}

void sup_handle_signals(struct sup *s)
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
			if (s->driver->init_is_program) {
				s->prog_exited = true;
				s->prog_status = st;
			}
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
			sup_publish(s);
			break;
		case ISO_FAILED:
			sup_fail(s, m.value, "%s", m.text);
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
				sup_log("cannot write '%s': %s", lf->path, err_str(r));
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
				sup_log("grace period over, killing the task");
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
				sup_log("output pipes still open %dms after the task ended",
					DRAIN_MS);
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
			sup_log("poll: %s", err_str(errno));
			return;
		}
		if (n <= 0)
			continue;
		if (p[0].revents)
			sup_handle_signals(s);
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
			sup_log("cannot empty the task's cgroup: %s", err_str(e));
		e = cgroup_remove(s->cg);
		if (e < 0)
			sup_log("cannot remove the task's cgroup: %s", err_str(e));
	}
	if (s->driver->cleanup)
		s->driver->cleanup(s);
	if (s->doc.l.nsecrets)
		secret_files_remove(s->sandbox); /* the task is gone: so are its secrets */
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
	sup_log("task ended: %s", r->message);
	sup_publish(s);
}

/* User, groups and home of the task's user, looked up on the host. */

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

/* The task's secrets (agent/secret_files.h): the files go to the task's
 * user; oci and docker show them as read-only bind mounts, appended to the
 * volumes (the runtime makes their mount points inside the container);
 * exec binds them itself (exec_isolation.c). */
static int sup_secrets(struct sup *s)
{
	struct launch_doc *d = &s->doc;
	struct task_launch *l = &d->l;
	if (!l->nsecrets)
		return 0;
	uid_t uid = s->user.uid;
	gid_t gid = s->user.gid;
	if (s->driver->runtime_isolates) {
		/* The image's users are not the host's: a numeric user (UID or
		 * UID:GID) owns them, any other user leaves them to root. */
		unsigned u = 0, g = 0;
		char extra;
		int k = l->user ? sscanf(l->user, "%u:%u%c", &u, &g, &extra) : 0;
		uid = k >= 1 && k <= 2 ? u : 0;
		gid = k == 2 ? g : uid;
	}
	struct berr err = {0};
	if (secret_files_own(s->sandbox, uid, gid, &err) < 0) {
		sup_fail(s, 126, "%s", err.msg);
		return -1;
	}
	if (s->driver->runtime_isolates) {
		size_t n = l->nvolumes + l->nsecrets;
		d->vhost = xrealloc(d->vhost, (n + 1) * sizeof *d->vhost);
		d->vpath = xrealloc(d->vpath, (n + 1) * sizeof *d->vpath);
		d->vro = xrealloc(d->vro, (n + 1) * sizeof *d->vro);
		for (size_t i = 0; i < l->nsecrets; i++) {
			d->vhost[l->nvolumes + i] = l->secret_file[i];
			d->vpath[l->nvolumes + i] = l->secret_path[i];
			d->vro[l->nvolumes + i] = true;
		}
		l->nvolumes = n;
		l->volume_host = d->vhost;
		l->volume_path = d->vpath;
		l->volume_ro = d->vro;
	}
	return 0;
}

/* exec: the task's user (the spec's, or nobody), refused when it is root
 * and the agent does not allow it; then its working directory, which the
 * user owns. A failure is the task's (sup_fail). */
#define DEFAULT_TASK_USER "nobody"
#define DEFAULT_TASK_UID 65534

static int sup_exec_user(struct sup *s)
{
	const struct task_launch *l = &s->doc.l;
	char num[16];
	snprintf(num, sizeof num, "%d", DEFAULT_TASK_UID);
	s->user_name = l->user ? l->user : DEFAULT_TASK_USER;
	if (resolve_user(l->user ? l->user : num, &s->user) < 0) {
		sup_fail(s, 126, "unknown user '%s'", s->user_name);
		return -1;
	}
	if (s->user.uid == 0 && !l->allow_root_tasks) {
		sup_fail(s, 126,
			 "task user '%s' is root, which this agent refuses: run the task as "
			 "another user, or start the agent with --allow-root-tasks",
			 l->user);
		return -1;
	}
	s->workdir_src = sandbox_file(s->sandbox, "work");
	int fd = -1;
	if ((mkdir(s->workdir_src, 0700) < 0 && errno != EEXIST) ||
	    (fd = open(s->workdir_src, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)) < 0 ||
	    fchown(fd, s->user.uid, s->user.gid) < 0 || fchmod(fd, 0700) < 0) {
		sup_fail(s, 126, "cannot make the working directory '%s': %s", s->workdir_src,
			 err_str(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	close(fd);
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

/* The oci driver: image, bundle, `runc run --detach`. A failure is the
 * task's (sup_fail() has the message). Returns the container init's host pid,
 * 0 when a stop came while the image was being prepared, -1 on failure. */

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
	s.workdir = xstrdup(s.sandbox);
	s.tmpdir = sandbox_file(s.sandbox, "tmp");
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
		sup_log("%s", err.msg);
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
	s.driver = driver_get(l->driver);
	if (read_pidfile(s.sandbox) != getpid()) { /* started by hand */
		char *pidfile = sandbox_file(s.sandbox, "supervisor.pid");
		char *pid = xasprintf("%d\n", (int)getpid());
		sandbox_write_atomic(pidfile, pid, strlen(pid), false);
		free(pid);
		free(pidfile);
	}
	sup_log("supervising task '%s'", l->task_id);
	sup_publish(&s);

	/* oci, docker: the image's users */
	if (!s.driver->runtime_isolates && sup_exec_user(&s) < 0)
		goto done;
	s.env = build_env(l, l->user && s.user.home ? s.user.home : s.workdir);
	if (sup_secrets(&s) < 0)
		goto done;

	sup_handle_signals(&s); /* stopped before it started? */
	if (s.stopping)
		goto done;

	if (s.driver->runtime_isolates) {
		/* the runtime (runc, Docker) makes the cgroup */
	} else if (cgroup_detect() != CGROUP_NONE) {
		struct cgroup_limits lim = {.cpu = l->cpu, .memory_bytes = l->memory_bytes};
		const char *parent = l->cgroup_parent ? l->cgroup_parent : DEFAULT_CGROUP_PARENT;
		if (cgroup_create(parent, l->task_id, &lim, &s.cg, &err) < 0) {
			sup_fail(&s, 126, "%s", err.msg);
			goto done;
		}
	} else if (l->cpu > 0 || l->memory_bytes) {
		sup_fail(&s, 126, "cannot limit resources: no cgroup filesystem under '%s'",
			 CGROUP_ROOT);
		goto done;
	} else {
		sup_log("no cgroups on this host: running without");
	}

	if (pipe2(outp, O_CLOEXEC) < 0 || pipe2(errp, O_CLOEXEC) < 0) {
		sup_fail(&s, 126, "cannot create pipes: %s", err_str(errno));
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
		sup_fail(&s, 126, "cannot open the task's log files: %s",
			 err_str(r1 < 0 ? r1 : r2));
		goto done;
	}
	if (s.driver->run) {
		for (int i = 0; i < 2; i++)
			close(outp[i]), close(errp[i]);
		s.driver->run(&s);
		goto done;
	}
	s.init_pid = s.driver->start(&s, outp[1], errp[1], &err);
	/* Only the program may hold the write ends, or EOF never comes. */
	close(outp[1]);
	close(errp[1]);
	if (s.init_pid <= 0) { /* 0: stopped while starting (an image pull) */
		if (s.init_pid < 0)
			sup_fail(&s, 126, "%s", err.msg);
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
	launch_doc_free(&s.doc);
	strv_free(s.env);
	free(s.user.groups);
	free(s.user.home);
	free(s.workdir);
	free(s.workdir_src);
	free(s.tmpdir);
	free(s.sandbox);
	return 0;
}
