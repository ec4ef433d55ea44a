/* cluster_system.c - system jobs: one instance on every eligible node
 * (cluster_system.h; docs/scheduling.md, "System jobs").
 *
 * A slot (instance) follows its node:
 *
 *   node event                      the slot's task
 *   ------------------------------  -------------------------------------
 *   registers / ACTIVE / undrained  created PENDING, placed on that node only
 *   cannot fit the task             stays PENDING: "node n1: insufficient cpu ..."
 *   DRAINING (drain)                DRAINING, not replaced: slot vacant
 *   DOWN                            LOST (cluster_nodes.c), not replaced
 *   stops matching a constraint     KILLING, not replaced: slot vacant
 *   record deleted                  killed if PENDING; slot vacant
 *
 * Replacements of a task that failed on an eligible node follow the
 * service rules (restart policy, flapping throttle) in cluster_jobs.c.
 */
#include "server/cluster_system.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "sched/ports.h"
#include "server/cluster-internal.h"

/* Every job is reconciled at least this often, even when no node event
 * was seen (a safety net: events are what drives it). */
#define SYSTEM_EVERY_MS 5000

struct system_slots {
	char **node;	     /* instance -> its node's name */
	bool *vacant;	     /* the node is not eligible: no task wanted */
	size_t n;	     /* slots */
	struct hmap by_node; /* name -> (void *)(instance + 1) */
	/* What the last reconcile saw: nothing to do until a node event or a
	 * new config version. */
	uint64_t seen_gen;
	int seen_version;
	/* A slot went vacant outside a reconcile (its task ended on a node
	 * gone DOWN): the next tick's pass writes the job's record, once for
	 * however many (10,000 nodes lost at once: one record, not 10,000). */
	bool due;
};

void system_slots_free(struct system_slots *s)
{
	if (!s)
		return;
	for (size_t i = 0; i < s->n; i++)
		free(s->node[i]);
	free(s->node);
	free(s->vacant);
	hmap_release(&s->by_node);
	free(s);
}

static struct system_slots *slots_of(struct job *j)
{
	if (!j->system) {
		j->system = xcalloc(1, sizeof *j->system);
		hmap_init(&j->system->by_node);
	}
	return j->system;
}

static size_t slot_add(struct system_slots *s, const char *node)
{
	s->node = xrealloc(s->node, (s->n + 1) * sizeof *s->node);
	s->vacant = xrealloc(s->vacant, (s->n + 1) * sizeof *s->vacant);
	s->node[s->n] = xstrdup(node);
	s->vacant[s->n] = false;
	hmap_put(&s->by_node, node, (void *)(uintptr_t)(s->n + 1));
	return s->n++;
}

static const struct job_spec *system_spec(struct job *j)
{
	const struct job_version *jv = job_version_get(j, j->version);
	return jv && jv->spec->type == JOB_SYSTEM ? jv->spec : NULL;
}

static const char *node_attr(const struct node *n, const char *key)
{
	for (size_t i = 0; i < n->nattrs; i++)
		if (!strcmp(n->attrs[i].key, key))
			return n->attrs[i].value;
	return NULL;
}

/* Value constraints as placement reads them: a node without the attribute
 * fails a positive constraint and passes a negated one. Limit constraints
 * are refused in system jobs (spec validation). */
static const struct constraint *constraint_failed(const struct node *n, const struct job_spec *s)
{
	for (size_t i = 0; i < s->task.nconstraints; i++) {
		const struct constraint *k = &s->task.constraints[i];
		if (k->kind != CONSTRAINT_VALUE)
			continue;
		const char *v = node_attr(n, k->attribute);
		bool match = false;
		for (size_t a = 0; v && a < k->nvalues && !match; a++)
			match = !strcmp(v, k->values[a]);
		if (match == k->negated)
			return k;
	}
	return NULL;
}

/* Eligible: ACTIVE and every value constraint met. Otherwise why[] (when
 * not NULL) says why not, for the event of the task it stops. */
static bool node_eligible(const struct node *n, const struct job_spec *s, char *why, size_t size)
{
	if (!why) {
		return n && n->state == NODE_ACTIVE && !constraint_failed(n, s);
	} else if (!n) {
		snprintf(why, size, "node is gone");
		return false;
	}
	if (n->state != NODE_ACTIVE) {
		snprintf(why, size, "node %s is %s", n->name, node_state_name(n->state));
		for (char *p = why; *p; p++)
			if (*p >= 'A' && *p <= 'Z')
				*p = (char)(*p - 'A' + 'a');
		return false;
	}
	const struct constraint *k = constraint_failed(n, s);
	if (k) {
		const char *v = node_attr(n, k->attribute);
		snprintf(why, size, "node %s no longer matches constraint %s:%s%s (%s)", n->name,
			 k->attribute, k->negated ? "!" : "", k->nvalues ? k->values[0] : "",
			 v ? v : "no such attribute");
		return false;
	}
	return true;
}

static void system_reconcile_job(struct cluster *c, struct job *j, const struct job_spec *spec)
{
	struct system_slots *s = slots_of(j);
	bool changed = s->due;
	s->due = false;
	char why[512];
	/* Nodes eligible for the first time get the next instance number. */
	size_t it = 0;
	void *v;
	while (hmap_next(&c->nodes, &it, NULL, &v)) {
		struct node *n = v;
		if (s->n >= SPEC_MAX_INSTANCES || hmap_get(&s->by_node, n->name) ||
		    !node_eligible(n, spec, NULL, 0))
			continue;
		slot_add(s, n->name);
		changed = true;
	}
	if (changed)
		system_sync_instances(j);
	for (size_t i = 0; i < s->n; i++) {
		struct node *n = hmap_get(&c->nodes, s->node[i]);
		struct task *t = i < j->nactive ? j->active[i] : NULL;
		if (t && task_state_terminal(t->state))
			t = NULL;
		if (node_eligible(n, spec, NULL, 0)) {
			if (t && t->no_replace && task_stopping(t)) {
				/* Stopped when the node left (a drain undone): its
				 * successor starts when it ends. */
				t->no_replace = false;
				t->replace_on_end = true;
				persist_task(c, t);
			} else if (!t && (s->vacant[i] || !j->instance_done[i])) {
				/* instance_done without vacant: given up by the
				 * restart policy on this node; left so. */
				char msg[300];
				snprintf(msg, sizeof msg, "task created for node %s", n->name);
				j->instance_done[i] = false;
				task_create(c, j, (int)i, NULL, msg, 0);
			}
			if (s->vacant[i]) {
				s->vacant[i] = false;
				changed = true;
			}
			continue;
		}
		bool stop = t && !t->no_replace;
		if (stop || !s->vacant[i])
			node_eligible(n, spec, why, sizeof why);
		if (stop) {
			t->no_replace = true;
			t->replace_on_end = false;
			if (task_stopping(t))
				persist_task(c, t); /* ends as it is, not replaced */
			else
				task_stop(c, t,
					  n && n->state == NODE_DRAINING ? TASK_DRAINING
									 : TASK_KILLING,
					  why);
		}
		if (!s->vacant[i]) {
			s->vacant[i] = true;
			j->instance_done[i] = true;
			changed = true;
			log_info("%s instance %zu: %s", j->key, i, why);
		}
	}
	if (changed)
		persist_job(c, j);
}

void systems_reconcile(struct cluster *c)
{
	int64_t mono = time_mono_ms();
	bool all = mono - c->system_mono >= SYSTEM_EVERY_MS;
	/* Nodes registered, up, down, drained, with new attributes, or
	 * added or removed (the node index's generation). */
	uint64_t gen = c->nodes_gen + c->node_index.gen;
	size_t it = 0;
	void *v;
	while (hmap_next(&c->jobs, &it, NULL, &v)) {
		struct job *j = v;
		const struct job_spec *spec = j->killed ? NULL : system_spec(j);
		if (!spec)
			continue;
		if (!all && j->system && !j->system->due && j->system->seen_gen == gen &&
		    j->system->seen_version == j->version)
			continue;
		system_reconcile_job(c, j, spec);
		j->system->seen_gen = gen;
		j->system->seen_version = j->version;
	}
	if (all)
		c->system_mono = mono;
}

static void set_pending_reason(struct task *t, const char *why)
{
	if (!t->message || strcmp(t->message, why)) {
		task_message_release(t);
		t->message = xstrdup(why);
	}
}

/* Why the task does not fit node n now, or NULL when it does. */
static const char *misfit(const struct node *n, const struct job_spec *s, char *buf, size_t size)
{
	const struct resources *r = &s->task.resources;
	if (n->state != NODE_ACTIVE)
		snprintf(buf, size, "waiting for node %s (%s)", n->name, node_state_name(n->state));
	else if (n->in_backoff)
		snprintf(buf, size, "waiting for node %s: back from DOWN, in flap back-off",
			 n->name);
	else if (n->cpu_total - n->cpu_used < r->cpu - 1e-9)
		snprintf(buf, size, "node %s: insufficient cpu (%.2f free, %.2f wanted)", n->name,
			 n->cpu_total - n->cpu_used > 0 ? n->cpu_total - n->cpu_used : 0.0, r->cpu);
	else if (n->mem_used + r->memory > n->mem_total)
		snprintf(
		    buf, size, "node %s: insufficient memory (%llu MiB free, %llu MiB wanted)",
		    n->name,
		    (unsigned long long)((n->mem_total > n->mem_used ? n->mem_total - n->mem_used
								     : 0) >>
					 20),
		    (unsigned long long)(r->memory >> 20));
	else if (r->disk && n->disk_used + r->disk > n->disk_total)
		snprintf(buf, size, "node %s: insufficient disk", n->name);
	else if (port_pool_available(n->ports) < r->nports)
		snprintf(buf, size, "node %s: insufficient ports", n->name);
	else if (s->task.network == NETWORK_BRIDGE && n->subnet >= 0 &&
		 n->addrs_used >= NODE_SUBNET_ADDRS)
		snprintf(buf, size, "node %s: no address left on its subnet", n->name);
	else
		return NULL;
	return buf;
}

bool system_task_place(struct cluster *c, struct task *t)
{
	const struct job_spec *s = task_spec_of(t);
	if (!s || s->type != JOB_SYSTEM)
		return false;
	struct system_slots *slots = t->job->system;
	if (!slots || (size_t)t->instance >= slots->n) {
		set_pending_reason(t, "no node for this instance");
		return true;
	}
	struct node *n = hmap_get(&c->nodes, slots->node[t->instance]);
	char why[300];
	if (!n) {
		set_pending_reason(t, "its node is gone");
		return true;
	}
	if (misfit(n, s, why, sizeof why)) {
		set_pending_reason(t, why);
		return true;
	}
	const struct job_version *jv = job_version_get(t->job, t->version);
	if (!jv) {
		set_pending_reason(t, "its config version is gone");
		return true;
	}
	task_assign(c, t, n, jv);
	return true;
}

bool system_instance_vacate(struct cluster *c, struct job *j, struct task *t)
{
	const struct job_spec *spec = system_spec(j);
	struct system_slots *s = j->system;
	if (!spec || !s || (size_t)t->instance >= s->n)
		return spec != NULL;
	size_t i = (size_t)t->instance;
	char why[512];
	if (node_eligible(hmap_get(&c->nodes, s->node[i]), spec, why, sizeof why))
		return false;
	char msg[600];
	snprintf(msg, sizeof msg, "not replaced: %s (system job)", why);
	task_add_event(t, t->state, msg, time_now_ms());
	persist_task(c, t);
	s->vacant[i] = true;
	j->instance_done[i] = true;
	s->due = true;
	return true;
}

void system_sync_instances(struct job *j)
{
	size_t n = j->system ? j->system->n : 0;
	for (size_t v = 0; v < j->nversions; v++)
		if (j->versions[v].spec->type == JOB_SYSTEM)
			j->versions[v].spec->instances = (int)n;
	job_ensure_instances(j, n);
}

int system_check_resubmit(const struct job *j, const struct job_spec *cur,
			  const struct job_spec *spec, struct berr *err)
{
	if ((cur->type == JOB_SYSTEM) == (spec->type == JOB_SYSTEM))
		return 0;
	berr_set(err, 409,
		 "job '%s' is a %s job and cannot become a %s job; kill it and submit it again",
		 j->key, cur->type == JOB_SYSTEM ? "system" : "non-system",
		 spec->type == JOB_SYSTEM ? "system" : "non-system");
	return -1;
}

int system_plan_instances(struct cluster *c, struct job *j, const struct job_spec *spec)
{
	const struct system_slots *s = j ? j->system : NULL;
	size_t n = s ? s->n : 0, it = 0;
	void *v;
	while (hmap_next(&c->nodes, &it, NULL, &v)) {
		const struct node *nd = v;
		if ((!s || !hmap_get(&s->by_node, nd->name)) && node_eligible(nd, spec, NULL, 0))
			n++;
	}
	return n < SPEC_MAX_INSTANCES ? (int)n : SPEC_MAX_INSTANCES;
}

int system_instances_wanted(const struct job *j)
{
	int n = 0;
	for (size_t i = 0; j->system && i < j->system->n; i++)
		n += !j->system->vacant[i];
	return n;
}

json_t *system_record_json(const struct job *j)
{
	const struct system_slots *s = j->system;
	if (!s || !s->n)
		return NULL;
	json_t *nodes = json_array(), *vacant = json_array();
	for (size_t i = 0; i < s->n; i++) {
		json_array_append_new(nodes, json_string(s->node[i]));
		json_array_append_new(vacant, json_boolean(s->vacant[i]));
	}
	return json_pack("{s:o,s:o}", "nodes", nodes, "vacant", vacant);
}

void system_record_apply(struct job *j, json_t *rec)
{
	system_slots_free(j->system);
	j->system = NULL;
	json_t *nodes = json_object_get(rec, "nodes"), *vacant = json_object_get(rec, "vacant");
	size_t i;
	json_t *v;
	json_array_foreach(nodes, i, v)
	{
		const char *name = json_string_value(v);
		/* A record this build cannot read whole keeps the slots before it
		 * (instance numbers must not shift). */
		if (!name || i >= SPEC_MAX_INSTANCES || hmap_get(&slots_of(j)->by_node, name))
			break;
		size_t k = slot_add(j->system, name);
		j->system->vacant[k] = json_is_true(json_array_get(vacant, i));
	}
	system_sync_instances(j);
}
