/* driver.h - how a task is run on the node: the exec, oci and docker
 * drivers behind one table (as crun's cgroup managers are).
 *
 *   driver      runs the task                       glue            its own module
 *   exec        namespaces + cgroup of our own      driver_exec.c   exec_isolation.h
 *   oci         an OCI runtime (runc) on a bundle   driver_oci.c    oci_bundle.h
 *   docker      the Docker Engine API               driver_docker.c docker.h
 *
 * The table has two halves. The agent's: is the driver offered on this node
 * (the node attribute driver.NAME a job's placement needs), and what must
 * go when a task's supervisor died (a container outlives it). The
 * supervisor's (`berth supervise`, supervisor-internal.h): start the
 * task's program, signal it (a stop with grace, then the kill), release
 * what the driver holds once it ended; a driver whose runtime keeps the
 * whole life of the task (docker) gives `run` instead of `start`. And one
 * for `berth task-exec` (task_exec.h): run a command inside the running
 * task, which is how health-check commands run (docs/security.md).
 */
#ifndef BERTH_DRIVER_H
#define BERTH_DRIVER_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "core/spec.h"
#include "core/util.h"

/* What the agent tells its drivers of the node. */
struct driver_host {
	const char *data_dir; /* oci: images in <data_dir>/images, runc state in <data_dir>/runc */
	const char *docker_socket; /* docker: NULL = /var/run/docker.sock */
};

struct sup; /* the supervisor of one task (supervisor-internal.h) */

/* A command to run inside a running task (the driver's exec_in). */
struct task_exec {
	const char *task_id;
	const char *sandbox;	   /* absolute */
	const char *data_dir;	   /* oci: runc state in <data_dir>/runc */
	const char *runtime;	   /* oci: NULL = $BERTH_OCI_RUNTIME or "runc" */
	const char *docker_socket; /* docker: NULL = the default */
	const char *cgroup_parent; /* exec: the task's cgroup is <parent>/<task_id> */
	pid_t pid;		   /* host pid of the task's program (status.json) */
	char *const *argv;	   /* the command, NULL-terminated, argv[0] not empty */
};

struct driver_ops {
	enum task_driver driver;
	/* The task runs an image; without a command it runs the image's own. */
	bool needs_image;
	/* The runtime makes the task's cgroup and resolves its user inside
	 * the image; else the supervisor does both on the host. */
	bool runtime_isolates;
	/* The process the supervisor waits for is the program itself (no
	 * init of ours in between). */
	bool init_is_program;

	/* ---- agent side ---- */
	/* Is the driver offered on this node? NULL = always. When it is not,
	 * `why` says so ("docker is not reachable at '...'"). */
	bool (*available)(const struct driver_host *h, char *why, size_t n);
	/* Remove what a task whose supervisor died may have left running
	 * (found by the task id). NULL = nothing outlives a supervisor. */
	void (*delete_orphan)(const struct driver_host *h, const char *task_id);

	/* ---- supervisor side ---- */
	/* Start the program with its output on out_fd/err_fd. Returns the pid
	 * the supervisor waits for, 0 when a stop came before it could start,
	 * -1 with err set (the supervisor fails the task with it). */
	pid_t (*start)(struct sup *s, int out_fd, int err_fd, struct berr *err);
	/* Instead of start: the whole life of the task, when the runtime
	 * keeps it (docker); the supervisor's loop is not used. */
	void (*run)(struct sup *s);
	/* Signal the started task: SIGTERM begins a stop (the program gets it),
	 * SIGKILL ends everything of the task. */
	void (*kill)(struct sup *s, int sig);
	/* After the end: release what the driver holds. NULL = nothing. */
	void (*cleanup)(struct sup *s);

	/* ---- task-exec side ---- */
	/* Run x->argv inside the running task: its namespaces, cgroup, root,
	 * user and environment (the runtime's own exec where there is one),
	 * with the caller's stdin, stdout and stderr. Blocks until it ends and
	 * returns its exit status as a shell shows it (128+N for signal N), or
	 * -1 with err set when it could not be run in the task. May replace the
	 * calling process (exec) instead of returning. */
	int (*exec_in)(const struct task_exec *x, struct berr *err);
};

/* The table entry of a driver (exec for a value out of range). */
const struct driver_ops *driver_get(enum task_driver d);

/* Agent side, every driver: remove what a task whose supervisor died left
 * behind; `known` is its driver, or NULL when the spec is not known (an
 * adopted task): then every driver looks. */
void driver_delete_orphans(const struct driver_host *h, const char *task_id,
			   const enum task_driver *known);

extern const struct driver_ops driver_exec, driver_oci, driver_docker;

#endif
