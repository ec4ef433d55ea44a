/* supervisor-internal.h - what the supervisor's files and the drivers' glue
 * share (supervisor.h is the public header):
 *
 *   supervisor_files.c   the sandbox's files: launch.json and status.json
 *                        (encoded and decoded side by side), supervisor.pid
 *   supervisor_client.c  the agent's side: launch, find, stop a supervisor
 *   supervisor_main.c    the supervisor process (`berth supervise`): its
 *                        loop, logs, stop with grace, the final report
 *   driver/driver_*.c    what differs per driver (driver/driver.h)
 */
#ifndef BERTH_SUPERVISOR_INTERNAL_H
#define BERTH_SUPERVISOR_INTERNAL_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "agent/logfile.h"
#include "agent/supervisor.h"
#include "core/util.h"

#define DEFAULT_CGROUP_PARENT "berth"

/* ---- the sandbox's files (supervisor_files.c) ---- */

/* <sandbox>/<name> (caller frees). */
char *sandbox_file(const char *sandbox, const char *name);
/* Replace a file atomically; fsync'ed only when `durable`. 0 or -errno. */
int sandbox_write_atomic(const char *path, const char *data, size_t len, bool durable);
/* The sandbox's absolute path (caller frees). */
char *abs_sandbox(const char *sandbox);

/* launch.json: the task_launch as JSON (new reference); `sandbox` is the
 * absolute sandbox path. */
json_t *launch_to_json(const struct task_launch *l, const char *sandbox);

/* A task_launch whose strings point into the JSON document it came from. */
struct launch_doc {
	struct task_launch l;
	json_t *root;
	char **argv, **env;
	const char **vhost, **vpath;
	bool *vro;
	const char **sfile, **spath;
};
int launch_read(const char *sandbox, struct launch_doc *d, struct berr *err);
void launch_doc_free(struct launch_doc *d);

/* status.json (read back with supervisor_read_report). */
int report_write(const char *sandbox, const char *task_id, const struct task_report *r);

/* supervisor.pid: the pid it holds, or -1. */
pid_t read_pidfile(const char *sandbox);
/* Is pid `berth supervise SANDBOX`? (a recycled pid runs something else) */
bool is_supervisor_of(pid_t pid, const char *sandbox);

/* ---- the supervisor process (supervisor_main.c), for the drivers ---- */

/* User, groups and home of the task's user, looked up on the host. */
struct user_info {
	uid_t uid;
	gid_t gid;
	gid_t *groups;
	int ngroups;
	char *home;
};

struct sup {
	char *sandbox;
	struct launch_doc doc;
	const struct driver_ops *driver;
	struct task_report rep;
	int sigfd, ctl_fd, out_fd, err_fd, notify_fd;
	struct logfile out_log, err_log;
	struct cgroup *cg;
	/* exec: the task's user, environment, working directory (workdir as
	 * the task sees it, workdir_src on the host) and /tmp */
	struct user_info user;
	const char *user_name;
	char **env;
	char *workdir, *workdir_src, *tmpdir;
	pid_t init_pid;
	bool init_done;
	int init_status;
	bool prog_exited;
	int prog_status;
	bool failed;
	int fail_code;
	char fail_msg[256];
	bool stopping, hard_killed;
	int64_t stop_deadline;
	struct oci_task *oci; /* driver oci: the container's init is init_pid */
	bool docker_oom;      /* driver docker: State.OOMKilled */
};

/* A line in SANDBOX/supervisor.log. */
void sup_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* The task could not run: exit code and why (the first failure counts). */
void sup_fail(struct sup *s, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Write status.json and tell the agent. */
void sup_publish(struct sup *s);
/* The phase is RUNNING, the program's pid known: publish it. */
void sup_running(struct sup *s, pid_t pid);
/* Read pending signals (a stop request begins the stop) and reap. */
void sup_handle_signals(struct sup *s);

#endif
