/* docker.h - the `docker` driver: a small Docker Engine API client on its
 * unix socket (libcurl), and the whole life of one docker task as the
 * per-task supervisor runs it (docker_supervise).
 *
 * API version: the first call on a socket asks GET /version and then uses
 * /v<min(server, 1.41)> paths (raised to the server's MinAPIVersion when a
 * newer Docker refuses 1.41). Everything used here exists since API 1.25
 * (Docker 1.13), which is the oldest accepted.
 *
 * Choices (docs/decisions.md may quote them):
 *  - Network: berth's, never Docker's. task.network bridge (the default):
 *    NetworkMode "none", and once started the supervisor puts the task's
 *    veth and address into the container's namespace (hooks' attach,
 *    agent/net/task_net.h); the port maps are berth's nftables rules, so
 *    Docker needs no NAT, no docker-proxy and no iptables (the test daemon
 *    runs with --iptables=false --bridge=none). task.network host:
 *    NetworkMode "host". (docker_spec.network set to a Docker network
 *    publishes each named port P as host P -> container P/tcp; berth's
 *    specs do not use it.)
 *  - Init true: Docker's tini (docker-init) is pid 1 and forwards signals to
 *    the program and reaps orphans, as the exec driver's own init does
 *    (docs/decisions.md, containers). The reported pid is the program's (tini's child) when
 *    it can be read from /proc, else the init's.
 *  - no-new-privileges, Docker's default capability set, Memory with
 *    MemorySwap equal (no swap), NanoCpus = cores * 1e9, PidsLimit.
 *  - AutoRemove false: the supervisor must read State.OOMKilled and the exit
 *    code before the container goes; it removes it itself.
 *  - Logs: the json-file driver (the logs endpoint needs a driver it can
 *    read back), capped at 2 x 10 MiB: the supervisor's rotated files are
 *    the copy that counts.
 *  - Container name "berth-<task id>" (characters Docker refuses become
 *    '_'), labels berth.task, berth.job, berth.instance: a supervisor that
 *    finds a container for its task adopts it instead of starting a second.
 *  - Exit status: Docker reports one number. With the init, a program killed
 *    by signal N reports 128+N; as the exec driver does, 129..159 is read
 *    as "killed by signal code-128" (a program calling exit(130) is
 *    indistinguishable).
 *
 * Errors name the call and carry Docker's own message:
 *   docker: cannot pull '127.0.0.1:1/x:1': Get "http://127.0.0.1:1/v2/": ...
 *   docker is not reachable at '/var/run/docker.sock': no such file or directory
 *
 * Not thread-safe per call site beyond this: each call uses its own
 * connection; the negotiated version cache is guarded by a mutex.
 */
#ifndef BERTH_DOCKER_H
#define BERTH_DOCKER_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "core/util.h"

#define DOCKER_DEFAULT_SOCKET "/var/run/docker.sock"

struct docker_port {
	const char *name; /* the spec's port name (for messages) */
	int port;	  /* the berth-assigned host port */
};

struct docker_spec {
	const char *socket;  /* NULL or "" = DOCKER_DEFAULT_SOCKET */
	const char *task_id; /* required: name, hostname, label */
	const char *job_key; /* label berth.job */
	int instance;	     /* label berth.instance */
	const char *image;   /* a reference Docker understands: "busybox",
				"registry:5000/x/y:tag", "name@sha256:..." */
	char *const *argv;   /* empty = the image's entrypoint + cmd */
	size_t argc;
	char *const *env; /* "KEY=VALUE"; BERTH_TASK_ID is added */
	size_t nenv;
	const char *user;      /* NULL/"" = the image's; resolved in the image */
	const char *workdir;   /* NULL/"" = the image's */
	double cpu;	       /* cores; 0 = no limit */
	uint64_t memory_bytes; /* 0 = no limit; swap is never allowed */
	int64_t pids_limit;    /* 0 = no limit */
	bool cpu_after_start;  /* create without the cpu limit, set it once
				  started (docker_supervise): runc's start-up
				  then runs at full speed */
	const struct docker_port *ports;
	size_t nports;
	const char *network;	 /* NULL/""/"host" = host networking (above);
				    "none": berth's task network, attached by the
				    hooks' attach once started (docs/networking.md) */
	const char *resolv_conf; /* NULL or a host file bound read-only at
				    /etc/resolv.conf (the agent's name server) */
	uint64_t stop_grace_ms;
	/* HostConfig.Mounts {Type: bind, Source, Target, ReadOnly} */
	const char *const *volume_host, *const *volume_path;
	const bool *volume_ro;
	size_t nvolumes;
};

/* ---- the client ---- */

/* GET /_ping answers OK. */
bool docker_available(const char *sock);
/* Like docker_available, with the reason when it is not: "docker is not
 * reachable at 'SOCK': ...". Also negotiates the API version. */
int docker_ping(const char *sock, struct berr *err);

/* Make `image` present: nothing when GET /images/NAME/json knows it, else
 * POST /images/create?fromImage=&tag= and read the progress stream to its
 * end (an error inside the stream fails the pull). */
int docker_pull(const char *sock, const char *image, struct berr *err);
/* Import a root filesystem tar as image `ref` ("name:tag"), as
 * `docker import` does (POST /images/create?fromSrc=-). For tests and for
 * hosts without a registry. */
int docker_import(const char *sock, const char *rootfs_tar, const char *ref, struct berr *err);

/* The body of POST /containers/create for s (new reference). Exposed so
 * the mapping can be checked without a daemon. */
json_t *docker_create_config(const struct docker_spec *s);
/* The container name for a task id: "berth-" + id, refused characters as
 * '_'. Caller frees. */
char *docker_container_name(const char *task_id);
/* Create the container (not started). *id gets its full id (caller frees).
 * err->code 409 when the name is taken (a container for this task exists). */
int docker_create(const char *sock, const struct docker_spec *s, char **id, struct berr *err);
/* Start it; starting a running container is not an error. */
int docker_start(const char *sock, const char *id, struct berr *err);
/* Block until it is not running (POST /containers/ID/wait); *status gets
 * its StatusCode. */
int docker_wait(const char *sock, const char *id, int *status, struct berr *err);

struct docker_state {
	bool running;
	pid_t pid;	 /* State.Pid: host pid of the container's init, 0 if none */
	bool oom_killed; /* State.OOMKilled */
	int exit_code;	 /* State.ExitCode */
	char status[16]; /* "created", "running", "exited", ... */
	char error[256]; /* State.Error (why it could not start) */
};
int docker_inspect(const char *sock, const char *id, struct docker_state *st, struct berr *err);

/* POST /containers/ID/stop?t=grace_s: SIGTERM (the image's StopSignal), then
 * SIGKILL after grace_s seconds. Returns when it has stopped; a container
 * already stopped is not an error. */
int docker_stop(const char *sock, const char *id, int grace_s, struct berr *err);
/* Send a signal (SIGTERM, SIGKILL...); a container that is not running is
 * not an error. */
int docker_kill(const char *sock, const char *id, int sig, struct berr *err);
/* DELETE /containers/ID (with its anonymous volumes); force kills it
 * first if running. A container already gone is not an error. */
/* Set a running container's cpu limit (NanoCpus). */
int docker_update_cpu(const char *sock, const char *id, double cpu, struct berr *err);
int docker_remove(const char *sock, const char *id, bool force, struct berr *err);

/* stream: 1 stdout, 2 stderr. Data comes as it arrives, not cut to lines. */
typedef void (*docker_output_fn)(void *ud, int stream, const char *data, size_t len);
/* GET /containers/ID/logs?follow=1&stdout=1&stderr=1: everything the
 * container wrote, then what it writes, until it stops. Blocks. */
int docker_logs_follow(const char *sock, const char *id, docker_output_fn cb, void *ud,
		       struct berr *err);

/* Run argv in a running container, as `docker exec` does, in three
 * calls. Create: POST /containers/ID/exec (the container's user, working
 * directory and env); *exec_id gets its id (caller frees). */
int docker_exec_create(const char *sock, const char *container, char *const *argv, bool in,
		       bool tty, char **exec_id, struct berr *err);
/* Start attached (`berth task exec -i/-t`): POST /exec/EXEC/start upgraded
 * to a raw stream ("Upgrade: tcp"), our stdin to the command's (EOF: its
 * stdin closed), its output to cb (stream 1 with a TTY, else
 * demultiplexed); with a TTY our terminal (stdin) goes raw and its window
 * size follows ours (SIGWINCH). Blocks until the command's output ends.
 * docker_exec_attach.c. */
int docker_exec_attach(const char *sock, const char *exec_id, bool tty, docker_output_fn cb,
		       void *ud, struct berr *err);
/* POST /exec/EXEC/resize. */
int docker_exec_resize(const char *sock, const char *exec_id, unsigned rows, unsigned cols,
		       struct berr *err);
/* Start: POST /exec/EXEC/start, its output, demultiplexed, to cb as it
 * comes, until the command ends. Blocks. */
int docker_exec_start(const char *sock, const char *exec_id, docker_output_fn cb, void *ud,
		      struct berr *err);
struct docker_exec_state {
	bool running;
	pid_t pid;     /* host pid of the command, 0 if none */
	int exit_code; /* -1 while it runs */
};
/* Inspect: GET /exec/EXEC/json. */
int docker_exec_inspect(const char *sock, const char *exec_id, struct docker_exec_state *st,
			struct berr *err);

/* Docker's multiplexed stream (no TTY): frames of an 8-byte header
 * {stream, 0, 0, 0, size32 big-endian} and size bytes. Feed it bytes as
 * they come; payload goes to cb as soon as it is read. */
struct docker_demux {
	unsigned char hdr[8];
	size_t have;   /* header bytes held */
	uint32_t left; /* payload bytes left in this frame */
	int stream;
};
void docker_demux_feed(struct docker_demux *d, const char *data, size_t len, docker_output_fn cb,
		       void *ud);

struct docker_found {
	char *id;
	char *name;  /* without the leading '/' */
	char *task;  /* label berth.task, or "" */
	char *state; /* "created", "running", "exited", ... */
};
/* Containers (running or not) with `label` ("berth.task=ID", or "berth.task"
 * for every berth container): GET /containers/json?all=1&filters=... */
int docker_find_by_label(const char *sock, const char *label, struct docker_found **out, size_t *n,
			 struct berr *err);
void docker_found_free(struct docker_found *f, size_t n);

/* ---- a task's life ---- */

/* How docker_supervise reports to its supervisor. Every hook may be NULL. */
struct docker_hooks {
	void *ud;
	/* An fd that turns readable when stop_requested may have changed (the
	 * supervisor's signalfd), or -1: then stop_requested is polled every
	 * 100ms. stop_requested must consume what made it readable. */
	int wake_fd;
	bool (*stop_requested)(void *ud);
	/* The container started (or was adopted running), before `running`:
	 * init_pid is its init's host pid (State.Pid). -1 with err set fails
	 * the task; the container is removed. */
	int (*attach)(void *ud, const char *container_id, pid_t init_pid, struct berr *err);
	/* The container runs: its id and the program's host pid. */
	void (*running)(void *ud, const char *container_id, pid_t pid);
	/* The container's output (the supervisor's logfile writers). */
	docker_output_fn output;
	/* Diagnostics for the supervisor's log ("pulling 'busybox'", ...). */
	void (*log)(void *ud, const char *msg);
};

struct docker_exit {
	bool started;  /* false: stopped before the container ran */
	int exit_code; /* State.ExitCode */
	int signal;    /* exit_code - 128 for 129..159, else 0 */
	bool oom;      /* State.OOMKilled */
	bool stopped;  /* it ended because stop_requested said so */
	bool killed;   /* ... and needed SIGKILL after the grace */
	char container_id[72];
};

/* The whole life of a docker task: find a container of this task
 * (label berth.task) and adopt it, or pull the image, create and start one;
 * report running; pump its output to h->output; on stop_requested send
 * SIGTERM, then SIGKILL after s->stop_grace_ms; wait for the end, read the
 * exit code and OOMKilled, remove the container. Returns 0 with *out filled
 * when the task ran (or was stopped before it could), -1 with err set when
 * it could not be run at all (pull, create or start failed, or Docker
 * stayed unreachable for a minute while it ran) - the supervisor's
 * "exit 126" case. */
int docker_supervise(const struct docker_spec *s, const struct docker_hooks *h,
		     struct docker_exit *out, struct berr *err);

#endif
