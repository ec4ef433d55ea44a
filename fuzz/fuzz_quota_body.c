/* clang-format off */
/* fuzz_quota_body.c - libFuzzer target for quota_limit_from_json() (the body
 * of PUT /v1/quotas/ROLE, and a stored quotas/ROLE record) and the
 * admission arithmetic on what it accepts.
 *
 * fuzz-sources: src/core/util.c src/core/spec.c src/core/spec_yaml.c src/core/spec_json.c src/core/spec_validate.c src/core/spec_fields.c src/core/spec_template.c src/core/cron.c src/sched/quota.c
 * fuzz-libs: -ljansson -lyaml -lm
 *
 * Checks: no crash, leak or UB; a refusal is a 400 with a message; an
 * accepted quota is within bounds, goes through its JSON and back to
 * itself, and admission under it never overflows.
 */
/* clang-format on */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sched/quota.h"

static bool in_range(int64_t v, int64_t max)
{
	return v == QUOTA_UNLIMITED || (v >= 0 && v <= max);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char *const extra[] = {"role", NULL};
	json_t *body = json_loadb((const char *)data, size, JSON_DECODE_ANY, NULL);
	struct quota_limit lim;
	struct berr err = {0};
	if (quota_limit_from_json(body, size & 1 ? extra : NULL, &lim, &err) == 0) {
		if (!in_range(lim.cpu_milli, (int64_t)(QUOTA_MAX_CPU * 1000)) ||
		    !in_range(lim.memory, QUOTA_MAX_SIZE) || !in_range(lim.disk, QUOTA_MAX_SIZE) ||
		    !in_range(lim.tasks, QUOTA_MAX_TASKS))
			abort();
		json_t *back = quota_limit_json(&lim);
		struct quota_limit again;
		struct berr e2 = {0};
		if (quota_limit_from_json(back, NULL, &again, &e2) < 0 ||
		    memcmp(&lim, &again, sizeof lim))
			abort();
		json_decref(back);
		struct quota_amount before = {0},
				    after = {INT64_MAX, INT64_MAX, INT64_MAX, INT64_MAX};
		quota_amount_add(&after, &after);
		char why[512];
		quota_admit("alice", &lim, &before, &after, why, sizeof why);
		quota_amount_sub(&before, &after);
		if (before.cpu_milli || before.memory || before.disk || before.tasks)
			abort();
	} else if (err.code != 400 || !err.msg[0]) {
		abort();
	}
	json_decref(body);
	return 0;
}
