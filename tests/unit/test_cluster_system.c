/* test_cluster_system.c - system jobs (src/server/cluster_system.c)
 * through the cluster's public API: one instance on every eligible node as
 * nodes join, drain, go down and change attributes; updates; kill; reload.
 * The fixture is cluster_fx.h. */
#include "server/cluster.h"
#include "server/cluster_quota.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/log.h"
#include "core/util.h"
#include "store/store-internal.h" /* a test reads the pending batch */
#include "store/store.h"
#include "cluster_fx.h"
#include "unit.h"

/* ---- system jobs ------------------------------------------------------- */

#define SYS "ops/prod/node-exporter"

static uint64_t register_node(struct fx *f, const char *name, double cpu, const char *rack)
{
	json_t *body = json_pack("{s:s,s:{s:s},s:{s:f,s:I,s:I,s:i,s:i},s:s}", "name", name,
				 "attributes", "rack", rack, "resources", "cpu", cpu, "memory",
				 (json_int_t)(8 * GiB), "disk", (json_int_t)(100 * GiB), "port_lo",
				 20000, "port_hi", 20999, "addr", "http://127.0.0.1:40123");
	return agent_register_body(f, body);
}

static uint64_t drain(struct fx *f, const char *name, bool on)
{
	pthread_mutex_lock(&f->c->lock);
	uint64_t seq = cluster_node_drain(f->c, name, on, &f->err);
	pthread_mutex_unlock(&f->c->lock);
	return seq;
}

/* A system job; `extra` goes under task: (constraints...). */
static char *sys_yaml(const char *cmd, const char *extra)
{
	return yamlf("job: " SYS "\n"
		     "type: system\n"
		     "update: {batch_size: 1, watch: 0s}\n"
		     "task:\n"
		     "  command: [\"/bin/sh\", \"-c\", \"%s\"]\n"
		     "  resources: {cpu: 0.5, memory: 64MiB, ports: [metrics]}\n"
		     "%s",
		     cmd, extra);
}

/* The job's live tasks placed on node `name`. */
static int live_on(struct fx *f, const char *name)
{
	struct job *j = job_get(f, SYS);
	int n = 0;
	for (size_t i = 0; j && i < j->nactive; i++)
		n += j->active[i] && !task_state_terminal(j->active[i]->state) &&
		     !strcmp(node_of(j->active[i]), name);
	return n;
}

/* The instance whose active task is on node `name`, or -1. */
static int instance_on(struct fx *f, const char *name)
{
	struct job *j = job_get(f, SYS);
	for (size_t i = 0; j && i < j->nactive; i++)
		if (j->active[i] && !strcmp(node_of(j->active[i]), name))
			return (int)i;
	return -1;
}

static int count_state(struct fx *f, enum task_state s)
{
	struct job *j = job_get(f, SYS);
	int n = 0;
	for (size_t i = 0; j && i < j->nactive; i++)
		n += j->active[i] && j->active[i]->state == s;
	return n;
}

static long long status_instances(struct fx *f)
{
	json_t *st = job_status(f, SYS, false);
	long long n = st ? jint(st, "instances") : -1;
	json_decref(st);
	return n;
}

/* The agents: every ASSIGNED task runs, every stopping one ends. */
static void agents_act(struct fx *f)
{
	struct job *j = job_get(f, SYS);
	for (size_t i = 0; j && i < j->nactive; i++) {
		struct task *t = j->active[i];
		if (!t || !t->node)
			continue;
		if (t->state == TASK_ASSIGNED || t->state == TASK_STARTING)
			agent_status(f, t->node->name, t->id, "RUNNING", 1000 + (int)i, 0, "");
		else if (t->state == TASK_KILLING || t->state == TASK_RESTARTING ||
			 t->state == TASK_DRAINING)
			agent_status(f, t->node->name, t->id, "KILLED", 1000 + (int)i, 143, "");
	}
	tick(f);
}

TEST(system_job_runs_one_instance_on_every_node_and_joiners_get_one)
{
	struct fx f;
	fx_setup(&f, NULL);
	CHECK(register_node(&f, "n1", 4.0, "r1") > 0);
	CHECK(register_node(&f, "n2", 4.0, "r1") > 0);
	struct submit_result res;
	CHECK(submit(&f, sys_yaml("sleep 1000", ""), &res) > 0);
	CHECK(res.created);
	tick(&f);
	CHECK(live_on(&f, "n1") == 1);
	CHECK(live_on(&f, "n2") == 1);
	CHECK(count_state(&f, TASK_ASSIGNED) == 2);
	json_t *st = job_status(&f, SYS, false);
	CHECK(jint(st, "instances") == 2);
	CHECK_STR(json_string_value(json_object_get(st, "type")), "system");
	CHECK_STR(json_string_value(json_object_get(st, "status")), "running");
	json_decref(st);
	agents_act(&f);
	char *id0 = xstrdup(active(&f, SYS, 0)->id);
	/* A third node joins: it gets the next instance; nothing else moves. */
	CHECK(register_node(&f, "n3", 4.0, "r1") > 0);
	tick(&f);
	CHECK(live_on(&f, "n3") == 1);
	CHECK(instance_on(&f, "n3") == 2);
	CHECK(status_instances(&f) == 3);
	CHECK_STR(active(&f, SYS, 0)->id, id0);
	CHECK_STR(state_of(active(&f, SYS, 0)), "RUNNING");
	/* A task that fails on an eligible node is replaced there. */
	struct task *t = active(&f, SYS, 0);
	char *node0 = xstrdup(node_of(t));
	agent_status(&f, node0, t->id, "FAILED", 1000, 1, "exit 1");
	tick(&f);
	CHECK_STR(node_of(active(&f, SYS, 0)), node0);
	CHECK(strcmp(active(&f, SYS, 0)->id, id0) != 0);
	free(id0);
	free(node0);
	fx_teardown(&f);
}

TEST(system_job_drain_stops_instance_without_moving_it)
{
	struct fx f;
	fx_setup(&f, NULL);
	register_node(&f, "n1", 4.0, "r1");
	register_node(&f, "n2", 4.0, "r1");
	CHECK(submit(&f, sys_yaml("sleep 1000", ""), NULL) > 0);
	tick(&f);
	agents_act(&f);
	int i1 = instance_on(&f, "n1"), i2 = instance_on(&f, "n2");
	CHECK(i1 >= 0 && i2 >= 0 && i1 != i2);
	char *id2 = xstrdup(active(&f, SYS, i2)->id);
	CHECK(drain(&f, "n1", true) > 0);
	tick(&f);
	struct task *t = active(&f, SYS, i1);
	CHECK_STR(state_of(t), "DRAINING");
	CHECK_CONTAINS(t ? t->message : NULL, "node n1 is draining");
	agents_act(&f);
	tick(&f);
	CHECK(active(&f, SYS, i1) == NULL); /* not moved to n2 */
	CHECK(live_on(&f, "n2") == 1);
	CHECK_STR(active(&f, SYS, i2)->id, id2);
	CHECK(status_instances(&f) == 1);
	CHECK(node_get(&f, "n1")->state == NODE_DRAINED);
	/* Activated again: the same instance number comes back on n1. */
	CHECK(drain(&f, "n1", false) > 0);
	tick(&f);
	CHECK_STR(node_of(active(&f, SYS, i1)), "n1");
	CHECK_STR(state_of(active(&f, SYS, i1)), "ASSIGNED");
	CHECK(status_instances(&f) == 2);
	free(id2);
	fx_teardown(&f);
}

TEST(system_job_drain_undone_before_task_stopped_keeps_instance)
{
	struct fx f;
	fx_setup(&f, NULL);
	register_node(&f, "n1", 4.0, "r1");
	CHECK(submit(&f, sys_yaml("sleep 1000", ""), NULL) > 0);
	tick(&f);
	agents_act(&f);
	drain(&f, "n1", true);
	tick(&f);
	CHECK_STR(state_of(active(&f, SYS, 0)), "DRAINING");
	drain(&f, "n1", false);
	tick(&f);
	/* The draining task ends; its successor starts on n1 at once. */
	agents_act(&f);
	CHECK_STR(state_of(active(&f, SYS, 0)), "ASSIGNED");
	CHECK_STR(node_of(active(&f, SYS, 0)), "n1");
	CHECK(live_on(&f, "n1") == 1);
	fx_teardown(&f);
}

TEST(system_job_down_node_instance_lost_and_not_rescheduled)
{
	struct cluster_config cfg;
	cluster_config_defaults(&cfg);
	cfg.down_after_ms = 200;
	cfg.flap_backoff_base_ms = 100;
	struct fx f;
	fx_setup(&f, &cfg);
	register_node(&f, "n1", 4.0, "r1");
	register_node(&f, "n2", 4.0, "r1");
	CHECK(submit(&f, sys_yaml("sleep 1000", ""), NULL) > 0);
	tick(&f);
	agents_act(&f);
	int i1 = instance_on(&f, "n1");
	char *lost = xstrdup(active(&f, SYS, i1)->id);
	for (int k = 0; k < 18; k++) { /* 360 ms: n1 silent, n2 heartbeating */
		run_for(&f, 20);
		agent_heartbeat(&f, "n2");
	}
	CHECK(node_get(&f, "n1")->state == NODE_DOWN);
	struct task *o = cluster_find_task(f.c, lost);
	CHECK_STR(state_of(o), "LOST");
	CHECK(o && o->nevents && strstr(o->events[o->nevents - 1].message, "not replaced"));
	CHECK(active(&f, SYS, i1) == NULL);
	CHECK(count_state(&f, TASK_PENDING) == 0);
	CHECK(live_on(&f, "n2") == 1);
	CHECK(status_instances(&f) == 1);
	/* It comes back: after its flap back-off its instance starts again. */
	register_node(&f, "n1", 4.0, "r1");
	tick(&f);
	struct task *t = active(&f, SYS, i1);
	CHECK_STR(state_of(t), "PENDING");
	CHECK_CONTAINS(t ? t->message : NULL, "back-off");
	for (int k = 0; k < 10; k++) {
		run_for(&f, 20);
		agent_heartbeat(&f, "n1");
		agent_heartbeat(&f, "n2");
	}
	CHECK_STR(state_of(active(&f, SYS, i1)), "ASSIGNED");
	CHECK_STR(node_of(active(&f, SYS, i1)), "n1");
	free(lost);
	fx_teardown(&f);
}

TEST(system_job_constraints_follow_node_attributes)
{
	struct fx f;
	fx_setup(&f, NULL);
	register_node(&f, "n1", 4.0, "r1");
	register_node(&f, "n2", 4.0, "r2");
	CHECK(submit(&f, sys_yaml("sleep 1000", "  constraints: {rack: r1}\n"), NULL) > 0);
	tick(&f);
	CHECK(live_on(&f, "n1") == 1);
	CHECK(live_on(&f, "n2") == 0);
	CHECK(count_state(&f, TASK_PENDING) == 0);
	CHECK(status_instances(&f) == 1);
	agents_act(&f);
	/* n2 moves to rack r1: it gets one. */
	register_node(&f, "n2", 4.0, "r1");
	tick(&f);
	CHECK(live_on(&f, "n2") == 1);
	CHECK(status_instances(&f) == 2);
	/* n1 leaves rack r1: its instance stops and is not moved. */
	int i1 = instance_on(&f, "n1");
	register_node(&f, "n1", 4.0, "r3");
	tick(&f);
	struct task *t = active(&f, SYS, i1);
	CHECK_STR(state_of(t), "KILLING");
	CHECK_CONTAINS(t ? t->message : NULL, "no longer matches constraint rack:r1");
	agents_act(&f);
	tick(&f);
	CHECK(active(&f, SYS, i1) == NULL);
	CHECK(live_on(&f, "n2") == 1);
	CHECK(status_instances(&f) == 1);
	fx_teardown(&f);
}

TEST(system_job_node_that_cannot_fit_shows_why)
{
	struct fx f;
	fx_setup(&f, NULL);
	register_node(&f, "n1", 4.0, "r1");
	register_node(&f, "small", 0.25, "r1");
	CHECK(submit(&f, sys_yaml("sleep 1000", ""), NULL) > 0);
	tick(&f);
	CHECK(live_on(&f, "n1") == 1);
	CHECK(count_state(&f, TASK_PENDING) == 1);
	json_t *st = job_status(&f, SYS, false);
	CHECK(jint(st, "instances") == 2);
	bool seen = false;
	size_t i;
	json_t *t;
	json_array_foreach(json_object_get(st, "tasks"), i, t)
	{
		const char *msg = json_string_value(json_object_get(t, "message"));
		if (!strcmp(json_string_value(json_object_get(t, "state")), "PENDING")) {
			CHECK_CONTAINS(msg,
				       "node small: insufficient cpu (0.25 free, 0.50 wanted)");
			seen = true;
		}
	}
	CHECK(seen);
	json_decref(st);
	fx_teardown(&f);
}

TEST(system_job_spec_refuses_instances_limits_and_type_changes)
{
	struct job_spec *spec = NULL;
	struct berr err = {0};
	char *y = yamlf("job: %s\ntype: system\ninstances: 3\ntask: {command: sleep 1}\n", SYS);
	CHECK(spec_parse_yaml(y, strlen(y), "s.yaml", &spec, &err) < 0);
	CHECK_CONTAINS(err.msg, "s.yaml:3:12: instances: expected no instances for a system job");
	free(y);
	y = yamlf("job: %s\ntype: system\ntask:\n  command: sleep 1\n"
		  "  constraints: {host: 'limit:1'}\n",
		  SYS);
	CHECK(spec_parse_yaml(y, strlen(y), "s.yaml", &spec, &err) < 0);
	CHECK_CONTAINS(err.msg, "task.constraints.host: expected a value constraint");
	free(y);
	/* Its canonical JSON (instances: 0) parses back. */
	y = yamlf("job: %s\ntype: system\ntask: {command: sleep 1}\n", SYS);
	CHECK(spec_parse_yaml(y, strlen(y), "s.yaml", &spec, &err) == 0);
	free(y);
	json_t *js = spec_to_json(spec);
	CHECK(jint(js, "instances") == 0);
	struct job_spec *back = NULL;
	CHECK(spec_parse_json(js, &back, &err) == 0);
	CHECK(back && back->type == JOB_SYSTEM);
	json_decref(js);
	spec_free(back);
	spec_free(spec);
	/* A service may not become a system job (nor back). */
	struct fx f;
	fx_setup(&f, NULL);
	register_node(&f, "n1", 4.0, "r1");
	CHECK(submit(&f, yamlf("job: %s\ntask: {command: sleep 1}\n", SYS), NULL) > 0);
	CHECK(submit(&f, sys_yaml("sleep 1", ""), NULL) == 0);
	CHECK(f.err.code == 409);
	CHECK_CONTAINS(f.err.msg, "cannot become a system job");
	fx_teardown(&f);
}

TEST(system_job_update_rolls_node_by_node)
{
	struct fx f;
	fx_setup(&f, NULL);
	register_node(&f, "n1", 4.0, "r1");
	register_node(&f, "n2", 4.0, "r1");
	register_node(&f, "n3", 4.0, "r1");
	CHECK(submit(&f, sys_yaml("sleep 1000", ""), NULL) > 0);
	tick(&f);
	agents_act(&f);
	CHECK(count_state(&f, TASK_RUNNING) == 3);
	struct submit_result res;
	CHECK(submit(&f, sys_yaml("sleep 2000", ""), &res) > 0);
	CHECK(res.update);
	CHECK(res.version == 2);
	tick(&f);
	CHECK(count_state(&f, TASK_RESTARTING) == 1); /* batch_size 1 */
	CHECK(count_state(&f, TASK_RUNNING) == 2);
	for (int step = 0; step < 20; step++) {
		agents_act(&f);
		int moving = 3 - count_state(&f, TASK_RUNNING);
		CHECK(moving <= 1);
	}
	pthread_mutex_lock(&f.c->lock);
	json_t *u = cluster_update_json(f.c, SYS, &f.err);
	pthread_mutex_unlock(&f.c->lock);
	CHECK_STR(json_string_value(json_object_get(u, "state")), "ROLLED_FORWARD");
	CHECK(jint(u, "total") == 3);
	json_decref(u);
	for (int i = 0; i < 3; i++)
		CHECK(active(&f, SYS, i) && active(&f, SYS, i)->version == 2);
	CHECK(live_on(&f, "n1") == 1 && live_on(&f, "n2") == 1 && live_on(&f, "n3") == 1);
	CHECK(status_instances(&f) == 3);
	fx_teardown(&f);
}

TEST(system_job_kill_removes_every_instance)
{
	struct fx f;
	fx_setup(&f, NULL);
	register_node(&f, "n1", 4.0, "r1");
	register_node(&f, "n2", 4.0, "r1");
	CHECK(submit(&f, sys_yaml("sleep 1000", ""), NULL) > 0);
	tick(&f);
	agents_act(&f);
	CHECK(job_kill(&f, SYS) > 0);
	CHECK(count_state(&f, TASK_KILLING) == 2);
	agents_act(&f);
	register_node(&f, "n3", 4.0, "r1"); /* a joiner gets nothing */
	tick(&f);
	CHECK(job_get(&f, SYS) == NULL);
	fx_teardown(&f);
}

TEST(system_job_instance_numbers_survive_restart)
{
	struct fx f;
	fx_setup(&f, NULL);
	register_node(&f, "n1", 4.0, "r1");
	register_node(&f, "n2", 4.0, "r1");
	CHECK(submit(&f, sys_yaml("sleep 1000", ""), NULL) > 0);
	tick(&f);
	agents_act(&f);
	int i1 = instance_on(&f, "n1"), i2 = instance_on(&f, "n2");
	drain(&f, "n1", true);
	tick(&f);
	agents_act(&f);
	tick(&f);
	CHECK(active(&f, SYS, i1) == NULL);
	fx_restart(&f);
	CHECK(instance_on(&f, "n2") == i2);
	CHECK(status_instances(&f) == 1);
	tick(&f);
	CHECK(active(&f, SYS, i1) == NULL); /* still drained: still vacant */
	drain(&f, "n1", false);
	register_node(&f, "n3", 4.0, "r1");
	tick(&f);
	CHECK(instance_on(&f, "n1") == i1);
	CHECK(instance_on(&f, "n3") == 2);
	CHECK(status_instances(&f) == 3);
	fx_teardown(&f);
}

static size_t plan_count(json_t *p, const char *what)
{
	return json_array_size(json_object_get(json_object_get(p, "instances"), what));
}

TEST(system_job_plan_counts_eligible_nodes)
{
	struct fx f;
	fx_setup(&f, NULL);
	register_node(&f, "n1", 4.0, "r1");
	register_node(&f, "n2", 4.0, "r1");
	register_node(&f, "n3", 4.0, "r2");
	json_t *p = plan(&f, sys_yaml("sleep 1000", "  constraints: {rack: r1}\n"));
	CHECK(plan_count(p, "add") == 2);
	CHECK(json_is_true(json_object_get(p, "fits")));
	json_decref(p);
	CHECK(submit(&f, sys_yaml("sleep 1000", "  constraints: {rack: r1}\n"), NULL) > 0);
	tick(&f);
	agents_act(&f);
	drain(&f, "n2", true);
	tick(&f);
	agents_act(&f);
	tick(&f);
	/* A new config: the instance on n1 is updated, n2's slot is vacant. */
	p = plan(&f, sys_yaml("sleep 2000", "  constraints: {rack: r1}\n"));
	CHECK(plan_count(p, "update") == 1);
	CHECK(plan_count(p, "add") == 0);
	CHECK(plan_count(p, "unchanged") == 1);
	CHECK(plan_count(p, "remove") == 0);
	json_decref(p);
	fx_teardown(&f);
}

TEST(system_job_vacancies_of_down_nodes_are_written_once_and_survive_restart)
{
	struct cluster_config cfg;
	cluster_config_defaults(&cfg);
	cfg.down_after_ms = 200;
	struct fx f;
	fx_setup(&f, &cfg);
	const char *names[] = {"n1", "n2", "n3", "n4"};
	for (int k = 0; k < 4; k++)
		register_node(&f, names[k], 4.0, "r1");
	CHECK(submit(&f, sys_yaml("sleep 1000", ""), NULL) > 0);
	tick(&f);
	agents_act(&f);
	fx_commit(&f);
	int i1 = instance_on(&f, "n1");
	for (int k = 0; k < 18; k++) {
		run_for(&f, 20);
		agent_heartbeat(&f, "n4");
	}
	CHECK(node_get(&f, "n1")->state == NODE_DOWN);
	CHECK(node_get(&f, "n3")->state == NODE_DOWN);
	/* Three nodes lost, one write of the job's record. */
	pthread_mutex_lock(&f.c->lock);
	size_t writes = 0;
	for (size_t k = 0; f.c->pending && k < store_batch_count(f.c->pending); k++)
		writes += !strcmp(f.c->pending->ops[k].key, "jobs/" SYS);
	pthread_mutex_unlock(&f.c->lock);
	CHECK(writes == 1);
	fx_restart(&f);
	CHECK(status_instances(&f) == 1);
	CHECK(active(&f, SYS, i1) == NULL);
	fx_teardown(&f);
}

/* A new system job counts one instance per eligible node against its
 * role's quota (its spec names none). */
TEST(system_job_counts_an_instance_per_eligible_node_against_quota)
{
	struct fx f;
	fx_setup(&f, NULL);
	CHECK(register_node(&f, "n1", 4.0, "r1") > 0);
	CHECK(register_node(&f, "n2", 4.0, "r1") > 0);
	CHECK(register_node(&f, "n3", 4.0, "r2") > 0);
	struct quota_limit lim = {.cpu_milli = 1000,
				  .memory = QUOTA_UNLIMITED,
				  .disk = QUOTA_UNLIMITED,
				  .tasks = QUOTA_UNLIMITED};
	json_t *reply = NULL;
	pthread_mutex_lock(&f.c->lock);
	CHECK(cluster_quota_set(f.c, "ops", &lim, &reply) > 0);
	pthread_mutex_unlock(&f.c->lock);
	json_decref(reply);
	/* 3 nodes x 0.5 cpu is over 1.0. */
	CHECK(submit(&f, sys_yaml("sleep 1000", ""), NULL) == 0);
	CHECK(f.err.code == 409);
	CHECK(strstr(f.err.msg, "cpu 1.5 of 1.0") != NULL);
	/* On the two r1 nodes only it fits. */
	f.err = (struct berr){0};
	CHECK(submit(&f, sys_yaml("sleep 1000", "  constraints: {rack: r1}\n"), NULL) > 0);
	fx_teardown(&f);
}

UNIT_MAIN(system_job_runs_one_instance_on_every_node_and_joiners_get_one,
	  system_job_drain_stops_instance_without_moving_it,
	  system_job_drain_undone_before_task_stopped_keeps_instance,
	  system_job_down_node_instance_lost_and_not_rescheduled,
	  system_job_constraints_follow_node_attributes, system_job_node_that_cannot_fit_shows_why,
	  system_job_spec_refuses_instances_limits_and_type_changes,
	  system_job_update_rolls_node_by_node, system_job_kill_removes_every_instance,
	  system_job_instance_numbers_survive_restart, system_job_plan_counts_eligible_nodes,
	  system_job_vacancies_of_down_nodes_are_written_once_and_survive_restart,
	  system_job_counts_an_instance_per_eligible_node_against_quota)
