/* image_tar.c - a tar reader, a hashing/inflating blob stream, and the safe
 * layer unpacker. See image_tar.h for the rules. */
#include "agent/image/image_tar.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>
#include <zlib.h>

#define BLOCK 512
/* Bounds on metadata a hostile archive could make us allocate. */
#define MAX_LONGNAME (64 * 1024)
#define MAX_PAX (1024 * 1024)

/* ---- reader ---- */

struct image_tar_reader {
	image_tar_read_fn fn;
	void *ctx;
	struct image_tar_entry e;
	uint64_t left;	  /* unread content of the current entry */
	uint64_t padding; /* then this much padding to the block boundary */
	bool ended;
};

struct image_tar_reader *image_tar_reader_new(image_tar_read_fn fn, void *ctx)
{
	struct image_tar_reader *t = xcalloc(1, sizeof *t);
	t->fn = fn;
	t->ctx = ctx;
	return t;
}

static void entry_clear(struct image_tar_entry *e)
{
	free(e->path);
	free(e->linkname);
	for (size_t i = 0; i < e->nxattrs; i++) {
		free(e->xattrs[i].name);
		free(e->xattrs[i].value);
	}
	free(e->xattrs);
	memset(e, 0, sizeof *e);
}

void image_tar_reader_free(struct image_tar_reader *t)
{
	if (!t)
		return;
	entry_clear(&t->e);
	free(t);
}

ssize_t image_tar_read_fd(void *ctx, void *buf, size_t n)
{
	int fd = *(int *)ctx;
	for (;;) {
		ssize_t r = read(fd, buf, n);
		if (r < 0 && errno == EINTR)
			continue;
		return r;
	}
}

/* Exactly n bytes, or an error (a short archive is an error). */
static int read_exact(struct image_tar_reader *t, void *buf, size_t n, struct berr *err)
{
	size_t got = 0;
	while (got < n) {
		ssize_t r = t->fn(t->ctx, (char *)buf + got, n - got);
		if (r < 0)
			return berr_set(err, 0, "cannot read the archive: %s",
					errno ? err_str(errno) : "read error");
		if (r == 0)
			return berr_set(err, 0, "the archive ends in the middle of an entry");
		got += (size_t)r;
	}
	return 0;
}

static int skip(struct image_tar_reader *t, uint64_t n, struct berr *err)
{
	char buf[8192];
	while (n > 0) {
		size_t k = n > sizeof buf ? sizeof buf : (size_t)n;
		if (read_exact(t, buf, k, err) < 0)
			return -1;
		n -= k;
	}
	return 0;
}

/* Octal (space/NUL terminated) or GNU base-256 (high bit set). */
static int parse_num(const char *f, size_t n, uint64_t *out)
{
	const unsigned char *u = (const unsigned char *)f;
	uint64_t v = 0;
	if (n && (u[0] & 0x80)) {
		if (u[0] & 0x40)
			return -1; /* negative */
		v = u[0] & 0x3f;
		for (size_t i = 1; i < n; i++) {
			if (v >> 56)
				return -1;
			v = (v << 8) | u[i];
		}
		*out = v;
		return 0;
	}
	size_t i = 0;
	while (i < n && (f[i] == ' ' || f[i] == 0))
		i++;
	for (; i < n && f[i] >= '0' && f[i] <= '7'; i++) {
		if (v >> 60)
			return -1;
		v = v * 8 + (uint64_t)(f[i] - '0');
	}
	for (; i < n; i++)
		if (f[i] != ' ' && f[i] != 0)
			return -1;
	*out = v;
	return 0;
}

static char *field_str(const char *f, size_t n)
{
	return xstrndup(f, strnlen(f, n));
}

static bool block_zero(const unsigned char *b)
{
	for (int i = 0; i < BLOCK; i++)
		if (b[i])
			return false;
	return true;
}

static bool checksum_ok(const unsigned char *b)
{
	uint64_t want;
	if (parse_num((const char *)b + 148, 8, &want) < 0)
		return false;
	uint64_t sum = 0;
	int64_t ssum = 0; /* some old tars summed signed chars */
	for (int i = 0; i < BLOCK; i++) {
		unsigned char c = (i >= 148 && i < 156) ? ' ' : b[i];
		sum += c;
		ssum += (signed char)c;
	}
	return sum == want || (uint64_t)ssum == want;
}

struct pax {
	char *path, *linkpath;
	bool has_size, has_uid, has_gid, has_mtime;
	uint64_t size, uid, gid;
	int64_t mtime;
	struct image_tar_xattr *xattrs;
	size_t nxattrs;
};

static void pax_clear(struct pax *p)
{
	free(p->path);
	free(p->linkpath);
	for (size_t i = 0; i < p->nxattrs; i++) {
		free(p->xattrs[i].name);
		free(p->xattrs[i].value);
	}
	free(p->xattrs);
	memset(p, 0, sizeof *p);
}

/* Records are "LEN KEY=VALUE\n", LEN counting the whole record. */
static int pax_parse(char *buf, size_t len, struct pax *p, struct berr *err)
{
	size_t off = 0;
	while (off < len) {
		char *rec = buf + off, *end;
		unsigned long rlen = strtoul(rec, &end, 10);
		if (end == rec || *end != ' ' || rlen == 0 || rlen > len - off ||
		    rec[rlen - 1] != '\n')
			return berr_set(err, 0, "malformed pax header");
		char *kv = end + 1, *stop = rec + rlen - 1;
		char *eq = memchr(kv, '=', (size_t)(stop - kv));
		if (!eq)
			return berr_set(err, 0, "malformed pax record");
		char *key = xstrndup(kv, (size_t)(eq - kv));
		size_t vlen = (size_t)(stop - eq - 1);
		char *val = xstrndup(eq + 1, vlen);
		if (!strcmp(key, "path")) {
			free(p->path);
			p->path = val, val = NULL;
		} else if (!strcmp(key, "linkpath")) {
			free(p->linkpath);
			p->linkpath = val, val = NULL;
		} else if (!strcmp(key, "size")) {
			p->has_size = true;
			p->size = strtoull(val, NULL, 10);
		} else if (!strcmp(key, "uid")) {
			p->has_uid = true;
			p->uid = strtoull(val, NULL, 10);
		} else if (!strcmp(key, "gid")) {
			p->has_gid = true;
			p->gid = strtoull(val, NULL, 10);
		} else if (!strcmp(key, "mtime")) {
			p->has_mtime = true;
			p->mtime = strtoll(val, NULL, 10);
		} else if (!strncmp(key, "SCHILY.xattr.", 13) && key[13]) {
			p->xattrs = xrealloc(p->xattrs, (p->nxattrs + 1) * sizeof *p->xattrs);
			struct image_tar_xattr *x = &p->xattrs[p->nxattrs++];
			x->name = xstrdup(key + 13);
			/* the value may hold NULs: keep the bytes */
			x->value = xmalloc(vlen + 1);
			memcpy(x->value, eq + 1, vlen);
			x->value[vlen] = 0;
			x->len = vlen;
		}
		free(key);
		free(val);
		off += rlen;
	}
	return 0;
}

/* Read an entry's whole content as a string (long names, pax headers). */
static char *read_meta(struct image_tar_reader *t, uint64_t size, uint64_t max, struct berr *err)
{
	if (size > max) {
		berr_set(err, 0, "tar metadata entry of %llu bytes is too large",
			 (unsigned long long)size);
		return NULL;
	}
	char *buf = xmalloc((size_t)size + 1);
	if (read_exact(t, buf, (size_t)size, err) < 0 ||
	    skip(t, (BLOCK - size % BLOCK) % BLOCK, err) < 0) {
		free(buf);
		return NULL;
	}
	buf[size] = 0;
	return buf;
}

int image_tar_next(struct image_tar_reader *t, struct image_tar_entry **out, struct berr *err)
{
	*out = NULL;
	if (t->ended)
		return 0;
	if (skip(t, t->left + t->padding, err) < 0)
		return -1;
	t->left = t->padding = 0;
	entry_clear(&t->e);
	struct pax pax = {0};
	char *longname = NULL, *longlink = NULL;
	int rc = -1;
	for (;;) {
		unsigned char h[BLOCK];
		size_t got = 0;
		while (got < BLOCK) { /* EOF right at a block boundary ends the archive */
			ssize_t r = t->fn(t->ctx, h + got, BLOCK - got);
			if (r < 0) {
				berr_set(err, 0, "cannot read the archive: %s",
					 errno ? err_str(errno) : "read error");
				goto out;
			}
			if (r == 0)
				break;
			got += (size_t)r;
		}
		if (got == 0 || block_zero(h)) {
			if (got != 0 && got != BLOCK) {
				berr_set(err, 0, "the archive ends in the middle of a header");
				goto out;
			}
			t->ended = true;
			rc = 0;
			goto out;
		}
		if (got != BLOCK) {
			berr_set(err, 0, "the archive ends in the middle of a header");
			goto out;
		}
		if (!checksum_ok(h)) {
			berr_set(err, 0, "bad tar header checksum (not a tar archive, or corrupt)");
			goto out;
		}
		uint64_t size;
		if (parse_num((char *)h + 124, 12, &size) < 0) {
			berr_set(err, 0, "bad size in tar header");
			goto out;
		}
		char type = (char)h[156];
		if (type == 'L' || type == 'K') {
			char *s = read_meta(t, size, MAX_LONGNAME, err);
			if (!s)
				goto out;
			if (type == 'L') {
				free(longname);
				longname = s;
			} else {
				free(longlink);
				longlink = s;
			}
			continue;
		}
		if (type == 'x' || type == 'g') {
			char *s = read_meta(t, size, MAX_PAX, err);
			if (!s)
				goto out;
			int r = 0;
			if (type == 'x') /* global headers: nothing we honour */
				r = pax_parse(s, (size_t)size, &pax, err);
			free(s);
			if (r < 0)
				goto out;
			continue;
		}
		struct image_tar_entry *e = &t->e;
		bool ustar = !memcmp(h + 257, "ustar\0", 6);
		if (pax.path)
			e->path = xstrdup(pax.path);
		else if (longname)
			e->path = xstrdup(longname);
		else if (ustar && h[345]) {
			char *prefix = field_str((char *)h + 345, 155);
			char *name = field_str((char *)h, 100);
			e->path = xasprintf("%s/%s", prefix, name);
			free(prefix);
			free(name);
		} else
			e->path = field_str((char *)h, 100);
		if (pax.linkpath)
			e->linkname = xstrdup(pax.linkpath);
		else if (longlink)
			e->linkname = xstrdup(longlink);
		else
			e->linkname = field_str((char *)h + 157, 100);
		uint64_t v;
		e->mode = parse_num((char *)h + 100, 8, &v) == 0 ? (mode_t)(v & 07777) : 0644;
		e->uid = parse_num((char *)h + 108, 8, &v) == 0 ? (uid_t)v : 0;
		e->gid = parse_num((char *)h + 116, 8, &v) == 0 ? (gid_t)v : 0;
		e->mtime = parse_num((char *)h + 136, 12, &v) == 0 ? (int64_t)v : 0;
		e->devmajor = parse_num((char *)h + 329, 8, &v) == 0 ? (unsigned)v : 0;
		e->devminor = parse_num((char *)h + 337, 8, &v) == 0 ? (unsigned)v : 0;
		if (pax.has_size)
			size = pax.size;
		if (pax.has_uid)
			e->uid = (uid_t)pax.uid;
		if (pax.has_gid)
			e->gid = (gid_t)pax.gid;
		if (pax.has_mtime)
			e->mtime = pax.mtime;
		e->xattrs = pax.xattrs;
		e->nxattrs = pax.nxattrs;
		pax.xattrs = NULL;
		pax.nxattrs = 0;
		e->type = type == 0 || type == '7' ? '0' : type;
		/* Links, devices and directories have no content whatever the
		 * size field says (hard links in some writers carry one). */
		if (e->type == '1' || e->type == '2' || e->type == '3' || e->type == '4' ||
		    e->type == '5' || e->type == '6')
			size = e->type == '5' ? size : 0;
		e->size = size;
		t->left = size;
		t->padding = (BLOCK - size % BLOCK) % BLOCK;
		*out = e;
		rc = 1;
		goto out;
	}
out:
	pax_clear(&pax);
	free(longname);
	free(longlink);
	return rc;
}

ssize_t image_tar_read(struct image_tar_reader *t, void *buf, size_t n, struct berr *err)
{
	if (t->left == 0)
		return 0;
	if (n > t->left)
		n = (size_t)t->left;
	ssize_t r = t->fn(t->ctx, buf, n);
	if (r < 0) {
		berr_set(err, 0, "cannot read the archive: %s",
			 errno ? err_str(errno) : "read error");
		return -1;
	}
	if (r == 0) {
		berr_set(err, 0, "the archive ends in the middle of an entry");
		return -1;
	}
	t->left -= (uint64_t)r;
	return r;
}

/* ---- blob stream ---- */

struct image_blob_stream {
	int fd;
	struct sha256_ctx *raw, *plain;
	bool gz, probed, zdone, zinit;
	z_stream z;
	unsigned char in[65536];
	size_t in_len;			 /* bytes buffered before the magic was decided */
	uint64_t plain_bytes, max_plain; /* uncompressed so far; cap (0 = none) */
	bool too_big;
	char error[160];
};

/* Count uncompressed bytes; past the cap, fail the read (-1). */
static int count_plain(struct image_blob_stream *b, size_t n)
{
	b->plain_bytes += n;
	if (b->max_plain && b->plain_bytes > b->max_plain) {
		b->too_big = true;
		snprintf(b->error, sizeof b->error,
			 "unpacked, it is larger than this agent's cap of %llu bytes "
			 "(--image-max-unpacked-bytes)",
			 (unsigned long long)b->max_plain);
		return -1;
	}
	return 0;
}

struct image_blob_stream *image_blob_stream_new(int fd)
{
	struct image_blob_stream *b = xcalloc(1, sizeof *b);
	b->fd = fd;
	b->raw = image_sha256_new();
	b->plain = image_sha256_new();
	return b;
}

void image_blob_stream_free(struct image_blob_stream *b)
{
	if (!b)
		return;
	image_sha256_free(b->raw);
	image_sha256_free(b->plain);
	if (b->zinit)
		inflateEnd(&b->z);
	free(b);
}

const char *image_blob_stream_error(struct image_blob_stream *b)
{
	return b->error[0] ? b->error : "read error";
}

static ssize_t raw_read(struct image_blob_stream *b, void *buf, size_t n)
{
	ssize_t r;
	do
		r = read(b->fd, buf, n);
	while (r < 0 && errno == EINTR);
	if (r < 0) {
		snprintf(b->error, sizeof b->error, "%s", err_str(errno));
		return -1;
	}
	image_sha256_update(b->raw, buf, (size_t)r);
	return r;
}

static int probe(struct image_blob_stream *b)
{
	b->probed = true;
	while (b->in_len < 2) {
		ssize_t r = raw_read(b, b->in + b->in_len, sizeof b->in - b->in_len);
		if (r < 0)
			return -1;
		if (r == 0)
			break;
		b->in_len += (size_t)r;
	}
	b->gz = b->in_len >= 2 && b->in[0] == 0x1f && b->in[1] == 0x8b;
	if (b->gz) {
		if (inflateInit2(&b->z, 16 + MAX_WBITS) != Z_OK) {
			snprintf(b->error, sizeof b->error, "cannot start zlib");
			return -1;
		}
		b->zinit = true;
		b->z.next_in = b->in;
		b->z.avail_in = (uInt)b->in_len;
		b->in_len = 0;
	}
	return 0;
}

ssize_t image_blob_stream_read(void *ctx, void *buf, size_t n)
{
	struct image_blob_stream *b = ctx;
	if (!b->probed && probe(b) < 0)
		return -1;
	if (!b->gz) {
		ssize_t r;
		if (b->in_len) { /* what the probe read */
			r = (ssize_t)(b->in_len < n ? b->in_len : n);
			memcpy(buf, b->in, (size_t)r);
			memmove(b->in, b->in + r, b->in_len - (size_t)r);
			b->in_len -= (size_t)r;
		} else {
			r = raw_read(b, buf, n);
		}
		if (r > 0 && count_plain(b, (size_t)r) < 0)
			return -1;
		if (r > 0)
			image_sha256_update(b->plain, buf, (size_t)r);
		return r;
	}
	for (;;) {
		if (b->zdone)
			return 0;
		if (b->z.avail_in == 0) {
			ssize_t r = raw_read(b, b->in, sizeof b->in);
			if (r < 0)
				return -1;
			if (r == 0) {
				snprintf(b->error, sizeof b->error, "truncated gzip stream");
				return -1;
			}
			b->z.next_in = b->in;
			b->z.avail_in = (uInt)r;
		}
		b->z.next_out = buf;
		b->z.avail_out = (uInt)(n > (1u << 30) ? (1u << 30) : n);
		int zr = inflate(&b->z, Z_NO_FLUSH);
		size_t produced = (size_t)((unsigned char *)b->z.next_out - (unsigned char *)buf);
		if (zr == Z_STREAM_END) {
			/* gzip allows several members back to back */
			if (b->z.avail_in == 0) {
				ssize_t r = raw_read(b, b->in, sizeof b->in);
				if (r < 0)
					return -1;
				b->z.next_in = b->in;
				b->z.avail_in = (uInt)r;
			}
			if (b->z.avail_in == 0)
				b->zdone = true;
			else
				inflateReset(&b->z);
		} else if (zr != Z_OK && zr != Z_BUF_ERROR) {
			snprintf(b->error, sizeof b->error, "bad gzip data: %s",
				 b->z.msg ? b->z.msg : "inflate failed");
			return -1;
		}
		if (produced) {
			if (count_plain(b, produced) < 0)
				return -1;
			image_sha256_update(b->plain, buf, produced);
			return (ssize_t)produced;
		}
	}
}

int image_blob_stream_raw_digest(struct image_blob_stream *b, char *digest)
{
	char buf[65536];
	ssize_t r;
	while ((r = raw_read(b, buf, sizeof buf)) > 0)
		;
	if (r < 0)
		return -1;
	image_sha256_final(b->raw, digest);
	b->raw = NULL;
	return 0;
}

int image_blob_stream_finish(struct image_blob_stream *b, char *digest, char *diff_id,
			     struct berr *err)
{
	char buf[65536];
	ssize_t r;
	while ((r = image_blob_stream_read(b, buf, sizeof buf)) > 0)
		;
	if (r < 0)
		return berr_set(err, 0, "%s", image_blob_stream_error(b));
	image_sha256_final(b->raw, digest);
	image_sha256_final(b->plain, diff_id);
	b->raw = b->plain = NULL;
	return 0;
}

/* ---- safe filesystem operations under a directory descriptor ---- */

/* Split a path from an archive into components: "" and "." dropped, ".."
 * and absolute paths refused. Returns the count, -1 when refused. */
static int split_path(const char *path, char ***out)
{
	*out = NULL;
	if (path[0] == '/')
		return -1;
	char *copy = xstrdup(path), *save = NULL;
	char **v = NULL;
	int n = 0;
	for (char *tok = strtok_r(copy, "/", &save); tok; tok = strtok_r(NULL, "/", &save)) {
		if (!strcmp(tok, "."))
			continue;
		if (!strcmp(tok, "..")) {
			for (int i = 0; i < n; i++)
				free(v[i]);
			free(v);
			free(copy);
			return -1;
		}
		v = xrealloc(v, (size_t)(n + 1) * sizeof *v);
		v[n++] = xstrdup(tok);
	}
	free(copy);
	*out = v;
	return n;
}

static void free_comps(char **v, int n)
{
	for (int i = 0; i < n; i++)
		free(v[i]);
	free(v);
}

struct unpacker {
	int root;
	const struct image_unpack_opts *o;
	/* the parent of the last entry: most entries share it */
	char *cached_parent;
	int cached_fd;
	struct fixup {
		char *path;
		struct image_tar_entry attrs;
	} * fix;
	size_t nfix;
	struct image_unpack_result *res;
};

/* Open the directory made of comps[0..n) under the root, never following
 * a symlink; with `create`, missing directories are made (0755). */
static int open_dir(struct unpacker *u, char **comps, int n, bool create, const char *entry,
		    struct berr *err)
{
	int fd = dup(u->root);
	if (fd < 0)
		return berr_set(err, 0, "cannot dup: %s", err_str(errno));
	for (int i = 0; i < n; i++) {
		int nfd = openat(fd, comps[i], O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (nfd < 0 && errno == ENOENT && create) {
			if (mkdirat(fd, comps[i], 0755) < 0 && errno != EEXIST) {
				int e = errno;
				close(fd);
				return berr_set(err, 0,
						"entry '%s': cannot create directory '%s': %s",
						entry, comps[i], err_str(e));
			}
			nfd = openat(fd, comps[i], O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		}
		if (nfd < 0) {
			int e = errno;
			close(fd);
			if (e == ELOOP || e == ENOTDIR)
				return berr_set(
				    err, 0,
				    "entry '%s' is under '%s', which is not a directory "
				    "(a symlink is never followed)",
				    entry, comps[i]);
			return berr_set(err, 0, "entry '%s': cannot open '%s': %s", entry, comps[i],
					err_str(e));
		}
		close(fd);
		fd = nfd;
	}
	return fd;
}

static char *join_comps(char **comps, int n)
{
	struct sbuf sb;
	sbuf_init(&sb);
	for (int i = 0; i < n; i++) {
		if (i)
			sbuf_adds(&sb, "/");
		sbuf_adds(&sb, comps[i]);
	}
	return sbuf_detach(&sb);
}

/* The parent directory of an entry, through the one-entry cache. The
 * returned fd belongs to the cache. */
static int parent_fd(struct unpacker *u, char **comps, int n, const char *entry, struct berr *err)
{
	char *key = join_comps(comps, n - 1);
	if (u->cached_parent && !strcmp(u->cached_parent, key)) {
		free(key);
		return u->cached_fd;
	}
	int fd = open_dir(u, comps, n - 1, true, entry, err);
	if (fd < 0) {
		free(key);
		return -1;
	}
	if (u->cached_fd >= 0)
		close(u->cached_fd);
	free(u->cached_parent);
	u->cached_parent = key;
	u->cached_fd = fd;
	return fd;
}

static void forget_parent(struct unpacker *u)
{
	if (u->cached_fd >= 0)
		close(u->cached_fd);
	u->cached_fd = -1;
	free(u->cached_parent);
	u->cached_parent = NULL;
}

static void set_xattrs(int fd, const struct image_tar_entry *e)
{
	for (size_t i = 0; i < e->nxattrs; i++) {
		/* trusted.* would let a layer forge overlay whiteouts */
		if (!strncmp(e->xattrs[i].name, "trusted.", 8))
			continue;
		fsetxattr(fd, e->xattrs[i].name, e->xattrs[i].value, e->xattrs[i].len, 0);
	}
}

/* Owner, then mode (chown clears set-id bits), then times, on an open fd. */
static void set_attrs(struct unpacker *u, int fd, const struct image_tar_entry *e)
{
	if (u->o->root && fchown(fd, e->uid, e->gid) < 0) {
		/* e.g. ids the filesystem cannot store: keep root's */
	}
	fchmod(fd, e->mode & 07777);
	struct timespec ts[2] = {{.tv_sec = e->mtime}, {.tv_sec = e->mtime}};
	futimens(fd, ts);
}

static int write_file(struct unpacker *u, struct image_tar_reader *t, int pfd, const char *name,
		      const struct image_tar_entry *e, struct berr *err)
{
	int fd = openat(pfd, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0)
		return berr_set(err, 0, "entry '%s': cannot create: %s", e->path, err_str(errno));
	char buf[65536];
	ssize_t n;
	int rc = 0;
	while ((n = image_tar_read(t, buf, sizeof buf, err)) > 0) {
		for (ssize_t off = 0; off < n;) {
			ssize_t w = write(fd, buf + off, (size_t)(n - off));
			if (w < 0 && errno == EINTR)
				continue;
			if (w < 0) {
				rc = berr_set(err, 0, "entry '%s': cannot write: %s", e->path,
					      err_str(errno));
				goto out;
			}
			off += w;
		}
	}
	if (n < 0) {
		rc = -1;
		goto out;
	}
	set_xattrs(fd, e);
	set_attrs(u, fd, e);
	u->res->bytes += (e->size + 4095) / 4096 * 4096;
out:
	close(fd);
	return rc;
}

static int apply_whiteout(struct unpacker *u, int pfd, const char *name,
			  const struct image_tar_entry *e, struct berr *err)
{
	if (!strcmp(name, ".wh..wh..opq")) {
		if (u->o->overlay) {
			if (fsetxattr(pfd, "trusted.overlay.opaque", "y", 1, 0) < 0)
				return berr_set(err, 0,
						"entry '%s': cannot mark the directory opaque: %s",
						e->path, err_str(errno));
			return 0;
		}
	} else {
		const char *target = name + 4;
		if (!*target || !strcmp(target, ".") || !strcmp(target, ".."))
			return berr_set(err, 0, "entry '%s': invalid whiteout", e->path);
		if (u->o->overlay) {
			int r = rm_rf_at(pfd, target);
			if (r < 0)
				return berr_set(err, 0, "entry '%s': cannot replace '%s': %s",
						e->path, target, err_str(r));
			if (mknodat(pfd, target, S_IFCHR | 0, makedev(0, 0)) < 0)
				return berr_set(err, 0, "entry '%s': cannot create a whiteout: %s",
						e->path, err_str(errno));
			return 0;
		}
	}
	/* Plain format: keep the marker itself, an empty file. */
	int r = rm_rf_at(pfd, name);
	if (r < 0)
		return berr_set(err, 0, "entry '%s': cannot replace: %s", e->path, err_str(r));
	int fd = openat(pfd, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0)
		return berr_set(err, 0, "entry '%s': cannot create: %s", e->path, err_str(errno));
	close(fd);
	return 0;
}

static int unpack_entry(struct unpacker *u, struct image_tar_reader *t, struct image_tar_entry *e,
			struct berr *err)
{
	char **comps;
	int n = split_path(e->path, &comps);
	if (n < 0)
		return berr_set(err, 0, "entry '%s' escapes the layer (absolute or '..' path)",
				e->path);
	int rc = 0;
	if (n == 0) /* the root itself: keep ours */
		goto out;
	const char *name = comps[n - 1];
	if (!strchr("0123456", e->type))
		goto out; /* sockets, sparse files, vendor types: nothing to create */
	int pfd = parent_fd(u, comps, n, e->path, err);
	if (pfd < 0) {
		rc = -1;
		goto out;
	}
	u->res->entries++;
	if (!strncmp(name, ".wh.", 4)) {
		rc = apply_whiteout(u, pfd, name, e, err);
		goto out;
	}
	struct stat st;
	bool exists = fstatat(pfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0;
	if (exists && !(e->type == '5' && S_ISDIR(st.st_mode))) {
		int r = rm_rf_at(pfd, name);
		if (r < 0) {
			rc =
			    berr_set(err, 0, "entry '%s': cannot replace: %s", e->path, err_str(r));
			goto out;
		}
		/* a replaced directory may be the cached parent of later entries */
		if (S_ISDIR(st.st_mode))
			forget_parent(u);
	}
	switch (e->type) {
	case '0':
		rc = write_file(u, t, pfd, name, e, err);
		break;
	case '5': {
		if (!exists && mkdirat(pfd, name, 0755) < 0) {
			rc = berr_set(err, 0, "entry '%s': cannot create: %s", e->path,
				      err_str(errno));
			break;
		}
		/* Mode, owner and times last: a 0555 directory must still take
		 * its children, and creating them changes its mtime. */
		u->fix = xrealloc(u->fix, (u->nfix + 1) * sizeof *u->fix);
		struct fixup *f = &u->fix[u->nfix++];
		f->path = join_comps(comps, n);
		f->attrs = *e;
		f->attrs.path = f->attrs.linkname = NULL;
		/* the xattrs move to the fixup */
		e->xattrs = NULL;
		e->nxattrs = 0;
		u->res->bytes += 4096;
		break;
	}
	case '1': {
		char **lc;
		int ln = split_path(e->linkname, &lc);
		if (ln <= 0) {
			if (ln == 0)
				free_comps(lc, ln);
			rc = berr_set(err, 0, "entry '%s': hard link to '%s' escapes the layer",
				      e->path, e->linkname);
			break;
		}
		int sfd = open_dir(u, lc, ln - 1, false, e->path, err);
		if (sfd < 0) {
			free_comps(lc, ln);
			rc = -1;
			break;
		}
		/* flags 0: a symlink is linked as itself, never followed */
		if (linkat(sfd, lc[ln - 1], pfd, name, 0) < 0)
			rc = berr_set(err, 0, "entry '%s': cannot link to '%s': %s", e->path,
				      e->linkname, err_str(errno));
		close(sfd);
		free_comps(lc, ln);
		break;
	}
	case '2':
		if (symlinkat(e->linkname, pfd, name) < 0) {
			rc = berr_set(err, 0, "entry '%s': cannot create symlink: %s", e->path,
				      err_str(errno));
			break;
		}
		if (u->o->root)
			fchownat(pfd, name, e->uid, e->gid, AT_SYMLINK_NOFOLLOW);
		{
			struct timespec ts[2] = {{.tv_sec = e->mtime}, {.tv_sec = e->mtime}};
			utimensat(pfd, name, ts, AT_SYMLINK_NOFOLLOW);
		}
		break;
	case '3':
	case '4':
	case '6': {
		mode_t kind = e->type == '3' ? S_IFCHR : e->type == '4' ? S_IFBLK : S_IFIFO;
		if (kind != S_IFIFO && !u->o->root)
			break; /* only root may create device nodes */
		if (mknodat(pfd, name, kind | (e->mode & 07777),
			    kind == S_IFIFO ? 0 : makedev(e->devmajor, e->devminor)) < 0) {
			rc = berr_set(err, 0, "entry '%s': cannot create node: %s", e->path,
				      err_str(errno));
			break;
		}
		if (u->o->root)
			fchownat(pfd, name, e->uid, e->gid, AT_SYMLINK_NOFOLLOW);
		fchmodat(pfd, name, e->mode & 07777, 0);
		break;
	}
	}
out:
	free_comps(comps, n);
	return rc;
}

static void apply_fixups(struct unpacker *u)
{
	/* Deepest first, so a parent's mtime is set after its children's. */
	for (size_t i = u->nfix; i-- > 0;) {
		struct fixup *f = &u->fix[i];
		char **comps;
		struct berr err;
		int n = split_path(f->path, &comps);
		if (n > 0) {
			int fd = open_dir(u, comps, n, false, f->path, &err);
			if (fd >= 0) {
				set_xattrs(fd, &f->attrs);
				set_attrs(u, fd, &f->attrs);
				close(fd);
			}
		}
		free_comps(comps, n);
		free(f->path);
		for (size_t k = 0; k < f->attrs.nxattrs; k++) {
			free(f->attrs.xattrs[k].name);
			free(f->attrs.xattrs[k].value);
		}
		free(f->attrs.xattrs);
	}
	free(u->fix);
	u->fix = NULL;
	u->nfix = 0;
}

int image_layer_unpack(int fd, const char *dest, const struct image_unpack_opts *o,
		       struct image_unpack_result *res, struct berr *err)
{
	memset(res, 0, sizeof *res);
	const char *what = o->what ? o->what : "layer";
	struct unpacker u = {.o = o, .cached_fd = -1, .res = res};
	u.root = open(dest, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (u.root < 0)
		return berr_set(err, 0, "cannot open '%s': %s", dest, err_str(errno));
	struct image_blob_stream *b = image_blob_stream_new(fd);
	b->max_plain = o->max_bytes;
	struct image_tar_reader *t = image_tar_reader_new(image_blob_stream_read, b);
	int rc = -1;
	struct image_tar_entry *e;
	int r;
	while ((r = image_tar_next(t, &e, err)) > 0) {
		if (unpack_entry(&u, t, e, err) < 0)
			break;
	}
	forget_parent(&u);
	apply_fixups(&u);
	if (b->too_big) {
		berr_set(err, 413, "%s: %s", what, b->error);
		goto out;
	}
	if (r != 0 && o->want_digest) {
		/* Corrupt bytes usually break the tar or the gzip stream before
		 * the end: say so as what it is, a digest mismatch. */
		char got[IMAGE_DIGEST_STR_MAX];
		if (image_blob_stream_raw_digest(b, got) == 0 && strcmp(got, o->want_digest)) {
			berr_set(err, 0, "%s: digest mismatch: the content hashes to '%s'", what,
				 got);
			goto out;
		}
	}
	if (r != 0) {
		/* a read error of the stream beats the tar's view of it */
		if (image_blob_stream_error(b)[0] &&
		    strcmp(image_blob_stream_error(b), "read error"))
			berr_set(err, 0, "%s", image_blob_stream_error(b));
		berr_prefix(err, "%s", what);
		goto out;
	}
	if (image_blob_stream_finish(b, res->digest, res->diff_id, err) < 0) {
		if (b->too_big)
			err->code = 413;
		berr_prefix(err, "%s", what);
		goto out;
	}
	res->tar_bytes = b->plain_bytes;
	if (o->want_digest && strcmp(o->want_digest, res->digest)) {
		berr_set(err, 0, "%s: digest mismatch: the content hashes to '%s'", what,
			 res->digest);
		goto out;
	}
	if (o->want_diff_id && strcmp(o->want_diff_id, res->diff_id)) {
		berr_set(err, 0, "%s: diff id mismatch: the uncompressed content hashes to '%s'",
			 what, res->diff_id);
		goto out;
	}
	rc = 0;
out:
	image_tar_reader_free(t);
	image_blob_stream_free(b);
	close(u.root);
	return rc;
}
