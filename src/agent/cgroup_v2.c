/* cgroup_v2.c - cgroups on the unified hierarchy.
 *
 * One directory per task. A controller is usable in it only when every
 * ancestor lists it in cgroup.subtree_control, so creation walks down from
 * the root enabling what the task needs. v2's "no internal processes" rule
 * is kept by never putting a process in the parent, only in task leaves.
 */
#include "agent/cgroup-internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static void v2_locate(struct cgroup *cg)
{
	cg->dir = xasprintf("%s/%s/%s", cg->root, cg->parent, cg->name);
}

static bool v2_exists(struct cgroup *cg)
{
	return access(cg->dir, F_OK) == 0;
}

static bool has_word(const char *list, const char *word)
{
	size_t n = strlen(word);
	for (const char *p = list; (p = strstr(p, word)); p += n)
		if ((p == list || p[-1] == ' ') && (p[n] == 0 || p[n] == ' ' || p[n] == '\n'))
			return true;
	return false;
}

/* Enable the controllers in dir's cgroup.subtree_control, one at a time so
 * that one the kernel refuses does not block the others. A failure shows
 * up later, precisely, as a missing limit file. */
static void enable_controllers(const char *dir, const char *const *ctls, size_t n)
{
	char *avail = NULL, *enabled = NULL;
	if (cg_read(dir, "cgroup.controllers", &avail) < 0)
		return;
	if (cg_read(dir, "cgroup.subtree_control", &enabled) < 0)
		enabled = xstrdup("");
	for (size_t i = 0; i < n; i++) {
		if (!has_word(avail, ctls[i]) || has_word(enabled, ctls[i]))
			continue;
		char *v = xasprintf("+%s", ctls[i]);
		cg_write(dir, "cgroup.subtree_control", v);
		free(v);
	}
	free(avail);
	free(enabled);
}

static int v2_set_cpu(struct cgroup *cg, double cpu, struct berr *err)
{
	long long quota, period;
	cg_cpu_quota(cpu, &quota, &period);
	return cg_write_err(err, cg->dir, "cpu.max", "%lld %lld", quota, period) < 0 ? -1 : 0;
}

static char *v2_system_dir(const char *root, const char *name)
{
	static const char *const ctls[] = {"cpu"};
	enable_controllers(root, ctls, ARRAY_SIZE(ctls));
	return xasprintf("%s/%s", root, name);
}

static int v2_set_weight(const char *dir, unsigned weight, struct berr *err)
{
	if (!cg_file_exists(dir, "cpu.weight"))
		return 0; /* no cpu controller: nothing to weigh */
	return cg_write_err(err, dir, "cpu.weight", "%u", weight) < 0 ? -1 : 0;
}

static int v2_set_limits(struct cgroup *cg, const struct cgroup_limits *lim, struct berr *err)
{
	if (lim->memory_bytes) {
		if (cg_write_err(err, cg->dir, "memory.max", "%llu",
				 (unsigned long long)lim->memory_bytes) < 0)
			return -1;
		/* Absent when the kernel does no swap accounting. */
		if (cg_file_exists(cg->dir, "memory.swap.max") &&
		    cg_write_err(err, cg->dir, "memory.swap.max", "0") < 0)
			return -1;
	}
	if (lim->cpu > 0 && v2_set_cpu(cg, lim->cpu, err) < 0)
		return -1;
	/* The pids limit is a safety net, not something the user asked for:
	 * without the controller the task runs without it. */
	if (cg_file_exists(cg->dir, "pids.max")) {
		uint64_t max = lim->pids_max ? lim->pids_max : CGROUP_DEFAULT_PIDS_MAX;
		if (cg_write_err(err, cg->dir, "pids.max", "%llu", (unsigned long long)max) < 0)
			return -1;
	}
	return 0;
}

static int v2_create(struct cgroup *cg, const struct cgroup_limits *lim, struct berr *err)
{
	const char *ctls[3];
	size_t n = 0;
	if (lim->cpu > 0)
		ctls[n++] = "cpu";
	if (lim->memory_bytes)
		ctls[n++] = "memory";
	ctls[n++] = "pids";

	/* Walk root → parent, enabling the controllers at each level. */
	char *cur = xstrdup(cg->root);
	const char *p = cg->parent;
	for (;;) {
		enable_controllers(cur, ctls, n);
		if (!p)
			break;
		const char *slash = strchr(p, '/');
		size_t len = slash ? (size_t)(slash - p) : strlen(p);
		char *next = xasprintf("%s/%.*s", cur, (int)len, p);
		free(cur);
		cur = next;
		if (mkdir(cur, 0755) < 0 && errno != EEXIST) {
			int e = errno;
			berr_set(err, 0, "cannot create cgroup '%s': %s", cur, cg_strerror(e));
			free(cur);
			return -1;
		}
		p = slash ? slash + 1 : NULL;
	}
	free(cur);

	int r = cg_mkdir_leaf(cg->dir);
	if (r < 0)
		return berr_set(err, 0, "cannot create cgroup '%s': %s", cg->dir,
				r == -EEXIST ? "it exists and has processes" : cg_strerror(r));
	if (v2_set_limits(cg, lim, err) < 0) {
		cg_rmdir(cg->dir);
		return -1;
	}
	return 0;
}

static const char *v2_procs_dir(struct cgroup *cg)
{
	return cg->dir;
}

static int v2_enter(struct cgroup *cg, pid_t pid)
{
	char buf[24];
	snprintf(buf, sizeof buf, "%d", (int)pid);
	return cg_write(cg->dir, "cgroup.procs", buf);
}

static int v2_enter_self(struct cgroup *cg)
{
	return cg_write(cg->dir, "cgroup.procs", "0");
}

static int v2_open_fd(struct cgroup *cg)
{
	int fd = open(cg->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	return fd < 0 ? -errno : fd;
}

static int v2_freeze(struct cgroup *cg, bool frozen)
{
	int r = cg_write(cg->dir, "cgroup.freeze", frozen ? "1" : "0");
	if (r < 0 || !frozen)
		return r;
	for (int i = 0; i < 100; i++) {
		uint64_t v = 0;
		if (cg_read_key(cg->dir, "cgroup.events", "frozen", &v) == 0 && v == 1)
			return 0;
		usleep(1000);
	}
	return -EBUSY;
}

static int v2_kill(struct cgroup *cg)
{
	if (!v2_exists(cg))
		return 0;
	/* Linux 5.14+: one write kills the whole subtree, no race with fork. */
	if (cg_file_exists(cg->dir, "cgroup.kill")) {
		int r = cg_write(cg->dir, "cgroup.kill", "1");
		if (r == 0)
			return cg_wait_empty(cg->dir, 5000);
	}
	return cg_kill_loop(cg, cg_file_exists(cg->dir, "cgroup.freeze") ? v2_freeze : NULL);
}

static int v2_oom_kills(struct cgroup *cg, uint64_t *count)
{
	return cg_read_key(cg->dir, "memory.events", "oom_kill", count);
}

static int v2_memory_usage(struct cgroup *cg, uint64_t *bytes)
{
	return cg_read_u64(cg->dir, "memory.current", bytes);
}

static int v2_remove(struct cgroup *cg)
{
	return cg_rmdir(cg->dir);
}

static int v2_remove_parent(const char *root, const char *parent)
{
	return cg_rmdir_parent(root, parent);
}

const struct cgroup_ops cgroup_v2_ops = {
    .locate = v2_locate,
    .create = v2_create,
    .exists = v2_exists,
    .procs_dir = v2_procs_dir,
    .enter = v2_enter,
    .enter_self = v2_enter_self,
    .open_fd = v2_open_fd,
    .kill = v2_kill,
    .oom_kills = v2_oom_kills,
    .memory_usage = v2_memory_usage,
    .remove = v2_remove,
    .remove_parent = v2_remove_parent,
    .set_cpu = v2_set_cpu,
    .system_dir = v2_system_dir,
    .set_weight = v2_set_weight,
};
