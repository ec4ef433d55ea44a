/* cluster_views.c - read-only views of the state: per job and per task as
 * JSON trees, and the large node and job lists as a snapshot taken under
 * the lock and written as text after it. */
#include "server/cluster-internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sched/ports.h"

static json_t *task_view(const struct task *t, bool history)
{
	json_t *o = json_pack("{s:i,s:s,s:s,s:s?,s:i,s:i,s:s}", "instance", t->instance, "id",
			      t->id, "state", task_state_name(t->state), "node",
			      t->node ? t->node->name : NULL, "pid", t->pid, "version", t->version,
			      "message", t->message ? t->message : "");
	if (!t->node)
		json_object_set_new(o, "node", json_null());
	if (t->ancestor)
		json_object_set_new(o, "ancestor", json_string(t->ancestor));
	if (t->exit_code >= 0)
		json_object_set_new(o, "exit_code", json_integer(t->exit_code));
	if (t->ports)
		json_object_set(o, "ports", t->ports);
	if (t->address) {
		char ip[16];
		json_object_set_new(o, "address", json_string(ip4_format(t->address, ip)));
	}
	if (t->node && t->node->addr && *t->node->addr)
		json_object_set_new(o, "agent_addr", json_string(t->node->addr));
	json_object_set_new(o, "created_ms", json_integer(t->created_ms));
	if (history) {
		json_t *ev = json_array();
		for (size_t i = 0; i < t->nevents; i++) {
			char ts[40];
			time_format_ms(t->events[i].time_ms, ts, sizeof ts);
			json_array_append_new(ev,
					      json_pack("{s:s,s:I,s:s,s:s}", "time", ts, "time_ms",
							(json_int_t)t->events[i].time_ms, "state",
							task_state_name(t->events[i].state),
							"message", t->events[i].message));
		}
		json_object_set_new(o, "events", ev);
	}
	return o;
}

static const char *job_outcome(const struct job *j)
{
	const struct job_version *jv = NULL;
	for (size_t i = 0; i < j->nversions; i++)
		if (j->versions[i].version == j->version)
			jv = &j->versions[i];
	if (j->killed)
		return "killing";
	if (!jv || jv->spec->type == JOB_SERVICE)
		return "running";
	if (jv->spec->type == JOB_CRON && !job_has_active(j))
		return "scheduled";
	bool all_done = true, failed = false;
	for (int i = 0; i < jv->spec->instances; i++) {
		if ((size_t)i >= j->ninstance_done || !j->instance_done[i]) {
			all_done = false;
			continue;
		}
		/* An instance done for good failed when its last task did. */
		for (size_t e = j->nended; e-- > 0;)
			if (j->ended[e]->instance == i) {
				if (j->ended[e]->state != TASK_FINISHED)
					failed = true;
				break;
			}
	}
	if (!all_done)
		return failed ? "failing" : "running";
	return failed ? "failed" : "finished";
}

json_t *cluster_job_status_json(const struct cluster *c, const char *key, bool all,
				struct berr *err)
{
	struct job *j = hmap_get(&c->jobs, key);
	if (!j) {
		berr_set(err, 404, "job '%s' not found", key);
		return NULL;
	}
	json_t *tasks = json_array();
	for (size_t i = 0; i < j->nactive; i++)
		if (j->active[i])
			json_array_append_new(tasks, task_view(j->active[i], true));
	if (all)
		for (size_t i = 0; i < j->nended; i++)
			json_array_append_new(tasks, task_view(j->ended[i], true));
	struct job_version *jv = job_version_get(j, j->version);
	json_t *o = json_pack("{s:s,s:i,s:i,s:s,s:s,s:O,s:o}", "job", j->key, "version", j->version,
			      "instances", jv ? jv->spec->instances : 0, "type",
			      jv && jv->spec->type == JOB_BATCH	 ? "batch"
			      : jv && jv->spec->type == JOB_CRON ? "cron"
								 : "service",
			      "status", job_outcome(j), "spec", jv ? jv->json : json_null(),
			      "tasks", tasks);
	if (j->cron_message)
		json_object_set_new(o, "message", json_string(j->cron_message));
	(void)c;
	return o;
}

/* CPU in the views: sums of fractions drift (1.05 - 0.35 - 0.7 is not 0). */
static double cpu_view(double v)
{
	if (!isfinite(v))
		return 0; /* JSON has no inf (a damaged node record) */
	if (fabs(v) > 1e12)
		return v;
	double r = round(v * 1e6) / 1e6;
	return r == 0 ? 0.0 : r; /* not -0.0 */
}

struct node_row {
	size_t name, id, addr, attrs; /* offsets in the arena; attrs: k\0v\0 pairs */
	size_t nattrs;
	enum node_state state;
	double cpu_total, cpu_used;
	uint64_t mem_total, mem_used, disk_total, disk_used;
	uint32_t ports_free;
	size_t ntasks;
	int64_t last_seen_ms_ago;
	int64_t backoff_until_ms; /* wall clock, 0: none */
	int flaps;
	int subnet; /* -1: none */
};

struct job_row {
	size_t key; /* offset in the arena */
	int instances, version;
	const char *status;
	uint32_t states[TASK_STATE_COUNT];
};

struct view_rows {
	bool jobs;
	struct cidr cluster_cidr; /* nodes: their subnets are in it */
	bool more;		  /* items past the page match too: "next" is set */
	struct sbuf arena;	  /* every string of the snapshot, NUL-terminated */
	void *rows;
	size_t n, cap;
};

static size_t arena_add(struct sbuf *a, const char *s)
{
	size_t off = a->len;
	sbuf_add(a, s ? s : "", strlen(s ? s : "") + 1);
	return off;
}

static void *rows_push(struct view_rows *r, size_t size)
{
	if (r->n == r->cap) {
		r->cap = r->cap ? r->cap * 2 : 256;
		r->rows = xrealloc(r->rows, r->cap * size);
	}
	void *row = (char *)r->rows + r->n++ * size;
	memset(row, 0, size);
	return row;
}

static struct view_rows *rows_new(bool jobs, const struct view_filter *f)
{
	struct view_rows *r = xcalloc(1, sizeof *r);
	r->jobs = jobs;
	sbuf_init(&r->arena);
	return r;
}

void view_rows_free(struct view_rows *r)
{
	if (!r)
		return;
	sbuf_release(&r->arena);
	free(r->rows);
	free(r);
}

static int cmp_node_name(const void *a, const void *b)
{
	return strcmp((*(struct node *const *)a)->name, (*(struct node *const *)b)->name);
}

static int cmp_job_key(const void *a, const void *b)
{
	return strcmp((*(struct job *const *)a)->key, (*(struct job *const *)b)->key);
}

/* The map's items sorted by name, rebuilt only after one came or went. */
static void index_refresh(struct name_index *ix, const struct hmap *m,
			  int (*cmp)(const void *, const void *))
{
	if (ix->items && ix->built_gen == ix->gen && ix->n == m->count)
		return;
	ix->items = xrealloc(ix->items, (m->count + 1) * sizeof *ix->items);
	ix->n = 0;
	size_t it = 0;
	void *v;
	while (hmap_next(m, &it, NULL, &v))
		ix->items[ix->n++] = v;
	qsort(ix->items, ix->n, sizeof *ix->items, cmp);
	ix->built_gen = ix->gen;
}

/* The first item of the index whose name is after `after`. */
static size_t index_start(const struct name_index *ix, const char *after, bool jobs)
{
	if (!after)
		return 0;
	size_t lo = 0, hi = ix->n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		const char *name = jobs ? ((struct job *)ix->items[mid])->key
					: ((struct node *)ix->items[mid])->name;
		if (strcmp(name, after) <= 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

struct view_rows *cluster_node_rows(struct cluster *c, const struct view_filter *f)
{
	struct view_rows *r = rows_new(false, f);
	r->cluster_cidr = c->cfg.cluster_cidr;
	int64_t mono = time_mono_ms(), now = time_now_ms();
	index_refresh(&c->node_index, &c->nodes, cmp_node_name);
	size_t limit = f && f->limit ? f->limit : SIZE_MAX;
	for (size_t i = index_start(&c->node_index, f ? f->after : NULL, false);
	     i < c->node_index.n; i++) {
		struct node *n = c->node_index.items[i];
		if (f && f->state >= 0 && (int)n->state != f->state)
			continue;
		if (r->n == limit) {
			r->more = true;
			break;
		}
		struct node_row *w = rows_push(r, sizeof *w);
		w->name = arena_add(&r->arena, n->name);
		w->id = arena_add(&r->arena, n->id);
		w->addr = arena_add(&r->arena, n->addr);
		w->attrs = r->arena.len;
		w->nattrs = n->nattrs;
		for (size_t i = 0; i < n->nattrs; i++) {
			arena_add(&r->arena, n->attrs[i].key);
			arena_add(&r->arena, n->attrs[i].value);
		}
		w->state = n->state;
		w->cpu_total = n->cpu_total;
		w->cpu_used = n->cpu_used;
		w->mem_total = n->mem_total;
		w->mem_used = n->mem_used;
		w->disk_total = n->disk_total;
		w->disk_used = n->disk_used;
		w->ports_free = port_pool_available(n->ports);
		w->ntasks = n->tasks.count;
		w->last_seen_ms_ago = liveness_since_heard(c->live, n->live, mono);
		if (n->in_backoff && n->backoff_until_mono > mono)
			w->backoff_until_ms = now + (n->backoff_until_mono - mono);
		w->flaps = n->flaps;
		w->subnet = n->subnet;
	}
	return r;
}

struct view_rows *cluster_job_rows(struct cluster *c, const struct view_filter *f)
{
	struct view_rows *r = rows_new(true, f);
	size_t rlen = f && f->role ? strlen(f->role) : 0;
	index_refresh(&c->job_index, &c->jobs, cmp_job_key);
	size_t limit = f && f->limit ? f->limit : SIZE_MAX;
	for (size_t i = index_start(&c->job_index, f ? f->after : NULL, true); i < c->job_index.n;
	     i++) {
		struct job *j = c->job_index.items[i];
		if (rlen && (strncmp(j->key, f->role, rlen) || j->key[rlen] != '/'))
			continue;
		if (r->n == limit) {
			r->more = true;
			break;
		}
		struct job_row *w = rows_push(r, sizeof *w);
		struct job_version *jv = job_version_get(j, j->version);
		w->key = arena_add(&r->arena, j->key);
		w->instances = jv ? jv->spec->instances : 0;
		w->version = j->version;
		w->status = job_outcome(j); /* a static string */
		for (size_t i = 0; i < j->nactive; i++)
			if (j->active[i] && (unsigned)j->active[i]->state < TASK_STATE_COUNT)
				w->states[j->active[i]->state]++;
	}
	return r;
}

static const char *row_name(const struct view_rows *r, size_t i)
{
	size_t off = r->jobs ? ((const struct job_row *)r->rows)[i].key
			     : ((const struct node_row *)r->rows)[i].name;
	return r->arena.buf + off;
}

/* A real as jansson writes it: always with a fraction or an exponent.
 * 15 digits print 0.1 as 0.1, but round the largest doubles up past
 * DBL_MAX (1.79769313486232e+308: not a number a JSON reader accepts, and
 * the whole view with it); those get the 17 digits that read back. */
static void sbuf_add_real(struct sbuf *sb, double v)
{
	char buf[40];
	if (!isfinite(v))
		v = 0.0;
	snprintf(buf, sizeof buf, "%.15g", v);
	if (!isfinite(strtod(buf, NULL)))
		snprintf(buf, sizeof buf, "%.17g", v);
	sbuf_adds(sb, buf);
	if (!strpbrk(buf, ".eEni"))
		sbuf_adds(sb, ".0");
}

static void render_node(struct sbuf *sb, const struct view_rows *r, const struct node_row *w)
{
	const char *a = r->arena.buf;
	sbuf_adds(sb, "{\"id\":");
	sbuf_add_json_str(sb, a + w->id);
	sbuf_adds(sb, ",\"name\":");
	sbuf_add_json_str(sb, a + w->name);
	sbuf_adds(sb, ",\"state\":\"");
	sbuf_adds(sb, node_state_name(w->state));
	sbuf_adds(sb, "\",\"attributes\":{");
	const char *p = a + w->attrs;
	for (size_t i = 0; i < w->nattrs; i++) {
		if (i)
			sbuf_adds(sb, ",");
		sbuf_add_json_str(sb, p);
		p += strlen(p) + 1;
		sbuf_adds(sb, ":");
		sbuf_add_json_str(sb, p);
		p += strlen(p) + 1;
	}
	sbuf_adds(sb, "},\"resources\":{\"cpu\":");
	sbuf_add_real(sb, w->cpu_total);
	sbuf_add_int_field(sb, ",\"memory\":", (long long)w->mem_total);
	sbuf_add_int_field(sb, ",\"disk\":", (long long)w->disk_total);
	sbuf_adds(sb, ",\"cpu_used\":");
	sbuf_add_real(sb, cpu_view(w->cpu_used));
	sbuf_add_int_field(sb, ",\"memory_used\":", (long long)w->mem_used);
	sbuf_add_int_field(sb, ",\"disk_used\":", (long long)w->disk_used);
	sbuf_adds(sb, ",\"cpu_free\":");
	sbuf_add_real(sb, cpu_view(w->cpu_total - w->cpu_used));
	sbuf_add_int_field(
	    sb, ",\"memory_free\":",
	    (long long)(w->mem_total > w->mem_used ? w->mem_total - w->mem_used : 0));
	sbuf_add_int_field(
	    sb, ",\"disk_free\":",
	    (long long)(w->disk_total > w->disk_used ? w->disk_total - w->disk_used : 0));
	sbuf_add_int_field(sb, ",\"ports_free\":", (long long)w->ports_free);
	sbuf_add_int_field(sb, ",\"tasks\":", (long long)w->ntasks);
	sbuf_adds(sb, "},\"addr\":");
	sbuf_add_json_str(sb, a + w->addr);
	sbuf_add_int_field(sb, ",\"last_seen_ms_ago\":", (long long)w->last_seen_ms_ago);
	sbuf_add_int_field(sb, ",\"flaps\":", w->flaps);
	if (w->subnet >= 0) {
		char sn[CIDR_TEXT_MAX];
		struct cidr net = cidr_subnet(&r->cluster_cidr, 24, (uint32_t)w->subnet);
		sbuf_adds(sb, ",\"subnet\":");
		sbuf_add_json_str(sb, cidr_format(&net, sn));
	}
	if (w->backoff_until_ms) {
		char ts[40];
		time_format_ms(w->backoff_until_ms, ts, sizeof ts);
		sbuf_add_int_field(sb, ",\"backoff_until_ms\":", (long long)w->backoff_until_ms);
		sbuf_adds(sb, ",\"backoff_until\":");
		sbuf_add_json_str(sb, ts);
		sbuf_addf(sb,
			  ",\"backoff_reason\":\"flapping: back from DOWN %d time%s; no new "
			  "tasks until then\"",
			  w->flaps, w->flaps == 1 ? "" : "s");
	} else {
		sbuf_adds(sb, ",\"backoff_until_ms\":null");
	}
	sbuf_adds(sb, "}");
}

static void render_job(struct sbuf *sb, const struct view_rows *r, const struct job_row *w)
{
	sbuf_adds(sb, "{\"job\":");
	sbuf_add_json_str(sb, r->arena.buf + w->key);
	sbuf_add_int_field(sb, ",\"instances\":", w->instances);
	sbuf_add_int_field(sb, ",\"version\":", w->version);
	sbuf_adds(sb, ",\"status\":");
	sbuf_add_json_str(sb, w->status);
	sbuf_adds(sb, ",\"states\":{");
	bool first = true;
	for (int s = 0; s < TASK_STATE_COUNT; s++) {
		if (!w->states[s])
			continue;
		sbuf_adds(sb, first ? "\"" : ",\"");
		first = false;
		sbuf_adds(sb, task_state_name((enum task_state)s));
		sbuf_add_int_field(sb, "\":", w->states[s]);
	}
	sbuf_adds(sb, "}}");
}

char *view_rows_render(struct view_rows *r, bool paged)
{
	size_t n = r->n; /* in name order already */
	struct sbuf sb;
	sbuf_init(&sb);
	if (paged)
		sbuf_adds(&sb, r->jobs ? "{\"jobs\":[" : "{\"nodes\":[");
	else
		sbuf_adds(&sb, "[");
	for (size_t i = 0; i < n; i++) {
		if (i)
			sbuf_adds(&sb, ",");
		if (r->jobs)
			render_job(&sb, r, &((struct job_row *)r->rows)[i]);
		else
			render_node(&sb, r, &((struct node_row *)r->rows)[i]);
	}
	sbuf_adds(&sb, "]");
	if (paged) {
		sbuf_adds(&sb, ",\"next\":");
		if (r->more && n)
			sbuf_add_json_str(&sb, row_name(r, n - 1));
		else
			sbuf_adds(&sb, "null");
		sbuf_adds(&sb, "}");
	}
	sbuf_adds(&sb, "\n");
	view_rows_free(r);
	return sbuf_detach(&sb);
}

static json_t *rows_json(struct view_rows *r)
{
	char *text = view_rows_render(r, false);
	json_t *j = json_loads(text, 0, NULL);
	free(text);
	return j ? j : json_array();
}

json_t *cluster_job_list_json(struct cluster *c)
{
	return rows_json(cluster_job_rows(c, NULL));
}

json_t *cluster_node_list_json(struct cluster *c)
{
	return rows_json(cluster_node_rows(c, NULL));
}

struct task *cluster_find_task(const struct cluster *c, const char *ref)
{
	struct task *t = hmap_get(&c->tasks, ref);
	if (t)
		return t;
	const char *slash = strrchr(ref, '/');
	if (!slash)
		return NULL;
	int64_t inst;
	if (parse_int64(slash + 1, &inst) < 0 || inst < 0)
		return NULL;
	char *key = xstrndup(ref, (size_t)(slash - ref));
	struct job *j = hmap_get(&c->jobs, key);
	free(key);
	if (!j)
		return NULL;
	if ((size_t)inst < j->nactive && j->active[inst])
		return j->active[inst];
	for (size_t e = j->nended; e-- > 0;)
		if (j->ended[e]->instance == inst)
			return j->ended[e];
	return NULL;
}

json_t *cluster_task_json(const struct cluster *c, const char *id, struct berr *err)
{
	struct task *t = cluster_find_task(c, id);
	if (!t) {
		berr_set(err, 404, "task '%s' not found", id);
		return NULL;
	}
	json_t *o = task_view(t, true);
	json_object_set_new(o, "job", json_string(t->job->key));
	return o;
}
