/* preemption.c - victim selection (see preemption.h for the rules). */
#include "sched/preemption.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "core/util.h"

/* As placement.c: repeated subtraction of 0.1 cpu must still fit 0.1. */
#define CPU_EPS 1e-9

bool preempt_may(const struct preempt_need *need, const struct preempt_task *victim)
{
	if (victim->tier != TIER_PREEMPTIBLE)
		return false; /* production is never preempted */
	if (need->tier == TIER_PREFERRED)
		return true;
	return victim->priority < need->priority;
}

bool preempt_cost_better(const struct preempt_cost *a, const struct preempt_cost *b)
{
	if ((a->nvictims == 0) != (b->nvictims == 0))
		return a->nvictims == 0;
	if (a->max_priority != b->max_priority)
		return a->max_priority < b->max_priority;
	if (a->nvictims != b->nvictims)
		return a->nvictims < b->nvictims;
	return a->sum_priority < b->sum_priority;
}

/* What the room still lacks for the need, per resource (0 when enough). */
struct deficit {
	double cpu, mem, disk, ports, addrs;
};

static bool fits(const struct preempt_res *room, const struct preempt_res *need)
{
	if (room->cpu + CPU_EPS < need->cpu)
		return false;
	if (room->mem < need->mem || room->disk < need->disk || room->ports < need->ports)
		return false;
	return need->addrs <= 0 || room->addrs == PREEMPT_ADDRS_ANY || room->addrs >= need->addrs;
}

void preempt_res_add(struct preempt_res *a, const struct preempt_res *b, int sign)
{
	a->cpu += sign * b->cpu;
	a->mem += sign * b->mem;
	a->disk += sign * b->disk;
	a->ports += sign * b->ports;
	if (a->addrs != PREEMPT_ADDRS_ANY)
		a->addrs += sign * b->addrs;
}

static double short_of(double have, double want)
{
	return want > have ? want - have : 0;
}

/* How much of what is missing task r covers, summed over the resources
 * that are short (each capped at 1): a measure for "fewest victims". */
static double coverage(const struct deficit *d, const struct preempt_res *r)
{
	double c = 0;
	if (d->cpu > CPU_EPS && r->cpu > 0)
		c += r->cpu >= d->cpu ? 1 : r->cpu / d->cpu;
	if (d->mem > 0 && r->mem > 0)
		c += (double)r->mem >= d->mem ? 1 : (double)r->mem / d->mem;
	if (d->disk > 0 && r->disk > 0)
		c += (double)r->disk >= d->disk ? 1 : (double)r->disk / d->disk;
	if (d->ports > 0 && r->ports > 0)
		c += (double)r->ports >= d->ports ? 1 : (double)r->ports / d->ports;
	if (d->addrs > 0 && r->addrs > 0)
		c += (double)r->addrs >= d->addrs ? 1 : (double)r->addrs / d->addrs;
	return c;
}

struct cand {
	size_t index;
	int priority;
	double cover;
};

static int cmp_cand(const void *a, const void *b)
{
	const struct cand *x = a, *y = b;
	if (x->priority != y->priority)
		return x->priority < y->priority ? -1 : 1;
	if (x->cover != y->cover)
		return x->cover > y->cover ? -1 : 1;
	return (x->index > y->index) - (x->index < y->index);
}

static void cost_of(const struct preempt_node *node, const size_t *v, size_t n,
		    struct preempt_cost *cost)
{
	cost->nvictims = n;
	cost->max_priority = INT_MIN;
	cost->sum_priority = 0;
	for (size_t k = 0; k < n; k++) {
		int p = node->tasks[v[k]].priority;
		if (p > cost->max_priority)
			cost->max_priority = p;
		cost->sum_priority += p;
	}
}

int preempt_select_node(const struct preempt_need *need, const struct preempt_node *node,
			size_t *victims, struct preempt_cost *cost)
{
	const struct preempt_res *want = &need->res;
	struct preempt_res room = node->room;
	cost_of(node, victims, 0, cost);
	if (fits(&room, want))
		return 0;
	struct deficit d = {
	    .cpu = short_of(room.cpu, want->cpu),
	    .mem = short_of((double)room.mem, (double)want->mem),
	    .disk = short_of((double)room.disk, (double)want->disk),
	    .ports = short_of((double)room.ports, (double)want->ports),
	    .addrs = want->addrs > 0 && room.addrs != PREEMPT_ADDRS_ANY
			 ? short_of((double)room.addrs, (double)want->addrs)
			 : 0,
	};
	struct cand *cs = xmalloc((node->ntasks + 1) * sizeof *cs);
	size_t nc = 0;
	struct preempt_res all = room;
	for (size_t i = 0; i < node->ntasks; i++) {
		const struct preempt_task *t = &node->tasks[i];
		if (t->taken || !preempt_may(need, t))
			continue;
		double cover = coverage(&d, &t->res);
		if (cover <= 0)
			continue; /* frees nothing the node lacks */
		cs[nc++] = (struct cand){i, t->priority, cover};
		preempt_res_add(&all, &t->res, +1);
	}
	if (!fits(&all, want)) {
		free(cs);
		return -1;
	}
	qsort(cs, nc, sizeof *cs, cmp_cand);
	size_t n = 0;
	for (size_t k = 0; k < nc && !fits(&room, want); k++) {
		victims[n++] = cs[k].index;
		preempt_res_add(&room, &node->tasks[cs[k].index].res, +1);
	}
	free(cs);
	/* Drop any victim the others make unnecessary, the last chosen (the
	 * highest priority) first. */
	for (size_t k = n; k-- > 0;) {
		struct preempt_res without = room;
		preempt_res_add(&without, &node->tasks[victims[k]].res, -1);
		if (!fits(&without, want))
			continue;
		room = without;
		memmove(victims + k, victims + k + 1, (n - k - 1) * sizeof *victims);
		n--;
	}
	cost_of(node, victims, n, cost);
	return (int)n;
}

int preempt_choose(const struct preempt_need *need, size_t nnodes, preempt_node_fn get, void *ctx,
		   size_t start, size_t sample, struct preempt_result *out)
{
	memset(out, 0, sizeof *out);
	out->node = -1;
	out->next = nnodes ? start % nnodes : 0;
	size_t cap = 0, *buf = NULL, found = 0;
	for (size_t p = 0; p < nnodes; p++) {
		size_t i = (start + p) % nnodes;
		const struct preempt_node *nd = get(ctx, i);
		out->next = (i + 1) % nnodes;
		if (!nd)
			continue;
		out->visited++;
		if (nd->ntasks + 1 > cap) {
			cap = nd->ntasks + 1;
			buf = xrealloc(buf, cap * sizeof *buf);
		}
		struct preempt_cost cost;
		int nv = preempt_select_node(need, nd, buf, &cost);
		if (nv < 0)
			continue;
		found++;
		if (out->node < 0 || preempt_cost_better(&cost, &out->cost)) {
			out->node = (long)i;
			out->cost = cost;
			out->nvictims = (size_t)nv;
			free(out->victims);
			out->victims = xmalloc(((size_t)nv + 1) * sizeof *out->victims);
			memcpy(out->victims, buf, (size_t)nv * sizeof *buf);
		}
		if (nv == 0 || (sample && found >= sample))
			break;
	}
	free(buf);
	return out->node < 0 ? -1 : 0;
}

void preempt_result_release(struct preempt_result *r)
{
	if (!r)
		return;
	free(r->victims);
	r->victims = NULL;
	r->nvictims = 0;
}
