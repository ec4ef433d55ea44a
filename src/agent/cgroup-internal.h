/* cgroup-internal.h - what cgroup.c shares with its per-version backends
 * (cgroup_v1.c, cgroup_v2.c). Not for use outside src/agent/cgroup*.c. */
#ifndef BERTH_CGROUP_INTERNAL_H
#define BERTH_CGROUP_INTERNAL_H

#include "agent/cgroup.h"

/* The v1 controllers a task's cgroup lives in. cpuacct is joined only so
 * that accounting follows the task; cpuset, devices, blkio are left alone. */
enum cg1_ctl { CG1_CPU, CG1_CPUACCT, CG1_MEMORY, CG1_PIDS, CG1_FREEZER, CG1_COUNT };
extern const char *const cg1_names[CG1_COUNT];

struct cgroup_ops;

struct cgroup {
	enum cgroup_version version;
	const struct cgroup_ops *ops;
	char *root; /* mount root, e.g. /sys/fs/cgroup */
	char *parent, *name;
	char *dir;	       /* v2: the cgroup's directory */
	char *dirs[CG1_COUNT]; /* v1: one per mounted controller, NULL if not mounted */
};

struct cgroup_ops {
	/* Fill cg->dir / cg->dirs from root, parent and name. */
	void (*locate)(struct cgroup *cg);
	int (*create)(struct cgroup *cg, const struct cgroup_limits *lim, struct berr *err);
	bool (*exists)(struct cgroup *cg);
	/* The directory whose cgroup.procs lists every process of the cgroup. */
	const char *(*procs_dir)(struct cgroup *cg);
	int (*enter)(struct cgroup *cg, pid_t pid);
	int (*enter_self)(struct cgroup *cg);
	int (*open_fd)(struct cgroup *cg);
	int (*kill)(struct cgroup *cg);
	int (*oom_kills)(struct cgroup *cg, uint64_t *count);
	int (*memory_usage)(struct cgroup *cg, uint64_t *bytes);
	int (*remove)(struct cgroup *cg);
	int (*remove_parent)(const char *root, const char *parent);
	int (*set_cpu)(struct cgroup *cg, double cpu, struct berr *err);
	/* berth's own cgroup (cgroup_join_system): its directory for <root>/<name>,
	 * and its cpu weight (v2 scale, 1-10000) written there. */
	char *(*system_dir)(const char *root, const char *name);
	int (*set_weight)(const char *dir, unsigned weight, struct berr *err);
};

/* The CFS quota and period for `cpu` cores: a 100 ms period, or a longer
 * one (up to 1 s) for limits under 1 % of a core, whose quota would be
 * below the kernel's 1 ms minimum. */
void cg_cpu_quota(double cpu, long long *quota_us, long long *period_us);

extern const struct cgroup_ops cgroup_v1_ops;
extern const struct cgroup_ops cgroup_v2_ops;

/* strerror, lowercased as our messages want it. */
const char *cg_strerror(int errnum);
/* Write value to dir/file (no newline needed); 0 or -errno. */
int cg_write(const char *dir, const char *file, const char *value);
/* The same, filling err with the file and value on failure; returns -1. */
int cg_write_err(struct berr *err, const char *dir, const char *file, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* Read dir/file whole; the caller frees *out. */
int cg_read(const char *dir, const char *file, char **out);
int cg_read_u64(const char *dir, const char *file, uint64_t *v);
/* Read "key value" lines (memory.events, memory.oom_control) for key. */
int cg_read_key(const char *dir, const char *file, const char *key, uint64_t *v);
bool cg_file_exists(const char *dir, const char *file);
/* Parse dir/cgroup.procs. */
int cg_read_procs(const char *dir, pid_t **pids, size_t *n);
/* mkdir for a task cgroup: when a leftover of a crashed run is in the way,
 * remove it if it is empty. 0 or -errno (-EEXIST if it is busy). */
int cg_mkdir_leaf(const char *path);
/* rmdir, retrying for a while on EBUSY (exiting processes); ENOENT = 0. */
int cg_rmdir(const char *path);
/* Remove root-relative parent "a/b/c" bottom-up, as far as it is empty. */
int cg_rmdir_parent(const char *base, const char *parent);
/* The kill loop shared by v1 and v2 without cgroup.kill: freeze (when
 * freeze is non-NULL), SIGKILL each listed process, thaw, until empty. */
int cg_kill_loop(struct cgroup *cg, int (*freeze)(struct cgroup *cg, bool frozen));
/* Wait until cgroup.procs in dir is empty; 0 or -EBUSY after timeout_ms. */
int cg_wait_empty(const char *dir, int timeout_ms);

#endif
