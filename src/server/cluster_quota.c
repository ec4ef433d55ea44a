/* cluster_quota.c - quotas per role in the cluster (cluster_quota.h).
 *
 * Use is computed when it is needed (an admission of a role that has a
 * quota, a view), by one pass over the jobs: nothing to keep in step with
 * every task transition, on the leader or on a follower. A role without a
 * quota costs its submissions nothing. */
#include "server/cluster_quota.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "server/cluster-internal.h"

struct quota_entry {
	char *role;
	struct quota_limit lim;
};

static void entry_free(struct quota_entry *q)
{
	if (q) {
		free(q->role);
		free(q);
	}
}

static void use_release(struct cluster *c);

void quotas_release(struct cluster *c)
{
	size_t it = 0;
	void *v;
	while (hmap_next(&c->quotas, &it, NULL, &v))
		entry_free(v);
	hmap_release(&c->quotas);
	use_release(c);
}

static const struct quota_limit *limit_get(const struct cluster *c, const char *role)
{
	const struct quota_entry *q = hmap_get(&c->quotas, role);
	return q ? &q->lim : NULL;
}

/* ---- use ---- */

/* Instances of j the quota counts when it has spec (the rule in the
 * header): j NULL is a job not submitted yet. */
static int64_t counted_instances(const struct job *j, const struct job_spec *spec)
{
	if (j && j->killed)
		return 0;
	if (spec->type == JOB_CRON)
		return j && job_has_active(j) ? spec->instances : 0;
	if (spec->type == JOB_SERVICE)
		return spec->instances;
	int64_t n = 0;
	for (int i = 0; i < spec->instances; i++)
		n += !(j && (size_t)i < j->ninstance_done && j->instance_done[i]);
	return n;
}

/* What j counts now, with its current version. */
static void job_amount(struct job *j, struct quota_amount *out)
{
	const struct job_version *jv = job_version_get(j, j->version);
	memset(out, 0, sizeof *out);
	if (jv && !j->killed)
		quota_amount_of(jv->spec, counted_instances(j, jv->spec), out);
}

/* The role of a job key ("alice/prod/web" -> "alice"), into buf. */
static const char *role_of(const char *key, char *buf, size_t n)
{
	const char *slash = strchr(key, '/');
	size_t len = slash ? (size_t)(slash - key) : strlen(key);
	snprintf(buf, n, "%.*s", (int)len, key);
	return buf;
}

static struct quota_amount *use_entry(struct cluster *c, const char *role)
{
	struct quota_amount *u = hmap_get(&c->quota_use, role);
	if (!u) {
		u = xcalloc(1, sizeof *u);
		hmap_put(&c->quota_use, role, u);
	}
	return u;
}

static bool amount_zero(const struct quota_amount *a)
{
	return !a->cpu_milli && !a->memory && !a->disk && !a->tasks;
}

void quota_job_recount(struct cluster *c, struct job *j)
{
	struct quota_amount now;
	job_amount(j, &now);
	if (!memcmp(&now, &j->quota_counted, sizeof now))
		return;
	char role[256];
	struct quota_amount *u = use_entry(c, role_of(j->key, role, sizeof role));
	quota_amount_sub(u, &j->quota_counted);
	quota_amount_add(u, &now);
	j->quota_counted = now;
}

void quota_job_slot_freed(struct cluster *c, struct job *j)
{
	const struct job_version *jv = job_version_get(j, j->version);
	if (jv && jv->spec->type == JOB_CRON)
		quota_job_recount(c, j);
}

void quota_job_gone(struct cluster *c, struct job *j)
{
	if (amount_zero(&j->quota_counted))
		return;
	char role[256];
	quota_amount_sub(use_entry(c, role_of(j->key, role, sizeof role)), &j->quota_counted);
	memset(&j->quota_counted, 0, sizeof j->quota_counted);
}

static void use_release(struct cluster *c)
{
	size_t it = 0;
	void *v;
	while (hmap_next(&c->quota_use, &it, NULL, &v))
		free(v);
	hmap_release(&c->quota_use);
}

void quotas_recount(struct cluster *c)
{
	use_release(c);
	hmap_init(&c->quota_use);
	size_t it = 0;
	void *v;
	while (hmap_next(&c->jobs, &it, NULL, &v)) {
		struct job *j = v;
		memset(&j->quota_counted, 0, sizeof j->quota_counted);
		quota_job_recount(c, j);
	}
}

/* The role's use, leaving out job `skip` (may be NULL). */
static void role_use(struct cluster *c, const char *role, const struct job *skip,
		     struct quota_amount *out)
{
	const struct quota_amount *u = hmap_get(&c->quota_use, role);
	memset(out, 0, sizeof *out);
	if (u)
		*out = *u;
	if (skip)
		quota_amount_sub(out, &skip->quota_counted);
}

/* Use before and after j takes spec (j NULL: a new job). */
static void use_change(struct cluster *c, const struct job *j, const struct job_spec *spec,
		       struct quota_amount *before, struct quota_amount *after)
{
	struct quota_amount mine, next;
	role_use(c, spec->role, j, before);
	*after = *before;
	if (j)
		job_amount((struct job *)j, &mine);
	else
		memset(&mine, 0, sizeof mine);
	quota_amount_add(before, &mine);
	quota_amount_of(spec, counted_instances(j, spec), &next);
	quota_amount_add(after, &next);
}

/* ---- admission ---- */

int quota_admit_job(struct cluster *c, const struct job *j, const struct job_spec *spec,
		    struct berr *err)
{
	const struct quota_limit *lim = limit_get(c, spec->role);
	if (!lim)
		return 0;
	struct quota_amount before, after;
	use_change(c, j, spec, &before, &after);
	char why[512];
	if (quota_admit(spec->role, lim, &before, &after, why, sizeof why) < 0)
		return berr_set(err, 409, "%s", why);
	return 0;
}

int quota_admit_cron_run(struct cluster *c, const struct job *j, char *why, size_t whylen)
{
	const struct job_version *jv = job_version_get((struct job *)j, j->version);
	const struct quota_limit *lim = jv ? limit_get(c, jv->spec->role) : NULL;
	if (!lim)
		return 0;
	struct quota_amount before, after, mine, run;
	role_use(c, jv->spec->role, j, &before);
	after = before;
	job_amount((struct job *)j, &mine);
	quota_amount_add(&before, &mine);
	quota_amount_of(jv->spec, jv->spec->instances, &run);
	quota_amount_add(&after, &run);
	return quota_admit(jv->spec->role, lim, &before, &after, why, whylen);
}

json_t *quota_plan_json(struct cluster *c, const struct job *j, const struct job_spec *spec)
{
	const struct quota_limit *lim = limit_get(c, spec->role);
	struct quota_amount before, after;
	use_change(c, j, spec, &before, &after);
	char why[512] = "";
	bool fits = quota_admit(spec->role, lim, &before, &after, why, sizeof why) == 0;
	json_t *o = json_pack(
	    "{s:s,s:s,s:b,s:o,s:o,s:o,s:b}", "role", spec->role, "tier", job_tier_name(spec->tier),
	    "counted", quota_counts(spec), "limit", lim ? quota_limit_json(lim) : json_null(),
	    "use", quota_amount_json(&before), "after", quota_amount_json(&after), "fits", fits);
	if (!fits)
		json_object_set_new(o, "message", json_string(why));
	return o;
}

/* ---- records ---- */

static void persist_quota(struct cluster *c, const struct quota_entry *q)
{
	json_t *o = quota_limit_json(&q->lim);
	json_object_set_new(o, "role", json_string(q->role));
	char *txt = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);
	char *key = xasprintf("quotas/%s", q->role);
	store_batch_put(c->pending, key, txt, strlen(txt));
	c->changes++;
	free(key);
	free(txt);
	json_decref(o);
}

int quota_record_apply(struct cluster *c, const char *key, const char *value, size_t len)
{
	const char *role = key + strlen("quotas/");
	static const char *const extra[] = {"role", NULL};
	struct berr err = {0};
	struct quota_limit lim;
	json_t *o = json_loadb(value, len, 0, NULL);
	if (role_name_check(role, &err) < 0 || quota_limit_from_json(o, extra, &lim, &err) < 0) {
		log_warn("record '%s' dropped: not a quota record (%s)", key, err.msg);
		json_decref(o);
		return APPLIED;
	}
	json_decref(o);
	struct quota_entry *q = xcalloc(1, sizeof *q);
	q->role = xstrdup(role);
	q->lim = lim;
	entry_free(hmap_put(&c->quotas, role, q));
	return APPLIED;
}

void quota_record_delete(struct cluster *c, const char *key)
{
	entry_free(hmap_del(&c->quotas, key + strlen("quotas/")));
}

/* ---- commands and views ---- */

uint64_t cluster_quota_set(struct cluster *c, const char *role, const struct quota_limit *lim,
			   json_t **reply)
{
	struct quota_entry *q = xcalloc(1, sizeof *q);
	q->role = xstrdup(role);
	q->lim = *lim;
	entry_free(hmap_put(&c->quotas, role, q));
	persist_quota(c, q);
	*reply = cluster_quota_json(c, role);
	return cluster_touched(c);
}

uint64_t cluster_quota_delete(struct cluster *c, const char *role, struct berr *err)
{
	struct quota_entry *q = hmap_del(&c->quotas, role);
	if (!q) {
		berr_set(err, 404, "role '%s' has no quota", role);
		return 0;
	}
	entry_free(q);
	char *key = xasprintf("quotas/%s", role);
	store_batch_delete(c->pending, key);
	c->changes++;
	free(key);
	return cluster_touched(c);
}

static json_t *role_view(const char *role, const struct quota_limit *lim,
			 const struct quota_amount *use)
{
	return json_pack("{s:s,s:o,s:o,s:b}", "role", role, "limit",
			 lim ? quota_limit_json(lim) : json_null(), "use", quota_amount_json(use),
			 "over", quota_over(lim, use));
}

json_t *cluster_quota_json(struct cluster *c, const char *role)
{
	struct quota_amount use;
	role_use(c, role, NULL, &use);
	return role_view(role, limit_get(c, role), &use);
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

json_t *cluster_quotas_json(struct cluster *c, const char *role)
{
	json_t *out = json_array();
	if (role) {
		json_array_append_new(out, cluster_quota_json(c, role));
		return out;
	}
	/* Every role with a quota or some use, once each, sorted. */
	const char **roles = xcalloc(c->quotas.count + c->quota_use.count + 1, sizeof *roles);
	size_t n = 0, it = 0;
	const char *k;
	void *v;
	while (hmap_next(&c->quota_use, &it, &k, &v))
		if (!amount_zero(v))
			roles[n++] = k;
	it = 0;
	while (hmap_next(&c->quotas, &it, &k, NULL)) {
		const struct quota_amount *u = hmap_get(&c->quota_use, k);
		if (!u || amount_zero(u))
			roles[n++] = k;
	}
	qsort(roles, n, sizeof *roles, cmp_str);
	for (size_t i = 0; i < n; i++)
		json_array_append_new(out, cluster_quota_json(c, roles[i]));
	free(roles);
	return out;
}
