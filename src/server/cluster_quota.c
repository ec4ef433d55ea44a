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

void quotas_release(struct cluster *c)
{
	size_t it = 0;
	void *v;
	while (hmap_next(&c->quotas, &it, NULL, &v))
		entry_free(v);
	hmap_release(&c->quotas);
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

static bool key_of_role(const char *key, const char *role, size_t rl)
{
	return !strncmp(key, role, rl) && key[rl] == '/';
}

/* The role's use, leaving out job `skip` (may be NULL). */
static void role_use(struct cluster *c, const char *role, const struct job *skip,
		     struct quota_amount *out)
{
	memset(out, 0, sizeof *out);
	size_t rl = strlen(role), it = 0;
	void *v;
	while (hmap_next(&c->jobs, &it, NULL, &v)) {
		struct job *j = v;
		if (j == skip || !key_of_role(j->key, role, rl))
			continue;
		struct quota_amount a;
		job_amount(j, &a);
		quota_amount_add(out, &a);
	}
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

struct role_row {
	char *role;
	struct quota_amount use;
};

static int cmp_row(const void *a, const void *b)
{
	return strcmp((*(struct role_row *const *)a)->role, (*(struct role_row *const *)b)->role);
}

static struct role_row *row_get(struct hmap *rows, const char *role, size_t rl)
{
	char *name = xstrndup(role, rl);
	struct role_row *r = hmap_get(rows, name);
	if (!r) {
		r = xcalloc(1, sizeof *r);
		r->role = name;
		hmap_put(rows, name, r);
	} else {
		free(name);
	}
	return r;
}

json_t *cluster_quotas_json(struct cluster *c, const char *role)
{
	json_t *out = json_array();
	if (role) {
		json_array_append_new(out, cluster_quota_json(c, role));
		return out;
	}
	/* One pass over the jobs: the use of every role that has some. */
	struct hmap rows;
	hmap_init(&rows);
	size_t it = 0;
	void *v;
	while (hmap_next(&c->jobs, &it, NULL, &v)) {
		struct job *j = v;
		struct quota_amount a;
		job_amount(j, &a);
		if (!a.tasks)
			continue;
		const char *slash = strchr(j->key, '/');
		struct role_row *r = row_get(&rows, j->key, slash ? (size_t)(slash - j->key) : 0);
		quota_amount_add(&r->use, &a);
	}
	it = 0;
	while (hmap_next(&c->quotas, &it, NULL, &v)) {
		const struct quota_entry *q = v;
		row_get(&rows, q->role, strlen(q->role));
	}
	struct role_row **all = xcalloc(rows.count + 1, sizeof *all);
	size_t n = 0;
	it = 0;
	while (hmap_next(&rows, &it, NULL, &v))
		all[n++] = v;
	qsort(all, n, sizeof *all, cmp_row);
	for (size_t i = 0; i < n; i++) {
		json_array_append_new(
		    out, role_view(all[i]->role, limit_get(c, all[i]->role), &all[i]->use));
		free(all[i]->role);
		free(all[i]);
	}
	free(all);
	hmap_release(&rows);
	return out;
}
