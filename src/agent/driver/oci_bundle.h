/* oci_bundle.h - the oci driver's half of the supervisor: a task's image,
 * root filesystem, runc bundle (config.json), and the runc commands run on
 * it.
 *
 * The bundle is SANDBOX/bundle/: config.json, rootfs/ (the task's root),
 * upper/ and work/ (the overlay's writable layer), runc.log (runc's own
 * log, JSON lines: its error becomes the task's message when it fails).
 *
 * config.json, as Docker's defaults where the brief is silent:
 *  - process: args = the task's command, or the image's Entrypoint + Cmd
 *    when the task gives none (a command replaces both, as Kubernetes'
 *    `command` does); env = the image's Env, overridden key by key by the
 *    task's, plus PATH and HOME when absent, plus BERTH_TASK_ID; cwd = the
 *    image's WorkingDir or /; user = the task's `user`, else the image's
 *    User, else root, names resolved against the *image's* /etc/passwd and
 *    /etc/group (read with RESOLVE_IN_ROOT, so an image's symlinks cannot
 *    point the lookup at the host's files); noNewPrivileges; Docker's
 *    default capability set (none effective for a non-root user); rlimit
 *    NOFILE 1024 soft / 524288 hard.
 *  - hostname = the task id (63 characters at most).
 *  - mounts: /proc, /dev (tmpfs), /dev/pts, /dev/shm, /dev/mqueue, /sys
 *    (ro), /sys/fs/cgroup (ro), and the host's /etc/resolv.conf and
 *    /etc/hosts read-only (the task shares the host's network namespace,
 *    as `docker run --net=host`); then each volume: a bind of its host path
 *    ("rbind", "ro" or "rw").
 *  - namespaces: pid, mount, ipc, uts; network: the host's (for now).
 *  - resources: memory limit (swap = the limit, i.e. none, where the
 *    kernel accounts swap), cpu quota/period, pids limit; no device access
 *    beyond runc's defaults.
 *  - cgroupsPath "/<cgroup_parent>/<task-id>": the same place the exec
 *    driver's cgroups go, so the supervisor reads OOM kills and sweeps
 *    leftovers with the cgroup module.
 *  - maskedPaths / readonlyPaths: Docker's lists.
 *  - seccomp: Docker's default profile, an allowlist (seccomp_profile.h,
 *    the same the exec driver loads): every call not listed fails with
 *    EPERM; clone with namespace flags fails with EPERM, clone3 with
 *    ENOSYS (so libc falls back to clone, whose flags a filter can see).
 *  - config.json is 0600: it holds the task's environment.
 *
 * The root filesystem is an overlay of the image's layers where the kernel
 * allows it, else a copy (image_rootfs.h). The overlay is mounted in a
 * private mount namespace of the supervisor (oci_task_prepare unshares
 * it), so the host's mount table never shows it and it goes away with the
 * supervisor and its container, whatever way they end.
 *
 * The supervisor becomes a child subreaper, so the container's init (which
 * `runc run --detach` leaves behind) is its child: the supervisor reaps it
 * and gets its exact wait status, and reads the OOM count from the cgroup
 * before `runc delete` removes it.
 */
#ifndef BERTH_OCI_BUNDLE_H
#define BERTH_OCI_BUNDLE_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "agent/image/image.h"
#include "core/util.h"

/* The runtime binary: BERTH_OCI_RUNTIME, else "runc". */
#define OCI_DEFAULT_RUNTIME "runc"

struct oci_params {
	const char *task_id;
	const char *sandbox; /* absolute */
	const char *image;
	const char *data_dir; /* images in <data_dir>/images, runc state in <data_dir>/runc */
	const char *runtime;  /* NULL = $BERTH_OCI_RUNTIME or "runc" */
	char *const *argv;    /* empty = the image's entrypoint + cmd */
	size_t argc;
	char *const *env; /* "K=V" */
	size_t nenv;
	const char *user; /* NULL = the image's */
	double cpu;
	uint64_t memory_bytes;
	const char *cgroup_parent;
	const char *const *volume_host, *const *volume_path;
	const bool *volume_ro;
	size_t nvolumes;
	uint64_t image_max_bytes, image_max_unpacked_bytes; /* 0 = image.h's defaults */
	const char *netns_path; /* the task's network namespace; NULL = the host's */
};

struct oci_task {
	char *id;
	char *runtime, *state_root, *bundle, *rootfs, *log, *pidfile;
	struct image_cache *cache;
	struct image *img;
	bool mounted, copied;
	bool ran;     /* the runtime was asked to run it: delete it at the end */
	bool fetched; /* the image was pulled or unpacked for this task */
	pid_t pid;    /* the container's init (host pid) */
};

/* What config.json is made from (also used by the unit tests). */
struct oci_config_in {
	const char *task_id;
	const char *rootfs; /* for user lookup; config.json says "rootfs" */
	char *const *argv;
	size_t argc;
	char *const *env;
	size_t nenv;
	const char *user;
	const struct image_config *image;
	double cpu;
	uint64_t memory_bytes;
	const char *cgroups_path;
	const char *const *volume_host, *const *volume_path;
	const bool *volume_ro;
	size_t nvolumes;
	const char *netns_path; /* linux.namespaces "network" with this path; NULL = host */
	/* Shown at /etc/resolv.conf: the agent's (SANDBOX/resolv.conf, its name
	 * server) or NULL for the host's. */
	const char *resolv_conf;
};

/* Build config.json's text (the caller frees it). */
int oci_config_build(const struct oci_config_in *in, char **json, struct berr *err);

/* Resolve "name", "uid", "name:group" or "uid:gid" against the passwd and
 * group files under rootfs. *groups: supplementary gids (caller frees). */
int oci_resolve_user(const char *rootfs, const char *spec, uid_t *uid, gid_t *gid, gid_t **groups,
		     size_t *ngroups, char **home, struct berr *err);

/* Image, root filesystem and config.json. Unshares the supervisor's mount
 * namespace and makes it a child subreaper. */
int oci_task_prepare(struct oci_task *t, const struct oci_params *p, struct berr *err);
/* `runtime run --detach`, the container's stdio on these fds (stdin
 * /dev/null). Returns the container init's host pid, or -1 with err set
 * (runc's own error, e.g. "exec: \"/bin/nope\": ... no such file"); *code
 * is then the exit code to report (127: the command does not exist). */
pid_t oci_task_start(struct oci_task *t, int out_fd, int err_fd, int *code, struct berr *err);
/* `runtime kill [--all] ID SIG`; falls back to kill(2) on the init. */
int oci_task_kill(struct oci_task *t, int sig, bool all);
/* `runtime delete --force ID`, unmount or remove the root filesystem,
 * release the image. Safe on a partly prepared task. */
void oci_task_cleanup(struct oci_task *t);

/* Agent side: a task whose supervisor died (SIGKILL, OOM killer) may leave
 * its container running, since runc's init does not die with it. When the
 * runtime still knows the container (<data_dir>/runc/<task_id> exists),
 * `runtime delete --force` kills and removes it. 1 = deleted, 0 = nothing
 * to do, -errno when the runtime could not be run. Safe in a threaded
 * process (posix_spawn). */
int oci_delete_orphan(const char *data_dir, const char *task_id, const char *runtime);

/* task-exec side: `runtime exec --no-new-privs ID argv...`, which runs
 * argv in the running container (its namespaces, cgroup, capabilities,
 * seccomp profile, user, cwd and env, all from config.json), stdio
 * inherited, with a guard (exec_guard.h) that kills it if the caller is
 * killed first (its pid file: SANDBOX/exec.PID.pid). Returns the exit
 * status (the command's; the runtime's own failures are 1 with its message
 * on stderr), or -1 with err set when the runtime could not be run. */
int oci_exec(const char *data_dir, const char *sandbox, const char *task_id, const char *runtime,
	     char *const *argv, struct berr *err);

#endif
