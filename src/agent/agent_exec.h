/* agent_exec.h - `berth task exec` on the agent: GET /v1/exec/TASK on the
 * logs listener (agent_logs.c), upgraded to the "berth-exec" stream
 * (core/exec_stream.h, docs/protocol.md "Exec stream").
 *
 * The request carries the command as X-Berth-Command (the base64 of a JSON
 * list of words) and, with TLS, a ticket the server signed with the
 * cluster CA over "exec|TASK|EXPIRY|TTY|COMMAND": the server checked the
 * caller's role and audited the exec, and the ticket binds the command it
 * saw. The agent runs `berth task-exec SANDBOX -- CMD...` (task_exec.h),
 * which enters the task (namespaces, cgroup, user, capabilities,
 * no_new_privs, seccomp) through the task's driver, with pipes or, with
 * ?tty=1, a pseudo-terminal as its stdin, stdout and stderr. When the
 * client goes away the command is killed.
 */
#ifndef BERTH_AGENT_EXEC_H
#define BERTH_AGENT_EXEC_H

#include <microhttpd.h>

struct agent;

/* The handler for a URL under /v1/exec/ (id: what follows it). */
enum MHD_Result agent_exec_request(struct agent *a, struct MHD_Connection *conn, const char *id,
				   const char *method);

/* End every exec session (their commands killed) and wait for them, up to
 * 5 s: before the listener's daemon stops or restarts. */
void agent_exec_cut_all(void);

#endif
