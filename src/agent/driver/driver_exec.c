/* driver_exec.c - the exec driver: the supervisor runs the task itself, in
 * namespaces and a cgroup of its own (exec_isolation.h): a minimal init is
 * the namespace's pid 1 and forwards signals to the program. */
#include <signal.h>
#include <stdlib.h>
#include <unistd.h>

#include "agent/driver/driver.h"
#include "agent/driver/exec_enter.h"
#include "agent/driver/exec_isolation.h"
#include "agent/supervisor-internal.h"

static pid_t exec_start(struct sup *s, int out_fd, int err_fd, struct berr *err)
{
	const struct task_launch *l = &s->doc.l;
	/* The agent's name server, when it runs one (agent_dns.c). */
	char *resolv = xasprintf("%s/resolv.conf", s->sandbox);
	if (access(resolv, F_OK) < 0) {
		free(resolv);
		resolv = NULL;
	}
	struct isolation iso = {
	    .hostname = l->task_id,
	    .netns_path = l->netns_path,
	    .workdir = s->workdir,
	    .workdir_src = s->workdir_src,
	    .hide = l->data_dir,
	    .tmpdir = s->tmpdir,
	    .argv = l->argv,
	    .envp = s->env,
	    .user = s->user_name,
	    .uid = s->user.uid,
	    .gid = s->user.gid,
	    .groups = s->user.groups,
	    .ngroups = (size_t)s->user.ngroups,
	    .cg = s->cg,
	    .stdout_fd = out_fd,
	    .stderr_fd = err_fd,
	    .volume_host = l->volume_host,
	    .volume_path = l->volume_path,
	    .volume_ro = l->volume_ro,
	    .nvolumes = l->nvolumes,
	    .secret_file = l->secret_file,
	    .secret_path = l->secret_path,
	    .nsecrets = l->nsecrets,
	    .resolv_conf = resolv,
	};
	pid_t pid = isolation_start(&iso, &s->ctl_fd, err);
	free(resolv);
	return pid;
}

/* The init forwards SIGTERM to the program's process group; SIGKILL to the
 * init takes its whole pid namespace down. */
static void exec_kill(struct sup *s, int sig)
{
	if (s->init_pid > 0 && !s->init_done)
		kill(s->init_pid, sig);
}

/* Into the program's namespaces, cgroup and credentials (exec_enter.h). */
static int exec_exec_in(const struct task_exec *x, struct berr *err)
{
	struct exec_enter e = {
	    .pid = x->pid,
	    .task_id = x->task_id,
	    .cgroup_parent = x->cgroup_parent,
	    .argv = x->argv,
	};
	return exec_enter_run(&e, err);
}

const struct driver_ops driver_exec = {
    .driver = DRIVER_EXEC,
    .start = exec_start,
    .kill = exec_kill,
    .exec_in = exec_exec_in,
};
