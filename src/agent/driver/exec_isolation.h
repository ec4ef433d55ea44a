/* exec_isolation.h - run a task's program in new pid, mount, uts and ipc
 * namespaces, under a minimal init (the exec driver's isolation).
 *
 * isolation_start() forks the init: pid 1 of a new pid namespace. It stays
 * in the supervisor's cgroup (berth's own, never the task's: its set-up runs
 * at full speed whatever the task's cpu limit) and builds the task's view
 * of the files, in its own mount namespace (nothing of it shows on the host):
 *   - a fresh /proc (only the task's processes show) whose /proc/sys,
 *     /proc/sysrq-trigger, /proc/bus, /proc/fs, /proc/irq are read-only and
 *     /proc/kcore, /proc/keys, /proc/timer_list, ... masked (Docker's lists);
 *   - the sandbox's tmp/ on /tmp (or a tmpfs);
 *   - the working directory: `workdir_src` (the task's own directory) shown
 *     at `workdir`, the path getcwd() returns, on a small read-only tmpfs
 *     laid over `hide` (the agent's data dir: other tasks' sandboxes, the
 *     node's keys) or over the first directory above `workdir` the task's
 *     user could not traverse, so that the path works for that user, even
 *     when it lies under the /tmp the task gets;
 *   - each volume's host path bound onto its path, each secret's file
 *     bound read-only onto its path;
 *   - then everything read-only (the host's root, /sys, the cgroup
 *     filesystems) but /dev, /proc, /tmp, the working directory and the
 *     read-write volumes.
 * It sets the hostname, then forks the program (pid 2): own session,
 * stdout/stderr on the supervisor's pipes, exact environment, default
 * signals, then as the last steps the task's cgroup (everything the program
 * forks is accounted there; entered through files opened before the
 * cgroup filesystem went read-only), the bounding capability set cut to
 * Docker's default set (seccomp_profile.h), the user, for a root task
 * those capabilities only, no ambient ones, no_new_privs, the seccomp
 * filter, execvp.
 *
 * The kernel spares pid 1 from every signal it has no handler for, so the
 * program is never pid 1; the init instead forwards SIGTERM, SIGINT, SIGHUP,
 * SIGQUIT, SIGUSR1 and SIGUSR2 to the program's process group, reaps every
 * orphan, and exits as soon as the program has exited, after reporting its
 * wait status; the kernel then kills whatever else was left in the
 * namespace. The init dies with the supervisor (PR_SET_PDEATHSIG).
 *
 * The init talks to the supervisor over a SOCK_SEQPACKET socket: one
 * ISO_STARTED once the program has exec'd (carrying the program's pid in
 * SCM_CREDENTIALS, which the kernel translates into the supervisor's pid
 * namespace: the host pid), or one ISO_FAILED; then one ISO_EXITED.
 */
#ifndef BERTH_EXEC_ISOLATION_H
#define BERTH_EXEC_ISOLATION_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "core/util.h"

struct cgroup;

struct isolation {
	const char *hostname;
	const char *netns_path;	 /* a network namespace to join (bind mount); NULL = the host's */
	const char *workdir;	 /* the program's working directory, as the task sees it */
	const char *workdir_src; /* NULL, or the host directory shown at workdir */
	const char *hide;	 /* with workdir_src: a directory above workdir to cover
				    (NULL = workdir's parent) */
	const char *tmpdir;	 /* bound onto /tmp; NULL = a tmpfs */
	char *const *argv;	 /* argv[0] is looked up in the PATH of envp */
	char *const *envp;	 /* the program's whole environment */
	const char *user;	 /* for messages; NULL = stay root (with Docker's
				    default capabilities only) */
	uid_t uid;
	gid_t gid;
	const gid_t *groups; /* supplementary groups when user is set */
	size_t ngroups;
	struct cgroup *cg; /* joined by the program just before exec; NULL = none */
	int stdout_fd, stderr_fd;
	/* Volumes: volume_host[i] bound onto volume_path[i], read-only when
	 * volume_ro[i]. The task sees the host's root, so volume_path[i] is a
	 * host path that the bind overlays in the task's mount namespace only;
	 * a missing mount point is made under /tmp or on a tmpfs shadow, never
	 * on the host (see exec_isolation.c), as a directory, or as an empty
	 * file when the host path is a file. volume_host[i] is canonical (the
	 * agent resolved it under a volume root): what is opened must still be
	 * that very path, or the task fails (a symlink swapped in meanwhile). */
	const char *const *volume_host, *const *volume_path;
	const bool *volume_ro;
	size_t nvolumes;
	/* Secrets: secret_file[i] (a host file on the task's tmpfs) bound
	 * read-only onto secret_path[i]. No mount point is made on the host:
	 * a missing one is made on a tmpfs laid over its nearest existing
	 * directory, which keeps that directory's entries (each bound back). */
	const char *const *secret_file, *const *secret_path;
	size_t nsecrets;
	/* NULL, or a host file bound read-only onto /etc/resolv.conf (the
	 * agent's name server, agent/dns_server.h). */
	const char *resolv_conf;
};

enum iso_msg_type { ISO_STARTED = 1, ISO_FAILED, ISO_EXITED };

struct iso_msg {
	int type;
	int value;	/* ISO_FAILED: the exit code to report (127 not found, 126
			   otherwise); ISO_EXITED: the program's wait status */
	char text[224]; /* ISO_FAILED: "cannot exec 'x': no such file or directory" */
};

/* Start the init; returns its (host) pid and the supervisor's end of the
 * control socket in *ctl_fd (close-on-exec), or -1 with err set. */
pid_t isolation_start(const struct isolation *iso, int *ctl_fd, struct berr *err);
/* Read one message. For ISO_STARTED *pid is the program's host pid.
 * 1 = a message, 0 = the init is gone (EOF), -errno (-EAGAIN if none yet
 * on a non-blocking socket). */
int isolation_recv(int ctl_fd, struct iso_msg *m, pid_t *pid);

#endif
