/* cgroup_v1.c - cgroups on per-controller hierarchies (v1, hybrid hosts).
 *
 * The task's cgroup exists once per mounted controller: cpu, cpuacct,
 * memory, pids, freezer (co-mounted hierarchies such as cpu,cpuacct simply
 * make two entries point at one directory, which every step tolerates).
 */
#include "agent/cgroup-internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void v1_locate(struct cgroup *cg)
{
	for (int i = 0; i < CG1_COUNT; i++) {
		char *mnt = xasprintf("%s/%s", cg->root, cg1_names[i]);
		if (cg_file_exists(mnt, "cgroup.procs"))
			cg->dirs[i] = xasprintf("%s/%s/%s", mnt, cg->parent, cg->name);
		free(mnt);
	}
}

static bool v1_exists(struct cgroup *cg)
{
	for (int i = 0; i < CG1_COUNT; i++)
		if (cg->dirs[i] && access(cg->dirs[i], F_OK) == 0)
			return true;
	return false;
}

static int v1_remove(struct cgroup *cg)
{
	int r = 0;
	for (int i = 0; i < CG1_COUNT; i++) {
		if (!cg->dirs[i])
			continue;
		int e = cg_rmdir(cg->dirs[i]);
		if (e < 0 && r == 0)
			r = e;
	}
	return r;
}

static int v1_set_cpu(struct cgroup *cg, double cpu, struct berr *err)
{
	const char *d = cg->dirs[CG1_CPU];
	if (!d)
		return berr_set(err, 0, "cannot limit cpu: no 'cpu' cgroup under '%s'", cg->root);
	long long quota, period;
	cg_cpu_quota(cpu, &quota, &period);
	/* Quota first when the period grows: quota <= period always holds
	 * for a sub-core limit, and the kernel checks each write. */
	if (cg_write_err(err, d, "cpu.cfs_period_us", "%lld", period) < 0 ||
	    cg_write_err(err, d, "cpu.cfs_quota_us", "%lld", quota) < 0)
		return -1;
	return 0;
}

/* berth's own cgroup: in the cpu hierarchy only (a share of the CPU that
 * tasks cannot take away; berth's memory is not limited). */
static char *v1_system_dir(const char *root, const char *name)
{
	return xasprintf("%s/cpu/%s", root, name);
}

static int v1_set_weight(const char *dir, unsigned weight, struct berr *err)
{
	/* v2's weight 100 is v1's 1024 shares */
	unsigned long long shares = (unsigned long long)weight * 1024 / 100;
	return cg_write_err(err, dir, "cpu.shares", "%llu", shares < 2 ? 2 : shares) < 0 ? -1 : 0;
}

static int v1_set_limits(struct cgroup *cg, const struct cgroup_limits *lim, struct berr *err)
{
	if (lim->memory_bytes) {
		const char *d = cg->dirs[CG1_MEMORY];
		if (cg_write_err(err, d, "memory.limit_in_bytes", "%llu",
				 (unsigned long long)lim->memory_bytes) < 0)
			return -1;
		/* memory+swap = memory: no swap at all. The file only exists
		 * with swap accounting on; without it, discourage swapping. */
		if (cg_file_exists(d, "memory.memsw.limit_in_bytes")) {
			if (cg_write_err(err, d, "memory.memsw.limit_in_bytes", "%llu",
					 (unsigned long long)lim->memory_bytes) < 0)
				return -1;
		} else {
			cg_write(d, "memory.swappiness", "0");
		}
	}
	if (lim->cpu > 0 && v1_set_cpu(cg, lim->cpu, err) < 0)
		return -1;
	if (cg->dirs[CG1_PIDS]) {
		uint64_t max = lim->pids_max ? lim->pids_max : CGROUP_DEFAULT_PIDS_MAX;
		if (cg_write_err(err, cg->dirs[CG1_PIDS], "pids.max", "%llu",
				 (unsigned long long)max) < 0)
			return -1;
	}
	return 0;
}

static int v1_create(struct cgroup *cg, const struct cgroup_limits *lim, struct berr *err)
{
	bool any = false;
	for (int i = 0; i < CG1_COUNT; i++)
		any |= cg->dirs[i] != NULL;
	if (!any)
		return berr_set(err, 0, "no cgroup v1 controller under '%s'", cg->root);
	if (lim->memory_bytes && !cg->dirs[CG1_MEMORY])
		return berr_set(err, 0, "cannot limit memory: no 'memory' cgroup under '%s'",
				cg->root);
	if (lim->cpu > 0 && !cg->dirs[CG1_CPU])
		return berr_set(err, 0, "cannot limit cpu: no 'cpu' cgroup under '%s'", cg->root);

	bool made[CG1_COUNT] = {false};
	for (int i = 0; i < CG1_COUNT; i++) {
		if (!cg->dirs[i])
			continue;
		char *parent = xasprintf("%s/%s/%s", cg->root, cg1_names[i], cg->parent);
		int r = mkdir_p(parent, 0755);
		if (r < 0) {
			berr_set(err, 0, "cannot create cgroup '%s': %s", parent, cg_strerror(r));
			free(parent);
			goto fail;
		}
		free(parent);
		/* Co-mounted controllers share the directory: already made. */
		bool dup = false;
		for (int j = 0; j < i; j++)
			dup |= cg->dirs[j] && !strcmp(cg->dirs[j], cg->dirs[i]);
		if (dup)
			continue;
		r = cg_mkdir_leaf(cg->dirs[i]);
		if (r < 0) {
			berr_set(err, 0, "cannot create cgroup '%s': %s", cg->dirs[i],
				 r == -EEXIST ? "it exists and has processes" : cg_strerror(r));
			goto fail;
		}
		made[i] = true;
	}
	if (v1_set_limits(cg, lim, err) < 0)
		goto fail;
	return 0;
fail:
	/* Only what we made: a busy leftover is someone else's. */
	for (int i = 0; i < CG1_COUNT; i++)
		if (made[i])
			cg_rmdir(cg->dirs[i]);
	return -1;
}

static const char *v1_procs_dir(struct cgroup *cg)
{
	/* Every process is in every hierarchy; the freezer's is the one the
	 * kill loop freezes, so list from there when it is mounted. */
	static const int order[] = {CG1_FREEZER, CG1_MEMORY, CG1_PIDS, CG1_CPU, CG1_CPUACCT};
	for (size_t i = 0; i < ARRAY_SIZE(order); i++)
		if (cg->dirs[order[i]])
			return cg->dirs[order[i]];
	return NULL;
}

static int v1_enter(struct cgroup *cg, pid_t pid)
{
	char buf[24];
	snprintf(buf, sizeof buf, "%d", (int)pid);
	for (int i = 0; i < CG1_COUNT; i++) {
		if (!cg->dirs[i])
			continue;
		int r = cg_write(cg->dirs[i], "cgroup.procs", buf);
		if (r < 0)
			return r;
	}
	return 0;
}

static int v1_enter_self(struct cgroup *cg)
{
	/* `tasks` with "0" moves only the calling thread, so the kernel skips
	 * the threadgroup lock that cgroup.procs takes (and its RCU grace
	 * period). For a single-threaded caller that is the whole process. */
	for (int i = 0; i < CG1_COUNT; i++) {
		if (!cg->dirs[i])
			continue;
		int r = cg_write(cg->dirs[i], "tasks", "0");
		if (r < 0)
			return r;
	}
	return 0;
}

static int v1_freeze(struct cgroup *cg, bool frozen)
{
	const char *d = cg->dirs[CG1_FREEZER];
	int r = cg_write(d, "freezer.state", frozen ? "FROZEN" : "THAWED");
	if (r < 0 || !frozen)
		return r;
	/* FREEZING until every task has stopped; a task stuck in the kernel
	 * can hold it there, so give up waiting after a while and kill anyway. */
	for (int i = 0; i < 100; i++) {
		char *s;
		if (cg_read(d, "freezer.state", &s) < 0)
			return -EIO;
		bool done = !strncmp(s, "FROZEN", 6);
		free(s);
		if (done)
			return 0;
		usleep(1000);
	}
	return -EBUSY;
}

static int v1_kill(struct cgroup *cg)
{
	return cg_kill_loop(cg, cg->dirs[CG1_FREEZER] ? v1_freeze : NULL);
}

static int v1_oom_kills(struct cgroup *cg, uint64_t *count)
{
	if (!cg->dirs[CG1_MEMORY])
		return -ENOENT;
	return cg_read_key(cg->dirs[CG1_MEMORY], "memory.oom_control", "oom_kill", count);
}

static int v1_memory_usage(struct cgroup *cg, uint64_t *bytes)
{
	if (!cg->dirs[CG1_MEMORY])
		return -ENOENT;
	return cg_read_u64(cg->dirs[CG1_MEMORY], "memory.usage_in_bytes", bytes);
}

static int v1_remove_parent(const char *root, const char *parent)
{
	int r = 0;
	for (int i = 0; i < CG1_COUNT; i++) {
		char *mnt = xasprintf("%s/%s", root, cg1_names[i]);
		if (cg_file_exists(mnt, "cgroup.procs")) {
			int e = cg_rmdir_parent(mnt, parent);
			if (e < 0 && r == 0)
				r = e;
		}
		free(mnt);
	}
	return r;
}

const struct cgroup_ops cgroup_v1_ops = {
    .locate = v1_locate,
    .create = v1_create,
    .exists = v1_exists,
    .procs_dir = v1_procs_dir,
    .enter = v1_enter,
    .enter_self = v1_enter_self,
    .open_fd = NULL,
    .kill = v1_kill,
    .oom_kills = v1_oom_kills,
    .memory_usage = v1_memory_usage,
    .remove = v1_remove,
    .remove_parent = v1_remove_parent,
    .set_cpu = v1_set_cpu,
    .system_dir = v1_system_dir,
    .set_weight = v1_set_weight,
};
