/* cluster_secrets.c - secrets: their sealed versions (never a value in
 * clear: secret_box.h seals and opens them, in the routes), which jobs use
 * them, and the rolling update a new version starts in those jobs.
 *
 * A secret is ROLE/NAME; a job of role ROLE lists NAME in task.secrets. At
 * submit every listed secret must exist, and its newest version is written
 * into the spec (task.secrets[i].version): the version is part of the task
 * config, so a new version of a secret is a new job version for every job
 * that uses it, rolled out by the update engine with the job's policy, as
 * a resubmitted spec would be. The newest SECRET_KEEP_VERSIONS versions are
 * kept, so that a rollback finds the value its tasks had.
 *
 * Record: secrets/ROLE/NAME = {"name", "versions": [{"version", "size",
 * "created_ms", "key_id", "sealed"}]}, oldest first. */
#include "server/cluster-internal.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"

#define SECRET_KEEP_VERSIONS 5

struct secret_version {
	int version;
	size_t size;
	int64_t created_ms;
	char *key_id;
	char *sealed;
};

struct secret {
	char *name;
	struct secret_version *v; /* oldest first; the newest last */
	size_t nv;
};

static void secret_free(struct secret *s)
{
	if (!s)
		return;
	for (size_t i = 0; i < s->nv; i++) {
		free(s->v[i].key_id);
		free(s->v[i].sealed);
	}
	free(s->v);
	free(s->name);
	free(s);
}

void secrets_release(struct cluster *c)
{
	size_t it = 0;
	void *v;
	while (hmap_next(&c->secrets, &it, NULL, &v))
		secret_free(v);
	hmap_release(&c->secrets);
}

static const struct secret_version *secret_newest(const struct secret *s)
{
	return s && s->nv ? &s->v[s->nv - 1] : NULL;
}

/* ---- the record ---- */

static void persist_secret(struct cluster *c, const struct secret *s)
{
	json_t *vs = json_array();
	for (size_t i = 0; i < s->nv; i++)
		json_array_append_new(vs,
				      json_pack("{s:i,s:I,s:I,s:s,s:s}", "version", s->v[i].version,
						"size", (json_int_t)s->v[i].size, "created_ms",
						(json_int_t)s->v[i].created_ms, "key_id",
						s->v[i].key_id, "sealed", s->v[i].sealed));
	json_t *o = json_pack("{s:s,s:o}", "name", s->name, "versions", vs);
	char *txt = json_dumps(o, JSON_COMPACT);
	char *key = xasprintf("secrets/%s", s->name);
	store_batch_put(c->pending, key, txt, strlen(txt));
	c->changes++;
	free(key);
	free(txt);
	json_decref(o);
}

int secret_record_apply(struct cluster *c, const char *key, const char *value, size_t len)
{
	const char *name = key + strlen("secrets/");
	struct berr err = {0};
	json_t *o = json_loadb(value, len, 0, NULL);
	json_t *vs = json_object_get(o, "versions");
	if (secret_name_check(name, &err) < 0 || !json_is_array(vs)) {
		log_warn("record '%s' dropped: not a secret record", key);
		json_decref(o);
		return APPLIED;
	}
	struct secret *s = xcalloc(1, sizeof *s);
	s->name = xstrdup(name);
	s->v = xcalloc(json_array_size(vs) + 1, sizeof *s->v);
	size_t i;
	json_t *e;
	json_array_foreach(vs, i, e)
	{
		json_t *ver = json_object_get(e, "version"), *size = json_object_get(e, "size");
		json_t *at = json_object_get(e, "created_ms");
		const char *kid = json_string_value(json_object_get(e, "key_id"));
		const char *sealed = json_string_value(json_object_get(e, "sealed"));
		if (!json_is_integer(ver) || json_integer_value(ver) < 1 ||
		    json_integer_value(ver) > INT_MAX || !json_is_integer(size) ||
		    json_integer_value(size) < 0 || !kid || !sealed ||
		    (s->nv && json_integer_value(ver) <= s->v[s->nv - 1].version))
			continue;
		struct secret_version *sv = &s->v[s->nv++];
		sv->version = (int)json_integer_value(ver);
		sv->size = (size_t)json_integer_value(size);
		sv->created_ms = json_is_integer(at) ? (int64_t)json_integer_value(at) : 0;
		sv->key_id = xstrdup(kid);
		sv->sealed = xstrdup(sealed);
	}
	json_decref(o);
	secret_free(hmap_put(&c->secrets, name, s));
	return APPLIED;
}

void secret_record_delete(struct cluster *c, const char *key)
{
	secret_free(hmap_del(&c->secrets, key + strlen("secrets/")));
}

/* ---- jobs that use secrets ---- */

static char *full_name(const struct job_spec *spec, const char *name)
{
	return xasprintf("%s/%s", spec->role, name);
}

int job_secrets_resolve(struct cluster *c, struct job_spec *spec, struct berr *err)
{
	for (size_t i = 0; i < spec->task.nsecrets; i++) {
		struct secret_ref *r = &spec->task.secrets[i];
		char *full = full_name(spec, r->name);
		const struct secret_version *v = secret_newest(hmap_get(&c->secrets, full));
		if (!v) {
			berr_set(
			    err, 400,
			    "task.secrets[%zu].name: secret '%s' does not exist (create it with "
			    "'berth secret create %s FILE'; a job uses only its role's secrets)",
			    i, full, full);
			free(full);
			return -1;
		}
		r->version = v->version;
		free(full);
	}
	return 0;
}

static bool spec_uses(const struct job_spec *spec, const char *role, const char *name)
{
	if (!spec || strcmp(spec->role, role))
		return false;
	for (size_t i = 0; i < spec->task.nsecrets; i++)
		if (!strcmp(spec->task.secrets[i].name, name))
			return true;
	return false;
}

/* The current version of every live job of the role that lists the secret. */
static struct job **jobs_using(struct cluster *c, const char *full, size_t *n)
{
	const char *slash = strchr(full, '/');
	char *role = xstrndup(full, (size_t)(slash - full));
	struct job **out = NULL;
	*n = 0;
	size_t it = 0, cap = 0;
	void *v;
	while (hmap_next(&c->jobs, &it, NULL, &v)) {
		struct job *j = v;
		const struct job_version *jv = job_version_get(j, j->version);
		if (j->killed || !jv || !spec_uses(jv->spec, role, slash + 1))
			continue;
		if (*n == cap) {
			cap = cap ? 2 * cap : 4;
			out = xrealloc(out, cap * sizeof *out);
		}
		out[(*n)++] = j;
	}
	free(role);
	return out;
}

/* ---- commands ---- */

int cluster_secret_next_version(const struct cluster *c, const char *name)
{
	const struct secret_version *v = secret_newest(hmap_get(&c->secrets, name));
	return v ? v->version + 1 : 1;
}

uint64_t cluster_secret_put(struct cluster *c, const char *name, int version, const char *sealed,
			    const char *key_id, size_t size, json_t **reply, struct berr *err)
{
	*reply = NULL;
	if (version != cluster_secret_next_version(c, name)) {
		berr_set(err, 409, "secret '%s' changed meanwhile: create it again", name);
		return 0;
	}
	struct secret *s = hmap_get(&c->secrets, name);
	if (!s) {
		s = xcalloc(1, sizeof *s);
		s->name = xstrdup(name);
		hmap_put(&c->secrets, name, s);
	}
	if (s->nv == SECRET_KEEP_VERSIONS) {
		free(s->v[0].key_id);
		free(s->v[0].sealed);
		memmove(&s->v[0], &s->v[1], (s->nv - 1) * sizeof *s->v);
		s->nv--;
	}
	s->v = xrealloc(s->v, (s->nv + 1) * sizeof *s->v);
	s->v[s->nv++] = (struct secret_version){.version = version,
						.size = size,
						.created_ms = time_now_ms(),
						.key_id = xstrdup(key_id),
						.sealed = xstrdup(sealed)};
	persist_secret(c, s);
	/* Every job that uses it gets a new version: a rolling update. */
	json_t *rolled = json_array();
	size_t n;
	struct job **jobs = jobs_using(c, name, &n);
	for (size_t i = 0; i < n; i++) {
		struct job *j = jobs[i];
		const struct job_version *jv = job_version_get(j, j->version);
		struct job_spec *spec = NULL;
		struct berr e = {0};
		struct submit_result res;
		if (spec_parse_json(jv->json, &spec, &e) < 0 ||
		    !cluster_job_submit(c, spec, &res, &e)) {
			log_warn("secret %s version %d: job %s not updated: %s", name, version,
				 j->key, e.msg);
			continue;
		}
		log_info("secret %s version %d: job %s rolls to version %d", name, version, j->key,
			 res.version);
		json_array_append_new(
		    rolled, json_pack("{s:s,s:i}", "job", j->key, "version", res.version));
	}
	free(jobs);
	*reply = json_pack("{s:s,s:i,s:I,s:o}", "name", name, "version", version, "size",
			   (json_int_t)size, "jobs", rolled);
	return cluster_touched(c);
}

uint64_t cluster_secret_delete(struct cluster *c, const char *name, struct berr *err)
{
	struct secret *s = hmap_get(&c->secrets, name);
	if (!s) {
		berr_set(err, 404, "secret '%s' not found", name);
		return 0;
	}
	size_t n;
	struct job **jobs = jobs_using(c, name, &n);
	if (n) {
		berr_set(err, 409,
			 "secret '%s' is used by job '%s'%s: remove it from the job's "
			 "task.secrets first",
			 name, jobs[0]->key, n > 1 ? " and others" : "");
		free(jobs);
		return 0;
	}
	free(jobs);
	char *key = xasprintf("secrets/%s", name);
	store_batch_delete(c->pending, key);
	c->changes++;
	free(key);
	secret_free(hmap_del(&c->secrets, name));
	return cluster_touched(c);
}

static int cmp_name(const void *a, const void *b)
{
	return strcmp((*(struct secret *const *)a)->name, (*(struct secret *const *)b)->name);
}

json_t *cluster_secrets_json(struct cluster *c, const char *role)
{
	size_t n = 0, it = 0;
	void *v;
	struct secret **all = xcalloc(c->secrets.count + 1, sizeof *all);
	size_t rl = role ? strlen(role) : 0;
	while (hmap_next(&c->secrets, &it, NULL, &v)) {
		struct secret *s = v;
		if (!role || (!strncmp(s->name, role, rl) && s->name[rl] == '/'))
			all[n++] = s;
	}
	qsort(all, n, sizeof *all, cmp_name);
	json_t *out = json_array();
	for (size_t i = 0; i < n; i++) {
		const struct secret *s = all[i];
		const struct secret_version *nv = secret_newest(s);
		json_t *vs = json_array();
		for (size_t k = 0; k < s->nv; k++)
			json_array_append_new(vs, json_pack("{s:i,s:I,s:I}", "version",
							    s->v[k].version, "size",
							    (json_int_t)s->v[k].size, "created_ms",
							    (json_int_t)s->v[k].created_ms));
		size_t nj;
		struct job **jobs = jobs_using(c, s->name, &nj);
		json_t *used = json_array();
		for (size_t k = 0; k < nj; k++)
			json_array_append_new(used, json_string(jobs[k]->key));
		free(jobs);
		char when[64];
		time_format_ms(nv ? nv->created_ms : 0, when, sizeof when);
		json_array_append_new(
		    out, json_pack("{s:s,s:i,s:I,s:I,s:s,s:o,s:o}", "name", s->name, "version",
				   nv ? nv->version : 0, "size", (json_int_t)(nv ? nv->size : 0),
				   "created_ms", (json_int_t)(nv ? nv->created_ms : 0), "created",
				   when, "versions", vs, "jobs", used));
	}
	free(all);
	return out;
}

json_t *cluster_task_secrets(struct cluster *c, const char *node, const char *task_id, json_t *only,
			     struct berr *err)
{
	struct task *t = task_id ? hmap_get(&c->tasks, task_id) : NULL;
	if (!t || !t->node || strcmp(t->node->name, node) || task_state_terminal(t->state)) {
		berr_set(err, 403, "forbidden: task '%s' is not placed on node '%s'",
			 task_id ? task_id : "", node);
		return NULL;
	}
	const struct job_spec *spec = task_spec_of(t);
	if (!spec || !spec->task.nsecrets) {
		berr_set(err, 403, "forbidden: job '%s' of task '%s' uses no secrets", t->job->key,
			 t->id);
		return NULL;
	}
	for (size_t i = 0; json_is_array(only) && i < json_array_size(only); i++) {
		const char *want = json_string_value(json_array_get(only, i));
		if (!want || !spec_uses(spec, spec->role, want)) {
			berr_set(err, 403, "forbidden: job '%s' does not use secret '%s'",
				 t->job->key, want ? want : "(not a name)");
			return NULL;
		}
	}
	json_t *out = json_array();
	for (size_t i = 0; i < spec->task.nsecrets; i++) {
		const struct secret_ref *r = &spec->task.secrets[i];
		bool wanted = !json_is_array(only);
		for (size_t k = 0; !wanted && k < json_array_size(only); k++)
			wanted = !strcmp(json_string_value(json_array_get(only, k)), r->name);
		if (!wanted)
			continue;
		char *full = full_name(spec, r->name);
		const struct secret *s = hmap_get(&c->secrets, full);
		const struct secret_version *v = NULL;
		for (size_t k = 0; s && k < s->nv; k++)
			if (s->v[k].version == r->version)
				v = &s->v[k];
		if (!v) {
			berr_set(err, 409,
				 "secret '%s' version %d is not kept any more (removed, or more "
				 "than %d newer versions)",
				 full, r->version, SECRET_KEEP_VERSIONS);
			free(full);
			json_decref(out);
			return NULL;
		}
		json_array_append_new(out, json_pack("{s:s,s:s,s:s,s:i,s:s,s:s}", "name", r->name,
						     "full_name", full, "path", r->path, "version",
						     v->version, "key_id", v->key_id, "sealed",
						     v->sealed));
		free(full);
	}
	return out;
}
