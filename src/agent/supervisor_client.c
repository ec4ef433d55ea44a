/* supervisor_client.c - the agent's handle on a task's supervisor: start it
 * detached (supervisor_launch), find it again, ask it to stop. */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "agent/driver/driver.h"
#include "agent/supervisor-internal.h"

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
	int log = open(a->logfile, O_WRONLY | O_CREAT | O_APPEND, 0600);
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
	const struct driver_ops *drv = driver_get(l->driver);
	if (drv->needs_image && (!l->image || !*l->image))
		return berr_set(err, 400, "task '%s': driver %s needs an image", l->task_id,
				task_driver_name(l->driver));
	/* oci, docker: no command = the image's own */
	if (!drv->needs_image && (l->argc == 0 || !l->argv || !l->argv[0] || !*l->argv[0]))
		return berr_set(err, 400, "task '%s': empty command", l->task_id);
	if (!exe || !*exe)
		return berr_set(err, 0, "task '%s': no supervisor executable", l->task_id);

	int r = mkdir_p(l->sandbox_dir, 0755);
	if (r < 0)
		return berr_set(err, 0, "cannot create sandbox '%s': %s", l->sandbox_dir,
				err_str(r));
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
		berr_set(err, 0, "cannot create '%s': %s", tmp, err_str(errno));
		goto out;
	}
	/* A status from an earlier run of this sandbox would be taken for
	 * this run's. */
	unlink(status_path);

	json_t *doc = launch_to_json(l, sandbox);
	text = json_dumps(doc, JSON_INDENT(2));
	json_decref(doc);
	r = sandbox_write_atomic(launch_path, text, strlen(text), false);
	if (r < 0) {
		berr_set(err, 0, "cannot write '%s': %s", launch_path, err_str(r));
		goto out;
	}

	if (pipe2(pipefd, O_CLOEXEC) < 0) {
		berr_set(err, 0, "cannot create a pipe: %s", err_str(errno));
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
		berr_set(err, 0, "cannot fork: %s", err_str(errno));
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
		berr_set(err, 0, "cannot run '%s': %s", exe, err_str(exec_errno));
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
