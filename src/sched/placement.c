/* placement.c - feasibility, scoring and bounded sampling for one
 * equivalence class (count tasks of one job with one config).
 *
 * Per call we keep a little state per node, all of it valid for this call
 * only:
 *  - status: the static part of feasibility (schedulable, value
 *    constraints), computed the first time a node is looked at. It does not
 *    change while the class is placed, so it is never recomputed.
 *  - slot: for each limit constraint, where the node's group counter lives
 *    (a per-value counter, or the node's own job_tasks for "host").
 *  - skip: a "next live position" forest (union-find with path compression)
 *    over the scan order. Placing only takes resources away and only raises
 *    counts, so a node found infeasible stays infeasible for the rest of the
 *    call; skipping it for good keeps a call O(n + count * sample_limit)
 *    even when most nodes are infeasible, and makes a pass that finds
 *    nothing the last one.
 * The O(n) part is a calloc of a few bytes per node (and, for limits on
 * attributes other than host, one pass over job_tasks), far cheaper than
 * scoring.
 */
#include "sched/placement.h"

#include <math.h> /* HUGE_VAL */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/util.h"

/* Repeated subtraction of 0.1 cpu leaves 0.09999999999999 where the
 * operator expects 0.1: compare with a tolerance far below any real
 * request. */
#define CPU_EPS 1e-9

/* Attribute keys and values are short: an inline byte loop beats a call
 * to strcmp, and this runs for every node a call looks at. */
static inline bool streq(const char *a, const char *b)
{
	while (*a && *a == *b)
		a++, b++;
	return *a == *b;
}

/* Checks in the order the reason reports them. */
enum check {
	CHK_OK = 0,
	CHK_SCHED,
	CHK_VALUE,
	CHK_CPU,
	CHK_MEM,
	CHK_DISK,
	CHK_PORTS,
	CHK_ADDRS,
	CHK_LIMIT,
};

/* ---- attribute value -> task count, for limit constraints ---- */

/* Open addressing over dense entries: an entry's index is stable across
 * growth, so nodes can keep it as their slot. Keys point into the nodes'
 * attributes (not owned): they outlive the call. */
struct vmap {
	uint32_t *tab; /* cap cells: dense index + 1, 0 = empty */
	size_t cap;    /* power of two */
	const char **keys;
	uint64_t *hashes;
	uint32_t *counts;
	size_t len, kcap;
};

static uint64_t str_hash(const char *s)
{
	uint64_t h = 1469598103934665603ULL; /* FNV-1a */
	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211ULL;
	return h;
}

static void vmap_rehash(struct vmap *m, size_t cap)
{
	free(m->tab);
	m->tab = xcalloc(cap, sizeof *m->tab);
	m->cap = cap;
	for (size_t k = 0; k < m->len; k++) {
		size_t c = m->hashes[k] & (cap - 1);
		while (m->tab[c])
			c = (c + 1) & (cap - 1);
		m->tab[c] = (uint32_t)k + 1;
	}
}

/* Index of key's counter, inserted at 0 when absent. */
static uint32_t vmap_slot(struct vmap *m, const char *key)
{
	uint64_t h = str_hash(key);
	if (m->cap) {
		for (size_t c = h & (m->cap - 1); m->tab[c]; c = (c + 1) & (m->cap - 1)) {
			uint32_t k = m->tab[c] - 1;
			if (m->hashes[k] == h && streq(m->keys[k], key))
				return k;
		}
	}
	if (m->len == m->kcap) {
		m->kcap = m->kcap ? m->kcap * 2 : 16;
		m->keys = xrealloc(m->keys, m->kcap * sizeof *m->keys);
		m->hashes = xrealloc(m->hashes, m->kcap * sizeof *m->hashes);
		m->counts = xrealloc(m->counts, m->kcap * sizeof *m->counts);
	}
	uint32_t k = (uint32_t)m->len++;
	m->keys[k] = key;
	m->hashes[k] = h;
	m->counts[k] = 0;
	/* Keep the load factor under 1/2; rehashing inserts the new entry too. */
	if (m->len * 2 > m->cap) {
		vmap_rehash(m, m->cap ? m->cap * 2 : 32);
	} else {
		size_t c = h & (m->cap - 1);
		while (m->tab[c])
			c = (c + 1) & (m->cap - 1);
		m->tab[c] = k + 1;
	}
	return k;
}

static void vmap_free(struct vmap *m)
{
	free(m->tab);
	free(m->keys);
	free(m->hashes);
	free(m->counts);
	memset(m, 0, sizeof *m);
}

/* ---- per-call context ---- */

struct limit {
	const struct constraint *c;
	bool host; /* counted by the node's own job_tasks */
	struct vmap map;
};

struct pctx {
	struct placement_node *nodes;
	size_t n, start;
	const struct resources *res;
	/* 1 / request per resource (0 when not requested): scoring multiplies
	 * instead of dividing, for every node every task looks at. */
	double inv_cpu, inv_mem, inv_disk, inv_ports;
	bool bridge; /* the task takes an address of the node's subnet */
	enum placement_strategy strategy;
	const struct constraint **values; /* value constraints, spec order */
	size_t nvalues;
	/* A driver other than exec needs a node that offers it: the implicit
	 * value constraint driver.NAME: "true" (agents advertise it). */
	struct constraint driver;
	char *driver_value[1];
	char driver_attr[64];
	struct limit *limits; /* limit constraints, spec order */
	size_t nlimits;
	uint8_t *status; /* per node: 0 unknown, 1 static ok, 2 static fail */
	int32_t *slot;	 /* [node * nlimits + l]: vmap index (0 for host), -1 no attribute */
};

struct score {
	uint32_t prim; /* SPREAD: job_tasks; BINPACK: 0 */
	double sec;    /* smaller is better */
};

static const char *node_attr(const struct placement_node *nd, const char *key)
{
	for (size_t k = 0; k < nd->nattributes; k++) {
		const char *a = nd->attributes[k].key;
		if (a && streq(a, key))
			return nd->attributes[k].value;
	}
	return NULL;
}

static bool value_ok(const struct placement_node *nd, const struct constraint *c)
{
	const char *v = node_attr(nd, c->attribute);
	bool match = false;
	for (size_t k = 0; v && k < c->nvalues && !match; k++)
		match = c->values[k] && streq(c->values[k], v);
	/* A missing attribute never matches: fails "rack: r1", passes "rack: !r3". */
	return c->negated ? !match : match;
}

/* Schedulable and value constraints; on success also resolves the node's
 * limit slots (done here so it happens once per node per call). */
static enum check static_check(struct pctx *x, size_t i, size_t *which)
{
	const struct placement_node *nd = &x->nodes[i];
	if (!nd->schedulable)
		return CHK_SCHED;
	for (size_t k = 0; k < x->nvalues; k++) {
		if (!value_ok(nd, x->values[k])) {
			*which = k;
			return CHK_VALUE;
		}
	}
	for (size_t l = 0; l < x->nlimits; l++) {
		const char *v = node_attr(nd, x->limits[l].c->attribute);
		int32_t s = -1;
		if (v)
			s = x->limits[l].host ? 0 : (int32_t)vmap_slot(&x->limits[l].map, v);
		x->slot[i * x->nlimits + l] = s;
	}
	return CHK_OK;
}

/* The checks that change as tasks land. Only valid after static_check
 * succeeded for the node (the slots are set). */
static enum check dyn_check(const struct pctx *x, size_t i, size_t *which)
{
	const struct placement_node *nd = &x->nodes[i];
	const struct resources *r = x->res;
	if (nd->cpu_free + CPU_EPS < r->cpu)
		return CHK_CPU;
	if (nd->mem_free < r->memory)
		return CHK_MEM;
	if (nd->disk_free < r->disk)
		return CHK_DISK;
	if ((uint64_t)nd->ports_free < (uint64_t)r->nports)
		return CHK_PORTS;
	if (x->bridge && nd->addrs_free == 0)
		return CHK_ADDRS;
	for (size_t l = 0; l < x->nlimits; l++) {
		int32_t s = x->slot[i * x->nlimits + l];
		const struct limit *lim = &x->limits[l];
		int64_t have = s < 0 ? 0 : lim->host ? nd->job_tasks : lim->map.counts[s];
		if (s < 0 || have >= (int64_t)lim->c->limit) {
			*which = l;
			return CHK_LIMIT;
		}
	}
	return CHK_OK;
}

static bool feasible(struct pctx *x, size_t i)
{
	size_t which;
	if (!x->status[i])
		x->status[i] = static_check(x, i, &which) == CHK_OK ? 1 : 2;
	return x->status[i] == 1 && dyn_check(x, i, &which) == CHK_OK;
}

/* Not fmin(): that would need libm for a two-line comparison. */
static double dmin(double a, double b)
{
	return a < b ? a : b;
}

/* How many more tasks of this shape still fit after placing one: the
 * per-resource free amount normalised by the request, taking the tightest
 * resource. We only know free amounts (not capacity), and this measure is
 * dimensionless, so cpu and memory weigh the same. */
static struct score node_score(const struct pctx *x, size_t i)
{
	const struct placement_node *nd = &x->nodes[i];
	const struct resources *r = x->res;
	double h = HUGE_VAL;
	if (x->inv_cpu > 0)
		h = dmin(h, (nd->cpu_free - r->cpu) * x->inv_cpu);
	if (x->inv_mem > 0)
		h = dmin(h, (double)(nd->mem_free - r->memory) * x->inv_mem);
	if (x->inv_disk > 0)
		h = dmin(h, (double)(nd->disk_free - r->disk) * x->inv_disk);
	if (x->inv_ports > 0)
		h = dmin(h, ((double)nd->ports_free - (double)r->nports) * x->inv_ports);
	if (x->strategy == PLACE_SPREAD)
		return (struct score){nd->job_tasks, -h};
	return (struct score){0, h};
}

/* a at scan position pa beats b at pb: better score, then earlier position
 * (positions count from start_offset, so ties are deterministic). */
static bool better(struct score a, size_t pa, struct score b, size_t pb)
{
	if (a.prim != b.prim)
		return a.prim < b.prim;
	if (a.sec != b.sec)
		return a.sec < b.sec;
	return pa < pb;
}

static void place_on(struct pctx *x, size_t i)
{
	struct placement_node *nd = &x->nodes[i];
	const struct resources *r = x->res;
	nd->cpu_free -= r->cpu;
	if (nd->cpu_free < 0)
		nd->cpu_free = 0; /* a CPU_EPS overshoot */
	nd->mem_free -= r->memory;
	nd->disk_free -= r->disk;
	nd->ports_free -= (uint32_t)r->nports;
	if (x->bridge && nd->addrs_free != UINT32_MAX)
		nd->addrs_free--;
	nd->job_tasks++;
	for (size_t l = 0; l < x->nlimits; l++)
		if (!x->limits[l].host)
			x->limits[l].map.counts[x->slot[i * x->nlimits + l]]++;
}

static size_t pos_of(const struct pctx *x, size_t i)
{
	return (i + x->n - x->start) % x->n;
}

static size_t node_at(const struct pctx *x, size_t p)
{
	return (x->start + p) % x->n;
}

/* ---- the reason ---- */

static void add_count(struct sbuf *sb, size_t v)
{
	char d[32];
	int len = snprintf(d, sizeof d, "%zu", v);
	for (int k = 0; k < len; k++) {
		if (k && (len - k) % 3 == 0)
			sbuf_add(sb, ",", 1);
		sbuf_add(sb, d + k, 1);
	}
	sbuf_adds(sb, v == 1 ? " node" : " nodes");
}

static void add_part(struct sbuf *sb, const char *what, size_t count)
{
	if (!count)
		return;
	if (sb->len)
		sbuf_adds(sb, "; ");
	sbuf_adds(sb, what);
	sbuf_adds(sb, " on ");
	add_count(sb, count);
}

/* Called when no node can take the next task: count every node by its
 * first failing check, in the fixed order. */
static char *build_reason(struct pctx *x)
{
	size_t nsched = 0, ncpu = 0, nmem = 0, ndisk = 0, nports = 0, naddrs = 0;
	size_t *nval = xcalloc(x->nvalues, sizeof *nval);
	size_t *nlim = xcalloc(x->nlimits, sizeof *nlim);
	for (size_t i = 0; i < x->n; i++) {
		size_t which = 0;
		enum check c = static_check(x, i, &which);
		if (c == CHK_OK)
			c = dyn_check(x, i, &which);
		switch (c) {
		case CHK_OK:
			break;
		case CHK_SCHED:
			nsched++;
			break;
		case CHK_VALUE:
			nval[which]++;
			break;
		case CHK_CPU:
			ncpu++;
			break;
		case CHK_MEM:
			nmem++;
			break;
		case CHK_DISK:
			ndisk++;
			break;
		case CHK_PORTS:
			nports++;
			break;
		case CHK_ADDRS:
			naddrs++;
			break;
		case CHK_LIMIT:
			nlim[which]++;
			break;
		}
	}
	struct sbuf sb, what;
	sbuf_init(&sb);
	sbuf_init(&what);
	add_part(&sb, "node not schedulable (draining or down)", nsched);
	for (size_t k = 0; k < x->nvalues; k++) {
		const struct constraint *c = x->values[k];
		what.len = 0;
		if (c == &x->driver) {
			sbuf_addf(&what, "driver %s not offered", c->attribute + 7);
			add_part(&sb, what.buf, nval[k]);
			continue;
		}
		sbuf_addf(&what, "value constraint %s:%s", c->attribute, c->negated ? "!" : "");
		for (size_t v = 0; v < c->nvalues; v++)
			sbuf_addf(&what, "%s%s", v ? "," : "", c->values[v] ? c->values[v] : "");
		add_part(&sb, what.buf, nval[k]);
	}
	add_part(&sb, "insufficient cpu", ncpu);
	add_part(&sb, "insufficient memory", nmem);
	add_part(&sb, "insufficient disk", ndisk);
	add_part(&sb, "insufficient ports", nports);
	add_part(&sb, "no free address in the node's subnet", naddrs);
	for (size_t l = 0; l < x->nlimits; l++) {
		what.len = 0;
		sbuf_addf(&what, "limit constraint %s:limit:%d", x->limits[l].c->attribute,
			  x->limits[l].c->limit);
		add_part(&sb, what.buf, nlim[l]);
	}
	if (!sb.len) /* cannot happen: the caller saw no feasible node */
		sbuf_adds(&sb, "no node can take the task");
	sbuf_release(&what);
	free(nval);
	free(nlim);
	return sbuf_detach(&sb);
}

/* ---- exact mode: a heap over all feasible nodes ---- */

/* Only the node a task lands on changes its score; other nodes can only
 * become infeasible (limit counts shared with it), which is checked when
 * they reach the top. So a heap keyed by score gives the exact best for
 * every task in O(log n) after an O(n) build. */
struct hent {
	double sec;
	uint32_t prim;
	uint32_t pos;
};

static bool hless(const struct hent *a, const struct hent *b)
{
	return better((struct score){a->prim, a->sec}, a->pos, (struct score){b->prim, b->sec},
		      b->pos);
}

static void sift_down(struct hent *h, size_t len, size_t k)
{
	struct hent e = h[k];
	for (;;) {
		size_t c = 2 * k + 1;
		if (c >= len)
			break;
		if (c + 1 < len && hless(&h[c + 1], &h[c]))
			c++;
		if (!hless(&h[c], &e))
			break;
		h[k] = h[c];
		k = c;
	}
	h[k] = e;
}

static size_t place_exact(struct pctx *x, size_t count, int *out, size_t *last)
{
	struct hent *h = xmalloc(x->n * sizeof *h);
	size_t len = 0, placed = 0;
	for (size_t p = 0; p < x->n; p++) {
		size_t i = node_at(x, p);
		if (!feasible(x, i))
			continue;
		struct score s = node_score(x, i);
		h[len++] = (struct hent){s.sec, s.prim, (uint32_t)p};
	}
	for (size_t k = len / 2; k-- > 0;)
		sift_down(h, len, k);
	for (; placed < count; placed++) {
		while (len && !feasible(x, node_at(x, h[0].pos))) {
			h[0] = h[--len];
			sift_down(h, len, 0);
		}
		if (!len)
			break;
		size_t i = node_at(x, h[0].pos);
		place_on(x, i);
		out[placed] = (int)i;
		*last = i;
		struct score s = node_score(x, i);
		h[0].prim = s.prim;
		h[0].sec = s.sec;
		sift_down(h, len, 0);
	}
	free(h);
	return placed;
}

/* ---- sampled mode ---- */

/* skip[p] == 0: position p may still be feasible; otherwise it is dead and
 * skip[p] leads towards the next live one. skip[n] == 0 is the end. */
static size_t skip_find(uint32_t *skip, size_t p)
{
	size_t r = p;
	while (skip[r])
		r = skip[r];
	while (skip[p] && skip[p] != r) {
		size_t next = skip[p];
		skip[p] = (uint32_t)r;
		p = next;
	}
	return r;
}

static size_t place_sampled(struct pctx *x, size_t count, size_t k, int *out, size_t *cursor_out)
{
	uint32_t *skip = xcalloc(x->n + 1, sizeof *skip);
	size_t cursor = 0, placed = 0;
	long prev = -1;
	for (; placed < count; placed++) {
		long best = -1;
		struct score bs = {0, 0};
		size_t bp = 0;
		/* The previous winner is the best node we know and only its own
		 * score moved: keeping it a candidate lets BINPACK fill a node
		 * instead of hopping to the best of each new window. */
		if (prev >= 0) {
			if (feasible(x, (size_t)prev)) {
				best = prev;
				bs = node_score(x, (size_t)prev);
				bp = pos_of(x, (size_t)prev);
			} else {
				skip[pos_of(x, (size_t)prev)] =
				    (uint32_t)pos_of(x, (size_t)prev) + 1;
			}
		}
		/* Scan [cursor, n) then [0, cursor): one full circle at most. */
		size_t seen = 0, lo[2] = {cursor, 0}, hi[2] = {x->n, cursor};
		for (int r = 0; r < 2 && seen < k; r++) {
			size_t p = lo[r], q;
			while (seen < k && (q = skip_find(skip, p)) < hi[r]) {
				p = q + 1;
				size_t i = node_at(x, q);
				if ((long)i == prev)
					continue;
				if (!feasible(x, i)) {
					skip[q] = (uint32_t)q + 1;
					continue;
				}
				seen++;
				struct score s = node_score(x, i);
				if (best < 0 || better(s, q, bs, bp)) {
					best = (long)i;
					bs = s;
					bp = q;
				}
			}
			if (seen >= k)
				cursor = p % x->n; /* the next task continues here */
		}
		if (best < 0)
			break; /* a full circle found nothing: nothing will fit the rest */
		place_on(x, (size_t)best);
		out[placed] = (int)best;
		prev = best;
	}
	*cursor_out = cursor;
	free(skip);
	return placed;
}

/* Set up x for placing tasks of job on nodes (release with pctx_release). */
static void pctx_init(struct pctx *x, struct placement_node *nodes, size_t nnodes,
		      const struct job_spec *job, size_t start_offset)
{
	const struct task_spec *ts = &job->task;
	*x = (struct pctx){
	    .nodes = nodes,
	    .n = nnodes,
	    .start = start_offset % nnodes,
	    .res = &ts->resources,
	    .strategy = job->placement,
	    .bridge = ts->network == NETWORK_BRIDGE,
	};
	const struct resources *r = x->res;
	x->inv_cpu = r->cpu > 0 ? 1.0 / r->cpu : 0;
	x->inv_mem = r->memory ? 1.0 / (double)r->memory : 0;
	x->inv_disk = r->disk ? 1.0 / (double)r->disk : 0;
	x->inv_ports = r->nports ? 1.0 / (double)r->nports : 0;
	x->values = xcalloc(ts->nconstraints + 1, sizeof *x->values);
	x->limits = xcalloc(ts->nconstraints + 1, sizeof *x->limits);
	if (ts->driver != DRIVER_EXEC) {
		snprintf(x->driver_attr, sizeof x->driver_attr, "driver.%s",
			 task_driver_name(ts->driver));
		x->driver_value[0] = "true";
		x->driver = (struct constraint){.attribute = x->driver_attr,
						.kind = CONSTRAINT_VALUE,
						.values = x->driver_value,
						.nvalues = 1};
		x->values[x->nvalues++] = &x->driver;
	}
	for (size_t k = 0; k < ts->nconstraints; k++) {
		const struct constraint *c = &ts->constraints[k];
		if (c->kind == CONSTRAINT_LIMIT) {
			struct limit *l = &x->limits[x->nlimits++];
			l->c = c;
			l->host = !strcmp(c->attribute, "host");
		} else {
			x->values[x->nvalues++] = c;
		}
	}
	x->status = xcalloc(nnodes, 1);
	x->slot = x->nlimits ? xmalloc(nnodes * x->nlimits * sizeof *x->slot) : NULL;
	/* Group counts must include tasks on every node, whatever its state
	 * (a draining node's tasks still run), so they are gathered up front;
	 * only nodes that hold tasks of the job cost a lookup. */
	for (size_t l = 0; l < x->nlimits; l++) {
		if (x->limits[l].host)
			continue;
		for (size_t i = 0; i < nnodes; i++) {
			if (!nodes[i].job_tasks)
				continue;
			const char *v = node_attr(&nodes[i], x->limits[l].c->attribute);
			if (!v)
				continue;
			/* the slot first: inserting may move counts */
			uint32_t s = vmap_slot(&x->limits[l].map, v);
			x->limits[l].map.counts[s] += nodes[i].job_tasks;
		}
	}
}

static void pctx_release(struct pctx *x)
{
	for (size_t l = 0; l < x->nlimits; l++)
		vmap_free(&x->limits[l].map);
	free(x->limits);
	free(x->values);
	free(x->status);
	free(x->slot);
}

void placement_place(struct placement_node *nodes, size_t nnodes,
		     const struct placement_request *req, struct placement_result *out)
{
	size_t count = req->count;
	memset(out, 0, sizeof *out);
	out->node_index = xmalloc((count ? count : 1) * sizeof *out->node_index);
	for (size_t t = 0; t < count; t++)
		out->node_index[t] = -1;
	out->next_offset = nnodes ? req->start_offset % nnodes : 0;
	if (!count)
		return;
	if (!nnodes) {
		out->reason = xstrdup("no nodes registered");
		return;
	}
	struct pctx x;
	pctx_init(&x, nodes, nnodes, req->job, req->start_offset);

	/* Sampling pays off only while the tasks together look at fewer nodes
	 * than there are: past that the exact heap costs less. */
	size_t k = req->sample_limit;
	if (k == 0 || count >= (nnodes + k - 1) / k) {
		size_t last = x.start ? x.start - 1 : nnodes - 1;
		out->placed = place_exact(&x, count, out->node_index, &last);
		out->next_offset = (last + 1) % nnodes;
	} else {
		size_t cursor = 0;
		out->placed = place_sampled(&x, count, k, out->node_index, &cursor);
		out->next_offset = node_at(&x, cursor);
	}
	if (out->placed < count)
		out->reason = build_reason(&x);
	pctx_release(&x);
}

void placement_eligible(struct placement_node *nodes, size_t nnodes, const struct job_spec *job,
			bool *out)
{
	if (!nnodes)
		return;
	struct pctx x;
	pctx_init(&x, nodes, nnodes, job, 0);
	for (size_t i = 0; i < nnodes; i++) {
		size_t which;
		out[i] = static_check(&x, i, &which) == CHK_OK;
		for (size_t l = 0; out[i] && l < x.nlimits; l++) {
			int32_t s = x.slot[i * x.nlimits + l];
			const struct limit *lim = &x.limits[l];
			int64_t have = s < 0	   ? 0
				       : lim->host ? nodes[i].job_tasks
						   : lim->map.counts[s];
			out[i] = s >= 0 && have < (int64_t)lim->c->limit;
		}
	}
	pctx_release(&x);
}

void placement_result_release(struct placement_result *r)
{
	if (!r)
		return;
	free(r->node_index);
	free(r->reason);
	r->node_index = NULL;
	r->reason = NULL;
	r->placed = 0;
}
