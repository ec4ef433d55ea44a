/* task_exec.c - `berth task-exec` (task_exec.h). */
#include "agent/task_exec.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/driver/driver.h"
#include "agent/supervisor-internal.h"

#define USAGE "usage: berth task-exec SANDBOX -- COMMAND [ARG...]\n"

char **task_exec_argv(const char *exe, const char *sandbox, char *const *cmd, size_t n,
		      size_t *argc)
{
	char **v = xcalloc(n + 5, sizeof *v);
	size_t k = 0;
	v[k++] = xstrdup(exe);
	v[k++] = xstrdup("task-exec");
	v[k++] = xstrdup(sandbox);
	v[k++] = xstrdup("--");
	for (size_t i = 0; i < n; i++)
		v[k++] = xstrdup(cmd[i]);
	v[k] = NULL;
	*argc = k;
	return v;
}

/* <data-dir> of <data-dir>/tasks/<id> (caller frees). */
static char *data_dir_of(const char *sandbox)
{
	char *d = xstrdup(sandbox);
	for (int i = 0; i < 2; i++) {
		char *slash = strrchr(d, '/');
		if (slash && slash != d)
			*slash = 0;
	}
	return d;
}

static int run(const char *sandbox, char *const *cmd, struct berr *err)
{
	struct launch_doc doc;
	if (launch_read(sandbox, &doc, err) < 0) {
		launch_doc_free(&doc);
		return -1;
	}
	const struct task_launch *l = &doc.l;
	int rc = -1;
	char *data_dir = NULL;
	struct task_report r;
	int e = supervisor_read_report(sandbox, &r);
	if (e < 0) {
		berr_set(err, 0, "task '%s' is not running: %s", l->task_id,
			 e == -ENOENT ? "it has not started" : err_str(e));
		goto out;
	}
	if (r.phase != PHASE_RUNNING) {
		berr_set(err, 0, "task '%s' is not running", l->task_id);
		goto out;
	}
	const struct driver_ops *d = driver_get(l->driver);
	if (!d->exec_in) {
		berr_set(err, 0, "driver '%s' cannot run a command in a task",
			 task_driver_name(l->driver));
		goto out;
	}
	data_dir = l->data_dir ? xstrdup(l->data_dir) : data_dir_of(sandbox);
	struct task_exec x = {
	    .task_id = l->task_id,
	    .sandbox = sandbox,
	    .data_dir = data_dir,
	    .runtime = l->runtime,
	    .docker_socket = l->docker_socket,
	    .cgroup_parent = l->cgroup_parent ? l->cgroup_parent : DEFAULT_CGROUP_PARENT,
	    .pid = r.pid,
	    .argv = cmd,
	};
	rc = d->exec_in(&x, err);
out:
	free(data_dir);
	launch_doc_free(&doc);
	return rc;
}

int task_exec_main(int argc, char **argv)
{
	if (argc < 3 || strcmp(argv[1], "--") || !argv[2][0]) {
		fputs(USAGE, stderr);
		return 2;
	}
	char *sandbox = abs_sandbox(argv[0]);
	struct berr err = {0};
	int rc = run(sandbox, argv + 2, &err);
	free(sandbox);
	if (rc < 0) {
		fprintf(stderr, "berth task-exec: %s\n", err.msg);
		return 126;
	}
	return rc;
}
