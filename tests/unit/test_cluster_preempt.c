/* test_cluster_preempt.c - preemption through the cluster's API
 * (src/server/cluster_preempt.c): victims go PREEMPTING, the preemptor holds
 * the node's room until they are gone, replacements wait PENDING without a
 * throttle, and a round preempts at most preempt_max_victims tasks.
 * The fixture is cluster_fx.h. */
#include "server/cluster.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/log.h"
#include "core/util.h"
#include "store/store.h"
#include "cluster_fx.h"
#include "unit.h"

static char *job_yaml(const char *key, int instances, int priority, double cpu)
{
	return yamlf("job: %s\n"
		     "instances: %d\n"
		     "priority: %d\n"
		     "task:\n"
		     "  command: [\"/bin/sleep\", \"300\"]\n"
		     "  resources: {cpu: %g, memory: 16MiB}\n",
		     key, instances, priority, cpu);
}

static size_t count_state(struct fx *f, const char *key, enum task_state s)
{
	size_t n = 0, it = 0;
	void *v;
	while (hmap_next(&f->c->tasks, &it, NULL, &v)) {
		struct task *t = v;
		if (!strcmp(t->job->key, key) && t->state == s)
			n++;
	}
	return n;
}

static struct task *first_in(struct fx *f, const char *key, enum task_state s)
{
	size_t it = 0;
	void *v;
	while (hmap_next(&f->c->tasks, &it, NULL, &v)) {
		struct task *t = v;
		if (!strcmp(t->job->key, key) && t->state == s)
			return t;
	}
	return NULL;
}

#define DEV "alice/devel/fill"
#define PROD "alice/prod/web"

/* Nodes n1..nN of 1 cpu, full of DEV: per_node RUNNING tasks of 1/per_node
 * cpu each, of this priority. */
static void dev_fill(struct fx *f, int nodes, int per_node, int priority)
{
	char name[16];
	for (int i = 1; i <= nodes; i++) {
		snprintf(name, sizeof name, "n%d", i);
		agent_register_full(f, name, 1.0, 8 * GiB, 20000, 20999, NULL);
	}
	CHECK(submit(f, job_yaml(DEV, nodes * per_node, priority, 1.0 / per_node), NULL));
	tick(f);
	run_job(f, DEV);
	CHECK(count_state(f, DEV, TASK_RUNNING) == (size_t)(nodes * per_node));
}

/* PROD: instances of 1 cpu with this hard constraint. */
static char *prod_yaml(int instances, const char *constraint)
{
	return yamlf("job: " PROD "\ninstances: %d\ntask:\n  command: [\"/bin/sleep\", \"300\"]\n"
		     "  resources: {cpu: 1, memory: 16MiB}\n  constraints: {%s}\n",
		     instances, constraint);
}

TEST(prod_holds_the_room_its_victim_frees)
{
	struct fx f;
	fx_setup(&f, NULL);
	dev_fill(&f, 1, 2, 0);
	CHECK(submit(&f, job_yaml(PROD, 1, 0, 0.5), NULL));
	tick(&f);
	/* one victim, the fewest; the prod task waits for it */
	CHECK(count_state(&f, DEV, TASK_PREEMPTING) == 1);
	CHECK(count_state(&f, DEV, TASK_RUNNING) == 1);
	struct task *p = active(&f, PROD, 0);
	CHECK(p && p->state == TASK_PENDING);
	CHECK_CONTAINS(p ? p->message : NULL, "preempting 1 task on node n1");
	struct task *victim = first_in(&f, DEV, TASK_PREEMPTING);
	CHECK_STR(victim ? victim->message : NULL, "preempted by alice/prod/web/0");
	/* A higher priority devel job arriving now cannot take the room. */
	CHECK(submit(&f, job_yaml("alice/devel/urgent", 1, 50, 0.5), NULL));
	tick(&f);
	tick(&f);
	CHECK(count_state(&f, "alice/devel/urgent", TASK_PENDING) == 1);
	CHECK(p->state == TASK_PENDING);
	/* The victim is gone: the prod task gets the node. */
	agent_status(&f, "n1", victim->id, "KILLED", 0, 143, "killed by berth (SIGTERM)");
	tick(&f);
	CHECK(p->state == TASK_ASSIGNED);
	CHECK(p->node && !strcmp(p->node->name, "n1"));
	CHECK_CONTAINS(victim->message, "preempted by alice/prod/web/0 (killed by berth");
	/* Its replacement waits, unthrottled, saying why. */
	struct task *r = active(&f, DEV, victim->instance);
	CHECK(r && r != victim && r->state == TASK_PENDING);
	CHECK_CONTAINS(r ? r->message : NULL, "preempted by alice/prod/web/0; waiting for room");
	/* The urgent devel job (priority 50) may preempt the devel task of
	 * priority 0 still running, but never the prod one. */
	tick(&f);
	CHECK(count_state(&f, PROD, TASK_PREEMPTING) == 0);
	fx_teardown(&f);
}

TEST(a_round_preempts_at_most_preempt_max_victims)
{
	struct fx f;
	struct cluster_config cfg;
	cluster_config_defaults(&cfg);
	cfg.preempt_max_victims = 2;
	fx_setup(&f, &cfg);
	dev_fill(&f, 4, 1, 0);
	CHECK(submit(&f, job_yaml(PROD, 4, 0, 1), NULL));
	tick(&f);
	CHECK(count_state(&f, DEV, TASK_PREEMPTING) == 2);
	CHECK(f.c->sched_needed); /* the rest next round */
	tick(&f);
	CHECK(count_state(&f, DEV, TASK_PREEMPTING) == 4);
	CHECK(f.c->preempted_total == 4);
	fx_teardown(&f);
}

TEST(equal_ranks_never_preempt)
{
	struct fx f;
	fx_setup(&f, NULL);
	dev_fill(&f, 1, 1, 5);
	CHECK(submit(&f, job_yaml("alice/devel/other", 1, 5, 1), NULL));
	tick(&f);
	tick(&f);
	CHECK(count_state(&f, DEV, TASK_RUNNING) == 1);
	CHECK(count_state(&f, "alice/devel/other", TASK_PENDING) == 1);
	CHECK(f.c->preempted_total == 0);
	fx_teardown(&f);
}

/* A `rack: limit:1` job of two instances on a full rack r1 (n1, n2): one
 * round preempts for one instance only (the rack then holds its limit).
 * While that victim stops, room frees on n2 and the other instance is
 * placed there; when the victim is gone, the preemptor's reservation no
 * longer holds (the rack has its one task): it goes back to PENDING,
 * saying why, and never runs beside it. */
TEST(a_preemptor_rechecks_its_limit_when_assigned)
{
	struct fx f;
	fx_setup(&f, NULL);
	dev_fill(&f, 2, 1, 0);
	CHECK(submit(&f, prod_yaml(2, "rack: \"limit:1\""), NULL));
	tick(&f);
	CHECK(count_state(&f, DEV, TASK_PREEMPTING) == 1);
	struct task *victim = first_in(&f, DEV, TASK_PREEMPTING);
	struct task *other = first_in(&f, DEV, TASK_RUNNING);
	struct task *p0 = active(&f, PROD, 0), *p1 = active(&f, PROD, 1);
	CHECK(victim && other && p0 && p1);
	if (!victim || !other || !p0 || !p1)
		goto out;
	struct task *held = p0->reserved_node ? p0 : p1, *free_one = held == p0 ? p1 : p0;
	CHECK(held->reserved_node && !free_one->reserved_node);
	/* The devel task on the other node ends: the free instance lands there. */
	agent_status(&f, other->node->name, other->id, "FAILED", 0, 1, "");
	tick(&f);
	CHECK(free_one->state == TASK_ASSIGNED);
	/* The victim is gone: the rack already holds the job's one task. */
	agent_status(&f, victim->node->name, victim->id, "KILLED", 0, 143, "");
	tick(&f);
	CHECK(count_state(&f, PROD, TASK_ASSIGNED) == 1);
	CHECK(held->state == TASK_PENDING && !held->node && !held->reserved_node);
	CHECK_CONTAINS(held->message, "limit constraint rack:limit:1");
out:
	fx_teardown(&f);
}

/* The node reserved for a preemptor changes rack while its victim stops:
 * the job's value constraint no longer holds there, so the preemptor is not
 * assigned to it. */
TEST(a_preemptor_rechecks_its_value_constraint_when_assigned)
{
	struct fx f;
	fx_setup(&f, NULL);
	dev_fill(&f, 1, 1, 0);
	CHECK(submit(&f, prod_yaml(1, "rack: r1"), NULL));
	tick(&f);
	struct task *victim = first_in(&f, DEV, TASK_PREEMPTING);
	struct task *p = active(&f, PROD, 0);
	CHECK(victim && p && p->reserved_node);
	if (!victim || !p)
		goto out;
	/* n1 moves to rack r2 (its agent registers again with the victim
	 * gone), then the round assigns what fits. */
	agent_status(&f, "n1", victim->id, "KILLED", 0, 143, "");
	json_t *body =
	    json_pack("{s:s,s:{s:s,s:s},s:{s:f,s:I,s:I,s:i,s:i},s:s}", "name", "n1", "attributes",
		      "host", "n1", "rack", "r2", "resources", "cpu", 1.0, "memory",
		      (json_int_t)(8 * GiB), "disk", (json_int_t)(100 * GiB), "port_lo", 20000,
		      "port_hi", 20999, "addr", "http://127.0.0.1:40123");
	CHECK(agent_register_body(&f, body) > 0);
	tick(&f);
	p = active(&f, PROD, 0);
	CHECK(p && p->state == TASK_PENDING && !p->node);
	CHECK_CONTAINS(p ? p->message : NULL, "value constraint rack:r1");
out:
	fx_teardown(&f);
}

UNIT_MAIN(prod_holds_the_room_its_victim_frees, a_round_preempts_at_most_preempt_max_victims,
	  equal_ranks_never_preempt, a_preemptor_rechecks_its_limit_when_assigned,
	  a_preemptor_rechecks_its_value_constraint_when_assigned)
