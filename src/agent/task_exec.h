/* task_exec.h - `berth task-exec SANDBOX -- CMD [ARG...]`: run a command
 * inside a running task, as the task (its namespaces, cgroup, root, user,
 * environment), through its driver's exec_in (driver/driver.h):
 *
 *   exec    setns into the program's namespaces, its cgroup and
 *           credentials (driver/exec_enter.h)
 *   oci     `runc exec` into the container
 *   docker  the Engine's exec API
 *
 * The agent runs its health-check commands so (health.h): a check is the
 * task's own code and must never run with the agent's privileges on the
 * host. The command's stdout and stderr are task-exec's; its exit status
 * is task-exec's (128+N for signal N). When the command cannot be run in
 * the task at all (the task is not running, a namespace cannot be joined,
 * Docker refuses), task-exec says why on stderr, "berth task-exec: task
 * 'ID' is not running", and exits 126.
 */
#ifndef BERTH_TASK_EXEC_H
#define BERTH_TASK_EXEC_H

#include <stddef.h>

/* The words after "task-exec": SANDBOX "--" CMD [ARG...]. Returns the
 * exit status. */
int task_exec_main(int argc, char **argv);

/* Agent side: the argv that runs cmd (n words) in the task of sandbox with
 * the berth binary exe; NULL-terminated, *argc gets its length. The caller
 * frees it (strv_free). */
char **task_exec_argv(const char *exe, const char *sandbox, char *const *cmd, size_t n,
		      size_t *argc);

#endif
