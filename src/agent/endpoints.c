/* endpoints.c - the agent's endpoints table (endpoints.h): an immutable
 * snapshot per version, swapped under a write lock; readers hold the read
 * lock while they look. */
#include "agent/endpoints.h"

#include <arpa/inet.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "core/hmap.h"

/* A job's endpoints; shared by the snapshots that did not change it (refs
 * is touched by the one writer thread only). */
struct ep_job {
	struct endpoint *eps;
	size_t n;
	int refs;
};

struct snapshot {
	struct hmap jobs; /* key -> struct ep_job* */
};

struct endpoints {
	pthread_rwlock_t lock;
	struct snapshot *snap;
	uint64_t version;
};

static void ep_job_free(struct ep_job *j)
{
	if (--j->refs > 0)
		return;
	for (size_t i = 0; i < j->n; i++) {
		struct endpoint *e = &j->eps[i];
		free((char *)e->task);
		free((char *)e->node);
		free((char *)e->address);
		for (size_t k = 0; k < e->nports; k++)
			free(e->ports[k].name);
		free((struct endpoint_port *)e->ports);
	}
	free(j->eps);
	free(j);
}

static void snapshot_free(struct snapshot *s)
{
	if (!s)
		return;
	size_t it = 0;
	void *v;
	while (hmap_next(&s->jobs, &it, NULL, &v))
		ep_job_free(v);
	hmap_release(&s->jobs);
	free(s);
}

struct endpoints *endpoints_new(void)
{
	struct endpoints *t = xcalloc(1, sizeof *t);
	pthread_rwlock_init(&t->lock, NULL);
	return t;
}

void endpoints_free(struct endpoints *t)
{
	if (!t)
		return;
	snapshot_free(t->snap);
	pthread_rwlock_destroy(&t->lock);
	free(t);
}

uint64_t endpoints_version(struct endpoints *t)
{
	pthread_rwlock_rdlock(&t->lock);
	uint64_t v = t->version;
	pthread_rwlock_unlock(&t->lock);
	return v;
}

/* One endpoint from its JSON; false when it is not well formed. */
static bool endpoint_parse(json_t *o, struct endpoint *e)
{
	json_t *inst = json_object_get(o, "instance");
	const char *task = json_string_value(json_object_get(o, "task"));
	const char *node = json_string_value(json_object_get(o, "node"));
	const char *addr = json_string_value(json_object_get(o, "address"));
	json_t *ports = json_object_get(o, "ports");
	if (!json_is_integer(inst) || json_integer_value(inst) < 0 ||
	    json_integer_value(inst) > 1000000 || !task || !addr ||
	    (ports && !json_is_object(ports)))
		return false;
	struct in_addr a;
	if (*addr && inet_pton(AF_INET, addr, &a) != 1)
		addr = ""; /* not an IPv4 literal: known, but not answerable */
	memset(e, 0, sizeof *e);
	e->instance = (int)json_integer_value(inst);
	e->task = xstrdup(task);
	e->node = xstrdup(node ? node : "");
	e->address = xstrdup(addr);
	size_t np = ports ? json_object_size(ports) : 0;
	struct endpoint_port *pp = np ? xcalloc(np, sizeof *pp) : NULL;
	const char *name;
	json_t *pv;
	json_object_foreach(ports, name, pv)
	{
		if (!json_is_integer(pv) || json_integer_value(pv) < 1 ||
		    json_integer_value(pv) > 65535 || !*name || strlen(name) > 63)
			continue;
		pp[e->nports].name = xstrdup(name);
		pp[e->nports].port = (int)json_integer_value(pv);
		e->nports++;
	}
	e->ports = pp;
	return true;
}

static int endpoint_cmp(const void *a, const void *b)
{
	const struct endpoint *x = a, *y = b;
	return x->instance < y->instance ? -1 : x->instance > y->instance;
}

/* One job's endpoints from its JSON array; NULL when it is not one. */
static struct ep_job *ep_job_parse(json_t *arr, size_t *skipped)
{
	if (!json_is_array(arr))
		return NULL;
	struct ep_job *j = xcalloc(1, sizeof *j);
	j->refs = 1;
	size_t n = json_array_size(arr);
	j->eps = n ? xcalloc(n, sizeof *j->eps) : NULL;
	for (size_t i = 0; i < n; i++)
		if (endpoint_parse(json_array_get(arr, i), &j->eps[j->n]))
			j->n++;
		else
			(*skipped)++;
	if (j->n > 1)
		qsort(j->eps, j->n, sizeof *j->eps, endpoint_cmp);
	return j;
}

/* Put job key's entry (parsed from arr; JSON null: none) into s. */
static void snapshot_set(struct snapshot *s, const char *key, json_t *arr, size_t *skipped)
{
	struct ep_job *old = NULL;
	if (strlen(key) >= ENDPOINT_KEY_MAX) {
		(*skipped)++;
		return;
	}
	if (json_is_null(arr)) {
		old = hmap_del(&s->jobs, key);
	} else {
		struct ep_job *j = ep_job_parse(arr, skipped);
		if (!j) {
			(*skipped)++;
			return;
		}
		old = hmap_put(&s->jobs, key, j);
	}
	if (old)
		ep_job_free(old);
}

static void swap_in(struct endpoints *t, struct snapshot *s, uint64_t version);

int endpoints_replace(struct endpoints *t, uint64_t version, json_t *table, struct berr *err)
{
	if (!json_is_object(table))
		return berr_set(err, 400, "endpoints: expected an object of jobs");
	struct snapshot *s = xcalloc(1, sizeof *s);
	hmap_init(&s->jobs);
	size_t skipped = 0;
	const char *key;
	json_t *arr;
	json_object_foreach(table, key, arr)
	{
		if (json_is_null(arr))
			skipped++;
		else
			snapshot_set(s, key, arr, &skipped);
	}
	swap_in(t, s, version);
	if (skipped)
		berr_set(err, 0, "endpoints: %zu malformed entries skipped", skipped);
	return 0;
}

int endpoints_apply_delta(struct endpoints *t, uint64_t base, uint64_t version, json_t *delta,
			  struct berr *err)
{
	if (!json_is_object(delta))
		return berr_set(err, 400, "endpoints: expected an object of jobs");
	/* The watch thread is the only writer: the table cannot move between
	 * this look and the swap. */
	pthread_rwlock_rdlock(&t->lock);
	bool at_base = t->snap && t->version == base;
	pthread_rwlock_unlock(&t->lock);
	if (!at_base)
		return 1;
	struct snapshot *s = xcalloc(1, sizeof *s);
	hmap_init(&s->jobs);
	size_t it = 0;
	const char *key;
	void *v;
	while (hmap_next(&t->snap->jobs, &it, &key, &v)) {
		((struct ep_job *)v)->refs++;
		hmap_put(&s->jobs, key, v);
	}
	size_t skipped = 0;
	json_t *arr;
	json_object_foreach(delta, key, arr) snapshot_set(s, key, arr, &skipped);
	swap_in(t, s, version);
	if (skipped)
		berr_set(err, 0, "endpoints: %zu malformed entries skipped", skipped);
	return 0;
}

void endpoints_invalidate(struct endpoints *t)
{
	pthread_rwlock_wrlock(&t->lock);
	t->version = 0;
	pthread_rwlock_unlock(&t->lock);
}

static void swap_in(struct endpoints *t, struct snapshot *s, uint64_t version)
{
	pthread_rwlock_wrlock(&t->lock);
	struct snapshot *old = t->snap;
	t->snap = s;
	t->version = version;
	pthread_rwlock_unlock(&t->lock);
	snapshot_free(old);
}

int endpoints_each(struct endpoints *t, const char *key,
		   void (*fn)(void *ud, const char *key, const struct endpoint *e), void *ud)
{
	pthread_rwlock_rdlock(&t->lock);
	struct ep_job *j = t->snap ? hmap_get(&t->snap->jobs, key) : NULL;
	int n = -1;
	if (j) {
		n = (int)j->n;
		for (size_t i = 0; i < j->n; i++)
			fn(ud, key, &j->eps[i]);
	}
	pthread_rwlock_unlock(&t->lock);
	return n;
}

void endpoints_each_job(struct endpoints *t,
			void (*fn)(void *ud, const char *key, const struct endpoint *eps, size_t n),
			void *ud)
{
	pthread_rwlock_rdlock(&t->lock);
	if (t->snap) {
		size_t it = 0;
		const char *key;
		void *v;
		while (hmap_next(&t->snap->jobs, &it, &key, &v)) {
			struct ep_job *j = v;
			fn(ud, key, j->eps, j->n);
		}
	}
	pthread_rwlock_unlock(&t->lock);
}

int endpoint_port(const struct endpoint *e, const char *name)
{
	for (size_t i = 0; i < e->nports; i++)
		if (!strcmp(e->ports[i].name, name))
			return e->ports[i].port;
	return -1;
}
