/* logfile.h - an append-only log file rotated by size, for a task's stdout
 * and stderr.
 *
 * When writing would take the file past max_bytes it is rotated, logrotate
 * style: stdout.N-1 → stdout.N ... stdout → stdout.1, and a new stdout is
 * started; the oldest beyond max_files rotated files is dropped. So at most
 * max_files + 1 files exist, none larger than max_bytes. A write that does
 * not fit is cut after its last complete line when it has one, so that lines
 * stay whole across files whenever they can.
 */
#ifndef BERTH_LOGFILE_H
#define BERTH_LOGFILE_H

#include <stddef.h>
#include <stdint.h>

struct logfile {
	char *path;
	int fd;
	uint64_t size;
	uint64_t max_bytes; /* > 0 */
	int max_files;	    /* rotated files kept; 0 = none (the file restarts) */
	int last_error;	    /* the last write error (-errno), 0 if none */
};

/* Open (append to) path. 0 or -errno. */
int logfile_open(struct logfile *lf, const char *path, uint64_t max_bytes, int max_files);
/* Append, rotating as needed. On a write error (disk full) the data is
 * dropped and the error remembered: the caller must keep draining its pipe.
 * 0 or -errno. */
int logfile_write(struct logfile *lf, const char *data, size_t n);
void logfile_close(struct logfile *lf);

#endif
