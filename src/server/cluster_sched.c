/* cluster_sched.c - the glue to src/sched: PENDING tasks placed by
 * equivalence class (one job, one config version), in rank order (preferred
 * tier first, then higher priority, then the oldest job); a class that fits
 * nowhere may preempt (cluster_preempt.c). And throttles expired. */
#include "server/cluster-internal.h"
#include "server/cluster_system.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sched/ports.h"

void tasks_unthrottle(struct cluster *c, int64_t now)
{
	for (struct task *t = c->waiting, *next; t; t = next) {
		next = t->wnext;
		if (t->state == TASK_THROTTLED && now >= t->throttle_until_ms) {
			task_transition(c, t, TASK_PENDING, "throttle expired; waiting for a node");
			c->sched_needed = true;
		}
	}
}

/* A pending task with what orders it (computed once per round: the
 * comparison runs n log n times). */
struct ranked {
	struct task *t;
	int tier, priority;
	int64_t created_ms;
};

static int cmp_ranked(const void *a, const void *b)
{
	const struct ranked *x = a, *y = b;
	if (x->tier != y->tier)
		return x->tier < y->tier ? -1 : 1; /* TIER_PREFERRED (0) first */
	if (x->priority != y->priority)
		return x->priority > y->priority ? -1 : 1;
	if (x->created_ms != y->created_ms)
		return x->created_ms < y->created_ms ? -1 : 1;
	if (x->t->job != y->t->job)
		return strcmp(x->t->job->key, y->t->job->key);
	if (x->t->version != y->t->version)
		return x->t->version < y->t->version ? -1 : 1;
	return (x->t->instance > y->t->instance) - (x->t->instance < y->t->instance);
}

void task_assign(struct cluster *c, struct task *t, struct node *n, const struct job_version *jv)
{
	const struct resources *r = &jv->spec->task.resources;
	/* Most tasks have no ports: no object for them (memory per task). */
	json_t *ports = r->nports ? json_object() : NULL;
	for (size_t p = 0; p < r->nports; p++)
		json_object_set_new(ports, r->ports[p], json_integer(port_pool_take(n->ports)));
	json_decref(t->ports);
	t->ports = ports;
	n->cpu_used += r->cpu;
	n->mem_used += r->memory;
	n->disk_used += r->disk;
	if (jv->spec->task.network == NETWORK_BRIDGE)
		n->addrs_used++;
	t->node = n;
	hmap_put(&n->tasks, t->id, t);
	node_touch(c, n);
	t->assigned_at = n->desired_version;
	free(t->reserved_node);
	t->reserved_node = NULL;
	char msg[300];
	snprintf(msg, sizeof msg, "assigned to node %s", n->name);
	task_transition(c, t, TASK_ASSIGNED, msg);
}

/* Place one equivalence class: the PENDING tasks group[0..ng) share a job
 * and a config version. What fits nowhere may preempt (pr). */
static void place_class(struct cluster *c, struct node **nodes, struct placement_node *pn,
			size_t nn, struct task **group, size_t ng, struct preempt_round *pr)
{
	struct job *j = group[0]->job;
	struct job_version *jv = job_version_get(j, group[0]->version);
	if (!jv)
		return;
	/* Tasks of the job per node, for limit constraints and spreading. */
	for (size_t i = 0; i < j->nactive; i++) {
		struct task *t = j->active[i];
		if (t && t->node)
			pn[t->node->sched_index].job_tasks++;
	}
	struct placement_request req = {
	    .job = jv->spec,
	    .count = ng,
	    .sample_limit = c->cfg.sample_limit,
	    .start_offset = nn ? c->sched_offset % nn : 0,
	};
	struct placement_result res = {0};
	placement_place(pn, nn, &req, &res);
	c->sched_offset = res.next_offset;
	struct task **unplaced = NULL;
	size_t nu = 0;
	for (size_t g = 0; g < ng; g++) {
		struct task *t = group[g];
		int ni = res.node_index[g];
		if (ni < 0) {
			const char *why = res.reason ? res.reason : "no nodes registered";
			/* A preempted task's replacement says so while it waits. */
			char buf[600];
			size_t len;
			const char *note = task_preempt_note(t, &len);
			if (note) {
				snprintf(buf, sizeof buf, "%.*s; waiting for room: %s", (int)len,
					 note, why);
				why = buf;
			}
			if (!t->message || strcmp(t->message, why)) {
				task_message_release(t);
				t->message = xstrdup(why);
			}
			if (!unplaced)
				unplaced = xmalloc((ng - g) * sizeof *unplaced);
			unplaced[nu++] = t;
			continue;
		}
		task_assign(c, t, nodes[ni], jv);
	}
	placement_result_release(&res);
	if (nu)
		preempt_for_class(pr, jv->spec, unplaced, nu);
	free(unplaced);
	for (size_t i = 0; i < j->nactive; i++) {
		struct task *t = j->active[i];
		if (t && t->node)
			pn[t->node->sched_index].job_tasks = 0;
	}
}

/* The scheduler's view of every node: free resources, attributes, state. */
void node_view(struct cluster *c, struct node ***nodes_out, struct placement_node **pn_out,
	       size_t *nn_out)
{
	size_t nn = c->nodes.count;
	struct node **nodes = xcalloc(nn + 1, sizeof *nodes);
	struct placement_node *pn = xcalloc(nn + 1, sizeof *pn);
	size_t k = 0, it = 0;
	void *v;
	while (hmap_next(&c->nodes, &it, NULL, &v)) {
		struct node *n = v;
		n->sched_index = k;
		nodes[k] = n;
		pn[k].name = n->name;
		/* A flapping node takes no new tasks until its back-off ends. */
		pn[k].schedulable = n->state == NODE_ACTIVE && !n->in_backoff;
		pn[k].attributes = n->attrs;
		pn[k].nattributes = n->nattrs;
		pn[k].cpu_free = n->cpu_total - n->cpu_used;
		pn[k].mem_free = n->mem_total > n->mem_used ? n->mem_total - n->mem_used : 0;
		pn[k].disk_free = n->disk_total > n->disk_used ? n->disk_total - n->disk_used : 0;
		pn[k].ports_free = port_pool_available(n->ports);
		pn[k].addrs_free = n->subnet < 0 ? UINT32_MAX
				   : n->addrs_used >= NODE_SUBNET_ADDRS
				       ? 0
				       : NODE_SUBNET_ADDRS - n->addrs_used;
		k++;
	}
	*nodes_out = nodes;
	*pn_out = pn;
	*nn_out = nn;
}

void schedule_pending(struct cluster *c)
{
	c->sched_needed = false;
	size_t np = 0;
	struct ranked *rk = xcalloc(c->nwaiting + 1, sizeof *rk);
	for (struct task *t = c->waiting, *next; t; t = next) {
		next = t->wnext; /* a system task placed here leaves the list */
		if (t->state != TASK_PENDING || system_task_place(c, t))
			continue;
		const struct job_spec *s = task_spec_of(t);
		rk[np++] = (struct ranked){t, s ? (int)s->tier : TIER_PREEMPTIBLE,
					   s ? s->priority : 0, t->job->created_ms};
	}
	if (!np) {
		free(rk);
		return;
	}
	qsort(rk, np, sizeof *rk, cmp_ranked);
	struct task **pending = xcalloc(np, sizeof *pending);
	for (size_t i = 0; i < np; i++)
		pending[i] = rk[i].t;
	free(rk);
	size_t nn;
	struct node **nodes;
	struct placement_node *pn;
	node_view(c, &nodes, &pn, &nn);
	/* Preemptors first: on their node when its room is free, else the room
	 * stays theirs. */
	preempt_reservations(c, nodes, pn, nn, pending, &np);
	struct preempt_round *pr = preempt_round_new(c, nodes, pn, nn);
	for (size_t i = 0; i < np;) {
		size_t e = i + 1;
		while (e < np && pending[e]->job == pending[i]->job &&
		       pending[e]->version == pending[i]->version)
			e++;
		place_class(c, nodes, pn, nn, pending + i, e - i, pr);
		i = e;
	}
	preempt_round_free(pr);
	free(pending);
	free(nodes);
	free(pn);
}
