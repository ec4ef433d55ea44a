/* exec_enter.h - run a command inside a running exec task: the exec
 * driver's exec_in (driver.h), which `berth task-exec` calls for a
 * health-check command.
 *
 * What "inside" means, read from the task's program (its host pid, as the
 * supervisor reports it) so that it is what the task really has, whatever
 * the spec or the agent's defaults said:
 *  - its cgroup: <parent>/<task id> (v1: every controller's), entered by
 *    the forked command itself right before it becomes the task's user and
 *    execs, so the command counts against the task's memory, cpu and pids
 *    limits and is swept with the task, while berth's own work (the
 *    helper's start, reading the task, joining its namespaces, forking)
 *    does not wait on the task's cpu quota (a task at `cpu: 0.01` gets
 *    10 ms a second); the cgroup namespace is joined after it;
 *  - its namespaces: user, ipc, uts, net, cgroup, pid and mount, each one
 *    that differs from the caller's, through /proc/PID/ns (the pid
 *    namespace applies to a child: the command is forked after it);
 *  - its root and working directory (/proc/PID/root and cwd);
 *  - its credentials, from /proc/PID/status: uid, gid and supplementary
 *    groups (the real, effective, saved and filesystem ids as the program
 *    has them), its capability bounding, inheritable, permitted and
 *    effective sets (none for a non-root user), ambient capabilities
 *    cleared, and no_new_privs set whatever the program has;
 *  - its environment (/proc/PID/environ, as the program was started).
 * The pid is checked to be in the task's cgroup and, with a pidfd, still
 * alive after everything above was opened, so a recycled pid is refused.
 * Not copied: a seccomp filter the program runs under.
 */
#ifndef BERTH_EXEC_ENTER_H
#define BERTH_EXEC_ENTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "core/util.h"

/* The credentials of a process, as /proc/PID/status shows them. */
struct proc_creds {
	uid_t uid[4]; /* real, effective, saved, filesystem */
	gid_t gid[4];
	gid_t *groups; /* caller frees */
	size_t ngroups;
	uint64_t cap_inh, cap_prm, cap_eff, cap_bnd, cap_amb;
	bool no_new_privs;
	int seccomp; /* 0 none, 1 strict, 2 filter */
};

/* Parse the text of /proc/PID/status. -1 with err set when a Uid, Gid or
 * capability line is missing or malformed. */
int proc_creds_parse(const char *status, struct proc_creds *c, struct berr *err);

struct exec_enter {
	pid_t pid;		   /* the task's program */
	const char *task_id;	   /* for messages and its cgroup */
	const char *cgroup_parent; /* NULL = the task has no cgroup to join */
	char *const *argv;	   /* argv[0] looked up in the task's PATH */
};

/* Run e->argv inside the task, wait for it: its exit status as a shell
 * shows it (128+N for signal N), or -1 with err set (the task is gone, a
 * namespace could not be joined...). The caller must be single-threaded;
 * it stays as it is: a forked process joins the task's namespaces and
 * root, and the command it forks enters the task's cgroup. */
int exec_enter_run(const struct exec_enter *e, struct berr *err);

#endif
