/* cgroup.c - version detection, the public cgroup API, and the file helpers
 * the v1 and v2 backends share. */
#include "agent/cgroup-internal.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

const char *const cg1_names[CG1_COUNT] = {"cpu", "cpuacct", "memory", "pids", "freezer"};

const char *cg_strerror(int errnum)
{
	static __thread char buf[128];
	snprintf(buf, sizeof buf, "%s", strerror(errnum < 0 ? -errnum : errnum));
	buf[0] = (char)tolower((unsigned char)buf[0]);
	return buf;
}

static bool is_fs(const char *path, long magic)
{
	struct statfs sf;
	return statfs(path, &sf) == 0 && (long)sf.f_type == magic;
}

static enum cgroup_version detect_at(const char *root)
{
	if (is_fs(root, CGROUP2_SUPER_MAGIC))
		return CGROUP_V2;
	for (int i = 0; i < CG1_COUNT; i++) {
		char *p = xasprintf("%s/%s", root, cg1_names[i]);
		bool v1 = is_fs(p, CGROUP_SUPER_MAGIC);
		free(p);
		if (v1)
			return CGROUP_V1;
	}
	return CGROUP_NONE;
}

enum cgroup_version cgroup_detect(void)
{
	/* The layout of a host does not change while we run. */
	static int cached = -1;
	if (cached < 0)
		cached = detect_at(CGROUP_ROOT);
	return (enum cgroup_version)cached;
}

const char *cgroup_version_name(enum cgroup_version v)
{
	switch (v) {
	case CGROUP_V1:
		return "v1";
	case CGROUP_V2:
		return "v2";
	default:
		return "none";
	}
}

/* A cgroup path component must not climb out of the hierarchy or hide in
 * it: no empty, "." or ".." segments, and the task's name is one segment. */
static bool valid_segment(const char *s, size_t n)
{
	if (n == 0 || (n == 1 && s[0] == '.') || (n == 2 && s[0] == '.' && s[1] == '.'))
		return false;
	for (size_t i = 0; i < n; i++)
		if (s[i] == '\n' || s[i] == '\0')
			return false;
	return true;
}

static bool valid_parent(const char *p)
{
	if (!p || !*p || *p == '/')
		return false;
	for (;;) {
		const char *slash = strchr(p, '/');
		size_t n = slash ? (size_t)(slash - p) : strlen(p);
		if (!valid_segment(p, n))
			return false;
		if (!slash)
			return true;
		p = slash + 1;
	}
}

static const struct cgroup_ops *ops_for(enum cgroup_version v)
{
	return v == CGROUP_V1 ? &cgroup_v1_ops : v == CGROUP_V2 ? &cgroup_v2_ops : NULL;
}

static struct cgroup *cg_new(enum cgroup_version v, const char *root, const char *parent,
			     const char *name)
{
	struct cgroup *cg = xcalloc(1, sizeof *cg);
	cg->version = v;
	cg->ops = ops_for(v);
	cg->root = xstrdup(root ? root : CGROUP_ROOT);
	cg->parent = xstrdup(parent);
	cg->name = xstrdup(name);
	cg->ops->locate(cg);
	return cg;
}

int cgroup_create_at(enum cgroup_version v, const char *root, const char *parent, const char *name,
		     const struct cgroup_limits *lim, struct cgroup **out, struct berr *err)
{
	*out = NULL;
	if (!ops_for(v))
		return berr_set(err, 0, "no cgroup filesystem under '%s'",
				root ? root : CGROUP_ROOT);
	if (!valid_parent(parent))
		return berr_set(err, 0, "invalid cgroup parent '%s'", parent ? parent : "");
	if (!name || !valid_segment(name, strlen(name)) || strchr(name, '/'))
		return berr_set(err, 0, "invalid cgroup name '%s'", name ? name : "");
	struct cgroup_limits none = {0};
	struct cgroup *cg = cg_new(v, root, parent, name);
	if (cg->ops->create(cg, lim ? lim : &none, err) < 0) {
		cgroup_free(cg);
		return -1;
	}
	*out = cg;
	return 0;
}

int cgroup_create(const char *parent, const char *name, const struct cgroup_limits *lim,
		  struct cgroup **out, struct berr *err)
{
	return cgroup_create_at(cgroup_detect(), NULL, parent, name, lim, out, err);
}

int cgroup_open(enum cgroup_version v, const char *root, const char *parent, const char *name,
		struct cgroup **out)
{
	*out = NULL;
	if (!ops_for(v))
		return -ENOTSUP;
	if (!valid_parent(parent) || !name || !valid_segment(name, strlen(name)) ||
	    strchr(name, '/'))
		return -EINVAL;
	struct cgroup *cg = cg_new(v, root, parent, name);
	if (!cg->ops->exists(cg)) {
		cgroup_free(cg);
		return -ENOENT;
	}
	*out = cg;
	return 0;
}

void cgroup_free(struct cgroup *cg)
{
	if (!cg)
		return;
	free(cg->root);
	free(cg->parent);
	free(cg->name);
	free(cg->dir);
	for (int i = 0; i < CG1_COUNT; i++)
		free(cg->dirs[i]);
	free(cg);
}

enum cgroup_version cgroup_version(const struct cgroup *cg)
{
	return cg->version;
}

const char *cgroup_dir(const struct cgroup *cg, const char *controller)
{
	if (cg->version == CGROUP_V2)
		return cg->dir;
	for (int i = 0; i < CG1_COUNT; i++)
		if (controller && !strcmp(controller, cg1_names[i]))
			return cg->dirs[i];
	return NULL;
}

int cgroup_enter(struct cgroup *cg, pid_t pid)
{
	return cg->ops->enter(cg, pid);
}

int cgroup_enter_self(struct cgroup *cg)
{
	return cg->ops->enter_self(cg);
}

int cgroup_open_entry(struct cgroup *cg, int *fds)
{
	const char *dirs[CG1_COUNT + 1];
	const char *file = cg->version == CGROUP_V2 ? "cgroup.procs" : "tasks";
	int n = 0;
	if (cg->version == CGROUP_V2)
		dirs[n++] = cg->dir;
	else
		for (int i = 0; i < CG1_COUNT; i++)
			if (cg->dirs[i])
				dirs[n++] = cg->dirs[i];
	for (int i = 0; i < n; i++) {
		char *path = xasprintf("%s/%s", dirs[i], file);
		fds[i] = open(path, O_WRONLY | O_CLOEXEC);
		free(path);
		if (fds[i] < 0) {
			int e = errno;
			while (i-- > 0)
				close(fds[i]);
			return -e;
		}
	}
	return n;
}

int cgroup_enter_by_fds(const int *fds, int n)
{
	for (int i = 0; i < n; i++) {
		ssize_t w;
		do
			w = write(fds[i], "0", 1);
		while (w < 0 && errno == EINTR);
		if (w < 0)
			return -errno;
	}
	return 0;
}

int cgroup_open_fd(struct cgroup *cg)
{
	return cg->ops->open_fd ? cg->ops->open_fd(cg) : -ENOTSUP;
}

int cgroup_pids(struct cgroup *cg, pid_t **pids, size_t *n)
{
	const char *d = cg->ops->procs_dir(cg);
	if (!d) {
		*pids = NULL;
		*n = 0;
		return -ENOENT;
	}
	return cg_read_procs(d, pids, n);
}

int cgroup_kill(struct cgroup *cg)
{
	return cg->ops->kill(cg);
}

int cgroup_oom_kills(struct cgroup *cg, uint64_t *count)
{
	*count = 0;
	return cg->ops->oom_kills(cg, count);
}

int cgroup_memory_usage(struct cgroup *cg, uint64_t *bytes)
{
	*bytes = 0;
	return cg->ops->memory_usage(cg, bytes);
}

int cgroup_remove(struct cgroup *cg)
{
	return cg->ops->remove(cg);
}

void cg_cpu_quota(double cpu, long long *quota_us, long long *period_us)
{
	long long period = 100000;
	if (cpu * (double)period < 1000.0)
		period = cpu * 1e6 >= 1000.0 ? (long long)(1000.0 / cpu + 0.5) : 1000000;
	long long quota = (long long)(cpu * (double)period + 0.5);
	*quota_us = quota < 1000 ? 1000 : quota; /* the kernel's minimum */
	*period_us = period;
}

int cgroup_set_cpu(struct cgroup *cg, double cpu, struct berr *err)
{
	return cg->ops->set_cpu(cg, cpu, err);
}

int cgroup_join_system(const char *name, unsigned weight, struct berr *err)
{
	enum cgroup_version v = cgroup_detect();
	if (v == CGROUP_NONE)
		return berr_set(err, 0, "no cgroup filesystem under '%s'", CGROUP_ROOT);
	if (!valid_parent(name))
		return berr_set(err, 400, "invalid cgroup name '%s'", name);
	const struct cgroup_ops *ops = ops_for(v);
	char *dir = ops->system_dir(CGROUP_ROOT, name);
	char pid[24];
	snprintf(pid, sizeof pid, "%d", (int)getpid());
	int rc = -1;
	int r = mkdir_p(dir, 0755);
	if (r < 0)
		berr_set(err, 0, "cannot create cgroup '%s': %s", dir, cg_strerror(r));
	else if (ops->set_weight(dir, weight, err) == 0 &&
		 cg_write_err(err, dir, "cgroup.procs", "%s", pid) == 0)
		rc = 0;
	free(dir);
	return rc;
}

int cgroup_remove_parent(enum cgroup_version v, const char *root, const char *parent)
{
	const struct cgroup_ops *ops = ops_for(v);
	if (!ops)
		return -ENOTSUP;
	if (!valid_parent(parent))
		return -EINVAL;
	return ops->remove_parent(root ? root : CGROUP_ROOT, parent);
}

/* ---- helpers shared by the backends ---- */

int cg_write(const char *dir, const char *file, const char *value)
{
	char *path = xasprintf("%s/%s", dir, file);
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	free(path);
	if (fd < 0)
		return -errno;
	size_t len = strlen(value);
	ssize_t w;
	do
		w = write(fd, value, len);
	while (w < 0 && errno == EINTR);
	int r = w < 0 ? -errno : (size_t)w == len ? 0 : -EIO;
	close(fd);
	return r;
}

int cg_write_err(struct berr *err, const char *dir, const char *file, const char *fmt, ...)
{
	char value[128];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(value, sizeof value, fmt, ap);
	va_end(ap);
	int r = cg_write(dir, file, value);
	if (r == 0)
		return 0;
	return berr_set(err, 0, "cannot write '%s' to '%s/%s': %s", value, dir, file,
			cg_strerror(r));
}

int cg_read(const char *dir, const char *file, char **out)
{
	char *path = xasprintf("%s/%s", dir, file);
	int r = file_read_all(path, out, NULL);
	free(path);
	return r;
}

int cg_read_u64(const char *dir, const char *file, uint64_t *v)
{
	char *s;
	int r = cg_read(dir, file, &s);
	if (r < 0)
		return r;
	char *end;
	errno = 0;
	unsigned long long x = strtoull(s, &end, 10);
	r = (end == s || errno) ? -EINVAL : 0;
	if (r == 0)
		*v = x;
	free(s);
	return r;
}

int cg_read_key(const char *dir, const char *file, const char *key, uint64_t *v)
{
	char *s;
	int r = cg_read(dir, file, &s);
	if (r < 0)
		return r;
	r = -ENOENT;
	size_t klen = strlen(key);
	for (char *line = s; line && *line;) {
		char *nl = strchr(line, '\n');
		if (nl)
			*nl = 0;
		if (!strncmp(line, key, klen) && line[klen] == ' ') {
			*v = strtoull(line + klen + 1, NULL, 10);
			r = 0;
			break;
		}
		line = nl ? nl + 1 : NULL;
	}
	free(s);
	return r;
}

bool cg_file_exists(const char *dir, const char *file)
{
	char *path = xasprintf("%s/%s", dir, file);
	bool ok = access(path, F_OK) == 0;
	free(path);
	return ok;
}

int cg_read_procs(const char *dir, pid_t **pids, size_t *n)
{
	*pids = NULL;
	*n = 0;
	char *s;
	int r = cg_read(dir, "cgroup.procs", &s);
	if (r < 0)
		return r;
	size_t cap = 0;
	for (char *p = s; *p;) {
		char *end;
		long v = strtol(p, &end, 10);
		if (end == p) {
			p++;
			continue;
		}
		if (v > 0) {
			if (*n == cap) {
				cap = cap ? cap * 2 : 16;
				*pids = xrealloc(*pids, cap * sizeof **pids);
			}
			(*pids)[(*n)++] = (pid_t)v;
		}
		p = end;
	}
	free(s);
	return 0;
}

int cg_mkdir_leaf(const char *path)
{
	if (mkdir(path, 0755) == 0)
		return 0;
	if (errno != EEXIST)
		return -errno;
	/* A leftover of a supervisor that died before cleaning up: reuse is
	 * wrong (old limits, old processes), so take it over only if empty. */
	if (rmdir(path) < 0)
		return -EEXIST;
	return mkdir(path, 0755) == 0 ? 0 : -errno;
}

int cg_rmdir(const char *path)
{
	/* The last processes of a killed cgroup may still be leaving it. */
	for (int i = 0; i < 200; i++) {
		if (rmdir(path) == 0 || errno == ENOENT)
			return 0;
		if (errno != EBUSY)
			return -errno;
		usleep(5000);
	}
	return -EBUSY;
}

int cg_rmdir_parent(const char *base, const char *parent)
{
	char *p = xasprintf("%s/%s", base, parent);
	size_t baselen = strlen(base);
	int r = 0;
	for (;;) {
		if (rmdir(p) < 0 && errno != ENOENT) {
			r = -errno;
			break;
		}
		char *slash = strrchr(p, '/');
		if (!slash || (size_t)(slash - p) <= baselen)
			break;
		*slash = 0;
	}
	free(p);
	return r;
}

int cg_wait_empty(const char *dir, int timeout_ms)
{
	int64_t deadline = time_mono_ms() + timeout_ms;
	useconds_t nap = 200;
	for (;;) {
		pid_t *pids;
		size_t n;
		int r = cg_read_procs(dir, &pids, &n);
		free(pids);
		if (r == -ENOENT || (r == 0 && n == 0))
			return 0;
		if (r < 0)
			return r;
		if (time_mono_ms() >= deadline)
			return -EBUSY;
		usleep(nap);
		if (nap < 20000)
			nap *= 2;
	}
}

int cg_kill_loop(struct cgroup *cg, int (*freeze)(struct cgroup *cg, bool frozen))
{
	const char *dir = cg->ops->procs_dir(cg);
	if (!dir)
		return 0;
	int64_t deadline = time_mono_ms() + 5000;
	useconds_t nap = 200;
	for (;;) {
		pid_t *pids;
		size_t n;
		int r = cg_read_procs(dir, &pids, &n);
		if (r == -ENOENT || (r == 0 && n == 0)) {
			free(pids);
			return 0;
		}
		if (r < 0)
			return r;
		if (time_mono_ms() >= deadline) {
			free(pids);
			return -EBUSY;
		}
		/* Frozen, nothing can fork between the listing and the kill;
		 * without a freezer the loop still converges, just slower. */
		if (freeze && freeze(cg, true) == 0) {
			free(pids);
			cg_read_procs(dir, &pids, &n);
		}
		for (size_t i = 0; i < n; i++)
			kill(pids[i], SIGKILL);
		free(pids);
		if (freeze)
			freeze(cg, false);
		usleep(nap);
		if (nap < 20000)
			nap *= 2;
	}
}

static void add_children(const char *dir, char ***names, size_t *n)
{
	DIR *d = opendir(dir);
	if (!d)
		return;
	struct dirent *de;
	while ((de = readdir(d))) {
		if (de->d_name[0] == '.' || de->d_type != DT_DIR)
			continue;
		bool seen = false;
		for (size_t i = 0; i < *n && !seen; i++)
			seen = !strcmp((*names)[i], de->d_name);
		if (seen)
			continue;
		*names = xrealloc(*names, (*n + 1) * sizeof **names);
		(*names)[(*n)++] = xstrdup(de->d_name);
	}
	closedir(d);
}

int cgroup_list(enum cgroup_version v, const char *root, const char *parent, char ***names,
		size_t *n)
{
	*names = NULL;
	*n = 0;
	if (!ops_for(v))
		return -ENOTSUP;
	if (!valid_parent(parent))
		return -EINVAL;
	root = root ? root : CGROUP_ROOT;
	if (v == CGROUP_V2) {
		char *dir = xasprintf("%s/%s", root, parent);
		add_children(dir, names, n);
		free(dir);
		return 0;
	}
	for (int i = 0; i < CG1_COUNT; i++) {
		char *dir = xasprintf("%s/%s/%s", root, cg1_names[i], parent);
		add_children(dir, names, n);
		free(dir);
	}
	return 0;
}
