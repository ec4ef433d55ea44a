/* clang-format off */
/* fuzz_auth.c - libFuzzer target for what the server reads of a caller's
 * credentials: the token text of an Authorization header (token_parse,
 * token_table_check), a stored token record (token_rec_from_json), a
 * certificate request from a joining agent (pki_csr_check) and a TLS peer's
 * DER certificate (pki_verify_der).
 *
 * fuzz-sources: src/core/util.c src/core/hmap.c src/core/log.c src/core/pki.c src/server/tokens.c
 * fuzz-libs: -ljansson -lcrypto -lpthread
 * (the two lines above stay one line each: scripts/fuzz.sh reads them)
 *
 * The first byte picks the parser; the rest is its input. */
/* clang-format on */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/pki.h"
#include "server/tokens.h"

static struct token_table *table;
static char *ca_pem;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (!table) {
		table = token_table_new();
		struct token_rec rec;
		free(token_make(TOKEN_ADMIN, NULL, 0, NULL, &rec));
		token_table_put(table, &rec);
		char *key = NULL;
		struct berr err = {0};
		if (pki_ca_new("fuzz CA", 3600, &ca_pem, &key, &err) < 0)
			abort();
		free(key);
	}
	if (size < 1)
		return 0;
	char *text = malloc(size);
	memcpy(text, data + 1, size - 1);
	text[size - 1] = 0;
	struct berr err = {0};
	switch (data[0] % 4) {
	case 0: {
		struct token_rec rec;
		char why[160];
		enum token_kind kind;
		char id[TOKEN_ID_LEN + 1], secret[TOKEN_SECRET_LEN + 1], cafp[65];
		if (token_parse(text, &kind, id, secret, cafp) == 0 && strlen(id) != TOKEN_ID_LEN)
			abort();
		token_table_check(table, text, 1000, &rec, why, sizeof why);
		break;
	}
	case 1: {
		struct token_rec rec;
		if (token_rec_from_json(text, size - 1, &rec) == 0 && strlen(rec.hash) != 64)
			abort();
		break;
	}
	case 2: {
		char cn[PKI_NAME_MAX];
		pki_csr_check(text, size - 1, cn, &err);
		break;
	}
	default: {
		struct pki_cert_info info;
		pki_verify_der(ca_pem, data + 1, size - 1, 1000, &info, &err);
		break;
	}
	}
	free(text);
	return 0;
}
