/* image_tar.h - reading tar streams, and unpacking image layers safely.
 *
 * The reader understands ustar, GNU long names/links ('L', 'K') and pax
 * extended headers ('x' path, linkpath, size, uid, gid, mtime,
 * SCHILY.xattr.*; 'g' is read and ignored), base-256 numbers, and checks
 * every header's checksum.
 *
 * image_layer_unpack() turns one layer blob (a tar, gzip-compressed or not: the
 * magic bytes decide, not the media type) into a directory, hashing the
 * compressed bytes and the uncompressed tar on the way so that both the
 * layer's digest and its diff id are verified without a second read.
 *
 * Safety: a layer is untrusted input. Every entry's path is split into
 * components; absolute paths and ".." are refused. Every directory on the
 * way is opened with O_NOFOLLOW relative to the one before it, starting at
 * the destination's descriptor, and files are created with O_EXCL|O_NOFOLLOW
 * after removing whatever was there, so no symlink (from this archive or
 * planted earlier) is ever followed while writing. Hard links must point at
 * an entry of the same layer, resolved the same way.
 *
 * Whiteouts (the OCI layer format: ".wh.NAME" deletes NAME from the layers
 * below, ".wh..wh..opq" hides everything below in its directory) are stored
 * in overlayfs' own format when `overlay` is set (a 0/0 character device,
 * the trusted.overlay.opaque="y" xattr: both need root), so the layer
 * directories can be stacked directly as overlay lower dirs; otherwise they
 * are kept as the literal empty marker files, which image_rootfs's copy
 * understands too. Device nodes are skipped when not root; owners are only
 * set as root.
 */
#ifndef BERTH_IMAGE_TAR_H
#define BERTH_IMAGE_TAR_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "agent/image/image_digest.h"
#include "core/util.h"

/* ---- reading ---- */

/* Reads up to n bytes; returns the count, 0 at the end, -1 with the
 * reader's own error set. */
typedef ssize_t (*image_tar_read_fn)(void *ctx, void *buf, size_t n);

struct image_tar_xattr {
	char *name;
	char *value;
	size_t len;
};

struct image_tar_entry {
	char *path;	/* as written in the archive */
	char *linkname; /* hard link target or symlink text; "" otherwise */
	char type;	/* '0' file, '1' hard link, '2' symlink, '3' char dev,
			   '4' block dev, '5' directory, '6' fifo; others skipped */
	mode_t mode;
	uid_t uid;
	gid_t gid;
	uint64_t size;
	int64_t mtime;
	unsigned devmajor, devminor;
	struct image_tar_xattr *xattrs;
	size_t nxattrs;
};

struct image_tar_reader;

struct image_tar_reader *image_tar_reader_new(image_tar_read_fn fn, void *ctx);
/* The next entry (valid until the next call): 1, 0 at the end of the
 * archive, -1 with err set. Unread content of the previous entry is
 * skipped. */
int image_tar_next(struct image_tar_reader *t, struct image_tar_entry **e, struct berr *err);
/* The current entry's content: count, 0 at its end, -1 with err set. */
ssize_t image_tar_read(struct image_tar_reader *t, void *buf, size_t n, struct berr *err);
void image_tar_reader_free(struct image_tar_reader *t);

/* A image_tar_read_fn over a file descriptor (ctx = pointer to the int fd). */
ssize_t image_tar_read_fd(void *ctx, void *buf, size_t n);

/* ---- a blob: hashing and (when gzip) decompressing ---- */

struct image_blob_stream;

/* Read the blob on fd, hashing what is read (the blob's digest) and,
 * when it starts with the gzip magic, inflating it and hashing the
 * result (the diff id). */
struct image_blob_stream *image_blob_stream_new(int fd);
/* A image_tar_read_fn: ctx is the blob_stream. */
ssize_t image_blob_stream_read(void *ctx, void *buf, size_t n);
/* Read to the end (trailing padding counts for the digest), then give
 * the digests. -1 with err set on a read or decompression error. */
int image_blob_stream_finish(struct image_blob_stream *b, char *digest, char *diff_id,
			     struct berr *err);
/* After a failure: read the rest of the blob as it is (no inflating) and
 * give the digest of all its bytes. */
int image_blob_stream_raw_digest(struct image_blob_stream *b, char *digest);
/* The last read error, when image_blob_stream_read returned -1. */
const char *image_blob_stream_error(struct image_blob_stream *b);
void image_blob_stream_free(struct image_blob_stream *b);

/* ---- unpacking a layer ---- */

struct image_unpack_opts {
	bool overlay;		  /* overlayfs whiteouts (needs root) */
	bool root;		  /* set owners, create device nodes */
	const char *want_digest;  /* the blob's digest, or NULL */
	const char *want_diff_id; /* the uncompressed tar's digest, or NULL */
	const char *what;	  /* "layer 'sha256:...'" for messages */
	uint64_t max_bytes;	  /* cap on the uncompressed tar (0 = none): past it,
				     unpacking stops with an error (code 413) */
};

struct image_unpack_result {
	char digest[IMAGE_DIGEST_STR_MAX];
	char diff_id[IMAGE_DIGEST_STR_MAX];
	uint64_t bytes;	    /* roughly the space the files take */
	uint64_t tar_bytes; /* the uncompressed tar's size */
	uint64_t entries;
};

/* Unpack the layer blob on fd into the existing, empty directory `dest`.
 * Verifies the digests given in o (a mismatch is an error, and the caller
 * throws dest away). */
int image_layer_unpack(int fd, const char *dest, const struct image_unpack_opts *o,
		       struct image_unpack_result *res, struct berr *err);

#endif
