/* clang-format off */
/* fuzz_spec_json.c - libFuzzer target for spec_parse_json() (the body of
 * POST /v1/jobs) and the small parsers it uses on untrusted strings.
 *
 * fuzz-sources: src/core/util.c src/core/spec.c src/core/spec_yaml.c src/core/spec_json.c src/core/spec_validate.c src/core/spec_fields.c src/core/spec_template.c src/core/cron.c
 * fuzz-libs: -ljansson -lyaml -lm
 *
 * Checks: no crash, leak or UB; refusals are code 400 with a one-line
 * message; an accepted spec round-trips through its canonical JSON exactly.
 */
/* clang-format on */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/spec.h"

static void check_message(const struct berr *e)
{
	if (e->code != 400 || !e->msg[0])
		abort();
	for (const char *p = e->msg; *p; p++)
		if ((unsigned char)*p < 0x20)
			abort();
}

/* parse_size, parse_duration, job_key_check and spec_expand on the raw
 * input as a string. */
static void fuzz_strings(const uint8_t *data, size_t size)
{
	char *s = malloc(size + 1);
	memcpy(s, data, size);
	s[size] = 0;
	uint64_t v;
	struct berr e = {0};
	(void)parse_size(s, &v);
	(void)parse_duration(s, &v);
	if (job_key_check(s, &e) < 0)
		check_message(&e);
	char *names[] = {"http", "a"};
	int ports[] = {1, 2};
	struct template_ctx ctx = {.instance = 1,
				   .task_id = "x",
				   .host = "h",
				   .port_names = names,
				   .port_values = ports,
				   .nports = 2};
	free(spec_expand(s, &ctx));
	free(s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	fuzz_strings(data, size);
	json_error_t je;
	json_t *j = json_loadb((const char *)data, size, JSON_DECODE_ANY | JSON_ALLOW_NUL, &je);
	if (!j)
		return 0;
	struct job_spec *s = NULL;
	struct berr e = {0};
	if (spec_parse_json(j, &s, &e) < 0) {
		if (s)
			abort();
		check_message(&e);
		json_decref(j);
		return 0;
	}
	json_t *c1 = spec_to_json(s);
	struct job_spec *s2 = NULL;
	if (spec_parse_json(c1, &s2, &e) < 0)
		abort();
	json_t *c2 = spec_to_json(s2);
	char *d1 = json_dumps(c1, 0), *d2 = json_dumps(c2, 0);
	if (!d1 || !d2 || strcmp(d1, d2))
		abort();
	free(d1);
	free(d2);
	json_decref(c1);
	json_decref(c2);
	spec_free(s2);
	spec_free(s);
	json_decref(j);
	return 0;
}
