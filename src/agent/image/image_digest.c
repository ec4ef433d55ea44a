/* image_digest.c - SHA-256 digests through libcrypto's EVP interface. */
#include "agent/image/image_digest.h"

#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/util.h"

struct sha256_ctx {
	EVP_MD_CTX *md;
};

struct sha256_ctx *image_sha256_new(void)
{
	struct sha256_ctx *c = xcalloc(1, sizeof *c);
	c->md = EVP_MD_CTX_new();
	if (!c->md || EVP_DigestInit_ex(c->md, EVP_sha256(), NULL) != 1)
		abort(); /* only when out of memory */
	return c;
}

void image_sha256_update(struct sha256_ctx *c, const void *data, size_t n)
{
	if (n)
		EVP_DigestUpdate(c->md, data, n);
}

void image_sha256_final(struct sha256_ctx *c, char *out)
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int len = 0;
	EVP_DigestFinal_ex(c->md, md, &len);
	int off = snprintf(out, IMAGE_DIGEST_STR_MAX, "sha256:");
	for (unsigned i = 0; i < len && off + 2 < IMAGE_DIGEST_STR_MAX; i++)
		off += snprintf(out + off, (size_t)(IMAGE_DIGEST_STR_MAX - off), "%02x", md[i]);
	image_sha256_free(c);
}

void image_sha256_free(struct sha256_ctx *c)
{
	if (!c)
		return;
	EVP_MD_CTX_free(c->md);
	free(c);
}

void image_sha256_digest(const void *data, size_t n, char *out)
{
	struct sha256_ctx *c = image_sha256_new();
	image_sha256_update(c, data, n);
	image_sha256_final(c, out);
}

bool image_digest_valid(const char *s)
{
	if (!s || strncmp(s, "sha256:", 7))
		return false;
	const char *h = s + 7;
	size_t n = 0;
	for (; h[n]; n++)
		if (!((h[n] >= '0' && h[n] <= '9') || (h[n] >= 'a' && h[n] <= 'f')))
			return false;
	return n == IMAGE_DIGEST_HEX_LEN;
}

const char *image_digest_hex(const char *digest)
{
	return digest + 7;
}
