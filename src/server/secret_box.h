/* secret_box.h - secrets encrypted at rest (docs/security.md, "Secrets").
 *
 * A secret's value is sealed with AES-256-GCM (OpenSSL EVP) under the
 * cluster's secrets key, a random 96-bit nonce for every sealing, and the
 * secret's name and version as additional data: a sealed value moved to
 * another name or version does not open. The sealed text is
 *
 *     "v1:" base64(nonce[12] || ciphertext || tag[16])
 *
 * and it is all the store ever holds. The key is 32 random bytes in a file
 * outside the store (DATA/keys/secrets.key, mode 0600 in a 0700 directory,
 * made on first start; HA servers share one with --secrets-key-file).
 * A key is known by its id: the first 8 bytes of its SHA-256, in hex, kept
 * beside every sealed value so that a server with another key says so.
 */
#ifndef BERTH_SECRET_BOX_H
#define BERTH_SECRET_BOX_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "core/util.h"

#define SECRET_KEY_BYTES 32
#define SECRET_KEY_ID_LEN 16
/* The largest secret value, in bytes (as Docker Swarm's 500 KiB). */
#define SECRET_MAX_BYTES (512 * 1024)

struct secret_key {
	uint8_t bytes[SECRET_KEY_BYTES];
	char id[SECRET_KEY_ID_LEN + 1];
};

/* Read the key file at `path`; when it does not exist and `create` is set,
 * make it (32 random bytes, 0600, its directory 0700 when missing). A file
 * of another size, or readable by others, is refused with a message. */
int secret_key_load(const char *path, int create, struct secret_key *key, struct berr *err);
/* A key from 32 bytes (tests). */
void secret_key_from_bytes(struct secret_key *key, const uint8_t bytes[SECRET_KEY_BYTES]);

/* Seal plain[0..len) bound to `aad` (the name and version): the sealed text
 * (caller frees), or NULL with err set. */
char *secret_seal(const struct secret_key *key, const char *aad, const void *plain, size_t len,
		  struct berr *err);
/* Open a sealed text bound to `aad`: 0 with *plain (caller frees; NUL
 * terminated beyond *len), or -1 with err set (not a sealed text, another
 * key, another name or version, tampered with). */
int secret_open(const struct secret_key *key, const char *aad, const char *sealed, char **plain,
		size_t *len, struct berr *err);

/* The body of POST /v1/secrets: {"name": "ROLE/NAME", "data": BASE64}.
 * 0 with *name (checked, caller frees) and *value (decoded, caller frees,
 * *len bytes), or -1 with err (code 400 or 413) naming what is wrong. */
int secret_body_parse(json_t *body, char **name, char **value, size_t *len, struct berr *err);

/* The additional data of a secret's version: "berth-secret:ROLE/NAME#V". */
char *secret_aad(const char *name, int version);

#endif
