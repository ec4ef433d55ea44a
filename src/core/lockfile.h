/* lockfile.h - one process at a time on a directory: an exclusive flock on
 * a file that says who holds it.
 *
 * The lock lives as long as the descriptor: the process keeps it open for
 * its whole life and the kernel drops the lock when it exits, however it
 * exits (no stale lock to clean after a crash). The file holds one line,
 * "pid PID addr ADDR", so that the one refused can name the holder.
 */
#ifndef BERTH_LOCKFILE_H
#define BERTH_LOCKFILE_H

#include "core/util.h"

/* Take the lock on path (created 0600 when missing) and write "pid <our
 * pid> addr <addr>" into it. The descriptor (close-on-exec), or -1 with
 * err: when another process holds the lock, err->code is 409 and the
 * message names its pid and address as it wrote them. */
int lockfile_acquire(const char *path, const char *addr, struct berr *err);
/* Rewrite the holder's line with another address (once it is known, e.g.
 * after binding port 0). */
void lockfile_update(int fd, const char *addr);
/* What the holder wrote: pid and addr (addr may be "" and pid 0 when the
 * file does not say). 0, or -1 when the file cannot be read. */
int lockfile_holder(const char *path, long *pid, char *addr, size_t addr_len);

#endif
