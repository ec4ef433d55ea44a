/* test_secret_box.c - server/secret_box: a sealed secret opens back to its
 * value; a tampered one, one opened with another key, under another name
 * or version, or garbage, is refused; nonces differ per sealing; the key
 * file is made 0600 in a 0700 directory and refused when readable by others
 * or of the wrong size. */
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/base64.h"
#include "server/secret_box.h"
#include "unit.h"

static void key_of(struct secret_key *k, uint8_t fill)
{
	uint8_t b[SECRET_KEY_BYTES];
	memset(b, fill, sizeof b);
	secret_key_from_bytes(k, b);
}

TEST(sealed_secret_round_trips)
{
	struct secret_key k;
	key_of(&k, 7);
	CHECK(strlen(k.id) == SECRET_KEY_ID_LEN);
	struct berr err = {0};
	const char value[] = "hunter2\0with a NUL";
	char *aad = secret_aad("alice/db-pass", 1);
	char *s1 = secret_seal(&k, aad, value, sizeof value, &err);
	char *s2 = secret_seal(&k, aad, value, sizeof value, &err);
	CHECK(s1 && s2);
	CHECK(strncmp(s1, "v1:", 3) == 0);
	CHECK(strcmp(s1, s2) != 0); /* a random nonce each time */
	CHECK(!strstr(s1, "hunter2"));
	char *plain = NULL;
	size_t len = 0;
	CHECK(secret_open(&k, aad, s1, &plain, &len, &err) == 0);
	CHECK(len == sizeof value);
	CHECK(memcmp(plain, value, len) == 0);
	free(plain);
	/* Empty values too. */
	char *s3 = secret_seal(&k, aad, "", 0, &err);
	CHECK(secret_open(&k, aad, s3, &plain, &len, &err) == 0 && len == 0);
	free(plain);
	free(s1);
	free(s2);
	free(s3);
	free(aad);
}

TEST(tampered_or_misplaced_secret_is_refused)
{
	struct secret_key k;
	key_of(&k, 7);
	struct berr err = {0};
	char *aad = secret_aad("alice/db-pass", 1);
	char *sealed = secret_seal(&k, aad, "hunter2", 7, &err);
	char *raw = NULL;
	size_t rlen = 0;
	CHECK(base64_decode(sealed + 3, strlen(sealed + 3), &raw, &rlen) == 0);
	char *plain = NULL;
	size_t len = 0;
	for (size_t i = 0; i < rlen; i++) { /* any flipped bit: nonce, text or tag */
		raw[i] ^= 1;
		char *b = base64_encode(raw, rlen);
		char *bad = xasprintf("v1:%s", b);
		CHECK(secret_open(&k, aad, bad, &plain, &len, &err) < 0);
		CHECK(plain == NULL);
		free(b);
		free(bad);
		raw[i] ^= 1;
	}
	free(raw);
	/* Another name, another version. */
	char *other = secret_aad("bob/db-pass", 1), *v2 = secret_aad("alice/db-pass", 2);
	CHECK(secret_open(&k, other, sealed, &plain, &len, &err) < 0);
	CHECK(secret_open(&k, v2, sealed, &plain, &len, &err) < 0);
	/* Garbage. */
	const char *junk[] = {"", "v1:", "v1:!!!", "v2:AAAA", "hunter2", "v1:AAAAAAAA"};
	for (size_t i = 0; i < ARRAY_SIZE(junk); i++) {
		berr_clear(&err);
		CHECK(secret_open(&k, aad, junk[i], &plain, &len, &err) < 0);
		CHECK(err.msg[0]);
	}
	CHECK(secret_open(&k, aad, NULL, &plain, &len, &err) < 0);
	free(other);
	free(v2);
	free(aad);
	free(sealed);
}

TEST(wrong_key_is_refused)
{
	struct secret_key k1, k2;
	key_of(&k1, 1);
	key_of(&k2, 2);
	CHECK(strcmp(k1.id, k2.id) != 0);
	struct berr err = {0};
	char *aad = secret_aad("alice/x", 3);
	char *sealed = secret_seal(&k1, aad, "value", 5, &err);
	char *plain = NULL;
	size_t len = 0;
	CHECK(secret_open(&k2, aad, sealed, &plain, &len, &err) < 0);
	CHECK_CONTAINS(err.msg, "key");
	free(sealed);
	free(aad);
}

TEST(too_large_secret_is_refused)
{
	struct secret_key k;
	key_of(&k, 3);
	struct berr err = {0};
	char *big = xcalloc(SECRET_MAX_BYTES + 1, 1);
	CHECK(secret_seal(&k, "a", big, SECRET_MAX_BYTES + 1, &err) == NULL);
	CHECK(err.code == 413);
	free(big);
}

TEST(key_file_is_made_private_and_checked)
{
	char dir[] = "/tmp/berth-keyXXXXXX";
	CHECK(mkdtemp(dir));
	char *path = xasprintf("%s/keys/secrets.key", dir);
	struct secret_key k, again;
	struct berr err = {0};
	CHECK(secret_key_load(path, 0, &k, &err) < 0); /* not created unless asked */
	CHECK(secret_key_load(path, 1, &k, &err) == 0);
	struct stat st;
	CHECK(stat(path, &st) == 0 && (st.st_mode & 0777) == 0600 && st.st_size == 32);
	char *kd = xasprintf("%s/keys", dir);
	CHECK(stat(kd, &st) == 0 && (st.st_mode & 0777) == 0700);
	CHECK(secret_key_load(path, 1, &again, &err) == 0);
	CHECK(memcmp(k.bytes, again.bytes, SECRET_KEY_BYTES) == 0);
	CHECK_STR(k.id, again.id);
	chmod(path, 0644);
	CHECK(secret_key_load(path, 1, &again, &err) < 0);
	CHECK_CONTAINS(err.msg, "readable by others");
	chmod(path, 0600);
	CHECK(truncate(path, 16) == 0);
	CHECK(secret_key_load(path, 1, &again, &err) < 0);
	CHECK_CONTAINS(err.msg, "32 bytes");
	rm_rf(dir);
	free(kd);
	free(path);
}

UNIT_MAIN(sealed_secret_round_trips, tampered_or_misplaced_secret_is_refused, wrong_key_is_refused,
	  too_large_secret_is_refused, key_file_is_made_private_and_checked)
