/* clang-format off */
/* fuzz_secret_body.c - libFuzzer target for secret_body_parse() (the body of
 * POST /v1/secrets) and secret_open() of untrusted sealed text (a store
 * record).
 *
 * fuzz-sources: src/core/util.c src/core/base64.c src/core/spec.c src/core/spec_yaml.c src/core/spec_json.c src/core/spec_validate.c src/core/spec_fields.c src/core/spec_template.c src/core/cron.c src/server/secret_box.c
 * fuzz-libs: -ljansson -lyaml -lcrypto -lm
 *
 * Checks: no crash, leak or UB; refusals carry a 400 or 413 and a message;
 * an accepted body has a valid name and at most SECRET_MAX_BYTES of value,
 * which seals and opens back to itself; garbage never opens.
 */
/* clang-format on */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/spec.h"
#include "server/secret_box.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct secret_key key;
	uint8_t kb[SECRET_KEY_BYTES] = {1, 2, 3};
	secret_key_from_bytes(&key, kb);
	json_t *body = json_loadb((const char *)data, size, 0, NULL);
	char *name = NULL, *value = NULL;
	size_t len = 0;
	struct berr err = {0};
	if (secret_body_parse(body, &name, &value, &len, &err) == 0) {
		struct berr e2 = {0};
		if (secret_name_check(name, &e2) < 0 || len > SECRET_MAX_BYTES)
			abort();
		char *aad = secret_aad(name, 1);
		char *sealed = secret_seal(&key, aad, value, len, &e2);
		char *plain = NULL;
		size_t plen = 0;
		if (!sealed || secret_open(&key, aad, sealed, &plain, &plen, &e2) < 0 ||
		    plen != len || memcmp(plain, value, len))
			abort();
		free(plain);
		free(sealed);
		free(aad);
		free(name);
		free(value);
	} else if ((err.code != 400 && err.code != 413) || !err.msg[0] || name || value) {
		abort();
	}
	json_decref(body);
	/* The raw input as a stored sealed value: never opens. */
	char *text = strndup((const char *)data, size);
	char *plain = NULL;
	size_t plen = 0;
	if (text && secret_open(&key, "berth-secret:a/b#1", text, &plain, &plen, &err) == 0)
		abort();
	free(plain);
	free(text);
	return 0;
}
