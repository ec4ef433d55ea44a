/* image_digest.h - SHA-256 content digests as OCI writes them
 * ("sha256:<64 lowercase hex>"), through OpenSSL's libcrypto (EVP).
 *
 * Every blob berth takes from an image (manifest, config, layer) is checked
 * against the digest that names it: an image is addressed by content, and a
 * registry, a proxy or a disk may hand back something else.
 */
#ifndef BERTH_IMAGE_DIGEST_H
#define BERTH_IMAGE_DIGEST_H

#include <stdbool.h>
#include <stddef.h>

/* "sha256:" + 64 hex + NUL */
#define IMAGE_DIGEST_STR_MAX 72
#define IMAGE_DIGEST_HEX_LEN 64

struct sha256_ctx;

struct sha256_ctx *image_sha256_new(void);
void image_sha256_update(struct sha256_ctx *c, const void *data, size_t n);
/* Writes "sha256:<hex>" into out (IMAGE_DIGEST_STR_MAX bytes) and frees c. */
void image_sha256_final(struct sha256_ctx *c, char *out);
/* Frees an unfinished context; NULL is fine. */
void image_sha256_free(struct sha256_ctx *c);
/* One-shot digest of a buffer. */
void image_sha256_digest(const void *data, size_t n, char *out);

/* Is s "sha256:" followed by exactly 64 lowercase hex digits? Anything else
 * (other algorithms, upper case, path tricks) is refused before a digest is
 * ever used as a file name. */
bool image_digest_valid(const char *s);
/* The hex part of a valid digest. */
const char *image_digest_hex(const char *digest);

#endif
