/* exec_enter.c - a command inside a running exec task (exec_enter.h). */
#include "agent/driver/exec_enter.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/capability.h>
#include <linux/filter.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "agent/cgroup.h"
#include "agent/driver/seccomp_profile.h"

extern char **environ;

#define DEFAULT_PATH "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
/* The task's environment we read at most. */
#define ENVIRON_MAX (1u << 20)

/* ---- /proc/PID/status ---------------------------------------------------- */

/* The value of "Key:\t..." in status, or NULL. */
static const char *status_field(const char *status, const char *key)
{
	size_t k = strlen(key);
	for (const char *l = status; l && *l; l = strchr(l, '\n'), l = l ? l + 1 : NULL)
		if (!strncmp(l, key, k) && l[k] == ':')
			return l + k + 1;
	return NULL;
}

static int parse_ids(const char *status, const char *key, unsigned *ids, struct berr *err)
{
	const char *v = status_field(status, key);
	if (!v)
		return berr_set(err, 0, "no '%s' line in the program's status", key);
	for (int i = 0; i < 4; i++) {
		char *end;
		errno = 0;
		unsigned long x = strtoul(v, &end, 10);
		if (end == v || errno || x > 0xffffffffUL)
			return berr_set(err, 0, "bad '%s' line in the program's status", key);
		ids[i] = (unsigned)x;
		v = end;
	}
	return 0;
}

static int parse_cap(const char *status, const char *key, uint64_t *out, bool required,
		     struct berr *err)
{
	const char *v = status_field(status, key);
	*out = 0;
	if (!v)
		return required ? berr_set(err, 0, "no '%s' line in the program's status", key) : 0;
	char *end;
	errno = 0;
	unsigned long long x = strtoull(v, &end, 16);
	if (end == v || errno)
		return berr_set(err, 0, "bad '%s' line in the program's status", key);
	*out = x;
	return 0;
}

int proc_creds_parse(const char *status, struct proc_creds *c, struct berr *err)
{
	memset(c, 0, sizeof *c);
	unsigned ids[4];
	if (parse_ids(status, "Uid", ids, err) < 0)
		return -1;
	for (int i = 0; i < 4; i++)
		c->uid[i] = (uid_t)ids[i];
	if (parse_ids(status, "Gid", ids, err) < 0)
		return -1;
	for (int i = 0; i < 4; i++)
		c->gid[i] = (gid_t)ids[i];
	if (parse_cap(status, "CapInh", &c->cap_inh, true, err) < 0 ||
	    parse_cap(status, "CapPrm", &c->cap_prm, true, err) < 0 ||
	    parse_cap(status, "CapEff", &c->cap_eff, true, err) < 0 ||
	    parse_cap(status, "CapBnd", &c->cap_bnd, true, err) < 0 ||
	    parse_cap(status, "CapAmb", &c->cap_amb, false, err) < 0)
		return -1;
	const char *g = status_field(status, "Groups");
	const char *eol = g ? strchr(g, '\n') : NULL;
	while (g && (!eol || g < eol)) {
		char *end;
		unsigned long x = strtoul(g, &end, 10);
		if (end == g || (eol && end > eol))
			break;
		c->groups = xrealloc(c->groups, (c->ngroups + 1) * sizeof *c->groups);
		c->groups[c->ngroups++] = (gid_t)x;
		g = end;
	}
	const char *v = status_field(status, "NoNewPrivs");
	c->no_new_privs = v && atoi(v) == 1;
	v = status_field(status, "Seccomp");
	c->seccomp = v ? atoi(v) : 0;
	return 0;
}

/* ---- the task's namespaces ------------------------------------------------- */

/* In the order they are joined: the user namespace first (it owns the
 * others), the mount namespace last (it changes what paths mean). */
static const struct {
	const char *name;
	int type;
} nstypes[] = {
    {"user", CLONE_NEWUSER}, {"ipc", CLONE_NEWIPC},	  {"uts", CLONE_NEWUTS},
    {"net", CLONE_NEWNET},   {"cgroup", CLONE_NEWCGROUP}, {"pid", CLONE_NEWPID},
    {"mnt", CLONE_NEWNS},
};

struct target {
	int nsfd[ARRAY_SIZE(nstypes)]; /* -1: the same as ours, or none */
	int rootfd, cwdfd, pidfd;
	struct proc_creds creds;
	char **env;
	/* The task's user namespace maps ids (when it has its own). */
	char *uid_map, *gid_map;
	/* The files by which the command enters the task's cgroup (opened
	 * while the host's cgroup filesystem is still in view), and the
	 * task's seccomp filter, compiled before the fork: the forked child
	 * does as little as possible inside the task's cpu quota. */
	int cgfds[CGROUP_MAX_ENTRY_FDS];
	int ncgfds;
	struct sock_fprog bpf;
};

static void target_release(struct target *t)
{
	for (size_t i = 0; i < ARRAY_SIZE(nstypes); i++)
		if (t->nsfd[i] >= 0)
			close(t->nsfd[i]);
	if (t->rootfd >= 0)
		close(t->rootfd);
	if (t->cwdfd >= 0)
		close(t->cwdfd);
	if (t->pidfd >= 0)
		close(t->pidfd);
	free(t->creds.groups);
	strv_free(t->env);
	free(t->uid_map);
	free(t->gid_map);
	for (int i = 0; i < t->ncgfds; i++)
		close(t->cgfds[i]);
	free(t->bpf.filter);
}

static int open_namespaces(struct target *t, pid_t pid, struct berr *err)
{
	for (size_t i = 0; i < ARRAY_SIZE(nstypes); i++) {
		char theirs[64], ours[64];
		snprintf(theirs, sizeof theirs, "/proc/%d/ns/%s", (int)pid, nstypes[i].name);
		snprintf(ours, sizeof ours, "/proc/self/ns/%s", nstypes[i].name);
		struct stat a, b;
		if (stat(ours, &b) < 0)
			continue; /* a kernel without this namespace type */
		if (stat(theirs, &a) < 0)
			return berr_set(err, 0, "cannot read '%s': %s", theirs, err_str(errno));
		if (a.st_ino == b.st_ino && a.st_dev == b.st_dev)
			continue;
		t->nsfd[i] = open(theirs, O_RDONLY | O_CLOEXEC);
		if (t->nsfd[i] < 0)
			return berr_set(err, 0, "cannot open '%s': %s", theirs, err_str(errno));
	}
	return 0;
}

static char **read_environ(pid_t pid)
{
	char path[64];
	snprintf(path, sizeof path, "/proc/%d/environ", (int)pid);
	char *text = NULL;
	size_t len = 0;
	if (file_read_all(path, &text, &len) < 0 || len > ENVIRON_MAX)
		len = 0;
	size_t n = 0;
	for (size_t i = 0; i < len; i++)
		n += text[i] == 0;
	char **env = xcalloc(n + 2, sizeof *env);
	size_t k = 0;
	bool path_set = false;
	for (size_t i = 0; i < len;) {
		size_t l = strnlen(text + i, len - i);
		if (l && memchr(text + i, '=', l)) {
			env[k] = xstrndup(text + i, l);
			path_set |= !strncmp(env[k], "PATH=", 5);
			k++;
		}
		i += l + 1;
	}
	if (!path_set)
		env[k++] = xstrdup(DEFAULT_PATH);
	env[k] = NULL;
	free(text);
	return env;
}

/* Is pid in the task's cgroup <parent>/<task_id> (any hierarchy)? */
static bool in_task_cgroup(pid_t pid, const char *parent, const char *task_id)
{
	char path[64];
	snprintf(path, sizeof path, "/proc/%d/cgroup", (int)pid);
	_cleanup_free_ char *text = NULL;
	if (file_read_all(path, &text, NULL) < 0)
		return false;
	_cleanup_free_ char *want = xasprintf("/%s/%s", parent, task_id);
	for (char *l = strtok(text, "\n"); l; l = strtok(NULL, "\n")) {
		char *p = strchr(l, ':');
		p = p ? strchr(p + 1, ':') : NULL;
		if (p && !strcmp(p + 1, want))
			return true;
	}
	return false;
}

static int pidfd_open_(pid_t pid)
{
#ifdef SYS_pidfd_open
	return (int)syscall(SYS_pidfd_open, pid, 0);
#else
	errno = ENOSYS;
	return -1;
#endif
}

/* Is the process of pidfd still running (not exited, not a zombie)? */
static bool pidfd_alive(int pidfd)
{
#ifdef SYS_pidfd_send_signal
	return syscall(SYS_pidfd_send_signal, pidfd, 0, NULL, 0) == 0;
#else
	(void)pidfd;
	return true;
#endif
}

static int target_open(struct target *t, const struct exec_enter *e, struct berr *err)
{
	pid_t pid = e->pid;
	if (pid <= 0)
		return berr_set(err, 0, "task '%s' has no running program", e->task_id);
	t->pidfd = pidfd_open_(pid);
	if (t->pidfd < 0 && errno == ESRCH)
		return berr_set(err, 0, "task '%s': its program (pid %d) has exited", e->task_id,
				(int)pid);
	char path[64];
	snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
	_cleanup_free_ char *status = NULL;
	int r = file_read_all(path, &status, NULL);
	if (r < 0)
		return berr_set(err, 0, "cannot read '%s': %s", path, err_str(r));
	if (proc_creds_parse(status, &t->creds, err) < 0)
		return -1;
	if (open_namespaces(t, pid, err) < 0)
		return -1;
	snprintf(path, sizeof path, "/proc/%d/root", (int)pid);
	t->rootfd = open(path, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (t->rootfd < 0)
		return berr_set(err, 0, "cannot open '%s': %s", path, err_str(errno));
	snprintf(path, sizeof path, "/proc/%d/cwd", (int)pid);
	t->cwdfd = open(path, O_PATH | O_DIRECTORY | O_CLOEXEC); /* -1: its root */
	t->env = read_environ(pid);
	if (t->nsfd[0] >= 0) {
		snprintf(path, sizeof path, "/proc/%d/uid_map", (int)pid);
		file_read_all(path, &t->uid_map, NULL);
		snprintf(path, sizeof path, "/proc/%d/gid_map", (int)pid);
		file_read_all(path, &t->gid_map, NULL);
	}
	/* Everything above was the task's only if pid still is its program
	 * (or another of its processes): not recycled by something else. */
	if (e->cgroup_parent && cgroup_detect() != CGROUP_NONE &&
	    !in_task_cgroup(pid, e->cgroup_parent, e->task_id))
		return berr_set(err, 0, "task '%s': pid %d is not in its cgroup '%s/%s'",
				e->task_id, (int)pid, e->cgroup_parent, e->task_id);
	if (t->pidfd >= 0 && !pidfd_alive(t->pidfd))
		return berr_set(err, 0, "task '%s': its program (pid %d) has exited", e->task_id,
				(int)pid);
	return 0;
}

/* ---- becoming the task's user ---------------------------------------------- */

/* A host id as the task's user namespace sees it ("inside outside count"
 * lines); (unsigned)-1 when it is not mapped. No map = the same id. */
static unsigned map_id(const char *map, unsigned id)
{
	if (!map)
		return id;
	for (const char *l = map; l && *l; l = strchr(l, '\n'), l = l ? l + 1 : NULL) {
		unsigned long in, out, cnt;
		if (sscanf(l, "%lu %lu %lu", &in, &out, &cnt) == 3 && id >= out && id - out < cnt)
			return (unsigned)(in + (id - out));
	}
	return (unsigned)-1;
}

static int last_cap(void)
{
	char *text = NULL;
	int v = CAP_LAST_CAP;
	if (file_read_all("/proc/sys/kernel/cap_last_cap", &text, NULL) == 0)
		v = atoi(text);
	free(text);
	return v > 0 && v < 64 ? v : CAP_LAST_CAP;
}

static int set_caps(uint64_t eff, uint64_t prm, uint64_t inh)
{
	struct __user_cap_header_struct h = {.version = _LINUX_CAPABILITY_VERSION_3, .pid = 0};
	struct __user_cap_data_struct d[2] = {
	    {(uint32_t)eff, (uint32_t)prm, (uint32_t)inh},
	    {(uint32_t)(eff >> 32), (uint32_t)(prm >> 32), (uint32_t)(inh >> 32)},
	};
	return (int)syscall(SYS_capset, &h, d);
}

/* In the forked child: the task's groups, ids and capabilities, then
 * no_new_privs. Writes why it failed to stderr. */
static int become_task_user(const struct target *t)
{
	const struct proc_creds *c = &t->creds;
	/* The bounding set first: dropping needs CAP_SETPCAP, which goes next. */
	int last = last_cap();
	for (int i = 0; i <= last; i++)
		if (!(c->cap_bnd & (1ULL << i)) && prctl(PR_CAPBSET_DROP, i, 0, 0, 0) < 0 &&
		    errno != EINVAL) {
			fprintf(stderr, "cannot drop capability %d: %s\n", i, err_str(errno));
			return -1;
		}
	prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);
	gid_t *groups = xcalloc(c->ngroups + 1, sizeof *groups);
	size_t ng = 0;
	for (size_t i = 0; i < c->ngroups; i++) {
		unsigned g = map_id(t->gid_map, c->groups[i]);
		if (g != (unsigned)-1)
			groups[ng++] = (gid_t)g;
	}
	int r = setgroups(ng, groups);
	free(groups);
	if (r < 0 && !(errno == EPERM && t->nsfd[0] >= 0)) { /* a user ns may deny it */
		fprintf(stderr, "cannot set the task's groups: %s\n", err_str(errno));
		return -1;
	}
	unsigned g[4], u[4];
	for (int i = 0; i < 4; i++) {
		g[i] = map_id(t->gid_map, c->gid[i]);
		u[i] = map_id(t->uid_map, c->uid[i]);
	}
	if (setresgid(g[0], g[1], g[2]) < 0 || setresuid(u[0], u[1], u[2]) < 0) {
		fprintf(stderr, "cannot become uid %u gid %u: %s\n", u[1], g[1], err_str(errno));
		return -1;
	}
	/* A root task keeps its own sets; a move off uid 0 cleared ours
	 * already (and then the task's cannot be raised: keep none). */
	if (set_caps(c->cap_eff, c->cap_prm, c->cap_inh) < 0 && set_caps(0, 0, 0) < 0) {
		fprintf(stderr, "cannot set the task's capabilities: %s\n", err_str(errno));
		return -1;
	}
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) {
		fprintf(stderr, "cannot set no_new_privs: %s\n", err_str(errno));
		return -1;
	}
	/* A program under a seccomp filter (every exec task's: the default
	 * profile, exec_isolation.c) gets a check under the same one. */
	if (c->seccomp == 2) {
		int r = seccomp_profile_load(&t->bpf);
		if (r < 0) {
			fprintf(stderr, "cannot load the task's seccomp profile: %s\n",
				err_str(-r));
			return -1;
		}
	}
	return 0;
}

/* ---- the whole ------------------------------------------------------------ */

/* The cgroup namespace is the forked command's to join, once it is in
 * the task's cgroup (join_cgroup). */
static bool joined_by_child(size_t ns)
{
	return nstypes[ns].type == CLONE_NEWCGROUP;
}

/* Before anything is joined: what the command needs to enter the task's
 * cgroup and load its seccomp filter. */
static int prepare(struct target *t, const struct exec_enter *e, struct berr *err)
{
	if (e->cgroup_parent && cgroup_detect() != CGROUP_NONE) {
		struct cgroup *cg = NULL;
		int r = cgroup_open(cgroup_detect(), NULL, e->cgroup_parent, e->task_id, &cg);
		if (r == 0)
			r = cgroup_open_entry(cg, t->cgfds);
		cgroup_free(cg);
		if (r < 0)
			return berr_set(err, 0, "cannot join the task's cgroup '%s/%s': %s",
					e->cgroup_parent, e->task_id, err_str(r));
		t->ncgfds = r;
	}
	if (t->creds.seccomp == 2) {
		int r = seccomp_profile_bpf(&t->bpf);
		if (r < 0)
			return berr_set(err, 0, "cannot build the task's seccomp profile: %s",
					err_str(-r));
	}
	return 0;
}

/* In the forked child, right before it becomes the task's user and execs:
 * the task's cgroup, then its cgroup namespace. Writes why it failed to
 * stderr. */
static int join_cgroup(const struct target *t)
{
	int r = cgroup_enter_by_fds(t->cgfds, t->ncgfds);
	if (r < 0) {
		fprintf(stderr, "cannot join the task's cgroup: %s\n", err_str(-r));
		return -1;
	}
	for (size_t i = 0; i < ARRAY_SIZE(nstypes); i++)
		if (joined_by_child(i) && t->nsfd[i] >= 0 &&
		    setns(t->nsfd[i], nstypes[i].type) < 0) {
			fprintf(stderr, "cannot join the task's %s namespace: %s\n",
				nstypes[i].name, err_str(errno));
			return -1;
		}
	return 0;
}

static int join(const struct target *t, struct berr *err)
{
	for (size_t i = 0; i < ARRAY_SIZE(nstypes); i++)
		if (t->nsfd[i] >= 0 && !joined_by_child(i) &&
		    setns(t->nsfd[i], nstypes[i].type) < 0)
			return berr_set(err, 0, "cannot join the task's %s namespace: %s",
					nstypes[i].name, err_str(errno));
	if (fchdir(t->rootfd) < 0 || chroot(".") < 0)
		return berr_set(err, 0, "cannot enter the task's root: %s", err_str(errno));
	if (t->cwdfd < 0 || fchdir(t->cwdfd) < 0) {
		if (chdir("/") < 0)
			return berr_set(err, 0, "cannot enter the task's root: %s", err_str(errno));
	}
	return 0;
}

static void close_fd(int *fd)
{
	if (*fd >= 0)
		close(*fd);
	*fd = -1;
}

static int wait_child(pid_t pid, int *st)
{
	while (waitpid(pid, st, 0) < 0)
		if (errno != EINTR)
			return -1;
	return 0;
}

static int shell_status(int st)
{
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* The forked "joiner": into the task's namespaces and root, then fork the
 * command (in the task's pid namespace) and wait for it; exits with its
 * status. Why not the caller itself: a process that joined another pid
 * namespace and root cannot be inspected by its own tools any more
 * (LeakSanitizer's exit-time check, run from a child of the caller, spins
 * for ever there), and the caller need not change at all. A failure before
 * the command runs goes to errfd as a message, and the joiner exits 126. */
static _Noreturn void joiner(struct target *t, const struct exec_enter *e, int errfd)
{
	struct berr err = {0};
	prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
	if (join(t, &err) < 0)
		goto fail;
	pid_t child = fork();
	if (child < 0) {
		berr_set(&err, 0, "cannot fork in the task: %s", err_str(errno));
		goto fail;
	}
	if (child == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
		/* Only now the task's cgroup: what berth did to get here (its
		 * start, reading the task, the namespaces) was not the task's
		 * work and must not wait on its cpu quota; the command is. */
		if (join_cgroup(t) < 0 || become_task_user(t) < 0)
			_exit(126);
		environ = t->env; /* execvp looks argv[0] up in the task's PATH */
		execvp(e->argv[0], e->argv);
		int en = errno;
		fprintf(stderr, "cannot run '%s' in the task: %s\n", e->argv[0], err_str(en));
		_exit(en == ENOENT ? 127 : 126);
	}
	int st;
	if (wait_child(child, &st) < 0) {
		berr_set(&err, 0, "cannot wait for the command: %s", err_str(errno));
		goto fail;
	}
	_exit(shell_status(st));
fail:
	if (write(errfd, err.msg, strlen(err.msg)) < 0)
		_exit(126);
	_exit(126);
}

int exec_enter_run(const struct exec_enter *e, struct berr *err)
{
	struct target t;
	memset(&t, 0, sizeof t);
	for (size_t i = 0; i < ARRAY_SIZE(nstypes); i++)
		t.nsfd[i] = -1;
	t.rootfd = t.cwdfd = t.pidfd = -1;
	t.ncgfds = 0;
	int rc = -1, p[2] = {-1, -1};
	if (target_open(&t, e, err) < 0 || prepare(&t, e, err) < 0)
		goto out;
	if (pipe2(p, O_CLOEXEC) < 0) {
		berr_set(err, 0, "cannot run a command in the task: %s", err_str(errno));
		goto out;
	}
	fflush(NULL);
	pid_t pid = fork();
	if (pid < 0) {
		berr_set(err, 0, "cannot run a command in the task: %s", err_str(errno));
		goto out;
	}
	if (pid == 0)
		joiner(&t, e, p[1]);
	close_fd(&p[1]);
	int st;
	if (wait_child(pid, &st) < 0) {
		berr_set(err, 0, "cannot wait for the command: %s", err_str(errno));
		goto out;
	}
	char msg[BERR_MSG_MAX];
	ssize_t n = read(p[0], msg, sizeof msg - 1);
	if (n > 0) {
		msg[n] = 0;
		berr_set(err, 0, "%s", msg);
		goto out;
	}
	rc = shell_status(st);
out:
	close_fd(&p[0]);
	close_fd(&p[1]);
	target_release(&t);
	return rc;
}
