#include "core/util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <ctype.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

int berr_set(struct berr *e, int code, const char *fmt, ...)
{
	if (!e)
		return -1;
	va_list ap;
	va_start(ap, fmt);
	e->code = code;
	vsnprintf(e->msg, sizeof e->msg, fmt, ap);
	va_end(ap);
	return -1;
}

int berr_prefix(struct berr *e, const char *fmt, ...)
{
	if (!e)
		return -1;
	char pre[BERR_MSG_MAX], old[BERR_MSG_MAX];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(pre, sizeof pre, fmt, ap);
	va_end(ap);
	memcpy(old, e->msg, sizeof old);
	snprintf(e->msg, sizeof e->msg, "%s: %s", pre, old);
	return -1;
}

void berr_clear(struct berr *e)
{
	e->code = 0;
	e->msg[0] = 0;
}

static void oom(size_t n)
{
	fprintf(stderr, "berth: out of memory allocating %zu bytes\n", n);
	abort();
}

void *xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);
	if (!p)
		oom(n);
	return p;
}

void *xcalloc(size_t n, size_t size)
{
	void *p = calloc(n ? n : 1, size ? size : 1);
	if (!p)
		oom(n * size);
	return p;
}

/* LeakSanitizer does not look for pointers in memory mapped outside its
 * allocator: the lazy arrays are registered as roots, or what they point
 * to would be reported as leaked (the fuzz targets check after each input). */
#if defined(__SANITIZE_ADDRESS__)
#define BERTH_LSAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define BERTH_LSAN 1
#endif
#endif
#ifdef BERTH_LSAN
#include <sanitizer/lsan_interface.h>
#endif
#if __has_include(<mimalloc.h>)
#define BERTH_HAVE_MIMALLOC_H 1
#include <dlfcn.h>
#include <mimalloc.h>
#endif

void *xcalloc_lazy(size_t n, size_t size)
{
	if (size && n > SIZE_MAX / size)
		oom(SIZE_MAX);
	size_t len = n * size;
	if (!len)
		len = 1;
	void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		oom(len);
#ifdef BERTH_LSAN
	__lsan_register_root_region(p, len);
#endif
	return p;
}

bool alloc_prefer_large_pages(void)
{
#if defined(BERTH_HAVE_MIMALLOC_H) && !defined(BERTH_LSAN)
	/* Looked up, not linked: libberth.a is also linked without mimalloc
	 * (tests, fuzzers, sanitizer builds), where this must do nothing. */
	void (*set)(mi_option_t, long) =
	    (void (*)(mi_option_t, long))dlsym(RTLD_DEFAULT, "mi_option_set");
	if (!set)
		return false;
	set(mi_option_large_os_pages, 1);
	return true;
#else
	return false;
#endif
}

void xfree_lazy(void *p, size_t n, size_t size)
{
	size_t len = n * size;
	if (!p)
		return;
#ifdef BERTH_LSAN
	__lsan_unregister_root_region(p, len ? len : 1);
#endif
	munmap(p, len ? len : 1);
}

void *xrealloc(void *p, size_t n)
{
	void *q = realloc(p, n ? n : 1);
	if (!q)
		oom(n);
	return q;
}

char *xstrdup(const char *s)
{
	char *p = strdup(s ? s : "");
	if (!p)
		oom(strlen(s));
	return p;
}

char *xstrndup(const char *s, size_t n)
{
	char *p = strndup(s, n);
	if (!p)
		oom(n);
	return p;
}

char *xasprintf(const char *fmt, ...)
{
	va_list ap;
	char *out;
	va_start(ap, fmt);
	int r = vasprintf(&out, fmt, ap);
	va_end(ap);
	if (r < 0)
		oom(0);
	return out;
}

void sbuf_init(struct sbuf *sb)
{
	sb->cap = 64;
	sb->len = 0;
	sb->buf = xmalloc(sb->cap);
	sb->buf[0] = 0;
}

static void sbuf_grow(struct sbuf *sb, size_t extra)
{
	if (sb->len + extra + 1 <= sb->cap)
		return;
	while (sb->len + extra + 1 > sb->cap)
		sb->cap *= 2;
	sb->buf = xrealloc(sb->buf, sb->cap);
}

void sbuf_add(struct sbuf *sb, const char *data, size_t n)
{
	sbuf_grow(sb, n);
	memcpy(sb->buf + sb->len, data, n);
	sb->len += n;
	sb->buf[sb->len] = 0;
}

void sbuf_adds(struct sbuf *sb, const char *s)
{
	sbuf_add(sb, s, strlen(s));
}

void sbuf_vaddf(struct sbuf *sb, const char *fmt, va_list ap)
{
	va_list cp;
	va_copy(cp, ap);
	int n = vsnprintf(sb->buf + sb->len, sb->cap - sb->len, fmt, cp);
	va_end(cp);
	if (n < 0)
		return;
	if ((size_t)n >= sb->cap - sb->len) {
		sbuf_grow(sb, (size_t)n);
		vsnprintf(sb->buf + sb->len, sb->cap - sb->len, fmt, ap);
	}
	sb->len += (size_t)n;
}

void sbuf_addf(struct sbuf *sb, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	sbuf_vaddf(sb, fmt, ap);
	va_end(ap);
}

void sbuf_add_json_str(struct sbuf *sb, const char *s)
{
	static const char hex[] = "0123456789abcdef";
	sbuf_add(sb, "\"", 1);
	const char *run = s;
	for (; *s; s++) {
		unsigned char ch = (unsigned char)*s;
		if (ch >= 0x20 && ch != '"' && ch != '\\')
			continue;
		sbuf_add(sb, run, (size_t)(s - run));
		run = s + 1;
		char esc[7] = {'\\', 0};
		switch (ch) {
		case '"':
			esc[1] = '"';
			break;
		case '\\':
			esc[1] = '\\';
			break;
		case '\n':
			esc[1] = 'n';
			break;
		case '\t':
			esc[1] = 't';
			break;
		case '\r':
			esc[1] = 'r';
			break;
		default:
			esc[1] = 'u';
			esc[2] = '0';
			esc[3] = '0';
			esc[4] = hex[ch >> 4];
			esc[5] = hex[ch & 15];
		}
		sbuf_adds(sb, esc);
	}
	sbuf_add(sb, run, (size_t)(s - run));
	sbuf_add(sb, "\"", 1);
}

char *sbuf_detach(struct sbuf *sb)
{
	char *b = sb->buf;
	sb->buf = NULL;
	sb->len = sb->cap = 0;
	return b;
}

void sbuf_release(struct sbuf *sb)
{
	free(sb->buf);
	sb->buf = NULL;
	sb->len = sb->cap = 0;
}

int64_t time_ts_ms(struct timespec ts)
{
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t time_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return time_ts_ms(ts);
}

int64_t time_mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return time_ts_ms(ts);
}

struct timespec time_deadline_ms(int64_t ms)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += (time_t)(ms / 1000);
	ts.tv_nsec += (long)(ms % 1000) * 1000000L;
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	return ts;
}

void time_format_ms(int64_t ms, char *buf, size_t n)
{
	time_t s = (time_t)(ms / 1000);
	struct tm tm;
	gmtime_r(&s, &tm);
	char tmp[32];
	strftime(tmp, sizeof tmp, "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(buf, n, "%s.%03dZ", tmp, (int)(ms % 1000));
}

int file_read_all(const char *path, char **out, size_t *len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	struct sbuf sb;
	sbuf_init(&sb);
	char tmp[65536];
	for (;;) {
		ssize_t r = read(fd, tmp, sizeof tmp);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			int e = -errno;
			close(fd);
			sbuf_release(&sb);
			return e;
		}
		if (r == 0)
			break;
		sbuf_add(&sb, tmp, (size_t)r);
	}
	close(fd);
	if (len)
		*len = sb.len;
	*out = sbuf_detach(&sb);
	return 0;
}

int file_write_atomic(const char *path, const char *data, size_t len)
{
	/* 0600: what berth writes (state backups, task files, caches) is for
	 * berth and the user who runs it. */
	return file_write_atomic_mode(path, data, len, 0600);
}

int file_write_atomic_mode(const char *path, const char *data, size_t len, unsigned mode)
{
	char *tmp = xasprintf("%s.tmp.%d", path, (int)getpid());
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, (mode_t)mode);
	if (fd < 0) {
		int e = -errno;
		free(tmp);
		return e;
	}
	fchmod(fd, (mode_t)mode); /* whatever the umask */
	size_t off = 0;
	while (off < len) {
		ssize_t w = write(fd, data + off, len - off);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			int e = -errno;
			close(fd);
			unlink(tmp);
			free(tmp);
			return e;
		}
		off += (size_t)w;
	}
	if (fsync(fd) < 0 || close(fd) < 0) {
		int e = -errno;
		unlink(tmp);
		free(tmp);
		return e;
	}
	if (rename(tmp, path) < 0) {
		int e = -errno;
		unlink(tmp);
		free(tmp);
		return e;
	}
	free(tmp);
	char *dcopy = xstrdup(path);
	int dfd = open(dirname(dcopy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	free(dcopy);
	if (dfd >= 0) {
		fsync(dfd);
		close(dfd);
	}
	return 0;
}

int mkdir_private(const char *path, unsigned mode)
{
	int r = mkdir_p(path, mode);
	if (r < 0)
		return r;
	struct stat st;
	if (stat(path, &st) < 0)
		return -errno;
	/* Tighten a directory of ours made before (or by an older berth), but
	 * never a shared sticky one such as /tmp. */
	mode_t now = st.st_mode & 07777, want = now & mode;
	if (st.st_uid == geteuid() && !(st.st_mode & S_ISVTX) && want != now &&
	    chmod(path, want) < 0)
		return -errno;
	return 0;
}

int mkdir_p(const char *path, unsigned mode)
{
	char *p = xstrdup(path);
	for (char *s = p + 1; *s; s++) {
		if (*s != '/')
			continue;
		*s = 0;
		if (mkdir(p, mode) < 0 && errno != EEXIST) {
			int e = -errno;
			free(p);
			return e;
		}
		*s = '/';
	}
	int r = 0;
	if (mkdir(p, mode) < 0 && errno != EEXIST)
		r = -errno;
	free(p);
	return r;
}

int rm_rf(const char *path)
{
	return rm_rf_at(AT_FDCWD, path);
}

int rm_rf_at(int dirfd, const char *name)
{
	if (unlinkat(dirfd, name, 0) == 0)
		return 0;
	if (errno == ENOENT)
		return 0;
	if (errno != EISDIR && errno != EPERM)
		return -errno;
	int fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	DIR *d = fdopendir(fd);
	if (!d) {
		int e = errno;
		close(fd);
		return -e;
	}
	int rc = 0;
	struct dirent *de;
	while ((de = readdir(d))) {
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		int r = rm_rf_at(fd, de->d_name);
		if (r < 0 && rc == 0)
			rc = r;
	}
	closedir(d);
	if (unlinkat(dirfd, name, AT_REMOVEDIR) < 0 && errno != ENOENT && rc == 0)
		rc = -errno;
	return rc;
}

/* xorshift128+ seeded from the kernel once per thread: ids are made by the
 * hundred thousand, and a getrandom() call each cost more than the rest of
 * making a task. Uniqueness, not secrecy, is what ids need. */
static __thread uint64_t rng_s[2];

static uint64_t rng_next(void)
{
	if (!rng_s[0] && !rng_s[1]) {
		if (getrandom(rng_s, sizeof rng_s, 0) != (ssize_t)sizeof rng_s) {
			rng_s[0] = (uint64_t)time_now_ms() ^ ((uint64_t)getpid() << 32);
			rng_s[1] = (uint64_t)time_mono_ms() ^ (uint64_t)(uintptr_t)&rng_s;
		}
		rng_s[0] |= 1;
	}
	uint64_t x = rng_s[0];
	const uint64_t y = rng_s[1];
	rng_s[0] = y;
	x ^= x << 23;
	rng_s[1] = x ^ y ^ (x >> 17) ^ (y >> 26);
	return rng_s[1] + y;
}

void random_hex(char *buf, size_t n)
{
	static const char hex[] = "0123456789abcdef";
	if (n > 63)
		n = 63;
	uint64_t r = 0;
	for (size_t i = 0; i < n; i++) {
		if (i % 16 == 0)
			r = rng_next();
		buf[i] = hex[r & 0xf];
		r >>= 4;
	}
	buf[n] = 0;
}

int parse_int64(const char *s, int64_t *out)
{
	if (!s || !*s)
		return -EINVAL;
	char *end;
	errno = 0;
	long long v = strtoll(s, &end, 10);
	if (errno == ERANGE)
		return -ERANGE;
	if (*end)
		return -EINVAL;
	*out = v;
	return 0;
}

void cleanup_freep(void *p)
{
	free(*(void **)p);
}

void cleanup_closep(int *fd)
{
	if (*fd >= 0)
		close(*fd);
}

size_t utf8_seq_len(const unsigned char *s, size_t n)
{
	size_t len;
	if (s[0] < 0x80)
		return 1;
	else if (s[0] >= 0xc2 && s[0] <= 0xdf)
		len = 2;
	else if (s[0] >= 0xe0 && s[0] <= 0xef)
		len = 3;
	else if (s[0] >= 0xf0 && s[0] <= 0xf4)
		len = 4;
	else
		return 0;
	if (len > n)
		return 0;
	for (size_t i = 1; i < len; i++)
		if ((s[i] & 0xc0) != 0x80)
			return 0;
	if ((s[0] == 0xe0 && s[1] < 0xa0) || (s[0] == 0xed && s[1] > 0x9f) ||
	    (s[0] == 0xf0 && s[1] < 0x90) || (s[0] == 0xf4 && s[1] > 0x8f))
		return 0;
	return len;
}

bool utf8_valid(const char *s, size_t len)
{
	for (size_t i = 0; i < len;) {
		size_t k = utf8_seq_len((const unsigned char *)s + i, len - i);
		if (!k)
			return false;
		i += k;
	}
	return true;
}

/* Whether the n bytes at s (n < the length its lead byte announces) are the
 * start of a sequence that the end of the string cut short: a lead byte and
 * continuation bytes only. */
static bool utf8_cut_short(const unsigned char *s, size_t n)
{
	size_t want = (s[0] >> 5) == 6 ? 2 : (s[0] >> 4) == 14 ? 3 : (s[0] >> 3) == 30 ? 4 : 0;
	if (n >= want)
		return false;
	for (size_t i = 1; i < n; i++)
		if ((s[i] & 0xc0) != 0x80)
			return false;
	return true;
}

void utf8_clean(char *s)
{
	unsigned char *p = (unsigned char *)s;
	size_t left = strlen(s);
	while (left) {
		size_t k = utf8_seq_len(p, left);
		if (!k && utf8_cut_short(p, left)) {
			*p = 0;
			return;
		}
		if (!k) {
			*p = '?';
			k = 1;
		}
		p += k;
		left -= k;
	}
}

const char *err_str(int e)
{
	static __thread char buf[128];
	snprintf(buf, sizeof buf, "%s", strerror(e < 0 ? -e : e));
	buf[0] = (char)tolower((unsigned char)buf[0]);
	return buf;
}

void strv_free(char **v)
{
	if (!v)
		return;
	for (char **p = v; *p; p++)
		free(*p);
	free(v);
}

void strv_free_n(char **v, size_t n)
{
	for (size_t i = 0; v && i < n; i++)
		free(v[i]);
	free(v);
}
