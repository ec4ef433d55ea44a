/* cgroup.h - one cgroup per task, on cgroup v1 (per-controller hierarchies,
 * as on hybrid hosts) or v2 (the unified hierarchy).
 *
 * The version is detected at runtime: v2 when /sys/fs/cgroup itself is a
 * cgroup2 mount (cgroup.controllers exists there), v1 when the controllers
 * have their own hierarchies under /sys/fs/cgroup/<controller>. A hybrid
 * host's controller-less /sys/fs/cgroup/unified is not used.
 *
 * A task's cgroup is <mount>/<parent>/<name>; on v1 that directory exists once
 * per controller used (cpu, cpuacct, memory, pids, freezer). The parent (e.g.
 * "berth", or "a/b") is created on demand and shared by all tasks; on v2 the
 * controllers the tasks need are enabled in every level's
 * cgroup.subtree_control on the way down.
 *
 * Functions return 0 or -errno unless they take a struct berr, which then
 * holds a message naming the file that failed.
 */
#ifndef BERTH_CGROUP_H
#define BERTH_CGROUP_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "core/util.h"

enum cgroup_version { CGROUP_NONE = 0, CGROUP_V1 = 1, CGROUP_V2 = 2 };

/* The default mount point of the cgroup filesystems. */
#define CGROUP_ROOT "/sys/fs/cgroup"
/* The pids limit every task gets: high enough for any sane program, low
 * enough that a fork bomb stays inside its task. */
#define CGROUP_DEFAULT_PIDS_MAX 16384

struct cgroup_limits {
	double cpu;	       /* cores (0.5 = half a core); 0 = unlimited */
	uint64_t memory_bytes; /* hard limit, swap disabled; 0 = unlimited */
	uint64_t pids_max;     /* 0 = CGROUP_DEFAULT_PIDS_MAX */
};

struct cgroup;

/* What this host offers (cached after the first call). */
enum cgroup_version cgroup_detect(void);
/* "v1", "v2" or "none". */
const char *cgroup_version_name(enum cgroup_version v);

/* Create <root>/<parent>/<name> with these limits (NULL = none). The cgroup
 * must not exist yet (a leftover of a crashed run is removed first when it is
 * empty). Uses the detected version under CGROUP_ROOT. */
int cgroup_create(const char *parent, const char *name, const struct cgroup_limits *lim,
		  struct cgroup **out, struct berr *err);
/* The same with an explicit version and mount root (tests, unusual mounts);
 * root NULL = CGROUP_ROOT. On v1 the controllers are at <root>/<controller>. */
int cgroup_create_at(enum cgroup_version v, const char *root, const char *parent, const char *name,
		     const struct cgroup_limits *lim, struct cgroup **out, struct berr *err);
/* A handle on an existing cgroup (e.g. to clean up after a crash);
 * -ENOENT when it does not exist. root NULL = CGROUP_ROOT. */
int cgroup_open(enum cgroup_version v, const char *root, const char *parent, const char *name,
		struct cgroup **out);
/* Frees the handle only; the cgroup stays. NULL is fine. */
void cgroup_free(struct cgroup *cg);

enum cgroup_version cgroup_version(const struct cgroup *cg);
/* The directory of `controller` ("memory", "cpu", "pids", "freezer", ...):
 * on v2 the one directory whatever the controller, on v1 NULL when that
 * controller is not mounted. */
const char *cgroup_dir(const struct cgroup *cg, const char *controller);

/* Move a process (0 = the caller) into the cgroup. */
int cgroup_enter(struct cgroup *cg, pid_t pid);
/* Move the calling process, which must be single-threaded, into the cgroup.
 * Cheaper than cgroup_enter(cg, 0): a write to cgroup.procs takes a global
 * lock whose every first use costs an RCU grace period (~10 ms here), one
 * of the caller's own thread to v1's `tasks` file does not. v2 has no such
 * file for a domain cgroup: prefer cgroup_open_fd() there. */
int cgroup_enter_self(struct cgroup *cg);
/* The most files cgroup_open_entry() opens. */
#define CGROUP_MAX_ENTRY_FDS 8
/* Open for writing (close-on-exec) the files by which the calling thread
 * enters the cgroup: v1's `tasks` of each hierarchy, v2's cgroup.procs.
 * For a process that enters later from where the cgroup filesystem is
 * read-only or hidden (a task's mount namespace). Returns how many (at
 * most CGROUP_MAX_ENTRY_FDS) or -errno; the caller closes them. */
int cgroup_open_entry(struct cgroup *cg, int *fds);
/* Move the calling (single-threaded) process into the cgroup through the
 * files of cgroup_open_entry(). Async-signal-safe. 0 or -errno. */
int cgroup_enter_by_fds(const int *fds, int n);
/* v2: an O_DIRECTORY descriptor of the cgroup, for clone3()'s
 * CLONE_INTO_CGROUP, which starts a child in the cgroup with no migration
 * at all. -ENOTSUP on v1. The caller closes it. */
int cgroup_open_fd(struct cgroup *cg);
/* The processes in the cgroup, as host pids; the caller frees *pids. */
int cgroup_pids(struct cgroup *cg, pid_t **pids, size_t *n);
/* SIGKILL every process in the cgroup, including ones forking as they die,
 * and wait (up to ~5 s) until it is empty. v2: cgroup.kill when the kernel
 * has it; otherwise (and on v1) freeze, kill every listed pid, thaw, repeat.
 * 0, or -EBUSY when processes remain. */
int cgroup_kill(struct cgroup *cg);
/* How many times the OOM killer killed a process of this cgroup. */
int cgroup_oom_kills(struct cgroup *cg, uint64_t *count);
/* Current memory usage in bytes (page cache included). */
int cgroup_memory_usage(struct cgroup *cg, uint64_t *bytes);
/* CPU time used by the cgroup's processes so far, in nanoseconds (v2:
 * cpu.stat usage_usec; v1: cpuacct.usage). -ENOENT without the controller. */
int cgroup_cpu_usage_ns(struct cgroup *cg, uint64_t *ns);
/* Processes (and threads) in the cgroup now (pids.current). */
int cgroup_pids_current(struct cgroup *cg, uint64_t *n);
/* Remove the cgroup's directories (it must be empty: cgroup_kill first).
 * Retries while the last exiting processes leave it. Missing = 0. */
int cgroup_remove(struct cgroup *cg);
/* Set (or change) the cpu limit of an existing cgroup, e.g. after the task
 * started: a runtime's own start-up (runc's init, Docker's) then runs at
 * full speed whatever the task's limit. */
int cgroup_set_cpu(struct cgroup *cg, double cpu, struct berr *err);
/* Move the calling process (all its threads) into berth's own cgroup
 * <root>/<name> (created when missing; on v1 in the cpu hierarchy only),
 * whose cpu weight (v2 scale: 100 = a default cgroup's, 1-10000) keeps
 * berth's agent and supervisors a share of the CPU that tasks, which live
 * under a sibling parent, cannot starve. */
int cgroup_join_system(const char *name, unsigned weight, struct berr *err);
/* The names of the cgroups under <root>/<parent> (on v1: in any
 * hierarchy); the caller frees each and the array. root NULL = CGROUP_ROOT. */
int cgroup_list(enum cgroup_version v, const char *root, const char *parent, char ***names,
		size_t *n);
/* Remove an empty <root>/<parent> (tests, uninstall); -EBUSY when tasks
 * still have cgroups under it. */
int cgroup_remove_parent(enum cgroup_version v, const char *root, const char *parent);

#endif
