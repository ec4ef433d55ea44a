/* driver_oci.c - the oci driver: an OCI runtime (runc) runs the task from a
 * bundle the supervisor writes (oci_bundle.h). */
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "agent/cgroup.h"
#include "agent/driver/driver.h"
#include "agent/driver/oci_bundle.h"
#include "agent/supervisor-internal.h"

static void oci_orphan(const struct driver_host *h, const char *task_id)
{
	oci_delete_orphan(h->data_dir, task_id, NULL);
}

/* The oci driver: image, bundle, `runc run --detach`. A failure is the
 * task's (sup_fail() has the message). Returns the container init's host pid,
 * 0 when a stop came while the image was being prepared, -1 on failure. */
static pid_t oci_start(struct sup *s, int out_fd, int err_fd, struct berr *err)
{
	const struct task_launch *l = &s->doc.l;
	char *data_dir = NULL;
	if (l->data_dir) {
		data_dir = xstrdup(l->data_dir);
	} else { /* <data-dir>/tasks/<id> */
		data_dir = xstrdup(s->sandbox);
		for (int i = 0; i < 2; i++) {
			char *slash = strrchr(data_dir, '/');
			if (slash && slash != data_dir)
				*slash = 0;
		}
	}
	const char *parent = l->cgroup_parent ? l->cgroup_parent : DEFAULT_CGROUP_PARENT;
	struct oci_params p = {
	    .task_id = l->task_id,
	    .sandbox = s->sandbox,
	    .image = l->image,
	    .data_dir = data_dir,
	    .runtime = l->runtime,
	    .argv = l->argv,
	    .argc = l->argc,
	    .env = l->env,
	    .nenv = l->nenv,
	    .user = l->user,
	    .cpu = 0, /* set once started: runc's own set-up is not the task's */
	    .memory_bytes = l->memory_bytes,
	    .cgroup_parent = parent,
	    .volume_host = l->volume_host,
	    .volume_path = l->volume_path,
	    .volume_ro = l->volume_ro,
	    .nvolumes = l->nvolumes,
	    .netns_path = l->netns_path,
	    .image_max_bytes = l->image_max_bytes,
	    .image_max_unpacked_bytes = l->image_max_unpacked_bytes,
	};
	pid_t pid = -1;
	int64_t t0 = time_mono_ms();
	if (!s->oci)
		s->oci = xcalloc(1, sizeof *s->oci);
	if (oci_task_prepare(s->oci, &p, err) < 0) {
		sup_fail(s, 126, "%s", err->msg);
		goto out;
	}
	if (s->oci->fetched)
		sup_log("image '%s' prepared in %lldms", l->image,
			(long long)(time_mono_ms() - t0));
	sup_handle_signals(s); /* a stop during a long pull */
	if (s->stopping) {
		pid = 0;
		goto out;
	}
	int code;
	pid = oci_task_start(s->oci, out_fd, err_fd, &code, err);
	if (pid < 0) {
		sup_fail(s, code, "%s", err->msg);
		goto out;
	}
	/* For the cpu limit, the OOM count and the final sweep. */
	enum cgroup_version v = cgroup_detect();
	if (v != CGROUP_NONE && cgroup_open(v, NULL, parent, l->task_id, &s->cg) < 0)
		sup_log("cannot find the container's cgroup '%s/%s'", parent, l->task_id);
	if (l->cpu > 0 && (!s->cg || cgroup_set_cpu(s->cg, l->cpu, err) < 0)) {
		/* Never run a task without the limit it asked for. */
		sup_fail(s, 126, "cannot limit the container's cpu: %s",
			 s->cg ? err->msg : "its cgroup was not found");
		oci_task_kill(s->oci, SIGKILL, true);
		return pid; /* the loop reaps it */
	}
	sup_running(s, pid);
out:
	free(data_dir);
	return pid;
}

/* SIGTERM goes to the container's init (the program); SIGKILL to all of
 * the container. */
static void oci_kill(struct sup *s, int sig)
{
	if (s->init_pid > 0 && !s->init_done)
		oci_task_kill(s->oci, sig, sig == SIGKILL);
}

static void oci_cleanup(struct sup *s)
{
	if (s->oci)
		oci_task_cleanup(s->oci);
	free(s->oci);
	s->oci = NULL;
}

/* `runc exec` into the container: the runtime applies everything the
 * container has (oci_bundle.h). */
static int oci_exec_in(const struct task_exec *x, struct berr *err)
{
	return oci_exec(x->data_dir, x->sandbox, x->task_id, x->runtime, x->argv, err);
}

const struct driver_ops driver_oci = {
    .driver = DRIVER_OCI,
    .needs_image = true,
    .runtime_isolates = true,
    .init_is_program = true,
    .delete_orphan = oci_orphan,
    .start = oci_start,
    .kill = oci_kill,
    .cleanup = oci_cleanup,
    .exec_in = oci_exec_in,
};
