/* secret_box.c - AES-256-GCM sealing of secrets, and the key file (secret_box.h). */
#include "server/secret_box.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/base64.h"
#include "core/spec.h"

#define NONCE_BYTES 12
#define TAG_BYTES 16
#define SEALED_PREFIX "v1:"

void secret_key_from_bytes(struct secret_key *key, const uint8_t bytes[SECRET_KEY_BYTES])
{
	memcpy(key->bytes, bytes, SECRET_KEY_BYTES);
	uint8_t digest[SHA256_DIGEST_LENGTH];
	SHA256(key->bytes, SECRET_KEY_BYTES, digest);
	for (int i = 0; i < SECRET_KEY_ID_LEN / 2; i++)
		snprintf(key->id + 2 * i, 3, "%02x", digest[i]);
}

static int key_create(const char *path, struct berr *err)
{
	char *dir = xstrdup(path);
	char *slash = strrchr(dir, '/');
	if (slash && slash != dir) {
		*slash = 0;
		struct stat st;
		if (stat(dir, &st) < 0) {
			int r = mkdir_p(dir, 0700);
			if (r < 0) {
				berr_set(err, 0, "cannot create '%s': %s", dir, err_str(-r));
				free(dir);
				return -1;
			}
			chmod(dir, 0700);
		}
	}
	free(dir);
	uint8_t bytes[SECRET_KEY_BYTES];
	if (RAND_bytes(bytes, sizeof bytes) != 1)
		return berr_set(err, 0, "cannot make a secrets key: no random bytes");
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0)
		return berr_set(err, 0, "cannot create the secrets key '%s': %s", path,
				err_str(errno));
	ssize_t w = write(fd, bytes, sizeof bytes);
	int ok = w == (ssize_t)sizeof bytes && fsync(fd) == 0;
	int e = errno;
	close(fd);
	memset(bytes, 0, sizeof bytes);
	if (!ok) {
		unlink(path);
		return berr_set(err, 0, "cannot write the secrets key '%s': %s", path, err_str(e));
	}
	return 0;
}

int secret_key_load(const char *path, int create, struct secret_key *key, struct berr *err)
{
	memset(key, 0, sizeof *key);
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0 && errno == ENOENT && create) {
		if (key_create(path, err) < 0)
			return -1;
		fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	}
	if (fd < 0 && errno == ENOENT)
		return berr_set(err, 0,
				"cannot open the secrets key '%s': %s (make one with: head -c 32 "
				"/dev/urandom > %s; chmod 600 %s)",
				path, err_str(errno), path, path);
	if (fd < 0)
		return berr_set(err, 0, "cannot open the secrets key '%s': %s", path,
				err_str(errno));
	struct stat st;
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		close(fd);
		return berr_set(err, 0, "the secrets key '%s' is not a regular file", path);
	}
	if (st.st_mode & 0077) {
		close(fd);
		return berr_set(err, 0,
				"the secrets key '%s' is readable by others (mode %04o): "
				"chmod 600 it",
				path, (unsigned)(st.st_mode & 07777));
	}
	uint8_t bytes[SECRET_KEY_BYTES + 1];
	ssize_t n = read(fd, bytes, sizeof bytes);
	close(fd);
	if (n != SECRET_KEY_BYTES) {
		memset(bytes, 0, sizeof bytes);
		return berr_set(err, 0, "the secrets key '%s' must hold exactly %d bytes", path,
				SECRET_KEY_BYTES);
	}
	secret_key_from_bytes(key, bytes);
	memset(bytes, 0, sizeof bytes);
	return 0;
}

int secret_body_parse(json_t *body, char **name, char **value, size_t *len, struct berr *err)
{
	*name = *value = NULL;
	*len = 0;
	if (!json_is_object(body))
		return berr_set(err, 400,
				"expected a JSON object {\"name\": ROLE/NAME, \"data\": BASE64}");
	const char *k;
	json_t *v;
	json_object_foreach(body, k, v)
	{
		if (strcmp(k, "name") && strcmp(k, "data"))
			return berr_set(err, 400, "unknown field '%.64s': expected name and data",
					k);
	}
	json_t *jn = json_object_get(body, "name"), *jd = json_object_get(body, "data");
	if (!json_is_string(jn))
		return berr_set(err, 400,
				"name: expected a secret name ROLE/NAME such as alice/db-pass");
	if (secret_name_check(json_string_value(jn), err) < 0) {
		err->code = 400;
		return berr_prefix(err, "name");
	}
	if (!json_is_string(jd))
		return berr_set(err, 400, "data: expected the secret's value in base64");
	size_t dlen = json_string_length(jd);
	if (dlen > (SECRET_MAX_BYTES + 2) / 3 * 4 + 4)
		return berr_set(err, 413, "data: a secret holds at most %d bytes",
				SECRET_MAX_BYTES);
	char *raw = NULL;
	size_t rlen = 0;
	if (base64_decode(json_string_value(jd), dlen, &raw, &rlen) < 0)
		return berr_set(err, 400, "data: expected the secret's value in base64");
	if (rlen > SECRET_MAX_BYTES) {
		memset(raw, 0, rlen);
		free(raw);
		return berr_set(err, 413, "data: a secret holds at most %d bytes, this one %zu",
				SECRET_MAX_BYTES, rlen);
	}
	*name = xstrdup(json_string_value(jn));
	*value = raw;
	*len = rlen;
	return 0;
}

char *secret_aad(const char *name, int version)
{
	return xasprintf("berth-secret:%s#%d", name, version);
}

char *secret_seal(const struct secret_key *key, const char *aad, const void *plain, size_t len,
		  struct berr *err)
{
	if (len > SECRET_MAX_BYTES) {
		berr_set(err, 413, "a secret holds at most %d bytes, this one %zu",
			 SECRET_MAX_BYTES, len);
		return NULL;
	}
	size_t total = NONCE_BYTES + len + TAG_BYTES;
	uint8_t *buf = xmalloc(total);
	char *out = NULL;
	EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
	int n = 0, fin = 0;
	if (!ctx || RAND_bytes(buf, NONCE_BYTES) != 1 ||
	    EVP_EncryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, NULL, NULL) != 1 ||
	    EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_IVLEN, NONCE_BYTES, NULL) != 1 ||
	    EVP_EncryptInit_ex(ctx, NULL, NULL, key->bytes, buf) != 1 ||
	    EVP_EncryptUpdate(ctx, NULL, &n, (const uint8_t *)aad, (int)strlen(aad)) != 1 ||
	    EVP_EncryptUpdate(ctx, buf + NONCE_BYTES, &n, plain, (int)len) != 1 ||
	    EVP_EncryptFinal_ex(ctx, buf + NONCE_BYTES + n, &fin) != 1 ||
	    EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, TAG_BYTES, buf + NONCE_BYTES + len) !=
		1) {
		berr_set(err, 500, "cannot encrypt the secret (OpenSSL)");
	} else {
		char *b64 = base64_encode(buf, total);
		out = xasprintf(SEALED_PREFIX "%s", b64);
		free(b64);
	}
	EVP_CIPHER_CTX_free(ctx);
	memset(buf, 0, total);
	free(buf);
	return out;
}

int secret_open(const struct secret_key *key, const char *aad, const char *sealed, char **plain,
		size_t *len, struct berr *err)
{
	*plain = NULL;
	*len = 0;
	size_t pl = strlen(SEALED_PREFIX);
	char *raw = NULL;
	size_t rlen = 0;
	if (!sealed || strncmp(sealed, SEALED_PREFIX, pl) ||
	    base64_decode(sealed + pl, strlen(sealed + pl), &raw, &rlen) < 0 ||
	    rlen < NONCE_BYTES + TAG_BYTES || rlen - NONCE_BYTES - TAG_BYTES > INT_MAX) {
		free(raw);
		return berr_set(err, 500, "a stored secret is not a sealed value");
	}
	size_t clen = rlen - NONCE_BYTES - TAG_BYTES;
	uint8_t *nonce = (uint8_t *)raw, *ct = nonce + NONCE_BYTES, *tag = ct + clen;
	char *out = xmalloc(clen + 1);
	EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
	int n = 0, fin = 0, ok = 0;
	if (ctx && EVP_DecryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, NULL, NULL) == 1 &&
	    EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_IVLEN, NONCE_BYTES, NULL) == 1 &&
	    EVP_DecryptInit_ex(ctx, NULL, NULL, key->bytes, nonce) == 1 &&
	    EVP_DecryptUpdate(ctx, NULL, &n, (const uint8_t *)aad, (int)strlen(aad)) == 1 &&
	    EVP_DecryptUpdate(ctx, (uint8_t *)out, &n, ct, (int)clen) == 1 &&
	    EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, TAG_BYTES, tag) == 1 &&
	    EVP_DecryptFinal_ex(ctx, (uint8_t *)out + n, &fin) == 1)
		ok = 1;
	EVP_CIPHER_CTX_free(ctx);
	free(raw);
	if (!ok) {
		memset(out, 0, clen + 1);
		free(out);
		return berr_set(err, 500,
				"a stored secret does not open with this server's key: another "
				"key, or the record was altered");
	}
	out[clen] = 0;
	*plain = out;
	*len = clen;
	return 0;
}
