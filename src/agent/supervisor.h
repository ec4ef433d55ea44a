/* supervisor.h - the per-task supervisor, and the agent's handle on it.
 *
 * Every task runs under its own small supervisor process (as conmon and
 * containerd-shim do), started detached from the agent (setsid, re-parented
 * to init), so an agent can die, restart or upgrade without killing work.
 * The supervisor owns the task's cgroup, its stdout/stderr pipes (written to
 * rotated files in the sandbox) and its exit status.
 *
 * Everything the agent needs to find a task again lives in its sandbox dir
 * (<data-dir>/tasks/<task-id>/):
 *   launch.json     what to run (written by supervisor_launch)
 *   supervisor.pid  the supervisor's pid
 *   status.json     the supervisor's report (struct task_report), rewritten
 *                   atomically at every change: starting, running, exited
 *   stdout, stderr  the task's output; rotated to stdout.1 .. stdout.N
 *   work/ tmp/      exec: the task's working directory (its user's, shown
 *                   to the task at the sandbox's own path) and its /tmp
 * The sandbox is root's, mode 0700, its files 0600: launch.json holds the
 * task's environment.
 *
 * Inside the task's pid namespace pid 1 is a minimal init (part of the
 * supervisor) that forwards SIGTERM/SIGINT/SIGHUP to the task's program and
 * reaps orphans; the program itself never runs as pid 1.
 *
 * Stopping: supervisor_stop() sends SIGTERM to the supervisor, which sends
 * SIGTERM to the task, waits stop_grace_ms, then SIGKILLs everything in the
 * task's cgroup, and leaves no process behind.
 *
 * What differs per driver (exec, oci, docker) is behind driver/driver.h;
 * the files are encoded and decoded in supervisor_files.c.
 *
 * The oci driver (driver/oci_bundle.h): the supervisor resolves the image (pulling
 * and unpacking into the agent's shared cache; a failure is the task's
 * failure, with its message), writes SANDBOX/bundle/ and runs
 * `runc run --detach`; the container's init is then the supervisor's child
 * (it is a subreaper) and the reported pid. Stopping = `runc kill ID TERM`,
 * after the grace `runc kill --all ID KILL` and the cgroup sweep; `runc
 * delete` once it has ended. Logs, status.json, OOM detection: as for exec.
 * The image's program runs as the container's pid 1, as `docker run`
 * without --init: it gets SIGTERM only if it handles it.
 *
 * Notification: when `notify_socket` is set, the supervisor sends one
 * datagram (the task id) to that unix socket after each status.json change,
 * so the agent reacts at once; the files remain the source of truth.
 */
#ifndef BERTH_SUPERVISOR_H
#define BERTH_SUPERVISOR_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "core/spec.h"
#include "core/util.h"

struct task_launch {
	const char *task_id;
	const char *job_key;
	int instance;
	enum task_driver driver;   /* launch.json: "exec", "oci" or "docker" */
	const char *image;	   /* oci: a layout path, an archive or a registry
				      reference (see image.h) */
	const char *runtime;	   /* oci: the runtime binary; NULL = $BERTH_OCI_RUNTIME
				      or "runc" */
	const char *data_dir;	   /* oci: images in <data_dir>/images, runtime state in
				      <data_dir>/runc; NULL = the sandbox's grandparent
				      (the agent's <data-dir>/tasks/<id>) */
	const char *docker_socket; /* docker: the Engine API socket; NULL = /var/run/docker.sock */
	const char *sandbox_dir;   /* created by supervisor_launch if missing */
	char *const *argv;	   /* already template-expanded; oci: empty = the
				      image's entrypoint + cmd */
	size_t argc;
	char *const *env; /* "KEY=VALUE" strings, template-expanded */
	size_t nenv;
	const char *user;      /* exec: NULL or "" = nobody (uid 65534); oci, docker:
				  the image's user */
	bool allow_root_tasks; /* exec: may `user` be root? (agent --allow-root-tasks) */
	double cpu;	       /* cores: cpu quota = cpu * period */
	uint64_t memory_bytes; /* hard memory limit, no swap */
	uint64_t stop_grace_ms;
	const char *cgroup_parent; /* e.g. "berth": cgroups go under <root>/<parent>/<task-id> */
	const char *notify_socket; /* agent's unix datagram socket path, or NULL */
	uint64_t log_max_bytes;	   /* rotate stdout/stderr beyond this size (0 = 10 MiB) */
	int log_max_files;	   /* keep this many rotated files (0 = 3) */
	/* oci: caps on the image (image.h; 0 = the defaults). */
	uint64_t image_max_bytes, image_max_unpacked_bytes;
	/* Volumes (spec task.volumes): volume_host[i] bound onto volume_path[i],
	 * read-only when volume_ro[i]. exec: in the task's mount namespace over
	 * the host's root; oci: a bind mount in config.json; docker: Mounts.
	 * The agent resolved each host path under its volume roots
	 * (agent/host_volumes.h). */
	const char *const *volume_host, *const *volume_path;
	const bool *volume_ro;
	size_t nvolumes;
	/* Secrets (spec task.secrets, agent/secret_files.h): secret_file[i], a
	 * file on the task's secrets tmpfs, shown read-only at secret_path[i].
	 * Never their values. */
	const char *const *secret_file, *const *secret_path;
	size_t nsecrets;
	/* task.network bridge: the task's network namespace, prepared by the
	 * agent (agent/net/task_net.h) and kept as a bind mount at this path;
	 * exec joins it, oci names it in config.json. NULL = the host's. */
	const char *netns_path;
	/* docker with netns_path: the namespace is the container's, bound at
	 * netns_path by the supervisor once it started (task_net_attach), with
	 * eth0 at net_address/net_prefix and the route via net_gateway. The
	 * agent reserved the address (node_net_task_reserve). */
	uint32_t net_address, net_gateway;
	int net_prefix;
};

enum task_phase { PHASE_UNKNOWN = 0, PHASE_STARTING, PHASE_RUNNING, PHASE_EXITED };

struct task_report {
	enum task_phase phase;
	pid_t supervisor_pid;
	pid_t pid;     /* host pid of the task's program (not the init) */
	int exit_code; /* valid when PHASE_EXITED and signal == 0 */
	int signal;    /* the signal that ended the program, or 0 */
	bool oom;      /* the memory limit was hit */
	bool stopped;  /* ended because supervisor_stop() asked */
	int64_t started_ms, finished_ms;
	char message[256]; /* "exit status 1", "killed by signal 9",
			      "memory limit 64 MiB exceeded", "cannot exec 'x': ..." */
};

/* Agent side. Write launch.json and start the supervisor detached: `exe`
 * (the berth binary, normally /proc/self/exe) is run as
 * `exe supervise SANDBOX_DIR`. Returns once the supervisor process exists
 * (not waiting for the task to start). */
int supervisor_launch(const struct task_launch *l, const char *exe, pid_t *supervisor_pid,
		      struct berr *err);
/* Ask the supervisor to stop the task (asynchronous). 0 or -errno
 * (-ESRCH when it is already gone). */
int supervisor_stop(const char *sandbox_dir);
/* Read status.json. 0, or -errno (-ENOENT before the supervisor wrote it). */
int supervisor_read_report(const char *sandbox_dir, struct task_report *r);
/* Is the supervisor of this sandbox still alive? */
bool supervisor_alive(const char *sandbox_dir);

/* The SANDBOX of a `berth supervise SANDBOX` command line (/proc/PID/cmdline:
 * NUL-separated arguments, `len` bytes), or NULL when it is none. */
const char *supervisor_cmdline_sandbox(const char *cmdline, size_t len);

/* Supervisor side: `berth supervise SANDBOX_DIR`. main() calls it with
 * argv[0] = "supervise", argv[1] = SANDBOX_DIR (argc = 2). Returns the
 * supervisor's exit status. */
int supervisor_main(int argc, char **argv);

#endif
