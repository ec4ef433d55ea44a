/* util.h - memory, strings, errors and time helpers shared by every module.
 *
 * Errors come in two tiers (see docs/architecture.md):
 *  - small syscall helpers return 0 or -errno;
 *  - deep paths fill a `struct berr` and return -1; callers may add context
 *    with berr_prefix(); the message is printed once, at the top.
 * Messages are lowercase, quote the subject, and have no final period:
 *   cannot open 'web.yaml': no such file or directory
 */
#ifndef BERTH_UTIL_H
#define BERTH_UTIL_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#define BERR_MSG_MAX 1024

/* An error: a status (an HTTP-like code where it helps the API layer,
 * otherwise 0) and a human message. */
struct berr {
	int code;
	char msg[BERR_MSG_MAX];
};

/* Set the error; always returns -1 so that `return berr_set(...)` works. */
int berr_set(struct berr *e, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Prepend "context: " to the message; returns -1. */
int berr_prefix(struct berr *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void berr_clear(struct berr *e);

/* Allocation that aborts the daemon on out-of-memory. */
void *xmalloc(size_t n);
void *xcalloc(size_t n, size_t size);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);
char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* A large zeroed array whose pages become resident only as they are written
 * (anonymous memory straight from the kernel, whatever the allocator does
 * with calloc); free it with xfree_lazy and the same sizes. */
void *xcalloc_lazy(size_t n, size_t size);
void xfree_lazy(void *p, size_t n, size_t size);
/* From now on the heap grows in 2 MiB pages (transparent huge pages) when
 * the allocator can (mimalloc, the default build) and the kernel allows it
 * (THP "madvise" or "always"); a no-op otherwise (sanitizer builds, glibc's
 * malloc). For the server only: it faults in ~600 MiB for 1M tasks, and a
 * 4 KiB page fault costs a virtual machine microseconds; a small process
 * would only grow (docs/decisions.md "Allocator"). Returns true when set. */
bool alloc_prefer_large_pages(void);

/* Growable string. Invariant: buf is always NUL-terminated, len < cap,
 * and buf is never NULL after sbuf_init. */
struct sbuf {
	char *buf;
	size_t len;
	size_t cap;
};
void sbuf_init(struct sbuf *sb);
void sbuf_add(struct sbuf *sb, const char *data, size_t n);
void sbuf_adds(struct sbuf *sb, const char *s);
void sbuf_addf(struct sbuf *sb, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void sbuf_vaddf(struct sbuf *sb, const char *fmt, va_list ap);
/* Hand the buffer to the caller (who frees it) and reset sb. */
char *sbuf_detach(struct sbuf *sb);
/* Append s as a JSON string literal (quoted, escaped). s must be UTF-8. */
void sbuf_add_json_str(struct sbuf *sb, const char *s);
void sbuf_release(struct sbuf *sb);

/* Time in milliseconds: wall clock (for records) and monotonic (for timers). */
int64_t time_now_ms(void);
int64_t time_mono_ms(void);
/* A timespec (a clock reading, a file's mtime) in whole milliseconds. */
int64_t time_ts_ms(struct timespec ts);
/* Format a wall-clock ms timestamp as RFC 3339 UTC with milliseconds into buf. */
void time_format_ms(int64_t ms, char *buf, size_t n);
/* The wall-clock time ms (>= 0) from now, normalized: the absolute deadline
 * that pthread_cond_timedwait takes (condition variables use CLOCK_REALTIME
 * unless told otherwise). */
struct timespec time_deadline_ms(int64_t ms);

/* Files. */
/* Read a whole file (NUL-terminated); returns 0 or -errno. */
int file_read_all(const char *path, char **out, size_t *len);
/* Write a file atomically, mode 0600: tmp + fsync + rename + fsync(dir).
 * 0 or -errno. */
int file_write_atomic(const char *path, const char *data, size_t len);
/* The same with the file's mode (e.g. 0600 for what holds a secret). */
int file_write_atomic_mode(const char *path, const char *data, size_t len, unsigned mode);
/* mkdir -p; 0 or -errno. */
int mkdir_p(const char *path, unsigned mode);
/* mkdir_p, then take away from an existing directory of ours what `mode`
 * does not grant (never from a sticky one such as /tmp). 0 or -errno. */
int mkdir_private(const char *path, unsigned mode);
/* rm -rf; 0 or -errno. */
int rm_rf(const char *path);
/* Remove `name` under the directory dirfd (AT_FDCWD: a path), recursively,
 * without ever following a symlink. Missing = 0; otherwise 0 or the first
 * -errno met. */
int rm_rf_at(int dirfd, const char *name);

/* Random lowercase hex id of n characters (n < 64) into buf (n+1 bytes). */
void random_hex(char *buf, size_t n);

/* Length of the valid UTF-8 sequence at s (at most n bytes, n > 0), or 0
 * when the bytes there are not one. Overlong forms, surrogates and code
 * points above U+10FFFF are invalid, as they are to jansson. */
size_t utf8_seq_len(const unsigned char *s, size_t n);
/* Whether the len bytes at s are all valid UTF-8 (NUL bytes included). */
bool utf8_valid(const char *s, size_t len);
/* Make s valid UTF-8 in place: a sequence cut short at the end (by a
 * truncating snprintf) is dropped, other invalid bytes become '?'. */
void utf8_clean(char *s);

/* Parse a decimal integer exactly (whole string); 0 or -EINVAL/-ERANGE. */
int parse_int64(const char *s, int64_t *out);

/* strerror(e) for e or -e, lowercased as messages are written here
 * ("no such file or directory"). A thread-local buffer: valid until the
 * next call in the same thread. */
const char *err_str(int e);

/* Free a NULL-terminated vector of strings and the vector; NULL is fine. */
void strv_free(char **v);
/* Free the first n strings of v and v; NULL is fine. */
void strv_free_n(char **v, size_t n);

/* Cleanup helpers for __attribute__((cleanup)). */
void cleanup_freep(void *p);
void cleanup_closep(int *fd);
#define _cleanup_free_ __attribute__((cleanup(cleanup_freep)))
#define _cleanup_close_ __attribute__((cleanup(cleanup_closep)))

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

#endif
