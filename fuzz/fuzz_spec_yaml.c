/* clang-format off */
/* fuzz_spec_yaml.c - libFuzzer target for spec_parse_yaml().
 *
 * fuzz-sources: src/core/util.c src/core/spec.c src/core/spec_yaml.c src/core/spec_json.c src/core/spec_validate.c src/core/spec_fields.c src/core/spec_template.c src/core/cron.c
 * fuzz-libs: -ljansson -lyaml -lm
 *
 * Besides "no crash, no leak, no UB", checks the invariants the rest of berth
 * relies on: a refused spec has a code-400 message that starts with the file
 * name and holds no control character; an accepted spec survives the
 * canonical JSON round trip exactly; its templates expand.
 */
/* clang-format on */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/spec.h"

static void check_round_trip(const struct job_spec *s)
{
	json_t *j1 = spec_to_json(s);
	struct job_spec *s2 = NULL;
	struct berr e = {0};
	if (!j1 || spec_parse_json(j1, &s2, &e) < 0)
		abort();
	json_t *j2 = spec_to_json(s2);
	char *d1 = json_dumps(j1, 0), *d2 = json_dumps(j2, 0);
	if (!d1 || !d2 || strcmp(d1, d2) || !json_equal(j1, j2))
		abort();
	json_t *t = spec_task_to_json(s);
	if (!json_equal(t, json_object_get(j1, "task")))
		abort();
	json_decref(t);
	free(d1);
	free(d2);
	json_decref(j1);
	json_decref(j2);
	spec_free(s2);
}

static void check_expand(const struct job_spec *s)
{
	int values[64];
	for (size_t i = 0; i < s->task.resources.nports && i < 64; i++)
		values[i] = 31000 + (int)i;
	struct template_ctx ctx = {.instance = 3,
				   .task_id = "t1",
				   .host = "h",
				   .port_names = s->task.resources.ports,
				   .port_values = values,
				   .nports = s->task.resources.nports};
	for (size_t i = 0; i < s->task.ncommand; i++) {
		char *r = spec_expand(s->task.command[i], &ctx);
		/* Validation refused unknown templates, so none is left. */
		if (strstr(s->task.command[i], "{{") == NULL && strcmp(r, s->task.command[i]))
			abort();
		free(r);
	}
	for (size_t i = 0; i < s->task.nenv; i++)
		free(spec_expand(s->task.env[i].value, &ctx));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct job_spec *s = NULL;
	struct berr e = {0};
	if (spec_parse_yaml((const char *)data, size, "f.yaml", &s, &e) < 0) {
		if (s || e.code != 400 || strncmp(e.msg, "f.yaml:", 7))
			abort();
		for (const char *p = e.msg; *p; p++)
			if ((unsigned char)*p < 0x20)
				abort();
		return 0;
	}
	if (!s || job_key_check(s->key, &e) < 0)
		abort();
	check_round_trip(s);
	check_expand(s);
	spec_free(s);
	return 0;
}
