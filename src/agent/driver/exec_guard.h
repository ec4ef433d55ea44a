/* exec_guard.h - what a runtime's exec leaves running when `berth
 * task-exec` is killed.
 *
 * `runc exec` and Docker's exec API start the command in a session of its
 * own inside the container: when the agent kills task-exec's process
 * group at a health check's timeout, the command would run on. A guard is
 * a small process forked from task-exec, outside its process group; when
 * task-exec is gone (killed, or done) it calls `orphaned`, which kills
 * what the exec started, and exits.
 */
#ifndef BERTH_EXEC_GUARD_H
#define BERTH_EXEC_GUARD_H

#include <stdbool.h>
#include <sys/types.h>

/* Fork the guard; `orphaned(ud, note)` runs in it (a copy of the caller's
 * memory as of now; note: what exec_guard_note said, "" if nothing). The
 * caller keeps *keep_fd open (close-on-exec) for its whole life and never
 * closes it. 0, or -errno (no guard: the caller runs without one). */
int exec_guard_start(void (*orphaned)(void *ud, const char *note), void *ud, int *keep_fd);

/* Tell the guard something learnt after it was forked (a runtime's pid),
 * at most EXEC_GUARD_NOTE_MAX - 1 bytes in all. */
#define EXEC_GUARD_NOTE_MAX 64
void exec_guard_note(int keep_fd, const char *note);

/* For `orphaned`: SIGKILL the process pid and its process group, only if
 * it is still running (a pidfd keeps a recycled pid out). */
void exec_guard_kill(pid_t pid);

#endif
