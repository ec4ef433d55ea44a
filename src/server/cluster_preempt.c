/* cluster_preempt.c - the glue to src/sched/preemption: pending tasks that
 * fit nowhere preempt lower-ranked tasks on one node, and hold that node's
 * room until the victims are gone (docs/scheduling.md, "Tiers, priorities
 * and preemption").
 *
 * A scheduling round (schedule_pending) keeps a struct preempt_round: per
 * node, built the first time preemption looks at it, the tasks that could be
 * victims and what the node gets back soon (tasks already stopping for
 * another reason), and what this round's preemptions took or freed there.
 * The round's work is bounded: at most cfg.preempt_max_victims victims and
 * PREEMPT_MAX_VISITS node examinations; what is left waits for the next
 * round (the next tick).
 *
 * Reservations live in memory only (task.reserved_node): after a restart or
 * a failover the preemptor is placed like any pending task, and the room
 * its victims freed is there for it (or it preempts again).
 */
#include "server/cluster-internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "sched/ports.h"
#include "sched/preemption.h"

/* Node examinations per round at most (a round with 1,000 nodes to scan
 * for each of 1,000 pending tasks stops here and continues next tick). */
#define PREEMPT_MAX_VISITS 200000
/* A class whose scan found no node tries again after this long (or when
 * its tasks are new): a hopeless backlog costs one scan per second. */
#define PREEMPT_RETRY_MS 1000
/* A reservation ends this long after its victims' stop grace, so that a
 * victim stuck stopping does not hold the preemptor back for ever. */
#define PREEMPT_RESERVE_SLACK_MS 30000

static const char PREEMPTED_BY[] = "preempted by ";

const char *task_preempted_by(const struct task *t)
{
	for (size_t i = t->nevents; i-- > 0;)
		if (t->events[i].state == TASK_PREEMPTING)
			return t->events[i].message;
	return NULL;
}

const char *task_preempt_note(const struct task *t, size_t *len)
{
	if (!t->nevents || !t->events[0].message ||
	    strncmp(t->events[0].message, PREEMPTED_BY, sizeof PREEMPTED_BY - 1))
		return NULL;
	const char *m = t->events[0].message, *end = strstr(m, ": replaces ");
	*len = end ? (size_t)(end - m) : strlen(m);
	return m;
}

static struct preempt_res spec_res(const struct job_spec *s)
{
	const struct resources *r = &s->task.resources;
	return (struct preempt_res){r->cpu, (int64_t)r->memory, (int64_t)r->disk,
				    (int64_t)r->nports, s->task.network == NETWORK_BRIDGE};
}

struct pnode {
	bool built;
	struct preempt_task *tasks;
	struct task **refs;
	size_t n;
	struct preempt_res soon;  /* stopping tasks (not preempted) free this */
	struct preempt_res delta; /* this round: victims taken minus room promised */
	struct preempt_node view;
};

struct preempt_round {
	struct cluster *c;
	struct node **nodes;
	struct placement_node *pn;
	size_t nn;
	struct pnode *p;
	bool *eligible;
	size_t victims_left, visits_left, offset;
	bool preempted_any;
	bool dry_run;	/* job plan: choose, stop nothing */
	json_t *chosen; /* dry run: the victims' ids */
	int64_t now;
};

static bool victim_state(enum task_state s)
{
	return s == TASK_ASSIGNED || s == TASK_STARTING || s == TASK_RUNNING;
}

static void pnode_build(struct preempt_round *r, size_t i, struct pnode *p)
{
	struct node *n = r->nodes[i];
	p->built = true;
	p->tasks = xcalloc(n->tasks.count + 1, sizeof *p->tasks);
	p->refs = xcalloc(n->tasks.count + 1, sizeof *p->refs);
	size_t it = 0;
	void *v;
	while (hmap_next(&n->tasks, &it, NULL, &v)) {
		struct task *t = v;
		const struct job_spec *s = task_spec_of(t);
		if (!s)
			continue;
		struct preempt_res res = spec_res(s);
		if (t->state == TASK_KILLING || t->state == TASK_RESTARTING ||
		    t->state == TASK_DRAINING) {
			preempt_res_add(&p->soon, &res, +1);
			continue;
		}
		if (!victim_state(t->state))
			continue;
		p->tasks[p->n] = (struct preempt_task){s->tier, s->priority, res, false};
		p->refs[p->n++] = t;
	}
	p->view.tasks = p->tasks;
	p->view.ntasks = p->n;
}

static const struct preempt_node *round_get(void *ctx, size_t i)
{
	struct preempt_round *r = ctx;
	if (!r->eligible[i])
		return NULL;
	struct pnode *p = &r->p[i];
	if (!p->built)
		pnode_build(r, i, p);
	const struct placement_node *pn = &r->pn[i];
	p->view.room = (struct preempt_res){
	    pn->cpu_free,
	    (int64_t)pn->mem_free,
	    (int64_t)pn->disk_free,
	    (int64_t)pn->ports_free,
	    pn->addrs_free == UINT32_MAX ? PREEMPT_ADDRS_ANY : (int64_t)pn->addrs_free,
	};
	preempt_res_add(&p->view.room, &p->soon, +1);
	preempt_res_add(&p->view.room, &p->delta, +1);
	if (pn->addrs_free == UINT32_MAX)
		p->view.room.addrs = PREEMPT_ADDRS_ANY;
	return &p->view;
}

struct preempt_round *preempt_round_new(struct cluster *c, struct node **nodes,
					struct placement_node *pn, size_t nn)
{
	struct preempt_round *r = xcalloc(1, sizeof *r);
	r->c = c;
	r->nodes = nodes;
	r->pn = pn;
	r->nn = nn;
	/* r->p and r->eligible (per node) are made when a class first needs
	 * preemption: most rounds place everything and need none. */
	r->victims_left = c->cfg.preempt_max_victims;
	r->visits_left = PREEMPT_MAX_VISITS;
	r->offset = nn ? c->sched_offset % nn : 0;
	r->now = time_now_ms();
	return r;
}

void preempt_round_free(struct preempt_round *r)
{
	if (!r)
		return;
	for (size_t i = 0; r->p && i < r->nn; i++) {
		free(r->p[i].tasks);
		free(r->p[i].refs);
	}
	free(r->p);
	free(r->eligible);
	free(r);
}

/* 0: no limit constraint; 1: limits per node (host) only; 2: a limit per
 * value of another attribute (rack, zone...), which spans nodes. */
static int limit_kind(const struct job_spec *s)
{
	int kind = 0;
	for (size_t k = 0; k < s->task.nconstraints; k++) {
		const struct constraint *ct = &s->task.constraints[k];
		if (ct->kind != CONSTRAINT_LIMIT)
			continue;
		if (strcmp(ct->attribute, "host"))
			return 2;
		kind = 1;
	}
	return kind;
}

/* Stop the victims of task t (instance of spec) on node i, and reserve the
 * node's room for t. */
static void preempt_apply(struct preempt_round *r, struct task *t, size_t i,
			  const struct preempt_result *res)
{
	struct cluster *c = r->c;
	struct pnode *p = &r->p[i];
	struct node *n = r->nodes[i];
	char msg[300];
	if (!r->dry_run)
		snprintf(msg, sizeof msg, "%s%s/%d", PREEMPTED_BY, t->job->key, t->instance);
	int64_t grace = 0;
	for (size_t k = 0; k < res->nvictims; k++) {
		size_t v = res->victims[k];
		struct task *victim = p->refs[v];
		p->tasks[v].taken = true;
		preempt_res_add(&p->delta, &p->tasks[v].res, +1);
		if (r->dry_run) {
			json_array_append_new(r->chosen, json_string(victim->id));
			continue;
		}
		const struct job_spec *vs = task_spec_of(victim);
		if (vs && (int64_t)(vs->task.stop_grace_ms + vs->task.drain_delay_ms) > grace)
			grace = (int64_t)(vs->task.stop_grace_ms + vs->task.drain_delay_ms);
		log_info("%s: task %s on %s preempted by %s", victim->job->key, victim->id, n->name,
			 t->id);
		task_stop(c, victim, TASK_PREEMPTING, msg);
		c->preempted_total++;
	}
	if (r->dry_run)
		return;
	free(t->reserved_node);
	t->reserved_node = xstrdup(n->name);
	t->reserved_until_ms = r->now + grace + PREEMPT_RESERVE_SLACK_MS;
	snprintf(msg, sizeof msg, "preempting %zu task%s on node %s; waiting for %s to stop",
		 res->nvictims, res->nvictims == 1 ? "" : "s", n->name,
		 res->nvictims == 1 ? "it" : "them");
	task_message_release(t);
	t->message = xstrdup(msg);
	persist_task(c, t);
}

/* Preempt for tasks[0..nt) of one class (one job spec), which placement
 * left unplaced. Returns how many found room (victims chosen, or room
 * being freed anyway). pn's job_tasks are the job's (limit constraints). */
static size_t preempt_class(struct preempt_round *r, const struct job_spec *spec,
			    struct task **tasks, size_t nt)
{
	struct cluster *c = r->c;
	if (!nt || !r->nn)
		return 0;
	size_t k = 0;
	if (!r->dry_run) {
		/* Tried lately and found nothing: not again this round. */
		while (k < nt && tasks[k]->preempt_after_ms > r->now)
			k++;
		if (k == nt)
			return 0;
	}
	if (!r->p) {
		r->p = xcalloc(r->nn + 1, sizeof *r->p);
		r->eligible = xcalloc(r->nn + 1, sizeof *r->eligible);
	}
	placement_eligible(r->pn, r->nn, spec, r->eligible);
	struct preempt_need need = {spec->tier, spec->priority, spec_res(spec)};
	int limited = limit_kind(spec);
	/* Nodes promised to this class's preemptors, counted in job_tasks
	 * while the class is served (undone at the end). */
	size_t *promised = limited == 2 ? xcalloc(nt, sizeof *promised) : NULL;
	size_t npromised = 0;
	size_t found = 0;
	for (; k < nt; k++) {
		struct task *t = tasks[k];
		if (!r->dry_run && t->preempt_after_ms > r->now)
			continue;
		if (!r->visits_left || !r->victims_left) {
			c->sched_needed = true; /* the rest next round */
			break;
		}
		struct preempt_result res;
		int rc = preempt_choose(&need, r->nn, round_get, r, r->offset,
					r->dry_run ? 0 : c->cfg.sample_limit, &res);
		r->offset = res.next;
		r->visits_left -= res.visited < r->visits_left ? res.visited : r->visits_left;
		if (rc < 0) {
			preempt_result_release(&res);
			/* Its twins would find nothing either. */
			for (size_t m = k; m < nt && !r->dry_run; m++)
				tasks[m]->preempt_after_ms = r->now + PREEMPT_RETRY_MS;
			break;
		}
		size_t i = (size_t)res.node;
		if (res.nvictims > r->victims_left && r->preempted_any) {
			preempt_result_release(&res);
			c->sched_needed = true;
			break;
		}
		found++;
		if (res.nvictims) {
			preempt_apply(r, t, i, &res);
			r->victims_left -=
			    res.nvictims < r->victims_left ? res.nvictims : r->victims_left;
			r->preempted_any = true;
		} else if (!r->dry_run) {
			char msg[300];
			snprintf(msg, sizeof msg, "waiting for room being freed on node %s",
				 r->nodes[i]->name);
			task_message_release(t);
			t->message = xstrdup(msg);
		}
		/* The room is promised to t: the class's next task looks elsewhere
		 * for its own. */
		preempt_res_add(&r->p[i].delta, &need.res, -1);
		if (limited == 2) {
			/* Its rack (zone...) may now be full for the job. */
			r->pn[i].job_tasks++;
			promised[npromised++] = i;
			placement_eligible(r->pn, r->nn, spec, r->eligible);
		} else if (limited) {
			r->eligible[i] = false;
		}
		preempt_result_release(&res);
	}
	for (size_t m = 0; m < npromised; m++)
		r->pn[promised[m]].job_tasks--;
	free(promised);
	return found;
}

void preempt_for_class(struct preempt_round *r, const struct job_spec *spec, struct task **tasks,
		       size_t nt)
{
	if (r)
		preempt_class(r, spec, tasks, nt);
}

/* Take what spec needs from the node's view (clamped at nothing left). */
static void pn_take(struct placement_node *p, const struct job_spec *s)
{
	const struct resources *r = &s->task.resources;
	p->cpu_free = p->cpu_free > r->cpu ? p->cpu_free - r->cpu : 0;
	p->mem_free = p->mem_free > r->memory ? p->mem_free - r->memory : 0;
	p->disk_free = p->disk_free > r->disk ? p->disk_free - r->disk : 0;
	p->ports_free = p->ports_free > r->nports ? p->ports_free - (uint32_t)r->nports : 0;
	if (s->task.network == NETWORK_BRIDGE && p->addrs_free != UINT32_MAX && p->addrs_free)
		p->addrs_free--;
}

static bool pn_fits(const struct placement_node *p, const struct job_spec *s)
{
	const struct resources *r = &s->task.resources;
	return p->cpu_free + 1e-9 >= r->cpu && p->mem_free >= r->memory &&
	       p->disk_free >= r->disk && p->ports_free >= r->nports &&
	       (s->task.network != NETWORK_BRIDGE || p->addrs_free > 0);
}

/* Whether every hard constraint of spec (value, driver and limit
 * constraints, with the job's tasks as they are now) still holds on node i:
 * other instances of the job may have landed on the node or its rack while
 * the preemptor waited, or the node's attributes changed. The same check as
 * the victims' scan (placement_eligible); *eligible is scratch for nn nodes. */
static bool reservation_holds(struct job *j, const struct job_spec *spec, struct placement_node *pn,
			      size_t nn, size_t i, bool **eligible)
{
	/* Nothing to check but the node's state (checked already): the common
	 * case costs no pass over the nodes. */
	if (!spec->task.nconstraints && spec->task.driver == DRIVER_EXEC)
		return true;
	if (!*eligible)
		*eligible = xcalloc(nn + 1, sizeof **eligible);
	for (size_t k = 0; k < j->nactive; k++)
		if (j->active[k] && j->active[k]->node)
			pn[j->active[k]->node->sched_index].job_tasks++;
	placement_eligible(pn, nn, spec, *eligible);
	for (size_t k = 0; k < j->nactive; k++)
		if (j->active[k] && j->active[k]->node)
			pn[j->active[k]->node->sched_index].job_tasks = 0;
	return (*eligible)[i];
}

static void reservation_drop(struct task *t, const char *why)
{
	log_info("task %s: reservation of node %s dropped (%s)", t->id, t->reserved_node, why);
	free(t->reserved_node);
	t->reserved_node = NULL;
}

void preempt_reservations(struct cluster *c, struct node **nodes, struct placement_node *pn,
			  size_t nn, struct task **pending, size_t *np)
{
	int64_t now = time_now_ms();
	size_t keep = 0;
	bool *eligible = NULL;
	(void)nodes;
	for (size_t k = 0; k < *np; k++) {
		struct task *t = pending[k];
		if (!t->reserved_node) {
			pending[keep++] = t;
			continue;
		}
		struct node *n = hmap_get(&c->nodes, t->reserved_node);
		const struct job_version *jv = job_version_get(t->job, t->version);
		if (!n || !jv || n->state != NODE_ACTIVE || n->in_backoff ||
		    now > t->reserved_until_ms) {
			reservation_drop(t, !n || n->state != NODE_ACTIVE ? "node not active"
									  : "expired");
			pending[keep++] = t;
			continue;
		}
		struct placement_node *p = &pn[n->sched_index];
		if (!pn_fits(p, jv->spec)) {
			pn_take(p, jv->spec); /* held: nobody else takes it */
		} else if (reservation_holds(t->job, jv->spec, pn, nn, n->sched_index, &eligible)) {
			pn_take(p, jv->spec);
			task_assign(c, t, n, jv);
		} else {
			/* Placed like any pending task now (it may preempt
			 * elsewhere); placement says which constraint fails. */
			reservation_drop(t, "its constraints no longer hold there");
			pending[keep++] = t;
		}
	}
	free(eligible);
	*np = keep;
}

static json_t *preempt_plan(struct cluster *c, const struct job_spec *spec, size_t count,
			    struct node **nodes, struct placement_node *pn, size_t nn,
			    size_t *found)
{
	json_t *ids = json_array();
	*found = 0;
	if (!count || !nn)
		return ids;
	struct preempt_round *r = preempt_round_new(c, nodes, pn, nn);
	r->dry_run = true;
	r->chosen = ids;
	r->victims_left = (size_t)-1;
	r->visits_left = (size_t)-1;
	r->offset = 0;
	/* The dry run needs task pointers only for the count. */
	struct task **dummy = xcalloc(count, sizeof *dummy);
	struct task *fake = xcalloc(count, sizeof *fake);
	for (size_t k = 0; k < count; k++)
		dummy[k] = &fake[k];
	*found = preempt_class(r, spec, dummy, count);
	free(dummy);
	free(fake);
	preempt_round_free(r);
	return ids;
}

json_t *plan_preemption(struct cluster *c, const struct job_spec *spec, size_t unplaced,
			struct node **nodes, struct placement_node *pn, size_t nn)
{
	size_t found = 0;
	json_t *ids = preempt_plan(c, spec, unplaced, nodes, pn, nn, &found);
	return json_pack("{s:o,s:b}", "preempt", ids, "fits_with_preemption", found == unplaced);
}
