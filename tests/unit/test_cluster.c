/* test_cluster.c - the in-memory cluster state (src/server/cluster.c) through
 * its public API: job submit/update/kill/restart, the scheduler tick, the
 * agent protocol (register, watch, status), node heartbeats and drains, the
 * JSON views, and reloading from a real SQLite store.
 *
 * Each test builds a cluster over a store in its own mkdtemp directory and
 * plays the agent itself with the JSON bodies of docs/protocol.md (the
 * fixture of cluster_fx.h). */
#include "server/cluster.h"

#include <float.h>
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/agent_report.h"
#include "core/log.h"
#include "core/util.h"
#include "store/store-internal.h" /* replica tests read committed batches */
#include "store/store.h"
#include "cluster_fx.h"
#include "unit.h"

/* ---- jobs ---------------------------------------------------------------- */

/* A service: `instances` tasks, each with two named ports. */
static char *svc_yaml(const char *key, int instances, const char *cmd)
{
	return yamlf("job: %s\n"
		     "instances: %d\n"
		     "task:\n"
		     "  command: [\"/bin/sh\", \"-c\", \"%s\"]\n"
		     "  resources: {cpu: 0.5, memory: 64MiB, ports: [http, admin]}\n",
		     key, instances, cmd);
}

static char *batch_yaml(const char *key, int instances, int max_failures)
{
	return yamlf("job: %s\n"
		     "type: batch\n"
		     "instances: %d\n"
		     "max_task_failures: %d\n"
		     "task:\n"
		     "  command: [\"/bin/true\"]\n"
		     "  resources: {cpu: 0.25, memory: 32MiB}\n",
		     key, instances, max_failures);
}

#define WEB "alice/devel/web"
#define BAT "bob/test/count"

/* A service of n instances placed on n1 and RUNNING there. */
static void running_service(struct fx *f, int n)
{
	CHECK(agent_register(f, "n1") > 0);
	CHECK(submit(f, svc_yaml(WEB, n, "sleep 1000"), NULL) > 0);
	tick(f);
	run_job(f, WEB);
	for (int i = 0; i < n; i++)
		CHECK_STR(state_of(active(f, WEB, i)), "RUNNING");
}

/* ---- tests: submit and schedule ------------------------------------------ */

TEST(submit_creates_pending_tasks)
{
	struct fx f;
	fx_setup(&f, NULL);
	struct submit_result res;
	CHECK(submit(&f, svc_yaml(WEB, 3, "sleep 1000"), &res) > 0);
	CHECK(res.created);
	CHECK(res.changed);
	CHECK(res.version == 1);
	struct job *j = job_get(&f, WEB);
	CHECK(j != NULL);
	CHECK(j && j->nactive == 3);
	for (int i = 0; i < 3; i++) {
		struct task *t = active(&f, WEB, i);
		CHECK_STR(state_of(t), "PENDING");
		CHECK(t && t->node == NULL);
		CHECK(t && t->instance == i);
		CHECK(t && t->version == 1);
		CHECK(t && t->ancestor == NULL);
		CHECK(t && !strncmp(t->id, "alice-devel-web-", 16));
	}
	CHECK(active(&f, WEB, 0) != active(&f, WEB, 1));
	fx_teardown(&f);
}

TEST(tick_without_nodes_keeps_pending)
{
	struct fx f;
	fx_setup(&f, NULL);
	CHECK(submit(&f, svc_yaml(WEB, 2, "sleep 1000"), NULL) > 0);
	tick(&f);
	for (int i = 0; i < 2; i++) {
		struct task *t = active(&f, WEB, i);
		CHECK_STR(state_of(t), "PENDING");
		CHECK_CONTAINS(t ? t->message : NULL, "no nodes");
	}
	fx_teardown(&f);
}

TEST(tick_assigns_tasks_with_distinct_ports)
{
	struct fx f;
	fx_setup(&f, NULL);
	CHECK(agent_register(&f, "n1") > 0);
	CHECK(submit(&f, svc_yaml(WEB, 3, "sleep 1000"), NULL) > 0);
	CHECK(tick(&f) > 0);
	int seen[6], nseen = 0;
	for (int i = 0; i < 3; i++) {
		struct task *t = active(&f, WEB, i);
		CHECK_STR(state_of(t), "ASSIGNED");
		CHECK_STR(node_of(t), "n1");
		CHECK_CONTAINS(t ? t->message : NULL, "assigned to node n1");
		CHECK(t && json_object_size(t->ports) == 2);
		const char *k;
		json_t *v;
		json_object_foreach(t ? t->ports : NULL, k, v)
		{
			int p = (int)json_integer_value(v);
			CHECK(p >= 20000 && p <= 20999);
			for (int s = 0; s < nseen; s++)
				CHECK(seen[s] != p);
			if (nseen < 6)
				seen[nseen++] = p;
		}
	}
	CHECK(nseen == 6);
	/* Resources are accounted on the node. */
	struct node *n = node_get(&f, "n1");
	CHECK(n && n->tasks.count == 3);
	CHECK(n && n->cpu_used > 1.49 && n->cpu_used < 1.51);
	CHECK(n && n->mem_used == (uint64_t)(3 * 64 * MiB));
	fx_teardown(&f);
}

TEST(node_desired_lists_assigned_tasks)
{
	struct fx f;
	fx_setup(&f, NULL);
	CHECK(agent_register(&f, "n1") > 0);
	long long v0 = desired_version(&f, "n1");
	CHECK(submit(&f, svc_yaml(WEB, 2, "sleep 1000"), NULL) > 0);
	tick(&f);
	json_t *d = desired(&f, "n1");
	CHECK(json_integer_value(json_object_get(d, "version")) > v0);
	json_t *tasks = json_object_get(d, "tasks");
	CHECK(json_array_size(tasks) == 2);
	size_t i;
	json_t *t;
	json_array_foreach(tasks, i, t)
	{
		const char *id = jstr(t, "id");
		int inst = (int)jint(t, "instance");
		struct task *a = active(&f, WEB, inst);
		CHECK_STR(id, a ? a->id : NULL);
		CHECK_STR(jstr(t, "job"), WEB);
		CHECK(jint(t, "version") == 1);
		CHECK_STR(jstr(t, "host"), "n1");
		CHECK(json_is_object(json_object_get(t, "task")));
		CHECK(json_is_array(json_object_get(json_object_get(t, "task"), "command")));
		json_t *ports = json_object_get(t, "ports");
		CHECK(json_is_integer(json_object_get(ports, "http")));
		CHECK(json_is_integer(json_object_get(ports, "admin")));
		CHECK(a && json_equal(ports, a->ports));
	}
	json_decref(d);
	fx_teardown(&f);
}

TEST(agent_running_sets_pid)
{
	struct fx f;
	fx_setup(&f, NULL);
	CHECK(agent_register(&f, "n1") > 0);
	CHECK(submit(&f, svc_yaml(WEB, 1, "sleep 1000"), NULL) > 0);
	tick(&f);
	struct task *t = active(&f, WEB, 0);
	CHECK(agent_status(&f, "n1", t->id, "STARTING", 0, 0, "") > 0);
	CHECK_STR(state_of(t), "STARTING");
	CHECK(agent_status(&f, "n1", t->id, "RUNNING", 4242, 0, "") > 0);
	CHECK_STR(state_of(t), "RUNNING");
	CHECK(t->pid == 4242);
	CHECK(t->running_since_ms > 0);
	CHECK_STR(t->message, "running on n1");
	CHECK(desired_has(&f, "n1", t->id));
	/* A repeated report changes nothing. */
	size_t nev = t->nevents;
	agent_status(&f, "n1", t->id, "RUNNING", 4242, 0, "");
	CHECK(t->nevents == nev);
	fx_teardown(&f);
}

TEST(infeasible_job_stays_pending_with_reason)
{
	struct fx f;
	fx_setup(&f, NULL);
	CHECK(agent_register_full(&f, "n1", 4.0, 1 * GiB, 20000, 20999, NULL) > 0);
	CHECK(submit(&f,
		     yamlf("job: alice/devel/big\n"
			   "task:\n"
			   "  command: [\"/bin/true\"]\n"
			   "  resources: {cpu: 1, memory: 2GiB}\n"),
		     NULL) > 0);
	tick(&f);
	tick(&f);
	struct task *t = active(&f, "alice/devel/big", 0);
	CHECK_STR(state_of(t), "PENDING");
	CHECK(t && !t->node);
	CHECK_CONTAINS(t ? t->message : NULL, "insufficient memory");
	json_t *st = job_status(&f, "alice/devel/big", false);
	CHECK_CONTAINS(jstr(json_array_get(json_object_get(st, "tasks"), 0), "message"),
		       "insufficient memory");
	json_decref(st);
	fx_teardown(&f);
}

/* ---- tests: services, failures, throttling -------------------------------- */

TEST(service_failure_is_replaced_with_ancestor)
{
	struct fx f;
	fx_setup(&f, NULL);
	running_service(&f, 2);
	struct task *t = active(&f, WEB, 0);
	char *old = xstrdup(t->id);
	CHECK(agent_status(&f, "n1", old, "FAILED", 1000, 3, "exited with status 3") > 0);
	struct task *n = active(&f, WEB, 0);
	CHECK(n != NULL && strcmp(n->id, old) != 0);
	CHECK_STR(state_of(n), "PENDING");
	CHECK_STR(n ? n->ancestor : NULL, old);
	CHECK(n && n->quick_deaths == 1);
	CHECK(n && n->node == NULL);
	/* The old task is kept as history, FAILED with its exit code, and is no
	 * longer held by the node. */
	struct task *o = cluster_find_task(f.c, old);
	CHECK_STR(state_of(o), "FAILED");
	CHECK(o && o->exit_code == 3);
	CHECK(!hmap_get(&node_get(&f, "n1")->tasks, old));
	CHECK(!desired_has(&f, "n1", old));
	json_t *st = job_status(&f, WEB, true);
	CHECK(json_array_size(json_object_get(st, "tasks")) == 3);
	json_decref(st);
	/* The other instance is untouched. */
	CHECK_STR(state_of(active(&f, WEB, 1)), "RUNNING");
	/* The replacement gets placed. */
	tick(&f);
	CHECK_STR(state_of(active(&f, WEB, 0)), "ASSIGNED");
	free(old);
	fx_teardown(&f);
}

TEST(service_second_quick_death_is_throttled)
{
	struct cluster_config cfg;
	cluster_config_defaults(&cfg);
	cfg.throttle_base_ms = 300;
	struct fx f;
	fx_setup(&f, &cfg);
	running_service(&f, 1);
	struct task *t = active(&f, WEB, 0);
	agent_status(&f, "n1", t->id, "FAILED", 1000, 1, "");
	t = active(&f, WEB, 0);
	CHECK_STR(state_of(t), "PENDING");
	tick(&f);
	run_job(&f, WEB);
	CHECK_STR(state_of(t), "RUNNING");
	char *second = xstrdup(t->id);
	agent_status(&f, "n1", second, "FAILED", 1000, 1, "");
	t = active(&f, WEB, 0);
	CHECK_STR(state_of(t), "THROTTLED");
	CHECK_STR(t ? t->ancestor : NULL, second);
	CHECK(t && t->quick_deaths == 2);
	CHECK_CONTAINS(t ? t->message : NULL, "throttled");
	/* A throttled task is not placed before its back-off ends. */
	tick(&f);
	CHECK_STR(state_of(active(&f, WEB, 0)), "THROTTLED");
	sleep_ms(400);
	tick(&f);
	CHECK_STR(state_of(active(&f, WEB, 0)), "ASSIGNED");
	free(second);
	fx_teardown(&f);
}

TEST(service_throttle_backoff_doubles_and_caps)
{
	struct cluster_config cfg;
	cluster_config_defaults(&cfg);
	cfg.throttle_base_ms = 1000;
	cfg.throttle_max_ms = 3000;
	struct fx f;
	fx_setup(&f, &cfg);
	running_service(&f, 1);
	/* Kill it quickly over and over, releasing the throttle by hand. */
	int64_t expect[] = {0, 1000, 2000, 3000, 3000};
	for (int k = 0; k < 5; k++) {
		struct task *t = active(&f, WEB, 0);
		if (t && t->state == TASK_THROTTLED)
			t->throttle_until_ms = 0;
		tick(&f);
		run_job(&f, WEB);
		t = active(&f, WEB, 0);
		CHECK_STR(state_of(t), "RUNNING");
		agent_status(&f, "n1", t->id, "FAILED", 1000, 1, "");
		struct task *n = active(&f, WEB, 0);
		CHECK(n && n->quick_deaths == k + 1);
		if (expect[k] == 0) {
			CHECK_STR(state_of(n), "PENDING");
		} else {
			CHECK_STR(state_of(n), "THROTTLED");
			int64_t d = n ? n->throttle_until_ms - n->created_ms : -1;
			CHECK(d == expect[k]);
		}
	}
	fx_teardown(&f);
}

TEST(service_long_run_resets_quick_deaths)
{
	struct cluster_config cfg;
	cluster_config_defaults(&cfg);
	cfg.flap_threshold_ms = 50;
	struct fx f;
	fx_setup(&f, &cfg);
	running_service(&f, 1);
	for (int k = 0; k < 3; k++) {
		sleep_ms(80);
		struct task *t = active(&f, WEB, 0);
		agent_status(&f, "n1", t->id, "FAILED", 1000, 1, "");
		t = active(&f, WEB, 0);
		CHECK_STR(state_of(t), "PENDING");
		CHECK(t && t->quick_deaths == 0);
		tick(&f);
		run_job(&f, WEB);
	}
	fx_teardown(&f);
}

/* ---- tests: batch ------------------------------------------------------- */

TEST(batch_finished_instance_is_not_replaced)
{
	struct fx f;
	fx_setup(&f, NULL);
	CHECK(agent_register(&f, "n1") > 0);
	CHECK(submit(&f, batch_yaml(BAT, 2, 1), NULL) > 0);
	tick(&f);
	run_job(&f, BAT);
	struct task *t0 = active(&f, BAT, 0), *t1 = active(&f, BAT, 1);
	agent_status(&f, "n1", t0->id, "FINISHED", 1000, 0, "exited 0");
	CHECK(active(&f, BAT, 0) == NULL);
	CHECK(job_get(&f, BAT)->instance_done[0]);
	json_t *st = job_status(&f, BAT, false);
	CHECK_STR(jstr(st, "status"), "running");
	CHECK_STR(jstr(st, "type"), "batch");
	CHECK(json_array_size(json_object_get(st, "tasks")) == 1);
	json_decref(st);
	agent_status(&f, "n1", t1->id, "FINISHED", 1001, 0, "");
	tick(&f);
	CHECK(active(&f, BAT, 1) == NULL);
	CHECK(count_job_tasks(&f, BAT) == 2);
	st = job_status(&f, BAT, false);
	CHECK_STR(jstr(st, "status"), "finished");
	json_decref(st);
	fx_teardown(&f);
}

TEST(batch_failure_retried_until_max_task_failures)
{
	struct fx f;
	fx_setup(&f, NULL);
	CHECK(agent_register(&f, "n1") > 0);
	CHECK(submit(&f, batch_yaml(BAT, 1, 2), NULL) > 0);
	tick(&f);
	run_job(&f, BAT);
	struct task *t = active(&f, BAT, 0);
	char *first = xstrdup(t->id);
	agent_status(&f, "n1", first, "FAILED", 1000, 1, "exited 1");
	t = active(&f, BAT, 0);
	CHECK_STR(state_of(t), "PENDING");
	CHECK_STR(t ? t->ancestor : NULL, first);
	CHECK(t && t->failures == 1);
	json_t *st = job_status(&f, BAT, false);
	CHECK_STR(jstr(st, "status"), "running");
	json_decref(st);
	tick(&f);
	run_job(&f, BAT);
	t = active(&f, BAT, 0);
	agent_status(&f, "n1", t->id, "FAILED", 1000, 1, "exited 1");
	CHECK(active(&f, BAT, 0) == NULL);
	tick(&f);
	CHECK(active(&f, BAT, 0) == NULL);
	CHECK(count_job_tasks(&f, BAT) == 2);
	st = job_status(&f, BAT, true);
	CHECK_STR(jstr(st, "status"), "failed");
	json_decref(st);
	free(first);
	fx_teardown(&f);
}

TEST(batch_unlimited_failures_keep_retrying)
{
	struct fx f;
	fx_setup(&f, NULL);
	CHECK(agent_register(&f, "n1") > 0);
	CHECK(submit(&f, batch_yaml(BAT, 1, -1), NULL) > 0);
	for (int k = 0; k < 6; k++) {
		tick(&f);
		run_job(&f, BAT);
		struct task *t = active(&f, BAT, 0);
		CHECK_STR(state_of(t), "RUNNING");
		if (!t)
			break;
		agent_status(&f, "n1", t->id, "FAILED", 1000, 1, "");
		t = active(&f, BAT, 0);
		CHECK_STR(state_of(t), "PENDING");
		CHECK(t && t->failures == k + 1);
	}
	json_t *st = job_status(&f, BAT, false);
	CHECK_STR(jstr(st, "status"), "running");
	json_decref(st);
	fx_teardown(&f);
}

TEST(batch_one_instance_failed_others_running_is_failing)
{
	struct fx f;
	fx_setup(&f, NULL);
	CHECK(agent_register(&f, "n1") > 0);
	CHECK(submit(&f, batch_yaml(BAT, 2, 1), NULL) > 0);
	tick(&f);
	run_job(&f, BAT);
	agent_status(&f, "n1", active(&f, BAT, 0)->id, "FAILED", 1000, 1, "");
	CHECK(active(&f, BAT, 0) == NULL); /* max_task_failures 1: no retry */
	json_t *st = job_status(&f, BAT, false);
	CHECK_STR(jstr(st, "status"), "failing");
	json_decref(st);
	fx_teardown(&f);
}

/* ---- tests: kill and restart --------------------------------------------- */

TEST(job_kill_stops_tasks_then_forgets_job)
{
	struct fx f;
	fx_setup(&f, NULL);
	running_service(&f, 2);
	char *ids[2] = {xstrdup(active(&f, WEB, 0)->id), xstrdup(active(&f, WEB, 1)->id)};
	long long v = desired_version(&f, "n1");
	CHECK(job_kill(&f, WEB) > 0);
	for (int i = 0; i < 2; i++) {
		CHECK_STR(state_of(active(&f, WEB, i)), "KILLING");
		CHECK(!desired_has(&f, "n1", ids[i]));
	}
	CHECK(desired_version(&f, "n1") > v);
	json_t *st = job_status(&f, WEB, false);
	CHECK_STR(jstr(st, "status"), "killing");
	json_decref(st);
	/* A killing job cannot be resubmitted. */
	CHECK(submit(&f, svc_yaml(WEB, 2, "sleep 1000"), NULL) == 0);
	CHECK(f.err.code == 409);
	/* A KILLING task still reported RUNNING stays KILLING. */
	agent_status(&f, "n1", ids[0], "RUNNING", 1000, 0, "");
	CHECK_STR(state_of(active(&f, WEB, 0)), "KILLING");
	agent_status(&f, "n1", ids[0], "KILLED", 1000, 143, "");
	agent_status(&f, "n1", ids[1], "KILLED", 1001, 143, "");
	CHECK(active(&f, WEB, 0) == NULL && active(&f, WEB, 1) == NULL);
	tick(&f);
	berr_clear(&f.err);
	st = job_status(&f, WEB, false);
	CHECK(st == NULL);
	CHECK(f.err.code == 404);
	json_decref(st);
	CHECK(count_job_tasks(&f, WEB) == 0);
	CHECK(node_get(&f, "n1")->tasks.count == 0);
	CHECK(node_get(&f, "n1")->mem_used == 0);
	/* Once forgotten it can be submitted again. */
	struct submit_result res;
	CHECK(submit(&f, svc_yaml(WEB, 1, "sleep 1000"), &res) > 0);
	CHECK(res.created && res.version == 1);
	free(ids[0]);
	free(ids[1]);
	fx_teardown(&f);
}

TEST(job_kill_of_pending_job_forgets_at_once)
{
	struct fx f;
	fx_setup(&f, NULL);
	CHECK(submit(&f, svc_yaml(WEB, 3, "sleep 1000"), NULL) > 0);
	CHECK(job_kill(&f, WEB) > 0);
	CHECK(job_get(&f, WEB) == NULL);
	CHECK(count_job_tasks(&f, WEB) == 0);
	CHECK(job_kill(&f, WEB) == 0);
	CHECK(f.err.code == 404);
	fx_teardown(&f);
}

TEST(job_kill_after_watch_omits_killing_task)
{
	struct fx f;
	fx_setup(&f, NULL);
	running_service(&f, 1);
	char *id = xstrdup(active(&f, WEB, 0)->id);
	job_kill(&f, WEB);
	/* The agent stopped it and no longer reports it. */
	agent_watch(&f, "n1", desired_version(&f, "n1"), json_array());
	struct task *t = cluster_find_task(f.c, id);
	CHECK_STR(state_of(t), "KILLED");
	tick(&f);
	CHECK(job_get(&f, WEB) == NULL);
	free(id);
	fx_teardown(&f);
}

TEST(job_restart_replaces_with_new_ids)
{
	struct fx f;
	fx_setup(&f, NULL);
	running_service(&f, 2);
	char *old = xstrdup(active(&f, WEB, 0)->id);
	CHECK(job_restart(&f, WEB) > 0);
	CHECK_STR(state_of(active(&f, WEB, 0)), "RESTARTING");
	CHECK_STR(state_of(active(&f, WEB, 1)), "RESTARTING");
	CHECK(!desired_has(&f, "n1", old));
	agent_status(&f, "n1", old, "KILLED", 1000, 143, "");
	struct task *n = active(&f, WEB, 0);
	CHECK(n && strcmp(n->id, old));
	/* Restart replaces at once, never throttled. */
	CHECK_STR(state_of(n), "PENDING");
	CHECK_STR(n ? n->ancestor : NULL, old);
	tick(&f);
	CHECK_STR(state_of(active(&f, WEB, 0)), "ASSIGNED");
	CHECK(job_restart(&f, "alice/devel/nope") == 0);
	CHECK(f.err.code == 404);
	free(old);
	fx_teardown(&f);
}

/* ---- tests: updates ------------------------------------------------------ */

TEST(resubmit_identical_spec_is_unchanged)
{
	struct fx f;
	fx_setup(&f, NULL);
	running_service(&f, 2);
	char *ids[2] = {xstrdup(active(&f, WEB, 0)->id), xstrdup(active(&f, WEB, 1)->id)};
	struct submit_result res;
	CHECK(submit(&f, svc_yaml(WEB, 2, "sleep 1000"), &res) > 0);
	CHECK(!res.created);
	CHECK(!res.changed);
	CHECK(res.version == 1);
	CHECK_STR(active(&f, WEB, 0)->id, ids[0]);
	CHECK_STR(active(&f, WEB, 1)->id, ids[1]);
	CHECK_STR(state_of(active(&f, WEB, 0)), "RUNNING");
	CHECK(job_get(&f, WEB)->nversions == 1);
	free(ids[0]);
	free(ids[1]);
	fx_teardown(&f);
}

TEST(command_change_bumps_version_and_replaces)
{
	struct fx f;
	fx_setup(&f, NULL);
	running_service(&f, 2);
	char *old = xstrdup(active(&f, WEB, 0)->id);
	struct submit_result res;
	CHECK(submit(&f, svc_yaml(WEB, 2, "sleep 2000"), &res) > 0);
	CHECK(!res.created && res.changed);
	CHECK(res.version == 2);
	CHECK(job_get(&f, WEB)->version == 2);
	CHECK_STR(state_of(active(&f, WEB, 0)), "RESTARTING");
	CHECK_CONTAINS(active(&f, WEB, 0)->message, "version 2");
	agent_status(&f, "n1", old, "KILLED", 1000, 143, "");
	struct task *n = active(&f, WEB, 0);
	CHECK_STR(state_of(n), "PENDING");
	CHECK(n && n->version == 2);
	CHECK_STR(n ? n->ancestor : NULL, old);
	tick(&f);
	json_t *d = desired(&f, "n1");
	size_t i;
	json_t *t;
	bool found = false;
	json_array_foreach(json_object_get(d, "tasks"), i, t)
	{
		if (jint(t, "instance") != 0)
			continue;
		found = true;
		CHECK(jint(t, "version") == 2);
		json_t *cmd = json_object_get(json_object_get(t, "task"), "command");
		CHECK_STR(json_string_value(json_array_get(cmd, 2)), "sleep 2000");
	}
	CHECK(found);
	json_decref(d);
	free(old);
	fx_teardown(&f);
}

TEST(command_change_replaces_pending_tasks_at_once)
{
	struct fx f;
	fx_setup(&f, NULL);
	CHECK(submit(&f, svc_yaml(WEB, 2, "sleep 1000"), NULL) > 0);
	char *old = xstrdup(active(&f, WEB, 0)->id);
	struct submit_result res;
	CHECK(submit(&f, svc_yaml(WEB, 2, "sleep 3000"), &res) > 0);
	CHECK(res.version == 2);
	struct task *n = active(&f, WEB, 0);
	CHECK_STR(state_of(n), "PENDING");
	CHECK(n && strcmp(n->id, old) && n->version == 2);
	CHECK_STR(state_of(cluster_find_task(f.c, old)), "KILLED");
	free(old);
	fx_teardown(&f);
}

TEST(instances_change_keeps_version_and_scales)
{
	struct fx f;
	fx_setup(&f, NULL);
	running_service(&f, 2);
	char *ids[2] = {xstrdup(active(&f, WEB, 0)->id), xstrdup(active(&f, WEB, 1)->id)};
	struct submit_result res;
	/* Up: existing instances untouched, new ones created. */
	CHECK(submit(&f, svc_yaml(WEB, 4, "sleep 1000"), &res) > 0);
	CHECK(res.changed && !res.created);
	CHECK(res.version == 1);
	CHECK(job_get(&f, WEB)->nversions == 1);
	CHECK_STR(active(&f, WEB, 0)->id, ids[0]);
	CHECK_STR(active(&f, WEB, 1)->id, ids[1]);
	CHECK_STR(state_of(active(&f, WEB, 0)), "RUNNING");
	CHECK_STR(state_of(active(&f, WEB, 2)), "PENDING");
	CHECK_STR(state_of(active(&f, WEB, 3)), "PENDING");
	tick(&f);
	run_job(&f, WEB);
	CHECK_STR(state_of(active(&f, WEB, 3)), "RUNNING");
	char *id3 = xstrdup(active(&f, WEB, 3)->id);
	/* Down: instances beyond the count are killed and not replaced. */
	CHECK(submit(&f, svc_yaml(WEB, 1, "sleep 1000"), &res) > 0);
	CHECK(res.version == 1);
	CHECK_STR(active(&f, WEB, 0)->id, ids[0]);
	CHECK_STR(state_of(active(&f, WEB, 0)), "RUNNING");
	for (int i = 1; i < 4; i++)
		CHECK_STR(state_of(active(&f, WEB, i)), "KILLING");
	agent_status(&f, "n1", id3, "KILLED", 1003, 143, "");
	CHECK(active(&f, WEB, 3) == NULL);
	tick(&f);
	CHECK(active(&f, WEB, 3) == NULL);
	json_t *st = job_status(&f, WEB, false);
	CHECK(jint(st, "instances") == 1);
	CHECK(jint(st, "version") == 1);
	json_decref(st);
	free(ids[0]);
	free(ids[1]);
	free(id3);
	fx_teardown(&f);
}

/* Scaling down and then up again while the removed instance is still
 * stopping must leave that instance with a task once the old one ended. */
TEST(scale_down_then_up_while_stopping_keeps_instance)
{
	struct fx f;
	fx_setup(&f, NULL);
	running_service(&f, 3);
	char *id2 = xstrdup(active(&f, WEB, 2)->id);
	CHECK(submit(&f, svc_yaml(WEB, 2, "sleep 1000"), NULL) > 0);
	CHECK_STR(state_of(active(&f, WEB, 2)), "KILLING");
	CHECK(submit(&f, svc_yaml(WEB, 3, "sleep 1000"), NULL) > 0);
	agent_status(&f, "n1", id2, "KILLED", 1002, 143, "");
	tick(&f);
	struct task *t = active(&f, WEB, 2);
	CHECK(t != NULL);
	CHECK(t && strcmp(t->id, id2) != 0);
	json_t *st = job_status(&f, WEB, false);
	CHECK(json_array_size(json_object_get(st, "tasks")) == 3);
	json_decref(st);
	free(id2);
	fx_teardown(&f);
}

/* A batch task that finishes by itself while a drain is stopping it has
 * run to completion: the instance is done, it is not run again. */
TEST(drain_does_not_rerun_finished_batch_instance)
{
	struct fx f;
	fx_setup(&f, NULL);
	CHECK(agent_register(&f, "n1") > 0);
	CHECK(submit(&f, batch_yaml(BAT, 1, 1), NULL) > 0);
	tick(&f);
	run_job(&f, BAT);
	CHECK(agent_register(&f, "n2") > 0);
	pthread_mutex_lock(&f.c->lock);
	cluster_node_drain(f.c, "n1", true, &f.err);
	pthread_mutex_unlock(&f.c->lock);
	tick(&f);
	struct task *t = active(&f, BAT, 0);
	CHECK_STR(state_of(t), "DRAINING");
	agent_status(&f, "n1", t->id, "FINISHED", 1000, 0, "exited 0");
	tick(&f);
	CHECK(active(&f, BAT, 0) == NULL);
	CHECK(job_get(&f, BAT)->instance_done[0]);
	CHECK(count_job_tasks(&f, BAT) == 1);
	json_t *st = job_status(&f, BAT, false);
	CHECK_STR(jstr(st, "status"), "finished");
	json_decref(st);
	fx_teardown(&f);
}

/* Killing or restarting a job whose task is being drained must not try a
 * transition the table refuses (DRAINING -> KILLING / RESTARTING): refusals
 * are counted as protocol errors. */
/* A watch's full report built before a status update that arrived first
 * says STARTING of a task already RUNNING: stale, ignored, not refused. */
TEST(stale_starting_report_of_a_running_task_is_ignored)
{
	struct fx f;
	fx_setup(&f, NULL);
	running_service(&f, 1);
	struct task *t = active(&f, WEB, 0);
	CHECK_STR(state_of(t), "RUNNING");
	uint64_t refused = task_transition_refused_count();
	agent_watch(&f, "n1", 0,
		    json_pack("[{s:s,s:s,s:i}]", "id", t->id, "state", "STARTING", "pid", 1000));
	tick(&f);
	CHECK_STR(state_of(active(&f, WEB, 0)), "RUNNING");
	CHECK(task_transition_refused_count() == refused);
	fx_teardown(&f);
}

TEST(kill_or_restart_of_draining_task_tries_no_refused_transition)
{
	for (int restart = 0; restart < 2; restart++) {
		struct fx f;
		fx_setup(&f, NULL);
		running_service(&f, 1);
		CHECK(agent_register(&f, "n2") > 0);
		pthread_mutex_lock(&f.c->lock);
		cluster_node_drain(f.c, "n1", true, &f.err);
		pthread_mutex_unlock(&f.c->lock);
		tick(&f);
		struct task *t = active(&f, WEB, 0);
		CHECK_STR(state_of(t), "DRAINING");
		uint64_t refused = task_transition_refused_count();
		if (restart)
			CHECK(job_restart(&f, WEB) > 0);
		else
			CHECK(job_kill(&f, WEB) > 0);
		CHECK(task_transition_refused_count() == refused);
		/* Either way it ends once the agent stopped it. */
		agent_status(&f, "n1", t->id, "KILLED", 1000, 143, "");
		tick(&f);
		if (restart)
			CHECK_STR(state_of(active(&f, WEB, 0)), "ASSIGNED");
		else
			CHECK(job_get(&f, WEB) == NULL);
		fx_teardown(&f);
	}
}

/* docs/protocol.md: the agent reports STARTING, RUNNING, FINISHED, FAILED,
 * KILLED and LOST. The server-side states (KILLING, RESTARTING, DRAINING,
 * PREEMPTING, PARTITIONED) are the server's decisions, not the agent's. */
TEST(agent_cannot_report_server_side_states)
{
	struct fx f;
	fx_setup(&f, NULL);
	running_service(&f, 5);
	const char *states[] = {"KILLING", "RESTARTING", "DRAINING", "PREEMPTING", "PARTITIONED"};
	for (int i = 0; i < 5; i++) {
		struct task *t = active(&f, WEB, i);
		agent_status(&f, "n1", t->id, states[i], 1000 + i, 0, "");
		CHECK_STR(state_of(active(&f, WEB, i)), "RUNNING");
		CHECK(desired_has(&f, "n1", t->id));
	}
	fx_teardown(&f);
}

/* cfg.ended_keep = 0 (keep no history): job_keep_ended frees the task that
 * just ended, and handle_task_end / task_transition must not use it after. */
TEST(ended_keep_zero_replaces_without_history)
{
	struct cluster_config cfg;
	cluster_config_defaults(&cfg);
	cfg.ended_keep = 0;
	struct fx f;
	fx_setup(&f, &cfg);
	running_service(&f, 1);
	char *old = xstrdup(active(&f, WEB, 0)->id);
	agent_status(&f, "n1", old, "FAILED", 1000, 1, "");
	struct task *n = active(&f, WEB, 0);
	CHECK_STR(state_of(n), "PENDING");
	CHECK_STR(n ? n->ancestor : NULL, old);
	tick(&f);
	CHECK_STR(state_of(active(&f, WEB, 0)), "ASSIGNED");
	free(old);
	fx_teardown(&f);
}

static bool jarr_has(json_t *arr, long long v)
{
	size_t i;
	json_t *x;
	json_array_foreach(arr, i, x)
	{
		if (json_integer_value(x) == v)
			return true;
	}
	return false;
}

TEST(plan_of_new_job_and_fit)
{
	struct fx f;
	fx_setup(&f, NULL);
	CHECK(agent_register(&f, "n1") > 0);
	json_t *p = plan(&f, svc_yaml(WEB, 3, "sleep 1000"));
	CHECK(p != NULL);
	CHECK_STR(jstr(p, "job"), WEB);
	CHECK(json_is_true(json_object_get(p, "create")));
	CHECK(json_is_true(json_object_get(p, "changed")));
	CHECK(jint(p, "next_version") == 1);
	CHECK(json_is_true(json_object_get(p, "fits")));
	CHECK(json_array_size(json_object_get(json_object_get(p, "instances"), "add")) == 3);
	json_decref(p);
	CHECK(job_get(&f, WEB) == NULL);
	CHECK(f.c->tasks.count == 0);
	p = plan(&f, yamlf("job: alice/devel/big\ntask:\n  command: x\n"
			   "  resources: {cpu: 1, memory: 64GiB}\n"));
	CHECK(json_is_false(json_object_get(p, "fits")));
	CHECK_CONTAINS(jstr(p, "fit_message"), "insufficient memory");
	json_decref(p);
	fx_teardown(&f);
}

TEST(plan_of_update_matches_submit)
{
	struct fx f;
	fx_setup(&f, NULL);
	running_service(&f, 3);
	/* Identical: nothing changes. */
	json_t *p = plan(&f, svc_yaml(WEB, 3, "sleep 1000"));
	CHECK(json_is_false(json_object_get(p, "changed")));
	CHECK(json_is_false(json_object_get(p, "create")));
	CHECK(jint(p, "version") == 1 && jint(p, "next_version") == 1);
	CHECK(json_array_size(json_object_get(json_object_get(p, "instances"), "unchanged")) == 3);
	json_decref(p);
	/* Instances only: version kept, one added. */
	p = plan(&f, svc_yaml(WEB, 4, "sleep 1000"));
	CHECK(json_is_true(json_object_get(p, "changed")));
	CHECK(jint(p, "next_version") == 1);
	json_t *in = json_object_get(p, "instances");
	CHECK(jarr_has(json_object_get(in, "add"), 3));
	CHECK(json_array_size(json_object_get(in, "update")) == 0);
	json_t *d = json_object_get(p, "diff");
	CHECK(json_array_size(d) == 1);
	CHECK_STR(jstr(json_array_get(d, 0), "field"), "instances");
	json_decref(p);
	/* Command and scale down: version bumps, 2 updated, 1 removed. */
	p = plan(&f, svc_yaml(WEB, 2, "sleep 5"));
	CHECK(jint(p, "next_version") == 2);
	in = json_object_get(p, "instances");
	CHECK(jarr_has(json_object_get(in, "update"), 0) &&
	      jarr_has(json_object_get(in, "update"), 1));
	CHECK(jarr_has(json_object_get(in, "remove"), 2));
	CHECK(json_is_true(json_object_get(p, "fits")));
	json_decref(p);
	/* What the plan said is what submit does. */
	struct submit_result res;
	CHECK(submit(&f, svc_yaml(WEB, 2, "sleep 5"), &res) > 0);
	CHECK(res.version == 2);
	CHECK_STR(state_of(active(&f, WEB, 0)), "RESTARTING");
	CHECK_STR(state_of(active(&f, WEB, 2)), "KILLING");
	fx_teardown(&f);
}

/* ---- tests: agents, heartbeats, reconcile -------------------------------- */

TEST(register_and_watch_reject_bad_bodies)
{
	struct fx f;
	fx_setup(&f, NULL);
	const char *bad[] = {
	    "{}",
	    "{\"name\": \"\", \"resources\": {\"cpu\": 1, \"memory\": 1}}",
	    "{\"name\": \"a/b\", \"resources\": {\"cpu\": 1, \"memory\": 1}}",
	    "{\"name\": \"n1\"}",
	    "{\"name\": \"n1\", \"resources\": {\"cpu\": \"x\", \"memory\": 1}}",
	    "{\"name\": \"n1\", \"resources\": {\"cpu\": 1, \"memory\": 1.5}}",
	    "{\"name\": \"n1\", \"resources\": {\"cpu\": 1, \"memory\": 1}, \"attributes\": []}",
	    "{\"name\": \"n1\", \"resources\": {\"cpu\": 1, \"memory\": 1}, \"tasks\": {}}",
	};
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		json_t *body = json_loads(bad[i], 0, NULL);
		json_t *reply = NULL;
		berr_clear(&f.err);
		CHECK(cluster_agent_register(f.c, body, &reply, &f.err) == 0);
		CHECK(f.err.code == 400);
		CHECK(reply == NULL);
		json_decref(body);
	}
	CHECK(f.c->nodes.count == 0);
	/* Unknown nodes: 404. */
	CHECK(agent_watch(&f, "ghost", 0, NULL) == 0);
	CHECK(f.err.code == 404);
	CHECK(agent_status(&f, "ghost", "x", "RUNNING", 1, 0, "") == 0);
	CHECK(f.err.code == 404);
	/* Registered: a status without updates is malformed. */
	CHECK(agent_register(&f, "n1") > 0);
	struct agent_report *r =
	    agent_report_parse("{\"name\":\"n1\"}", 13, AGENT_CALL_STATUS, &f.err);
	CHECK(r && cluster_agent_status(f.c, r, &f.err) == 0);
	CHECK(f.err.code == 400);
	CHECK(!strcmp(f.err.msg, "field 'updates': expected an array"));
	agent_report_free(r);
	const char *text = "{\"name\":\"n1\",\"known_version\":1,\"tasks\":{}}";
	r = agent_report_parse(text, strlen(text), AGENT_CALL_WATCH, &f.err);
	struct node *n = NULL;
	CHECK(r && cluster_agent_watch(f.c, r, &n, &f.err) == 0);
	CHECK(f.err.code == 400);
	CHECK(!strcmp(f.err.msg, "field 'tasks': expected an array"));
	agent_report_free(r);
	fx_teardown(&f);
}

TEST(register_reply_and_reregister_keeps_id)
{
	struct fx f;
	fx_setup(&f, NULL);
	json_t *body = json_pack("{s:s,s:{s:f,s:I}}", "name", "n1", "resources", "cpu", 2.0,
				 "memory", (json_int_t)GiB);
	json_t *reply = NULL;
	CHECK(cluster_agent_register(f.c, body, &reply, &f.err) > 0);
	CHECK_STR(jstr(reply, "name"), "n1");
	CHECK(jstr(reply, "node_id") && strlen(jstr(reply, "node_id")) > 0);
	CHECK(jint(reply, "heartbeat_ms") == f.cfg.heartbeat_ms);
	char *id = xstrdup(jstr(reply, "node_id"));
	json_decref(reply);
	reply = NULL;
	CHECK(cluster_agent_register(f.c, body, &reply, &f.err) > 0);
	CHECK_STR(jstr(reply, "node_id"), id);
	json_decref(reply);
	json_decref(body);
	CHECK(f.c->nodes.count == 1);
	/* Without attributes the node still has host = its name. */
	json_t *n = node_json(&f, "n1");
	CHECK_STR(jstr(json_object_get(n, "attributes"), "host"), "n1");
	CHECK_STR(jstr(n, "state"), "ACTIVE");
	json_decref(n);
	free(id);
	fx_teardown(&f);
}

TEST(watch_omitting_running_task_marks_it_lost)
{
	struct fx f;
	fx_setup(&f, NULL);
	running_service(&f, 2);
	struct task *t0 = active(&f, WEB, 0), *t1 = active(&f, WEB, 1);
	char *id0 = xstrdup(t0->id);
	long long v = desired_version(&f, "n1");
	json_t *report = json_array();
	json_array_append_new(report, rep(t1->id, "RUNNING", 1001));
	CHECK(agent_watch(&f, "n1", v, report) > 0);
	struct task *o = cluster_find_task(f.c, id0);
	CHECK_STR(state_of(o), "LOST");
	CHECK_CONTAINS(o ? o->message : NULL, "task not found on agent n1");
	struct task *n = active(&f, WEB, 0);
	CHECK(n && strcmp(n->id, id0));
	/* LOST is not a quick death: replaced at once. */
	CHECK_STR(state_of(n), "PENDING");
	CHECK_STR(n ? n->ancestor : NULL, id0);
	CHECK_STR(state_of(active(&f, WEB, 1)), "RUNNING");
	free(id0);
	fx_teardown(&f);
}

TEST(watch_does_not_lose_undelivered_assigned_task)
{
	struct fx f;
	fx_setup(&f, NULL);
	CHECK(agent_register(&f, "n1") > 0);
	long long seen = desired_version(&f, "n1");
	CHECK(submit(&f, svc_yaml(WEB, 1, "sleep 1000"), NULL) > 0);
	tick(&f);
	struct task *t = active(&f, WEB, 0);
	CHECK_STR(state_of(t), "ASSIGNED");
	/* The agent has only seen the version before the assignment. */
	agent_watch(&f, "n1", seen, json_array());
	CHECK_STR(state_of(active(&f, WEB, 0)), "ASSIGNED");
	CHECK(active(&f, WEB, 0) == t);
	/* Once it has seen the version with the task, a report without it is
	 * a loss. */
	agent_watch(&f, "n1", desired_version(&f, "n1"), json_array());
	CHECK_STR(state_of(cluster_find_task(f.c, t->id)), "LOST");
	fx_teardown(&f);
}

TEST(watch_report_with_unknown_or_foreign_task_is_ignored)
{
	struct fx f;
	fx_setup(&f, NULL);
	running_service(&f, 1);
	CHECK(agent_register(&f, "n2") > 0);
	struct task *t = active(&f, WEB, 0);
	long long v1 = desired_version(&f, "n1");
	json_t *report = json_array();
	json_array_append_new(report, rep(t->id, "RUNNING", 1000));
	json_array_append_new(report, rep("alice-devel-ghost-0-deadbeef", "RUNNING", 77));
	json_array_append_new(report, rep("", "RUNNING", 78));
	json_array_append_new(report, json_pack("{s:s}", "state", "RUNNING"));
	json_array_append_new(report, json_pack("{s:s,s:s}", "id", t->id, "state", "BOGUS"));
	json_array_append_new(report, json_string("not an object"));
	CHECK(agent_watch(&f, "n1", v1, report) > 0);
	CHECK(cluster_find_task(f.c, "alice-devel-ghost-0-deadbeef") == NULL);
	CHECK(!desired_has(&f, "n1", "alice-devel-ghost-0-deadbeef"));
	CHECK_STR(state_of(t), "RUNNING");
	CHECK(t->pid == 1000);
	/* n2 claiming n1's task changes nothing, and it is not desired on n2. */
	report = json_array();
	json_array_append_new(report, rep(t->id, "FAILED", 5));
	CHECK(agent_watch(&f, "n2", desired_version(&f, "n2"), report) > 0);
	agent_status(&f, "n2", t->id, "FINISHED", 5, 0, "");
	CHECK(active(&f, WEB, 0) == t);
	CHECK_STR(state_of(t), "RUNNING");
	CHECK(t->pid == 1000);
	CHECK(!desired_has(&f, "n2", t->id));
	CHECK(desired_has(&f, "n1", t->id));
	fx_teardown(&f);
}

TEST(reregister_reconciles_report)
{
	struct fx f;
	fx_setup(&f, NULL);
	running_service(&f, 2);
	struct task *t0 = active(&f, WEB, 0), *t1 = active(&f, WEB, 1);
	char *id0 = xstrdup(t0->id);
	/* The agent restarted and only found instance 1 running. */
	json_t *report = json_array();
	json_array_append_new(report, rep(t1->id, "RUNNING", 1001));
	CHECK(agent_register_full(&f, "n1", 4.0, 8 * GiB, 20000, 20999, report) > 0);
	CHECK_STR(state_of(cluster_find_task(f.c, id0)), "LOST");
	CHECK_STR(state_of(t1), "RUNNING");
	CHECK(desired_has(&f, "n1", t1->id));
	free(id0);
	fx_teardown(&f);
}

TEST(node_down_tasks_lost_and_pending_without_other_node)
{
	struct cluster_config cfg;
	cluster_config_defaults(&cfg);
	cfg.down_after_ms = 200;
	cfg.flap_backoff_base_ms = 100;
	struct fx f;
	fx_setup(&f, &cfg);
	running_service(&f, 2);
	char *ids[2] = {xstrdup(active(&f, WEB, 0)->id), xstrdup(active(&f, WEB, 1)->id)};
	tick(&f);
	json_t *n = node_json(&f, "n1");
	CHECK_STR(jstr(n, "state"), "ACTIVE");
	json_decref(n);
	run_for(&f, 350);
	n = node_json(&f, "n1");
	CHECK_STR(jstr(n, "state"), "DOWN");
	json_decref(n);
	for (int i = 0; i < 2; i++) {
		struct task *o = cluster_find_task(f.c, ids[i]);
		CHECK_STR(state_of(o), "LOST");
		CHECK_CONTAINS(o ? o->message : NULL, "missed heartbeats");
		struct task *r = active(&f, WEB, i);
		CHECK_STR(state_of(r), "PENDING");
		CHECK_STR(r ? r->ancestor : NULL, ids[i]);
		CHECK(r && !r->node);
	}
	CHECK(node_get(&f, "n1")->tasks.count == 0);
	CHECK(node_get(&f, "n1")->mem_used == 0);
	/* It comes back with a heartbeat (holding nothing) and the tasks are
	 * placed again once its flap back-off is over. */
	agent_watch(&f, "n1", desired_version(&f, "n1"), json_array());
	n = node_json(&f, "n1");
	CHECK_STR(jstr(n, "state"), "ACTIVE");
	CHECK(json_is_integer(json_object_get(n, "backoff_until_ms")));
	json_decref(n);
	tick(&f);
	CHECK_STR(state_of(active(&f, WEB, 0)), "PENDING");
	heartbeat_for(&f, "n1", 200);
	CHECK_STR(state_of(active(&f, WEB, 0)), "ASSIGNED");
	n = node_json(&f, "n1");
	CHECK(json_is_null(json_object_get(n, "backoff_until_ms")));
	json_decref(n);
	free(ids[0]);
	free(ids[1]);
	fx_teardown(&f);
}

TEST(node_down_tasks_move_to_second_node)
{
	struct cluster_config cfg;
	cluster_config_defaults(&cfg);
	cfg.down_after_ms = 200;
	struct fx f;
	fx_setup(&f, &cfg);
	running_service(&f, 1);
	char *old = xstrdup(active(&f, WEB, 0)->id);
	CHECK(agent_register(&f, "n2") > 0);
	for (int k = 0; k < 4; k++) {
		run_for(&f, 100);
		agent_watch(&f, "n2", desired_version(&f, "n2"), json_array());
	}
	tick(&f);
	CHECK_STR(state_of(cluster_find_task(f.c, old)), "LOST");
	struct task *t = active(&f, WEB, 0);
	CHECK_STR(state_of(t), "ASSIGNED");
	CHECK_STR(node_of(t), "n2");
	CHECK(t && desired_has(&f, "n2", t->id));
	json_t *n = node_json(&f, "n2");
	CHECK_STR(jstr(n, "state"), "ACTIVE");
	json_decref(n);
	free(old);
	fx_teardown(&f);
}

/* ---- tests: a busy node is not a dead node (issue 10) ---------------------- */

/* The desired set a watch with known_version gets, as text (caller frees). */
static char *watch_reply(struct fx *f, const char *name, uint64_t known)
{
	pthread_mutex_lock(&f->c->lock);
	char *t = cluster_node_desired_text(f->c, node_get(f, name), known);
	pthread_mutex_unlock(&f->c->lock);
	return t;
}

static int live_tasks(struct fx *f, const char *key);

TEST(returning_node_takes_back_running_tasks_and_cancels_pending_replacements)
{
	struct cluster_config cfg;
	cluster_config_defaults(&cfg);
	cfg.down_after_ms = 200;
	struct fx f;
	fx_setup(&f, &cfg);
	running_service(&f, 2);
	char *ids[2] = {xstrdup(active(&f, WEB, 0)->id), xstrdup(active(&f, WEB, 1)->id)};
	uint64_t known = node_get(&f, "n1")->desired_version;
	run_for(&f, 350); /* n1 silent: DOWN, its tasks LOST, replacements PENDING */
	CHECK_STR(state_of(cluster_find_task(f.c, ids[0])), "LOST");
	char *repl[2] = {xstrdup(active(&f, WEB, 0)->id), xstrdup(active(&f, WEB, 1)->id)};
	CHECK_STR(state_of(active(&f, WEB, 0)), "PENDING");
	/* It comes back with a pure heartbeat: its tasks stay in its desired
	 * set (it is not told to kill them) and it is asked for a report. */
	agent_heartbeat(&f, "n1");
	char *txt = watch_reply(&f, "n1", known);
	CHECK_CONTAINS(txt, ids[0]);
	CHECK_CONTAINS(txt, ids[1]);
	CHECK_CONTAINS(txt, "\"report\":true");
	free(txt);
	/* Its report: both still run. They are taken back; the replacements,
	 * not started anywhere, are cancelled. Exactly two instances. */
	json_t *report = json_array();
	json_array_append_new(report, rep(ids[0], "RUNNING", 1000));
	json_array_append_new(report, rep(ids[1], "RUNNING", 1001));
	CHECK(agent_watch(&f, "n1", (long long)known, report) > 0);
	for (int i = 0; i < 2; i++) {
		struct task *t = active(&f, WEB, i);
		CHECK_STR(t ? t->id : NULL, ids[i]);
		CHECK_STR(state_of(t), "RUNNING");
		CHECK_CONTAINS(t ? t->message : NULL, "taken back");
		CHECK(t && desired_has(&f, "n1", t->id));
		struct task *r = cluster_find_task(f.c, repl[i]);
		CHECK_STR(state_of(r), "KILLED");
		CHECK_CONTAINS(r ? r->message : NULL, "cancelled");
	}
	tick(&f);
	CHECK(live_tasks(&f, WEB) == 2);
	CHECK(job_get(&f, WEB)->live == 2);
	CHECK(node_get(&f, "n1")->tasks.count == 2);
	CHECK(node_get(&f, "n1")->mem_used == 2 * 64 * MiB);
	txt = watch_reply(&f, "n1", node_get(&f, "n1")->desired_version);
	CHECK(!strstr(txt, "report"));
	free(txt);
	/* It survives a restart as it is. */
	fx_restart(&f);
	CHECK_STR(active(&f, WEB, 0) ? active(&f, WEB, 0)->id : NULL, ids[0]);
	CHECK_STR(state_of(active(&f, WEB, 1)), "RUNNING");
	for (int i = 0; i < 2; i++) {
		free(ids[i]);
		free(repl[i]);
	}
	fx_teardown(&f);
}

TEST(returning_node_takes_back_through_replacements_that_never_ran)
{
	struct cluster_config cfg;
	cluster_config_defaults(&cfg);
	cfg.down_after_ms = 200;
	struct fx f;
	fx_setup(&f, &cfg);
	running_service(&f, 1);
	char *id = xstrdup(active(&f, WEB, 0)->id);
	uint64_t known = node_get(&f, "n1")->desired_version;
	CHECK(agent_register(&f, "n2") > 0);
	heartbeat_for(&f, "n2", 300); /* n1 DOWN: the replacement goes to n2 */
	CHECK_STR(node_of(active(&f, WEB, 0)), "n2");
	run_for(&f, 300); /* n2 DOWN too before starting it: a third task waits */
	CHECK_STR(state_of(active(&f, WEB, 0)), "PENDING");
	CHECK(strcmp(active(&f, WEB, 0)->ancestor, id) != 0);
	json_t *report = json_array();
	json_array_append_new(report, rep(id, "RUNNING", 1000));
	CHECK(agent_watch(&f, "n1", (long long)known, report) > 0);
	CHECK_STR(active(&f, WEB, 0) ? active(&f, WEB, 0)->id : NULL, id);
	CHECK_STR(state_of(active(&f, WEB, 0)), "RUNNING");
	CHECK(live_tasks(&f, WEB) == 1);
	free(id);
	fx_teardown(&f);
}

TEST(returning_node_cancels_assigned_replacement_but_not_a_running_one)
{
	struct cluster_config cfg;
	cluster_config_defaults(&cfg);
	cfg.down_after_ms = 200;
	struct fx f;
	fx_setup(&f, &cfg);
	running_service(&f, 2);
	char *ids[2] = {xstrdup(active(&f, WEB, 0)->id), xstrdup(active(&f, WEB, 1)->id)};
	uint64_t known = node_get(&f, "n1")->desired_version;
	CHECK(agent_register(&f, "n2") > 0);
	heartbeat_for(&f, "n2", 350); /* n1 DOWN; replacements ASSIGNED to n2 */
	struct task *r0 = active(&f, WEB, 0), *r1 = active(&f, WEB, 1);
	CHECK_STR(node_of(r0), "n2");
	CHECK_STR(state_of(r1), "ASSIGNED");
	char *repl[2] = {xstrdup(r0 ? r0->id : "?"), xstrdup(r1 ? r1->id : "?")};
	/* n2 starts instance 1's replacement; instance 0's is only ASSIGNED. */
	agent_status(&f, "n2", repl[1], "RUNNING", 2001, 0, "");
	json_t *report = json_array();
	json_array_append_new(report, rep(ids[0], "RUNNING", 1000));
	json_array_append_new(report, rep(ids[1], "RUNNING", 1001));
	CHECK(agent_watch(&f, "n1", (long long)known, report) > 0);
	/* Instance 0: the old task is back, its replacement cancelled and out
	 * of n2's desired set. */
	CHECK_STR(active(&f, WEB, 0) ? active(&f, WEB, 0)->id : NULL, ids[0]);
	CHECK_STR(state_of(cluster_find_task(f.c, repl[0])), "KILLED");
	CHECK(!desired_has(&f, "n2", repl[0]));
	CHECK(desired_has(&f, "n1", ids[0]));
	/* Instance 1: the replacement runs, so the old one is stopped. */
	CHECK_STR(active(&f, WEB, 1) ? active(&f, WEB, 1)->id : NULL, repl[1]);
	CHECK_STR(state_of(cluster_find_task(f.c, ids[1])), "LOST");
	CHECK(!desired_has(&f, "n1", ids[1]));
	CHECK(live_tasks(&f, WEB) == 2);
	for (int i = 0; i < 2; i++) {
		free(ids[i]);
		free(repl[i]);
	}
	fx_teardown(&f);
}

/* The back-off of a node's flap in ms, from its view (0: none). */
static long long backoff_left(struct fx *f, const char *name)
{
	json_t *n = node_json(f, name);
	json_t *until = json_object_get(n, "backoff_until_ms");
	long long left = json_is_integer(until) ? json_integer_value(until) - time_now_ms() : 0;
	json_decref(n);
	return left;
}

TEST(flapping_node_backoff_doubles_and_blocks_placement)
{
	struct cluster_config cfg;
	cluster_config_defaults(&cfg);
	cfg.down_after_ms = 200;
	cfg.flap_backoff_base_ms = 300;
	cfg.flap_backoff_max_ms = 1200;
	struct fx f;
	fx_setup(&f, &cfg);
	CHECK(agent_register(&f, "n1") > 0);
	CHECK(backoff_left(&f, "n1") == 0); /* a first registration is no flap */
	long long want[] = {300, 600, 1200, 1200};
	for (int flap = 0; flap < 4; flap++) {
		run_for(&f, 300);
		json_t *n = node_json(&f, "n1");
		CHECK_STR(jstr(n, "state"), "DOWN");
		json_decref(n);
		agent_heartbeat(&f, "n1");
		long long left = backoff_left(&f, "n1");
		CHECK(left > want[flap] - 100 && left <= want[flap]);
		n = node_json(&f, "n1");
		CHECK(jint(n, "flaps") == flap + 1);
		CHECK_CONTAINS(jstr(n, "backoff_reason"), "flapping");
		json_decref(n);
	}
	/* While backed off it gets no new task, though it is ACTIVE. */
	CHECK(submit(&f, svc_yaml(WEB, 1, "sleep 1000"), NULL) > 0);
	heartbeat_for(&f, "n1", 400);
	CHECK_STR(state_of(active(&f, WEB, 0)), "PENDING");
	heartbeat_for(&f, "n1", 1000);
	CHECK_STR(state_of(active(&f, WEB, 0)), "ASSIGNED");
	CHECK(backoff_left(&f, "n1") == 0);
	fx_teardown(&f);
}

/* The node's state in its view. */
static const char *node_state_of(struct fx *f, const char *name)
{
	static char buf[32];
	json_t *n = node_json(f, name);
	snprintf(buf, sizeof buf, "%s", jstr(n, "state") ?: "(none)");
	json_decref(n);
	return buf;
}

TEST(server_stall_does_not_mark_nodes_down_but_a_dead_agent_still_is)
{
	struct cluster_config cfg;
	cluster_config_defaults(&cfg);
	cfg.down_after_ms = 200;
	struct fx f;
	fx_setup(&f, &cfg);
	CHECK(agent_register(&f, "n1") > 0);
	CHECK(agent_register(&f, "n2") > 0);
	heartbeat_for(&f, "n1", 300);
	agent_heartbeat(&f, "n2");
	tick(&f);
	/* 1. The whole server stalls (nothing heard, nothing judged) for
	 * three detection windows: the judge's own lateness is deaf time. */
	sleep_ms(600);
	tick(&f);
	CHECK_STR(node_state_of(&f, "n1"), "ACTIVE");
	CHECK_STR(node_state_of(&f, "n2"), "ACTIVE");
	agent_heartbeat(&f, "n1");
	agent_heartbeat(&f, "n2");
	/* 2. A request thread is stuck in one handler (its connections
	 * unheard) while the judge ticks on. */
	liveness_intake_begin(f.c->live, time_mono_ms());
	run_for(&f, 500);
	liveness_intake_end(f.c->live, time_mono_ms());
	tick(&f);
	CHECK_STR(node_state_of(&f, "n1"), "ACTIVE");
	CHECK_STR(node_state_of(&f, "n2"), "ACTIVE");
	/* 3. A watch the server holds is no silence, however long. */
	struct node_live *nl = node_get(&f, "n2")->live;
	liveness_watch_begin(f.c->live, nl, time_mono_ms());
	heartbeat_for(&f, "n1", 400);
	CHECK_STR(node_state_of(&f, "n2"), "ACTIVE");
	liveness_watch_end(f.c->live, nl, time_mono_ms(), 20);
	/* 4. When all is well, an agent that is really gone is DOWN as fast
	 * as ever: n2 stops, n1 goes on. */
	int64_t t0 = time_mono_ms();
	while (strcmp(node_state_of(&f, "n2"), "DOWN") && time_mono_ms() - t0 < 2000)
		heartbeat_for(&f, "n1", 20);
	int64_t took = time_mono_ms() - t0;
	CHECK(took >= 200 && took < 450);
	CHECK_STR(node_state_of(&f, "n1"), "ACTIVE");
	fx_teardown(&f);
}

/* Heartbeats of n1 for ms, each read `lag` ms after it was sent. */
static void lagged_heartbeats(struct fx *f, const char *name, long ms, int64_t lag)
{
	for (long t = 0; t < ms; t += 20) {
		run_for(f, 20);
		agent_heartbeat(f, name);
		liveness_intake_lag(f->c->live, lag, time_mono_ms());
	}
}

TEST(intake_lag_is_not_silence_but_a_dead_agent_is_down_once_it_clears)
{
	struct cluster_config cfg;
	cluster_config_defaults(&cfg);
	cfg.down_after_ms = 200;
	struct fx f;
	fx_setup(&f, &cfg);
	CHECK(agent_register(&f, "n1") > 0);
	CHECK(agent_register(&f, "n2") > 0);
	heartbeat_for(&f, "n1", 300);
	agent_heartbeat(&f, "n2");
	/* The server reads agents' calls 400 ms after they were sent (a
	 * backlog of handshakes): n1's calls say so, n2's is still waiting in
	 * the backlog. Silence of n2 past down_after is the backlog's, not
	 * the agent's. */
	lagged_heartbeats(&f, "n1", 500, 400);
	CHECK(liveness_lag_credit(f.c->live) >= 400);
	CHECK_STR(node_state_of(&f, "n2"), "ACTIVE");
	CHECK_STR(node_state_of(&f, "n1"), "ACTIVE");
	/* The backlog clears (calls read at once) and n2 stays silent: it is
	 * DOWN when its silence passes down_after plus the credit left. */
	int64_t t0 = time_mono_ms();
	while (strcmp(node_state_of(&f, "n2"), "DOWN") && time_mono_ms() - t0 < 4000)
		lagged_heartbeats(&f, "n1", 20, 0);
	int64_t took = time_mono_ms() - t0;
	CHECK(took < 1000);
	CHECK_STR(node_state_of(&f, "n1"), "ACTIVE");
	/* The credit itself falls to 0 once the window holds no lagged read. */
	t0 = time_mono_ms();
	while (liveness_lag_credit(f.c->live) && time_mono_ms() - t0 < 3000)
		lagged_heartbeats(&f, "n1", 20, 0);
	CHECK(liveness_lag_credit(f.c->live) == 0);
	fx_teardown(&f);
	/* A lag past a minute is credited a minute at most; fewer than five
	 * reads in the window are no evidence of a backlog. */
	struct liveness *lv = liveness_new(250, 100);
	int64_t now = time_mono_ms();
	for (int i = 0; i < 4; i++)
		liveness_intake_lag(lv, 3600 * 1000, now);
	liveness_account(lv, now);
	CHECK(liveness_lag_credit(lv) == 0);
	liveness_intake_lag(lv, 3600 * 1000, now);
	liveness_account(lv, now);
	CHECK(liveness_lag_credit(lv) == 60000);
	liveness_free(lv);
}

/* Every page of GET /v1/nodes (or /v1/jobs) with this filter, concatenated:
 * the names in order, comma-separated. */
static char *page_through(struct fx *f, bool jobs, int state, const char *role, size_t limit,
			  int *pages)
{
	struct sbuf out;
	sbuf_init(&out);
	char *after = NULL;
	*pages = 0;
	for (;;) {
		struct view_filter vf = {
		    .after = after, .limit = limit, .state = state, .role = role};
		pthread_mutex_lock(&f->c->lock);
		struct view_rows *rows =
		    jobs ? cluster_job_rows(f->c, &vf) : cluster_node_rows(f->c, &vf);
		pthread_mutex_unlock(&f->c->lock);
		char *text = view_rows_render(rows, true);
		json_t *page = json_loads(text, 0, NULL);
		free(text);
		free(after);
		after = NULL;
		(*pages)++;
		size_t i;
		json_t *item;
		json_t *items = json_object_get(page, jobs ? "jobs" : "nodes");
		CHECK(json_array_size(items) <= limit);
		json_array_foreach(items, i, item)
		{
			if (out.len)
				sbuf_adds(&out, ",");
			sbuf_adds(&out, jstr(item, jobs ? "job" : "name"));
		}
		json_t *next = json_object_get(page, "next");
		if (json_is_string(next))
			after = xstrdup(json_string_value(next));
		json_decref(page);
		if (!after || *pages > 100)
			break;
	}
	free(after);
	return sbuf_detach(&out);
}

/* A node may claim any finite cpu (a forged agent would): the node list
 * still reads back as JSON with every node, the claim as it was made
 * (printed with 15 digits, DBL_MAX became 1.79769313486232e+308: past the
 * largest double, refused by JSON readers, and the list came out empty). */
TEST(node_list_is_json_whatever_cpu_a_node_claims)
{
	struct fx f;
	fx_setup(&f, NULL);
	CHECK(agent_register_full(&f, "huge", DBL_MAX, 8 * GiB, 20000, 20999, NULL) > 0);
	CHECK(agent_register_full(&f, "tenth", 0.1, 8 * GiB, 21000, 21999, NULL) > 0);
	pthread_mutex_lock(&f.c->lock);
	json_t *l = cluster_node_list_json(f.c);
	pthread_mutex_unlock(&f.c->lock);
	CHECK(json_array_size(l) == 2);
	json_t *huge = json_array_get(l, 0), *tenth = json_array_get(l, 1);
	CHECK_STR(json_string_value(json_object_get(huge, "name")), "huge");
	CHECK(json_real_value(json_object_get(json_object_get(huge, "resources"), "cpu")) ==
	      DBL_MAX);
	CHECK(json_real_value(json_object_get(json_object_get(tenth, "resources"), "cpu")) == 0.1);
	json_decref(l);
	fx_teardown(&f);
}

TEST(paging_returns_every_node_and_job_exactly_once)
{
	struct fx f;
	fx_setup(&f, NULL);
	struct sbuf all, drained;
	sbuf_init(&all);
	sbuf_init(&drained);
	for (int i = 0; i < 23; i++) {
		char name[16];
		snprintf(name, sizeof name, "n%02d", i);
		CHECK(agent_register(&f, name) > 0);
		sbuf_addf(&all, "%s%s", i ? "," : "", name);
		if (i % 5 == 0) {
			pthread_mutex_lock(&f.c->lock);
			cluster_node_drain(f.c, name, true, &f.err);
			pthread_mutex_unlock(&f.c->lock);
			sbuf_addf(&drained, "%s%s", drained.len ? "," : "", name);
		}
	}
	int pages;
	char *got = page_through(&f, false, -1, NULL, 5, &pages);
	CHECK_STR(got, all.buf);
	CHECK(pages == 5);
	free(got);
	got = page_through(&f, false, NODE_DRAINING, NULL, 2, &pages);
	CHECK_STR(got, drained.buf);
	CHECK(pages == 3);
	free(got);
	got = page_through(&f, false, -1, NULL, 100, &pages);
	CHECK_STR(got, all.buf);
	CHECK(pages == 1);
	free(got);
	/* Jobs: by key, and by role. */
	CHECK(submit(&f, svc_yaml("bob/prod/b", 1, "sleep 1"), NULL) > 0);
	CHECK(submit(&f, svc_yaml("alice/prod/a2", 1, "sleep 1"), NULL) > 0);
	CHECK(submit(&f, svc_yaml("alice/devel/a1", 1, "sleep 1"), NULL) > 0);
	CHECK(submit(&f, svc_yaml("alicia/prod/x", 1, "sleep 1"), NULL) > 0);
	got = page_through(&f, true, -1, NULL, 1, &pages);
	CHECK_STR(got, "alice/devel/a1,alice/prod/a2,alicia/prod/x,bob/prod/b");
	free(got);
	got = page_through(&f, true, -1, "alice", 1, &pages);
	CHECK_STR(got, "alice/devel/a1,alice/prod/a2");
	free(got);
	/* Without paging: the plain array of every node, as before. */
	json_t *arr = NULL;
	pthread_mutex_lock(&f.c->lock);
	arr = cluster_node_list_json(f.c);
	pthread_mutex_unlock(&f.c->lock);
	CHECK(json_is_array(arr) && json_array_size(arr) == 23);
	json_decref(arr);
	sbuf_release(&all);
	sbuf_release(&drained);
	fx_teardown(&f);
}

TEST(drain_moves_tasks_off_and_node_is_drained)
{
	struct fx f;
	fx_setup(&f, NULL);
	running_service(&f, 2);
	CHECK(agent_register(&f, "n2") > 0);
	pthread_mutex_lock(&f.c->lock);
	CHECK(cluster_node_drain(f.c, "n1", true, &f.err) > 0);
	CHECK(cluster_node_drain(f.c, "nope", true, &f.err) == 0);
	CHECK(f.err.code == 404);
	pthread_mutex_unlock(&f.c->lock);
	for (int round = 0; round < 10; round++) {
		tick(&f);
		for (int i = 0; i < 2; i++) {
			struct task *t = active(&f, WEB, i);
			if (t && t->state == TASK_DRAINING)
				agent_status(&f, "n1", t->id, "KILLED", 1000, 143, "");
		}
		tick(&f);
		run_job(&f, WEB);
		/* Never both instances in motion at once. */
		int moving = 0;
		for (int i = 0; i < 2; i++)
			moving += active(&f, WEB, i) && active(&f, WEB, i)->state != TASK_RUNNING;
		CHECK(moving <= 1);
	}
	for (int i = 0; i < 2; i++) {
		CHECK_STR(state_of(active(&f, WEB, i)), "RUNNING");
		CHECK_STR(node_of(active(&f, WEB, i)), "n2");
	}
	json_t *n = node_json(&f, "n1");
	CHECK_STR(jstr(n, "state"), "DRAINED");
	CHECK(jint(json_object_get(n, "resources"), "tasks") == 0);
	json_decref(n);
	/* Activate takes it back. */
	pthread_mutex_lock(&f.c->lock);
	CHECK(cluster_node_drain(f.c, "n1", false, &f.err) > 0);
	pthread_mutex_unlock(&f.c->lock);
	n = node_json(&f, "n1");
	CHECK_STR(jstr(n, "state"), "ACTIVE");
	json_decref(n);
	fx_teardown(&f);
}

TEST(ports_and_resources_released_when_tasks_end)
{
	struct fx f;
	fx_setup(&f, NULL);
	CHECK(agent_register_full(&f, "n1", 4.0, 8 * GiB, 20000, 20003, NULL) > 0);
	/* 4 ports: two tasks of two ports fill the range. */
	CHECK(submit(&f, svc_yaml(WEB, 3, "sleep 1000"), NULL) > 0);
	tick(&f);
	CHECK_STR(state_of(active(&f, WEB, 0)), "ASSIGNED");
	CHECK_STR(state_of(active(&f, WEB, 1)), "ASSIGNED");
	CHECK_STR(state_of(active(&f, WEB, 2)), "PENDING");
	CHECK_CONTAINS(active(&f, WEB, 2)->message, "insufficient ports");
	run_job(&f, WEB);
	json_t *n = node_json(&f, "n1");
	CHECK(jint(json_object_get(n, "resources"), "ports_free") == 0);
	json_decref(n);
	CHECK(job_kill(&f, WEB) > 0);
	agent_status(&f, "n1", active(&f, WEB, 0)->id, "KILLED", 1000, 143, "");
	agent_status(&f, "n1", active(&f, WEB, 1)->id, "KILLED", 1001, 143, "");
	tick(&f);
	n = node_json(&f, "n1");
	json_t *r = json_object_get(n, "resources");
	CHECK(jint(r, "ports_free") == 4);
	CHECK(jint(r, "tasks") == 0);
	CHECK(jint(r, "memory_used") == 0);
	CHECK(json_number_value(json_object_get(r, "cpu_used")) < 1e-9);
	json_decref(n);
	fx_teardown(&f);
}

/* ---- tests: views --------------------------------------------------------- */

TEST(job_status_json_shape)
{
	struct fx f;
	fx_setup(&f, NULL);
	running_service(&f, 2);
	json_t *st = job_status(&f, WEB, false);
	CHECK_STR(jstr(st, "job"), WEB);
	CHECK(jint(st, "version") == 1);
	CHECK(jint(st, "instances") == 2);
	CHECK_STR(jstr(st, "type"), "service");
	CHECK_STR(jstr(st, "status"), "running");
	CHECK(json_is_object(json_object_get(st, "spec")));
	CHECK_STR(jstr(json_object_get(st, "spec"), "job"), WEB);
	json_t *tasks = json_object_get(st, "tasks");
	CHECK(json_array_size(tasks) == 2);
	size_t i;
	json_t *t;
	json_array_foreach(tasks, i, t)
	{
		CHECK(json_is_integer(json_object_get(t, "instance")));
		CHECK_STR(jstr(t, "id"), active(&f, WEB, (int)jint(t, "instance"))->id);
		CHECK_STR(jstr(t, "state"), "RUNNING");
		CHECK_STR(jstr(t, "node"), "n1");
		CHECK(jint(t, "pid") == 1000 + jint(t, "instance"));
		CHECK(jint(t, "version") == 1);
		CHECK_CONTAINS(jstr(t, "message"), "running on n1");
		CHECK(json_is_integer(json_object_get(json_object_get(t, "ports"), "http")));
		CHECK(json_is_integer(json_object_get(t, "created_ms")));
		CHECK_STR(jstr(t, "agent_addr"), "http://127.0.0.1:40123");
		json_t *ev = json_object_get(t, "events");
		CHECK(json_array_size(ev) >= 4); /* INIT PENDING ASSIGNED RUNNING */
		CHECK_STR(jstr(json_array_get(ev, 0), "state"), "INIT");
		CHECK_STR(jstr(json_array_get(ev, json_array_size(ev) - 1), "state"), "RUNNING");
		CHECK(jstr(json_array_get(ev, 0), "time") != NULL);
		CHECK(json_is_integer(json_object_get(json_array_get(ev, 0), "time_ms")));
	}
	json_decref(st);
	/* A pending task has node null. */
	CHECK(submit(&f,
		     yamlf("job: alice/devel/big\ntask:\n  command: x\n"
			   "  resources: {cpu: 1, memory: 64GiB}\n"),
		     NULL) > 0);
	tick(&f);
	st = job_status(&f, "alice/devel/big", false);
	t = json_array_get(json_object_get(st, "tasks"), 0);
	CHECK(json_is_null(json_object_get(t, "node")));
	CHECK(jint(t, "pid") == 0);
	json_decref(st);
	/* cluster_task_json by id and by job/instance. */
	pthread_mutex_lock(&f.c->lock);
	json_t *tj = cluster_task_json(f.c, WEB "/1", &f.err);
	CHECK_STR(jstr(tj, "id"), active(&f, WEB, 1)->id);
	CHECK_STR(jstr(tj, "job"), WEB);
	json_decref(tj);
	tj = cluster_task_json(f.c, active(&f, WEB, 0)->id, &f.err);
	CHECK(jint(tj, "instance") == 0);
	json_decref(tj);
	CHECK(cluster_task_json(f.c, WEB "/7", &f.err) == NULL);
	CHECK(f.err.code == 404);
	CHECK(cluster_task_json(f.c, "nope", &f.err) == NULL);
	pthread_mutex_unlock(&f.c->lock);
	fx_teardown(&f);
}

TEST(job_list_json_counts_states)
{
	struct fx f;
	fx_setup(&f, NULL);
	running_service(&f, 3);
	CHECK(submit(&f, batch_yaml(BAT, 2, 1), NULL) > 0);
	agent_status(&f, "n1", active(&f, WEB, 2)->id, "FAILED", 1, 1, "");
	pthread_mutex_lock(&f.c->lock);
	json_t *arr = cluster_job_list_json(f.c);
	pthread_mutex_unlock(&f.c->lock);
	CHECK(json_array_size(arr) == 2);
	size_t i;
	json_t *j;
	int found = 0;
	json_array_foreach(arr, i, j)
	{
		json_t *states = json_object_get(j, "states");
		CHECK(json_is_object(states));
		CHECK(json_is_integer(json_object_get(j, "version")));
		CHECK(json_is_string(json_object_get(j, "status")));
		if (!strcmp(jstr(j, "job"), WEB)) {
			found++;
			CHECK(jint(j, "instances") == 3);
			CHECK(jint(j, "version") == 1);
			CHECK_STR(jstr(j, "status"), "running");
			CHECK(jint(states, "RUNNING") == 2);
			CHECK(jint(states, "PENDING") == 1);
			CHECK(json_object_size(states) == 2);
		} else if (!strcmp(jstr(j, "job"), BAT)) {
			found++;
			CHECK(jint(j, "instances") == 2);
			CHECK(jint(states, "PENDING") == 2);
		}
	}
	CHECK(found == 2);
	json_decref(arr);
	fx_teardown(&f);
}

TEST(node_list_json_shape)
{
	struct fx f;
	fx_setup(&f, NULL);
	running_service(&f, 2);
	json_t *n = node_json(&f, "n1");
	CHECK(n != NULL);
	CHECK(jstr(n, "id") && strlen(jstr(n, "id")) > 0);
	CHECK_STR(jstr(n, "name"), "n1");
	CHECK_STR(jstr(n, "state"), "ACTIVE");
	CHECK_STR(jstr(n, "addr"), "http://127.0.0.1:40123");
	CHECK(json_is_integer(json_object_get(n, "last_seen_ms_ago")));
	json_t *a = json_object_get(n, "attributes");
	CHECK_STR(jstr(a, "host"), "n1");
	CHECK_STR(jstr(a, "os"), "linux");
	CHECK_STR(jstr(a, "rack"), "r1");
	json_t *r = json_object_get(n, "resources");
	CHECK(json_number_value(json_object_get(r, "cpu")) == 4.0);
	CHECK(jint(r, "memory") == 8 * GiB);
	CHECK(jint(r, "disk") == 100 * GiB);
	CHECK(fabs(json_number_value(json_object_get(r, "cpu_used")) - 1.0) < 1e-9);
	CHECK(fabs(json_number_value(json_object_get(r, "cpu_free")) - 3.0) < 1e-9);
	CHECK(jint(r, "memory_used") == 128 * MiB);
	CHECK(jint(r, "memory_free") == 8 * GiB - 128 * MiB);
	CHECK(jint(r, "disk_used") == 0);
	CHECK(jint(r, "disk_free") == 100 * GiB);
	CHECK(jint(r, "ports_free") == 1000 - 4);
	CHECK(jint(r, "tasks") == 2);
	json_decref(n);
	fx_teardown(&f);
}

/* ---- tests: persistence --------------------------------------------------- */

struct snap_task {
	char *id;
	char *state;
	char *node;
	int version;
	int pid;
	char *ports;
};

static void snap_free(struct snap_task *s, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(s[i].id);
		free(s[i].state);
		free(s[i].node);
		free(s[i].ports);
	}
}

/* Every active task of a job, by instance. */
static size_t snap(struct fx *f, const char *key, struct snap_task *out, size_t max)
{
	struct job *j = job_get(f, key);
	size_t n = 0;
	for (size_t i = 0; j && i < j->nactive && n < max; i++) {
		struct task *t = j->active[i];
		if (!t)
			continue;
		out[n++] = (struct snap_task){xstrdup(t->id),
					      xstrdup(state_of(t)),
					      xstrdup(node_of(t)),
					      t->version,
					      t->pid,
					      t->ports ? json_dumps(t->ports, JSON_SORT_KEYS)
						       : xstrdup("null")};
	}
	return n;
}

TEST(persistence_round_trip)
{
	struct fx f;
	fx_setup(&f, NULL);
	running_service(&f, 3);
	/* Version 2 for the service with instance 0 still RESTARTING. */
	CHECK(submit(&f, svc_yaml(WEB, 3, "sleep 2"), NULL) > 0);
	agent_status(&f, "n1", active(&f, WEB, 1)->id, "KILLED", 1, 143, "");
	agent_status(&f, "n1", active(&f, WEB, 2)->id, "KILLED", 1, 143, "");
	tick(&f);
	run_job(&f, WEB);
	/* A batch job with a finished instance, a pending job, a killed job. */
	CHECK(submit(&f, batch_yaml(BAT, 2, 3), NULL) > 0);
	tick(&f);
	run_job(&f, BAT);
	agent_status(&f, "n1", active(&f, BAT, 0)->id, "FINISHED", 1, 0, "");
	CHECK(submit(&f,
		     yamlf("job: alice/devel/big\ntask:\n  command: x\n"
			   "  resources: {cpu: 1, memory: 64GiB}\n"),
		     NULL) > 0);
	CHECK(submit(&f, svc_yaml("carol/prod/gone", 1, "x"), NULL) > 0);
	CHECK(job_kill(&f, "carol/prod/gone") > 0);
	tick(&f);

	struct snap_task a[3][8], b[3][8];
	const char *keys[3] = {WEB, BAT, "alice/devel/big"};
	size_t na[3], nb[3];
	for (int k = 0; k < 3; k++)
		na[k] = snap(&f, keys[k], a[k], 8);
	CHECK(na[0] == 3 && na[1] == 1 && na[2] == 1);
	json_t *before_nodes = cluster_node_list_json(f.c);
	json_t *before_ws = job_status(&f, WEB, true);
	size_t ntasks = f.c->tasks.count;

	fx_restart(&f);

	CHECK(f.c->jobs.count == 3);
	CHECK(job_get(&f, "carol/prod/gone") == NULL);
	CHECK(f.c->tasks.count == ntasks);
	CHECK(job_get(&f, WEB) && job_get(&f, WEB)->version == 2);
	CHECK(job_get(&f, WEB) && job_get(&f, WEB)->nversions == 2);
	CHECK(job_get(&f, BAT) && job_get(&f, BAT)->instance_done[0]);
	for (int k = 0; k < 3; k++) {
		nb[k] = snap(&f, keys[k], b[k], 8);
		CHECK(nb[k] == na[k]);
		for (size_t i = 0; i < na[k] && i < nb[k]; i++) {
			CHECK_STR(b[k][i].id, a[k][i].id);
			CHECK_STR(b[k][i].state, a[k][i].state);
			CHECK_STR(b[k][i].node, a[k][i].node);
			CHECK_STR(b[k][i].ports, a[k][i].ports);
			CHECK(b[k][i].version == a[k][i].version);
			CHECK(b[k][i].pid == a[k][i].pid);
		}
		snap_free(a[k], na[k]);
		snap_free(b[k], nb[k]);
	}
	/* The job status (with history) is the same. */
	json_t *after_ws = job_status(&f, WEB, true);
	json_t *ta = json_object_get(before_ws, "tasks"), *tb = json_object_get(after_ws, "tasks");
	CHECK(json_array_size(ta) == json_array_size(tb));
	CHECK(json_equal(json_object_get(before_ws, "spec"), json_object_get(after_ws, "spec")));
	for (size_t i = 0; i < json_array_size(ta); i++) {
		json_t *x = json_array_get(ta, i), *y = json_array_get(tb, i);
		CHECK_STR(jstr(x, "id"), jstr(y, "id"));
		CHECK(json_equal(json_object_get(x, "events"), json_object_get(y, "events")));
		CHECK_STR(jstr(x, "message"), jstr(y, "message"));
	}
	json_decref(before_ws);
	json_decref(after_ws);
	/* Nodes: same id, attributes and accounting; ACTIVE for a grace window. */
	json_t *after_nodes = cluster_node_list_json(f.c);
	CHECK(json_array_size(after_nodes) == 1);
	json_t *x = json_array_get(before_nodes, 0), *y = json_array_get(after_nodes, 0);
	CHECK_STR(jstr(x, "id"), jstr(y, "id"));
	CHECK_STR(jstr(y, "state"), "ACTIVE");
	CHECK(json_equal(json_object_get(x, "attributes"), json_object_get(y, "attributes")));
	CHECK(json_equal(json_object_get(x, "resources"), json_object_get(y, "resources")));
	json_decref(before_nodes);
	json_decref(after_nodes);
	/* The loaded state keeps working: the RESTARTING task ends and is
	 * replaced at version 2. */
	struct task *t0 = active(&f, WEB, 0);
	CHECK_STR(state_of(t0), "RESTARTING");
	char *id0 = xstrdup(t0->id);
	agent_status(&f, "n1", id0, "KILLED", 1, 143, "");
	struct task *r = active(&f, WEB, 0);
	CHECK_STR(state_of(r), "PENDING");
	CHECK(r && r->version == 2);
	CHECK_STR(r ? r->ancestor : NULL, id0);
	free(id0);
	fx_teardown(&f);
}

TEST(persistence_port_pool_rebuilt_on_load)
{
	struct fx f;
	fx_setup(&f, NULL);
	CHECK(agent_register_full(&f, "n1", 8.0, 8 * GiB, 20000, 20005, NULL) > 0);
	CHECK(submit(&f, svc_yaml(WEB, 2, "sleep 1000"), NULL) > 0);
	tick(&f);
	run_job(&f, WEB);
	fx_restart(&f);
	/* Two more ports are left: one more task fits, not two, and its ports
	 * differ from the loaded tasks'. */
	CHECK(submit(&f, svc_yaml("alice/devel/more", 2, "sleep 1000"), NULL) > 0);
	tick(&f);
	struct task *m0 = active(&f, "alice/devel/more", 0),
		    *m1 = active(&f, "alice/devel/more", 1);
	int placed = (m0 && m0->state == TASK_ASSIGNED) + (m1 && m1->state == TASK_ASSIGNED);
	CHECK(placed == 1);
	struct task *nt = m0 && m0->state == TASK_ASSIGNED ? m0 : m1;
	const char *k;
	json_t *v;
	json_object_foreach(nt ? nt->ports : NULL, k, v)
	{
		int p = (int)json_integer_value(v);
		for (int i = 0; i < 2; i++) {
			const char *k2;
			json_t *v2;
			json_object_foreach(active(&f, WEB, i)->ports, k2, v2)
			    CHECK(json_integer_value(v2) != p);
		}
	}
	fx_teardown(&f);
}

/* After a server restart the node's desired version starts over, while the
 * agent still holds the known_version it got from the previous server. A
 * task assigned after the restart has never been delivered to the agent, so
 * the agent's first watch (carrying the old known_version) must not judge it
 * missing (docs/protocol.md: "Tasks assigned after known_version are never
 * judged missing from that watch's report"). */
TEST(restart_then_watch_with_old_known_version_keeps_new_assignment)
{
	struct fx f;
	fx_setup(&f, NULL);
	running_service(&f, 1);
	struct task *t = active(&f, WEB, 0);
	long long known = desired_version(&f, "n1");
	json_t *report = json_array();
	json_array_append_new(report, rep(t->id, "RUNNING", 1000));
	agent_watch(&f, "n1", known, report);
	CHECK(known >= 2);
	char *id0 = xstrdup(t->id);

	fx_restart(&f);
	CHECK(submit(&f, svc_yaml("alice/devel/new", 1, "sleep 1000"), NULL) > 0);
	tick(&f);
	struct task *n = active(&f, "alice/devel/new", 0);
	CHECK_STR(state_of(n), "ASSIGNED");
	CHECK_STR(node_of(n), "n1");
	/* The desired version does not go back to a value the agent already
	 * saw (else a long poll with that known_version would not answer). */
	CHECK(desired_version(&f, "n1") > known);
	/* The agent's first watch since the restart. */
	report = json_array();
	json_array_append_new(report, rep(id0, "RUNNING", 1000));
	agent_watch(&f, "n1", known, report);
	CHECK_STR(state_of(active(&f, "alice/devel/new", 0)), "ASSIGNED");
	CHECK_STR(state_of(active(&f, WEB, 0)), "RUNNING");
	free(id0);
	fx_teardown(&f);
}

/* The replacement of a task records why in its first event, quoting the
 * agent's message; a long message with multi-byte characters must not make
 * that event vanish from the record and the view. */
TEST(replacement_event_survives_long_utf8_message)
{
	struct fx f;
	fx_setup(&f, NULL);
	running_service(&f, 2);
	/* Two instances, messages of both parities, so that one of them is
	 * cut inside a two-byte character wherever the cut falls. */
	for (int i = 0; i < 2; i++) {
		struct task *t = active(&f, WEB, i);
		struct sbuf sb;
		sbuf_init(&sb);
		if (i)
			sbuf_adds(&sb, "x");
		for (int k = 0; k < 200; k++)
			sbuf_adds(&sb, "\xc3\xa9"); /* U+00E9 */
		agent_status(&f, "n1", t->id, "FAILED", 1000, 1, sb.buf);
		sbuf_release(&sb);
	}
	json_t *st = job_status(&f, WEB, false);
	size_t i;
	json_t *t;
	json_array_foreach(json_object_get(st, "tasks"), i, t)
	{
		json_t *ev = json_object_get(t, "events");
		CHECK_STR(jstr(json_array_get(ev, 0), "state"), "INIT");
		CHECK_CONTAINS(jstr(json_array_get(ev, 0), "message"), "replaces");
	}
	json_decref(st);
	fx_teardown(&f);
}

TEST(find_task_by_id_and_ref)
{
	struct fx f;
	fx_setup(&f, NULL);
	running_service(&f, 2);
	struct task *t1 = active(&f, WEB, 1);
	CHECK(cluster_find_task(f.c, t1->id) == t1);
	CHECK(cluster_find_task(f.c, WEB "/1") == t1);
	CHECK(cluster_find_task(f.c, WEB "/-1") == NULL);
	CHECK(cluster_find_task(f.c, WEB "/x") == NULL);
	CHECK(cluster_find_task(f.c, "alice/devel/none/0") == NULL);
	/* An ended instance: the newest ended task. */
	CHECK(submit(&f, batch_yaml(BAT, 1, 1), NULL) > 0);
	tick(&f);
	run_job(&f, BAT);
	struct task *b = active(&f, BAT, 0);
	agent_status(&f, "n1", b->id, "FINISHED", 1, 0, "");
	CHECK(cluster_find_task(f.c, BAT "/0") == b);
	CHECK_STR(state_of(b), "FINISHED");
	fx_teardown(&f);
}

TEST(ended_tasks_kept_per_job_are_bounded)
{
	struct cluster_config cfg;
	cluster_config_defaults(&cfg);
	cfg.ended_keep = 3;
	struct fx f;
	fx_setup(&f, &cfg);
	CHECK(agent_register(&f, "n1") > 0);
	CHECK(submit(&f, batch_yaml(BAT, 1, -1), NULL) > 0);
	for (int k = 0; k < 6; k++) {
		tick(&f);
		run_job(&f, BAT);
		agent_status(&f, "n1", active(&f, BAT, 0)->id, "FAILED", 1, 1, "");
	}
	CHECK(job_get(&f, BAT)->nended == 3);
	CHECK(count_job_tasks(&f, BAT) == 4);
	fx_restart(&f);
	CHECK(count_job_tasks(&f, BAT) == 4);
	CHECK(job_get(&f, BAT)->nended == 3);
	fx_teardown(&f);
}

/* ---- tests: rolling updates ------------------------------------------------ */

/* A service whose command (and so config version) the tests change, with an
 * update policy given as a YAML flow map. */
static char *upd_yaml(const char *key, int instances, const char *cmd, const char *policy)
{
	return yamlf("job: %s\n"
		     "instances: %d\n"
		     "task:\n"
		     "  command: [\"/bin/sh\", \"-c\", \"%s\"]\n"
		     "  resources: {cpu: 0.1, memory: 16MiB, ports: [http]}\n"
		     "update: %s\n",
		     key, instances, cmd, policy);
}

static uint64_t submit_instances(struct fx *f, char *yaml, int first, int last,
				 struct submit_result *res)
{
	struct job_spec *spec = NULL;
	struct submit_result dummy;
	if (spec_parse_yaml(yaml, strlen(yaml), "test.yaml", &spec, &f->err) < 0) {
		fprintf(stderr, "    spec_parse_yaml: %s\n", f->err.msg);
		free(yaml);
		return 0;
	}
	free(yaml);
	pthread_mutex_lock(&f->c->lock);
	uint64_t seq =
	    cluster_job_submit_instances(f->c, spec, first, last, res ? res : &dummy, &f->err);
	pthread_mutex_unlock(&f->c->lock);
	return seq;
}

static uint64_t update_control(struct fx *f, const char *key, const char *action)
{
	pthread_mutex_lock(&f->c->lock);
	uint64_t seq = cluster_update_control(f->c, key, action, &f->err);
	pthread_mutex_unlock(&f->c->lock);
	return seq;
}

static json_t *update_json(struct fx *f, const char *key)
{
	pthread_mutex_lock(&f->c->lock);
	json_t *o = cluster_update_json(f->c, key, &f->err);
	pthread_mutex_unlock(&f->c->lock);
	return o;
}

static const char *update_state(struct fx *f, const char *key)
{
	struct job *j = job_get(f, key);
	return j && j->update ? update_state_name(j->update->state) : "(none)";
}

static bool update_active(struct fx *f, const char *key)
{
	struct job *j = job_get(f, key);
	return j && j->update && update_state_active(j->update->state);
}

static int update_count(struct fx *f, const char *key, const char *field)
{
	json_t *u = update_json(f, key);
	int n = u ? (int)jint(u, field) : -1;
	json_decref(u);
	return n;
}

/* Tasks of the job that are not ended (active ones and start_first's old
 * tasks still stopping or running). */
static int live_tasks(struct fx *f, const char *key)
{
	int n = 0;
	size_t it = 0;
	void *v;
	while (hmap_next(&f->c->tasks, &it, NULL, &v)) {
		struct task *t = v;
		if (!strcmp(t->job->key, key) && !task_state_terminal(t->state))
			n++;
	}
	return n;
}

/* Instances of the update in flight, measured on the tasks themselves: an
 * old task stopping for it (RESTARTING), or a task of the new version that
 * has not yet stayed RUNNING for the watch time. */
static int in_flight(struct fx *f, const char *key, int to, int64_t watch_ms)
{
	struct job *j = job_get(f, key);
	int n = 0;
	int64_t now = time_now_ms();
	for (size_t i = 0; j && i < j->nactive; i++) {
		struct task *t = j->active[i];
		if (!t)
			continue;
		if (t->state == TASK_RESTARTING)
			n++;
		else if (t->version == to &&
			 !(t->state == TASK_RUNNING && now - t->running_since_ms >= watch_ms))
			n++;
	}
	return n;
}

/* The agent's side of an update. */
struct play {
	int bad_version; /* tasks of this version fail when started (0: none) */
	int fail_times;	 /* ... only the first fail_times of each instance (0: always) */
	int failed[64];
	bool hold_stops; /* leave stopping tasks stopping (the agent is slow) */
};

/* One round of the agent: stopping tasks end (KILLED), assigned ones start
 * (RUNNING, or FAILED for a bad version). */
static void play_step(struct fx *f, const char *key, struct play *p)
{
	struct act {
		char *id, *node;
		const char *state;
		int inst;
	} acts[256];
	size_t n = 0;
	size_t it = 0;
	void *v;
	while (hmap_next(&f->c->tasks, &it, NULL, &v) && n < 256) {
		struct task *t = v;
		if (strcmp(t->job->key, key) || !t->node)
			continue;
		const char *to = NULL;
		if (t->state == TASK_KILLING || t->state == TASK_RESTARTING ||
		    t->state == TASK_DRAINING) {
			if (!p || !p->hold_stops)
				to = "KILLED";
		} else if (t->state == TASK_ASSIGNED || t->state == TASK_STARTING) {
			to = "RUNNING";
			if (p && p->bad_version && t->version == p->bad_version &&
			    (!p->fail_times ||
			     (t->instance < 64 && p->failed[t->instance] < p->fail_times))) {
				to = "FAILED";
				if (t->instance < 64)
					p->failed[t->instance]++;
			}
		}
		if (to)
			acts[n++] =
			    (struct act){xstrdup(t->id), xstrdup(t->node->name), to, t->instance};
	}
	for (size_t k = 0; k < n; k++) {
		bool failed = !strcmp(acts[k].state, "FAILED");
		int code = failed ? 1 : 0;
		if (!strcmp(acts[k].state, "KILLED"))
			code = 143;
		agent_status(f, acts[k].node, acts[k].id, acts[k].state, 2000 + acts[k].inst, code,
			     failed ? "exit status 1" : "");
		free(acts[k].id);
		free(acts[k].node);
	}
}

/* Drive the job: tick, play the agent, let a little time pass; until the
 * update ended (then a few more rounds to settle) or `steps` ran out.
 * Returns the most instances in flight seen (for an update to `to`). */
static int drive(struct fx *f, const char *key, struct play *p, int steps, int to, int64_t watch_ms)
{
	int most = 0, settle = 5;
	for (int s = 0; s < steps && settle > 0; s++) {
		tick(f);
		int n = in_flight(f, key, to, watch_ms);
		most = n > most ? n : most;
		play_step(f, key, p);
		tick(f);
		n = in_flight(f, key, to, watch_ms);
		most = n > most ? n : most;
		if (!update_active(f, key))
			settle--;
		sleep_ms(3);
	}
	return most;
}

/* Every active task of the job: RUNNING on version v. */
static bool all_on_version(struct fx *f, const char *key, int n, int v)
{
	bool ok = true;
	for (int i = 0; i < n; i++) {
		struct task *t = active(f, key, i);
		if (!t || t->version != v || t->state != TASK_RUNNING) {
			fprintf(stderr,
				"    instance %d: %s version %d (want RUNNING version %d)\n", i,
				state_of(t), t ? t->version : -1, v);
			ok = false;
		}
	}
	return ok;
}

static void save_ids(struct fx *f, const char *key, int n, char **ids)
{
	for (int i = 0; i < n; i++)
		ids[i] = active(f, key, i) ? xstrdup(active(f, key, i)->id) : NULL;
}

static void free_ids(char **ids, int n)
{
	for (int i = 0; i < n; i++)
		free(ids[i]);
}

/* n instances of version 1 RUNNING on n1 with the given policy. */
static void running_v1(struct fx *f, int n, const char *policy)
{
	CHECK(agent_register(f, "n1") > 0);
	CHECK(submit(f, upd_yaml(WEB, n, "sleep 1000", policy), NULL) > 0);
	tick(f);
	run_job(f, WEB);
	for (int i = 0; i < n; i++)
		CHECK_STR(state_of(active(f, WEB, i)), "RUNNING");
}

#define POLICY_B2 "{batch_size: 2, watch: 30ms}"

TEST(update_good_version_rolls_forward_batch_by_batch)
{
	struct fx f;
	fx_setup(&f, NULL);
	running_v1(&f, 5, POLICY_B2);
	char *old[5];
	save_ids(&f, WEB, 5, old);
	struct submit_result res;
	CHECK(submit(&f, upd_yaml(WEB, 5, "sleep 2000", POLICY_B2), &res) > 0);
	CHECK(res.changed && res.update && res.version == 2);
	CHECK_STR(update_state(&f, WEB), "ROLLING_FORWARD");
	/* The first batch: instances 0 and 1 stop, the others are untouched. */
	CHECK_STR(state_of(active(&f, WEB, 0)), "RESTARTING");
	CHECK_STR(state_of(active(&f, WEB, 1)), "RESTARTING");
	for (int i = 2; i < 5; i++) {
		CHECK_STR(state_of(active(&f, WEB, i)), "RUNNING");
		CHECK_STR(active(&f, WEB, i)->id, old[i]);
	}
	CHECK(in_flight(&f, WEB, 2, 30) == 2);
	int most = drive(&f, WEB, NULL, 400, 2, 30);
	CHECK(most == 2); /* the batch size is used, never exceeded */
	CHECK_STR(update_state(&f, WEB), "ROLLED_FORWARD");
	CHECK(all_on_version(&f, WEB, 5, 2));
	CHECK(job_get(&f, WEB)->version == 2);
	CHECK(live_tasks(&f, WEB) == 5);
	/* Each instance was replaced once, by a successor of its old task. */
	for (int i = 0; i < 5; i++) {
		struct task *t = active(&f, WEB, i);
		CHECK_STR(t ? t->ancestor : NULL, old[i]);
		CHECK_STR(state_of(cluster_find_task(f.c, old[i])), "KILLED");
	}
	CHECK(update_count(&f, WEB, "updated") == 5);
	CHECK(update_count(&f, WEB, "failed") == 0);
	free_ids(old, 5);
	fx_teardown(&f);
}

/* The batches follow each other: instance 2 is not touched before one of
 * the first batch has stayed up for the watch time. */
TEST(update_next_batch_waits_for_watch)
{
	struct fx f;
	fx_setup(&f, NULL);
	running_v1(&f, 3, "{batch_size: 1, watch: 300ms}");
	char *old[3];
	save_ids(&f, WEB, 3, old);
	CHECK(submit(&f, upd_yaml(WEB, 3, "sleep 2000", "{batch_size: 1, watch: 300ms}"), NULL) >
	      0);
	for (int s = 0; s < 10; s++) {
		tick(&f);
		play_step(&f, WEB, NULL);
		sleep_ms(5);
	}
	CHECK_STR(state_of(active(&f, WEB, 0)), "RUNNING");
	CHECK(active(&f, WEB, 0)->version == 2);
	CHECK_STR(active(&f, WEB, 1)->id, old[1]);
	CHECK_STR(active(&f, WEB, 2)->id, old[2]);
	CHECK(update_count(&f, WEB, "updated") == 0);
	CHECK(update_count(&f, WEB, "healthy") == 1);
	sleep_ms(320);
	tick(&f);
	CHECK(update_count(&f, WEB, "updated") == 1);
	tick(&f);
	CHECK_STR(state_of(active(&f, WEB, 1)), "RESTARTING");
	CHECK_STR(active(&f, WEB, 2)->id, old[2]);
	free_ids(old, 3);
	fx_teardown(&f);
}

TEST(update_failing_version_rolls_back_automatically)
{
	struct fx f;
	fx_setup(&f, NULL);
	const char *pol = "{batch_size: 1, watch: 30ms, max_instance_failures: 0, "
			  "max_total_failures: 0, rollback_on_failure: true}";
	running_v1(&f, 3, pol);
	char *old[3];
	save_ids(&f, WEB, 3, old);
	CHECK(submit(&f, upd_yaml(WEB, 3, "exit 1", pol), NULL) > 0);
	struct play p = {.bad_version = 2};
	drive(&f, WEB, &p, 400, 2, 30);
	CHECK_STR(update_state(&f, WEB), "ROLLED_BACK");
	CHECK(all_on_version(&f, WEB, 3, 1));
	CHECK(job_get(&f, WEB)->version == 1);
	CHECK(p.failed[0] == 1); /* one failure was enough */
	CHECK(p.failed[1] == 0 && p.failed[2] == 0);
	/* Instances the update never reached were not restarted. */
	CHECK_STR(active(&f, WEB, 1)->id, old[1]);
	CHECK_STR(active(&f, WEB, 2)->id, old[2]);
	CHECK(live_tasks(&f, WEB) == 3);
	json_t *u = update_json(&f, WEB);
	CHECK_CONTAINS(jstr(u, "message"), "3 instances back on version 1");
	CHECK_CONTAINS(jstr(u, "message"), "instance 0 failed (exit status 1)");
	CHECK(jint(u, "finished_ms") >= jint(u, "started_ms"));
	json_decref(u);
	/* The job status shows version 1 again. */
	json_t *st = job_status(&f, WEB, false);
	CHECK(jint(st, "version") == 1);
	json_decref(st);
	free_ids(old, 3);
	fx_teardown(&f);
}

/* A batch of 2: instance 0's new task fails while instance 1's old task is
 * still stopping (it would be replaced by version 2). The rollback must
 * still bring instance 1 back to version 1 and end. */
TEST(update_rollback_while_batch_mate_still_stopping)
{
	struct fx f;
	fx_setup(&f, NULL);
	const char *pol = "{batch_size: 2, watch: 30ms}";
	running_v1(&f, 3, pol);
	char *old[3];
	save_ids(&f, WEB, 3, old);
	CHECK(submit(&f, upd_yaml(WEB, 3, "exit 1", pol), NULL) > 0);
	CHECK_STR(state_of(active(&f, WEB, 1)), "RESTARTING");
	agent_status(&f, "n1", old[0], "KILLED", 1, 143, "");
	tick(&f);
	struct task *n0 = active(&f, WEB, 0);
	CHECK(n0 && n0->version == 2 && n0->state == TASK_ASSIGNED);
	agent_status(&f, "n1", n0->id, "FAILED", 5, 1, "exit status 1");
	CHECK_STR(update_state(&f, WEB), "ROLLING_BACK");
	CHECK_STR(state_of(cluster_find_task(f.c, old[1])), "RESTARTING");
	struct play p = {.bad_version = 2};
	drive(&f, WEB, &p, 400, 1, 30);
	CHECK_STR(update_state(&f, WEB), "ROLLED_BACK");
	CHECK(all_on_version(&f, WEB, 3, 1));
	CHECK_STR(active(&f, WEB, 2)->id, old[2]);
	free_ids(old, 3);
	fx_teardown(&f);
}

TEST(update_failure_without_rollback_ends_failed)
{
	struct fx f;
	fx_setup(&f, NULL);
	const char *pol = "{batch_size: 1, watch: 30ms, rollback_on_failure: false}";
	running_v1(&f, 3, pol);
	char *old[3];
	save_ids(&f, WEB, 3, old);
	CHECK(submit(&f, upd_yaml(WEB, 3, "exit 1", pol), NULL) > 0);
	struct play p = {.bad_version = 2};
	drive(&f, WEB, &p, 400, 2, 30);
	CHECK_STR(update_state(&f, WEB), "FAILED");
	json_t *u = update_json(&f, WEB);
	CHECK_CONTAINS(jstr(u, "message"), "instance 0 failed");
	CHECK(jint(u, "failed") == 1);
	CHECK(jint(u, "updated") == 0);
	json_decref(u);
	/* Nothing else moved: instance 0 stays on the new version, the others
	 * on the old one with their tasks. */
	CHECK(active(&f, WEB, 0) && active(&f, WEB, 0)->version == 2);
	CHECK_STR(active(&f, WEB, 1)->id, old[1]);
	CHECK_STR(active(&f, WEB, 2)->id, old[2]);
	CHECK(active(&f, WEB, 1)->version == 1 && active(&f, WEB, 2)->version == 1);
	CHECK(update_control(&f, WEB, "resume") == 0 && f.err.code == 409);
	free_ids(old, 3);
	fx_teardown(&f);
}

TEST(update_max_instance_failures_tolerates_one_per_instance)
{
	struct fx f;
	fx_setup(&f, NULL);
	const char *pol = "{batch_size: 2, watch: 30ms, max_instance_failures: 1}";
	running_v1(&f, 3, pol);
	CHECK(submit(&f, upd_yaml(WEB, 3, "sleep 2000", pol), NULL) > 0);
	/* Every new task fails once, then runs. */
	struct play p = {.bad_version = 2, .fail_times = 1};
	drive(&f, WEB, &p, 400, 2, 30);
	CHECK_STR(update_state(&f, WEB), "ROLLED_FORWARD");
	CHECK(all_on_version(&f, WEB, 3, 2));
	for (int i = 0; i < 3; i++)
		CHECK(p.failed[i] == 1);
	json_t *u = update_json(&f, WEB);
	json_t *e;
	size_t i;
	json_array_foreach(json_object_get(u, "instances"), i, e)
	{
		CHECK(jint(e, "failures") == 1);
		CHECK_STR(jstr(e, "status"), "DONE");
	}
	CHECK(jint(u, "failed") == 0);
	json_decref(u);
	fx_teardown(&f);
}

TEST(update_second_failure_of_an_instance_rolls_back)
{
	struct cluster_config cfg;
	cluster_config_defaults(&cfg);
	cfg.throttle_base_ms = 1; /* the flapping back-off would only slow the test */
	struct fx f;
	fx_setup(&f, &cfg);
	const char *pol = "{batch_size: 1, watch: 30ms, max_instance_failures: 1}";
	running_v1(&f, 2, pol);
	CHECK(submit(&f, upd_yaml(WEB, 2, "exit 1", pol), NULL) > 0);
	struct play p = {.bad_version = 2, .fail_times = 2};
	drive(&f, WEB, &p, 400, 2, 30);
	CHECK(p.failed[0] == 2);
	CHECK(p.failed[1] == 0);
	CHECK_STR(update_state(&f, WEB), "ROLLED_BACK");
	CHECK(all_on_version(&f, WEB, 2, 1));
	fx_teardown(&f);
}

TEST(update_max_total_failures_tolerates_failed_instances)
{
	struct cluster_config cfg;
	cluster_config_defaults(&cfg);
	cfg.throttle_base_ms = 1;
	struct fx f;
	fx_setup(&f, &cfg);
	/* One instance may fail for good: the update still rolls forward. */
	const char *pol = "{batch_size: 1, watch: 30ms, max_total_failures: 1}";
	running_v1(&f, 3, pol);
	CHECK(submit(&f, upd_yaml(WEB, 3, "sleep 2000", pol), NULL) > 0);
	/* Only instance 0's first new task fails. */
	struct play p = {.bad_version = 2, .fail_times = 1};
	p.failed[1] = p.failed[2] = 1;
	drive(&f, WEB, &p, 400, 2, 30);
	CHECK_STR(update_state(&f, WEB), "ROLLED_FORWARD");
	CHECK(update_count(&f, WEB, "failed") == 1);
	CHECK(update_count(&f, WEB, "updated") == 2);
	fx_teardown(&f);
}

TEST(update_pause_stops_progress_and_resume_continues)
{
	struct fx f;
	fx_setup(&f, NULL);
	const char *pol = "{batch_size: 1, watch: 20ms}";
	running_v1(&f, 4, pol);
	char *old[4];
	save_ids(&f, WEB, 4, old);
	CHECK(submit(&f, upd_yaml(WEB, 4, "sleep 2000", pol), NULL) > 0);
	/* Until instance 0 is done. */
	for (int s = 0; s < 200 && update_count(&f, WEB, "updated") < 1; s++) {
		tick(&f);
		play_step(&f, WEB, NULL);
		sleep_ms(3);
	}
	CHECK(update_count(&f, WEB, "updated") == 1);
	CHECK(update_control(&f, WEB, "pause") > 0);
	CHECK_STR(update_state(&f, WEB), "ROLL_FORWARD_PAUSED");
	/* Paused twice is still paused. */
	CHECK(update_control(&f, WEB, "pause") > 0);
	CHECK_STR(update_state(&f, WEB), "ROLL_FORWARD_PAUSED");
	/* Instance 1 may have been started in the same tick; what is not in
	 * flight does not move while paused. */
	int updated = update_count(&f, WEB, "updated");
	for (int s = 0; s < 30; s++) {
		tick(&f);
		play_step(&f, WEB, NULL);
		sleep_ms(3);
	}
	CHECK_STR(update_state(&f, WEB), "ROLL_FORWARD_PAUSED");
	CHECK(update_count(&f, WEB, "updated") == updated);
	CHECK_STR(active(&f, WEB, 2)->id, old[2]);
	CHECK_STR(active(&f, WEB, 3)->id, old[3]);
	CHECK(update_control(&f, WEB, "resume") > 0);
	CHECK_STR(update_state(&f, WEB), "ROLLING_FORWARD");
	drive(&f, WEB, NULL, 400, 2, 20);
	CHECK_STR(update_state(&f, WEB), "ROLLED_FORWARD");
	CHECK(all_on_version(&f, WEB, 4, 2));
	free_ids(old, 4);
	fx_teardown(&f);
}

TEST(update_pause_while_instance_in_flight_finishes_it_but_starts_none)
{
	struct fx f;
	fx_setup(&f, NULL);
	const char *pol = "{batch_size: 1, watch: 20ms}";
	running_v1(&f, 3, pol);
	char *old[3];
	save_ids(&f, WEB, 3, old);
	CHECK(submit(&f, upd_yaml(WEB, 3, "sleep 2000", pol), NULL) > 0);
	CHECK_STR(state_of(active(&f, WEB, 0)), "RESTARTING");
	CHECK(update_control(&f, WEB, "pause") > 0);
	for (int s = 0; s < 30; s++) {
		tick(&f);
		play_step(&f, WEB, NULL);
		sleep_ms(3);
	}
	/* The stopped instance is not left down: it runs the new version. */
	CHECK_STR(state_of(active(&f, WEB, 0)), "RUNNING");
	CHECK(active(&f, WEB, 0)->version == 2);
	CHECK_STR(active(&f, WEB, 1)->id, old[1]);
	CHECK_STR(active(&f, WEB, 2)->id, old[2]);
	CHECK(update_count(&f, WEB, "updated") == 0);
	CHECK(update_control(&f, WEB, "resume") > 0);
	drive(&f, WEB, NULL, 400, 2, 20);
	CHECK_STR(update_state(&f, WEB), "ROLLED_FORWARD");
	CHECK(all_on_version(&f, WEB, 3, 2));
	free_ids(old, 3);
	fx_teardown(&f);
}

TEST(update_abort_leaves_instances_where_they_are)
{
	struct fx f;
	fx_setup(&f, NULL);
	const char *pol = "{batch_size: 1, watch: 20ms}";
	running_v1(&f, 4, pol);
	char *old[4];
	save_ids(&f, WEB, 4, old);
	CHECK(submit(&f, upd_yaml(WEB, 4, "sleep 2000", pol), NULL) > 0);
	for (int s = 0; s < 200 && update_count(&f, WEB, "updated") < 1; s++) {
		tick(&f);
		play_step(&f, WEB, NULL);
		sleep_ms(3);
	}
	CHECK(update_count(&f, WEB, "updated") == 1);
	CHECK(update_control(&f, WEB, "abort") > 0);
	CHECK_STR(update_state(&f, WEB), "ABORTED");
	json_t *u = update_json(&f, WEB);
	CHECK_STR(jstr(u, "message"), "aborted by user");
	json_decref(u);
	for (int s = 0; s < 30; s++) {
		tick(&f);
		play_step(&f, WEB, NULL);
		sleep_ms(3);
	}
	CHECK_STR(update_state(&f, WEB), "ABORTED");
	CHECK(active(&f, WEB, 0)->version == 2);
	CHECK_STR(state_of(active(&f, WEB, 0)), "RUNNING");
	/* Instance 1 may have been in flight; 2 and 3 were never touched. */
	CHECK_STR(state_of(active(&f, WEB, 1)), "RUNNING");
	CHECK_STR(active(&f, WEB, 2)->id, old[2]);
	CHECK_STR(active(&f, WEB, 3)->id, old[3]);
	CHECK(live_tasks(&f, WEB) == 4);
	/* Nothing to control any more. */
	CHECK(update_control(&f, WEB, "pause") == 0 && f.err.code == 409);
	CHECK(update_control(&f, WEB, "rollback") == 0 && f.err.code == 409);
	free_ids(old, 4);
	fx_teardown(&f);
}

TEST(update_user_rollback)
{
	struct fx f;
	fx_setup(&f, NULL);
	const char *pol = "{batch_size: 2, watch: 20ms}";
	running_v1(&f, 4, pol);
	char *old[4];
	save_ids(&f, WEB, 4, old);
	CHECK(submit(&f, upd_yaml(WEB, 4, "sleep 2000", pol), NULL) > 0);
	for (int s = 0; s < 200 && update_count(&f, WEB, "updated") < 2; s++) {
		tick(&f);
		play_step(&f, WEB, NULL);
		sleep_ms(3);
	}
	CHECK(update_count(&f, WEB, "updated") == 2);
	CHECK(update_control(&f, WEB, "rollback") > 0);
	CHECK_STR(update_state(&f, WEB), "ROLLING_BACK");
	CHECK(job_get(&f, WEB)->version == 1);
	/* Rolling back twice is refused. */
	CHECK(update_control(&f, WEB, "rollback") == 0 && f.err.code == 409);
	/* A rollback can be paused and resumed too. */
	CHECK(update_control(&f, WEB, "pause") > 0);
	CHECK_STR(update_state(&f, WEB), "ROLL_BACK_PAUSED");
	CHECK(update_control(&f, WEB, "resume") > 0);
	CHECK_STR(update_state(&f, WEB), "ROLLING_BACK");
	drive(&f, WEB, NULL, 400, 1, 20);
	CHECK_STR(update_state(&f, WEB), "ROLLED_BACK");
	CHECK(all_on_version(&f, WEB, 4, 1));
	CHECK(live_tasks(&f, WEB) == 4);
	json_t *u = update_json(&f, WEB);
	CHECK(jint(u, "from_version") == 1 && jint(u, "to_version") == 2);
	json_decref(u);
	/* Submitting version 2's spec again is a change again (version 3). */
	struct submit_result res;
	CHECK(submit(&f, upd_yaml(WEB, 4, "sleep 2000", pol), &res) > 0);
	CHECK(res.changed && res.update && res.version == 3);
	free_ids(old, 4);
	fx_teardown(&f);
}

TEST(update_canary_updates_only_listed_instances)
{
	struct fx f;
	fx_setup(&f, NULL);
	const char *pol = "{batch_size: 1, watch: 20ms}";
	running_v1(&f, 4, pol);
	char *old[4];
	save_ids(&f, WEB, 4, old);
	struct submit_result res;
	CHECK(submit_instances(&f, upd_yaml(WEB, 4, "sleep 2000", pol), 0, 1, &res) > 0);
	CHECK(res.update && res.version == 2);
	CHECK(update_count(&f, WEB, "total") == 2);
	drive(&f, WEB, NULL, 400, 2, 20);
	CHECK_STR(update_state(&f, WEB), "ROLLED_FORWARD");
	CHECK(all_on_version(&f, WEB, 2, 2));
	for (int i = 2; i < 4; i++) {
		CHECK_STR(state_of(active(&f, WEB, i)), "RUNNING");
		CHECK(active(&f, WEB, i)->version == 1);
		CHECK_STR(active(&f, WEB, i)->id, old[i]);
	}
	/* A canary instance that dies comes back on the new version, another
	 * instance on its own. */
	agent_status(&f, "n1", active(&f, WEB, 0)->id, "FAILED", 1, 1, "exit status 1");
	agent_status(&f, "n1", old[3], "FAILED", 1, 1, "exit status 1");
	CHECK(active(&f, WEB, 0)->version == 2);
	CHECK(active(&f, WEB, 3)->version == 1);
	free_ids(old, 4);
	fx_teardown(&f);
}

/* After a canary, submitting the same spec to every instance rolls the
 * others forward (as `aurora update start` again does). */
TEST(update_after_canary_same_spec_updates_the_rest)
{
	struct fx f;
	fx_setup(&f, NULL);
	const char *pol = "{batch_size: 1, watch: 20ms}";
	running_v1(&f, 3, pol);
	CHECK(submit_instances(&f, upd_yaml(WEB, 3, "sleep 2000", pol), 0, 0, NULL) > 0);
	drive(&f, WEB, NULL, 400, 2, 20);
	CHECK_STR(update_state(&f, WEB), "ROLLED_FORWARD");
	CHECK(active(&f, WEB, 1)->version == 1);
	struct submit_result res;
	CHECK(submit(&f, upd_yaml(WEB, 3, "sleep 2000", pol), &res) > 0);
	CHECK(res.update);
	drive(&f, WEB, NULL, 400, 2, 20);
	CHECK_STR(update_state(&f, WEB), "ROLLED_FORWARD");
	CHECK(all_on_version(&f, WEB, 3, 2));
	fx_teardown(&f);
}

TEST(update_scale_only_change_starts_no_update)
{
	struct fx f;
	fx_setup(&f, NULL);
	const char *pol = "{batch_size: 1, watch: 20ms}";
	running_v1(&f, 2, pol);
	char *old[2];
	save_ids(&f, WEB, 2, old);
	struct submit_result res;
	CHECK(submit(&f, upd_yaml(WEB, 4, "sleep 1000", pol), &res) > 0);
	CHECK(res.changed && !res.update && res.version == 1);
	CHECK(job_get(&f, WEB)->update == NULL);
	CHECK(update_json(&f, WEB) == NULL && f.err.code == 404);
	/* A policy-only change is not an update either. */
	CHECK(submit(&f, upd_yaml(WEB, 4, "sleep 1000", "{batch_size: 3, watch: 1s}"), &res) > 0);
	CHECK(res.changed && !res.update && res.version == 1);
	CHECK(job_get(&f, WEB)->update == NULL);
	CHECK_STR(active(&f, WEB, 0)->id, old[0]);
	CHECK_STR(active(&f, WEB, 1)->id, old[1]);
	CHECK_STR(state_of(active(&f, WEB, 0)), "RUNNING");
	free_ids(old, 2);
	fx_teardown(&f);
}

TEST(update_start_first_keeps_old_task_until_new_runs)
{
	struct fx f;
	fx_setup(&f, NULL);
	const char *pol = "{batch_size: 1, watch: 20ms, order: start_first}";
	running_v1(&f, 2, pol);
	char *old[2];
	save_ids(&f, WEB, 2, old);
	CHECK(submit(&f, upd_yaml(WEB, 2, "sleep 2000", pol), NULL) > 0);
	struct task *o0 = cluster_find_task(f.c, old[0]);
	struct task *n0 = active(&f, WEB, 0);
	CHECK(n0 && n0 != o0 && n0->version == 2);
	CHECK_STR(state_of(o0), "RUNNING");
	CHECK(live_tasks(&f, WEB) == 3);
	tick(&f);
	CHECK_STR(state_of(n0), "ASSIGNED");
	CHECK_STR(state_of(o0), "RUNNING");
	/* Still starting (a health check): the old one keeps serving. */
	agent_status(&f, "n1", n0->id, "STARTING", 7, 0, "");
	tick(&f);
	CHECK_STR(state_of(o0), "RUNNING");
	CHECK(desired_has(&f, "n1", old[0]));
	agent_status(&f, "n1", n0->id, "RUNNING", 7, 0, "");
	tick(&f);
	CHECK_STR(state_of(o0), "KILLING");
	CHECK(!desired_has(&f, "n1", old[0]));
	agent_status(&f, "n1", old[0], "KILLED", 1, 143, "");
	CHECK(active(&f, WEB, 0) == n0); /* the old task is not replaced */
	CHECK(live_tasks(&f, WEB) == 2);
	/* Never more than one extra task. */
	int most = 0;
	for (int s = 0; s < 300 && (update_active(&f, WEB) || s < 5); s++) {
		tick(&f);
		play_step(&f, WEB, NULL);
		int n = live_tasks(&f, WEB);
		most = n > most ? n : most;
		sleep_ms(3);
	}
	CHECK(most <= 3);
	CHECK_STR(update_state(&f, WEB), "ROLLED_FORWARD");
	CHECK(all_on_version(&f, WEB, 2, 2));
	CHECK(live_tasks(&f, WEB) == 2);
	free_ids(old, 2);
	fx_teardown(&f);
}

/* start_first and a new version that fails: the rollback leaves exactly one
 * task per instance, all on the old version. */
TEST(update_start_first_rollback_leaves_one_task_per_instance)
{
	struct fx f;
	fx_setup(&f, NULL);
	const char *pol = "{batch_size: 2, watch: 20ms, order: start_first}";
	running_v1(&f, 3, pol);
	CHECK(submit(&f, upd_yaml(WEB, 3, "exit 1", pol), NULL) > 0);
	struct play p = {.bad_version = 2};
	drive(&f, WEB, &p, 400, 2, 20);
	CHECK_STR(update_state(&f, WEB), "ROLLED_BACK");
	CHECK(all_on_version(&f, WEB, 3, 1));
	CHECK(live_tasks(&f, WEB) == 3);
	fx_teardown(&f);
}

/* An instance whose restart policy gives up during an update (no task
 * left) has failed the update: it must not hold the update forever. */
TEST(update_instance_given_up_by_restart_policy_fails_the_instance)
{
	struct fx f;
	fx_setup(&f, NULL);
	const char *pol = "{batch_size: 1, watch: 20ms, max_instance_failures: 5}\n"
			  "restart: {max_attempts: 1, window: 10m}";
	running_v1(&f, 2, pol);
	CHECK(submit(&f, upd_yaml(WEB, 2, "exit 1", pol), NULL) > 0);
	struct play p = {.bad_version = 2};
	drive(&f, WEB, &p, 300, 2, 20);
	CHECK(p.failed[0] == 2); /* the first try and one restart */
	CHECK_STR(update_state(&f, WEB), "ROLLED_BACK");
	CHECK(all_on_version(&f, WEB, 2, 1));
	fx_teardown(&f);
}

/* A batch job's new tasks may finish before their watch time is up: a
 * finished instance is updated, not stuck, and never run again. */
TEST(update_of_batch_job_with_finished_instances_ends)
{
	struct fx f;
	fx_setup(&f, NULL);
	const char *key = "bob/test/etl";
	CHECK(agent_register(&f, "n1") > 0);
	CHECK(submit(&f,
		     yamlf("job: %s\ntype: batch\ninstances: 3\n"
			   "task:\n  command: [\"sleep\", \"100\"]\n"
			   "  resources: {cpu: 0.1, memory: 16MiB}\n"
			   "update: {batch_size: 3, watch: 10s}\n",
			   key),
		     NULL) > 0);
	tick(&f);
	run_job(&f, key);
	/* Instance 2 finishes on version 1 before the update. */
	agent_status(&f, "n1", active(&f, key, 2)->id, "FINISHED", 1, 0, "");
	CHECK(active(&f, key, 2) == NULL);
	CHECK(submit(&f,
		     yamlf("job: %s\ntype: batch\ninstances: 3\n"
			   "task:\n  command: [\"sleep\", \"200\"]\n"
			   "  resources: {cpu: 0.1, memory: 16MiB}\n"
			   "update: {batch_size: 3, watch: 10s}\n",
			   key),
		     NULL) > 0);
	CHECK_STR(update_state(&f, key), "ROLLING_FORWARD");
	for (int s = 0; s < 5; s++) {
		tick(&f);
		play_step(&f, key, NULL);
	}
	CHECK(active(&f, key, 0) && active(&f, key, 0)->version == 2);
	CHECK(active(&f, key, 1) && active(&f, key, 1)->version == 2);
	/* Both finish well within the watch time (after the old tasks ended:
	 * the job's outcome looks at each instance's newest ended task). */
	sleep_ms(3);
	agent_status(&f, "n1", active(&f, key, 0)->id, "FINISHED", 1, 0, "");
	agent_status(&f, "n1", active(&f, key, 1)->id, "FINISHED", 1, 0, "");
	for (int s = 0; s < 5; s++) {
		tick(&f);
		play_step(&f, key, NULL);
	}
	CHECK_STR(update_state(&f, key), "ROLLED_FORWARD");
	CHECK(live_tasks(&f, key) == 0);
	json_t *st = job_status(&f, key, false);
	CHECK_STR(jstr(st, "status"), "finished");
	json_decref(st);
	fx_teardown(&f);
}

/* A user rollback while start_first new tasks are still starting: the old
 * tasks, which never stopped, are what the instances go back to. */
TEST(update_user_rollback_with_start_first_in_flight)
{
	struct fx f;
	fx_setup(&f, NULL);
	const char *pol = "{batch_size: 2, watch: 20ms, order: start_first}";
	running_v1(&f, 2, pol);
	char *old[2];
	save_ids(&f, WEB, 2, old);
	CHECK(submit(&f, upd_yaml(WEB, 2, "sleep 2000", pol), NULL) > 0);
	tick(&f); /* the version 2 tasks are assigned, not running yet */
	CHECK(live_tasks(&f, WEB) == 4);
	CHECK(update_control(&f, WEB, "rollback") > 0);
	drive(&f, WEB, NULL, 400, 1, 20);
	CHECK_STR(update_state(&f, WEB), "ROLLED_BACK");
	CHECK(all_on_version(&f, WEB, 2, 1));
	CHECK(live_tasks(&f, WEB) == 2);
	free_ids(old, 2);
	fx_teardown(&f);
}

/* A newer update supersedes one in flight with start_first: the old tasks
 * it was keeping alive are not forgotten. */
TEST(update_superseded_start_first_leaves_one_task_per_instance)
{
	struct fx f;
	fx_setup(&f, NULL);
	const char *pol = "{batch_size: 2, watch: 20ms, order: start_first}";
	running_v1(&f, 2, pol);
	CHECK(submit(&f, upd_yaml(WEB, 2, "sleep 2000", pol), NULL) > 0);
	tick(&f); /* the version 2 tasks are assigned, not running yet */
	CHECK(live_tasks(&f, WEB) == 4);
	struct submit_result res;
	CHECK(submit(&f, upd_yaml(WEB, 2, "sleep 3000", pol), &res) > 0);
	CHECK(res.version == 3 && res.update);
	drive(&f, WEB, NULL, 400, 3, 20);
	CHECK_STR(update_state(&f, WEB), "ROLLED_FORWARD");
	CHECK(all_on_version(&f, WEB, 2, 3));
	CHECK(live_tasks(&f, WEB) == 2);
	fx_teardown(&f);
}

TEST(update_abort_with_start_first_in_flight_leaves_one_task_per_instance)
{
	struct fx f;
	fx_setup(&f, NULL);
	const char *pol = "{batch_size: 2, watch: 20ms, order: start_first}";
	running_v1(&f, 2, pol);
	CHECK(submit(&f, upd_yaml(WEB, 2, "sleep 2000", pol), NULL) > 0);
	tick(&f);
	CHECK(live_tasks(&f, WEB) == 4);
	CHECK(update_control(&f, WEB, "abort") > 0);
	for (int s = 0; s < 30; s++) {
		tick(&f);
		play_step(&f, WEB, NULL);
		sleep_ms(3);
	}
	CHECK_STR(update_state(&f, WEB), "ABORTED");
	CHECK(live_tasks(&f, WEB) == 2);
	fx_teardown(&f);
}

/* A change of both the command and the instance count, rolled back: the
 * job is back to version 1's instance count. */
TEST(update_rollback_restores_instance_count)
{
	struct fx f;
	fx_setup(&f, NULL);
	const char *pol = "{batch_size: 1, watch: 20ms}";
	running_v1(&f, 2, pol);
	CHECK(submit(&f, upd_yaml(WEB, 4, "exit 1", pol), NULL) > 0);
	struct play p = {.bad_version = 2};
	drive(&f, WEB, &p, 400, 2, 20);
	CHECK_STR(update_state(&f, WEB), "ROLLED_BACK");
	CHECK(all_on_version(&f, WEB, 2, 1));
	CHECK(live_tasks(&f, WEB) == 2);
	json_t *st = job_status(&f, WEB, false);
	CHECK(jint(st, "instances") == 2);
	CHECK(json_array_size(json_object_get(st, "tasks")) == 2);
	json_decref(st);
	fx_teardown(&f);
}

TEST(update_survives_restart)
{
	struct fx f;
	fx_setup(&f, NULL);
	const char *pol = "{batch_size: 1, watch: 20ms, max_instance_failures: 1}";
	running_v1(&f, 4, pol);
	char *old[4];
	save_ids(&f, WEB, 4, old);
	CHECK(submit(&f, upd_yaml(WEB, 4, "sleep 2000", pol), NULL) > 0);
	struct play p = {.bad_version = 2, .fail_times = 1};
	for (int s = 0; s < 200 && update_count(&f, WEB, "updated") < 1; s++) {
		tick(&f);
		play_step(&f, WEB, &p);
		sleep_ms(3);
	}
	tick(&f);
	CHECK(update_count(&f, WEB, "updated") == 1);
	CHECK_STR(state_of(active(&f, WEB, 1)), "RESTARTING");
	json_t *before = update_json(&f, WEB);
	fx_restart(&f);
	json_t *after = update_json(&f, WEB);
	CHECK(after != NULL);
	CHECK(json_equal(before, after));
	json_decref(before);
	json_decref(after);
	CHECK_STR(update_state(&f, WEB), "ROLLING_FORWARD");
	CHECK_STR(state_of(active(&f, WEB, 1)), "RESTARTING");
	CHECK_STR(active(&f, WEB, 3)->id, old[3]);
	drive(&f, WEB, &p, 400, 2, 20);
	CHECK_STR(update_state(&f, WEB), "ROLLED_FORWARD");
	CHECK(all_on_version(&f, WEB, 4, 2));
	CHECK(live_tasks(&f, WEB) == 4);
	/* Failures counted before the restart still count. */
	json_t *u = update_json(&f, WEB);
	CHECK(json_integer_value(json_object_get(json_array_get(json_object_get(u, "instances"), 0),
						 "failures")) == 1);
	json_decref(u);
	/* And an ended update is still there after another restart. */
	fx_restart(&f);
	CHECK_STR(update_state(&f, WEB), "ROLLED_FORWARD");
	free_ids(old, 4);
	fx_teardown(&f);
}

/* start_first across a restart: both the old and the new task of an
 * instance are live; the new one must stay the instance's active task.
 * Which one a reload makes active depends on the order of the task records
 * (random ids), hence ten instances. */
TEST(update_start_first_survives_restart)
{
	struct fx f;
	fx_setup(&f, NULL);
	const char *pol = "{batch_size: 10, watch: 20ms, order: start_first}";
	running_v1(&f, 10, pol);
	CHECK(submit(&f, upd_yaml(WEB, 10, "sleep 2000", pol), NULL) > 0);
	tick(&f);
	CHECK(live_tasks(&f, WEB) == 20);
	fx_restart(&f);
	CHECK(live_tasks(&f, WEB) == 20);
	for (int i = 0; i < 10; i++) {
		struct task *t = active(&f, WEB, i);
		CHECK(t && t->version == 2);
	}
	drive(&f, WEB, NULL, 400, 2, 20);
	CHECK_STR(update_state(&f, WEB), "ROLLED_FORWARD");
	CHECK(all_on_version(&f, WEB, 10, 2));
	CHECK(live_tasks(&f, WEB) == 10);
	fx_teardown(&f);
}

TEST(update_json_shape_and_control_errors)
{
	struct fx f;
	fx_setup(&f, NULL);
	const char *pol = "{batch_size: 1, watch: 20ms}";
	running_v1(&f, 2, pol);
	/* No update yet. */
	CHECK(update_json(&f, WEB) == NULL && f.err.code == 404);
	CHECK(update_json(&f, "alice/devel/none") == NULL && f.err.code == 404);
	CHECK(update_control(&f, WEB, "pause") == 0 && f.err.code == 409);
	CHECK(update_control(&f, "alice/devel/none", "pause") == 0 && f.err.code == 404);
	CHECK(submit(&f, upd_yaml(WEB, 2, "sleep 2000", pol), NULL) > 0);
	CHECK(update_control(&f, WEB, "explode") == 0 && f.err.code == 404);
	json_t *u = update_json(&f, WEB);
	CHECK(u != NULL);
	CHECK_STR(jstr(u, "job"), WEB);
	CHECK_STR(jstr(u, "state"), "ROLLING_FORWARD");
	CHECK(jint(u, "from_version") == 1);
	CHECK(jint(u, "to_version") == 2);
	CHECK(json_is_integer(json_object_get(u, "updated")) && jint(u, "updated") == 0);
	CHECK(json_is_integer(json_object_get(u, "healthy")));
	CHECK(json_is_integer(json_object_get(u, "failed")) && jint(u, "failed") == 0);
	CHECK(jint(u, "total") == 2);
	CHECK_CONTAINS(jstr(u, "message"), "2 instances from version 1 to 2");
	CHECK(jint(u, "started_ms") > 0);
	CHECK(jint(u, "finished_ms") == 0);
	json_t *inst = json_object_get(u, "instances");
	CHECK(json_array_size(inst) == 2);
	json_t *e0 = json_array_get(inst, 0), *e1 = json_array_get(inst, 1);
	CHECK(jint(e0, "instance") == 0 && jint(e1, "instance") == 1);
	CHECK_STR(jstr(e0, "status"), "UPDATING");
	CHECK_STR(jstr(e1, "status"), "PENDING");
	CHECK(json_is_integer(json_object_get(e0, "failures")));
	/* No internal fields leak out. */
	CHECK(json_object_get(e0, "old_task") == NULL);
	CHECK(json_object_get(u, "policy") == NULL || json_is_object(json_object_get(u, "policy")));
	json_decref(u);
	drive(&f, WEB, NULL, 400, 2, 20);
	u = update_json(&f, WEB);
	CHECK_STR(jstr(u, "state"), "ROLLED_FORWARD");
	CHECK(jint(u, "updated") == 2 && jint(u, "healthy") == 2);
	CHECK(jint(u, "finished_ms") >= jint(u, "started_ms"));
	json_decref(u);
	fx_teardown(&f);
}

/* Cron: missed slots (the server was down) make one run, not one each, and
 * a restart does not run the same slot again. */
TEST(cron_missed_slots_run_once_and_never_twice)
{
	struct fx f;
	fx_setup(&f, NULL);
	CHECK(agent_register(&f, "n1") > 0);
	CHECK(submit(&f,
		     yamlf("job: bob/prod/tick\ntype: cron\nschedule: \"* * * * *\"\n"
			   "task:\n  command: echo hi\n  resources: {cpu: 0.1, memory: 16MiB}\n"),
		     NULL) > 0);
	tick(&f);
	CHECK(count_job_tasks(&f, "bob/prod/tick") == 0); /* not due yet */
	pthread_mutex_lock(&f.c->lock);
	job_get(&f, "bob/prod/tick")->cron_last_ms = time_now_ms() - 5 * 60000;
	pthread_mutex_unlock(&f.c->lock);
	tick(&f);
	tick(&f);
	CHECK(job_get(&f, "bob/prod/tick")->cron_runs == 1);
	CHECK(count_job_tasks(&f, "bob/prod/tick") == 1);
	int64_t last = job_get(&f, "bob/prod/tick")->cron_last_ms;
	CHECK(last > time_now_ms() - 60000 && last <= time_now_ms());
	fx_commit(&f);
	fx_restart(&f);
	tick(&f);
	CHECK(job_get(&f, "bob/prod/tick")->cron_runs == 1);
	CHECK(job_get(&f, "bob/prod/tick")->cron_last_ms == last);
	CHECK(count_job_tasks(&f, "bob/prod/tick") == 1);
	fx_teardown(&f);
}

/* A last run years ago (a damaged record, or a job back from a long
 * pause): one run for the newest slot, found in a few steps, then none. */
TEST(cron_last_run_years_ago_runs_once)
{
	struct fx f;
	fx_setup(&f, NULL);
	CHECK(agent_register(&f, "n1") > 0);
	CHECK(submit(&f,
		     yamlf("job: bob/prod/old\ntype: cron\nschedule: \"* * * * *\"\n"
			   "task:\n  command: echo hi\n  resources: {cpu: 0.1, memory: 16MiB}\n"),
		     NULL) > 0);
	pthread_mutex_lock(&f.c->lock);
	job_get(&f, "bob/prod/old")->cron_last_ms = 0; /* 1970 */
	pthread_mutex_unlock(&f.c->lock);
	tick(&f);
	tick(&f);
	tick(&f);
	CHECK(job_get(&f, "bob/prod/old")->cron_runs == 1);
	int64_t last = job_get(&f, "bob/prod/old")->cron_last_ms;
	CHECK(last > time_now_ms() - 60000 && last <= time_now_ms());
	fx_teardown(&f);
}

/* ---- replicas (HA followers) ------------------------------------------------
 * A follower applies the leader's committed records one by one; what it
 * shows must be what the leader shows, and once promoted it must hold what a
 * load of the store gives. */

/* An array of objects as an object keyed by their field `name`. */
static json_t *by_name(json_t *arr, const char *name)
{
	json_t *o = json_object();
	size_t i;
	json_t *v;
	json_array_foreach(arr, i, v)
	{
		/* Liveness is the leader's alone (agents talk to it). */
		json_object_del(v, "state");
		json_object_del(v, "last_seen_ms_ago");
		json_object_set(o, json_string_value(json_object_get(v, name)) ?: "?", v);
	}
	json_decref(arr);
	return o;
}

/* Everything a reader sees: job list, each job's status with history, its
 * update, the node list (without liveness). As sorted JSON text. */
static char *views(struct cluster *c, bool replica)
{
	pthread_mutex_lock(&c->lock);
	if (replica)
		cluster_replica_refresh(c);
	json_t *jobs = cluster_job_list_json(c);
	json_t *status = json_object(), *updates = json_object();
	size_t i;
	json_t *v;
	json_array_foreach(jobs, i, v)
	{
		const char *key = json_string_value(json_object_get(v, "job"));
		struct berr err;
		json_t *st = cluster_job_status_json(c, key, true, &err);
		if (st)
			json_object_set_new(status, key, st);
		json_t *u = cluster_update_json(c, key, &err);
		if (u)
			json_object_set_new(updates, key, u);
	}
	json_t *all =
	    json_pack("{s:o,s:o,s:o,s:o}", "jobs", by_name(jobs, "job"), "status", status,
		      "updates", updates, "nodes", by_name(cluster_node_list_json(c), "name"));
	pthread_mutex_unlock(&c->lock);
	char *txt = json_dumps(all, JSON_SORT_KEYS | JSON_COMPACT);
	json_decref(all);
	return txt;
}

static bool same_views(struct cluster *leader, struct cluster *replica, const char *when)
{
	char *a = views(leader, false), *b = views(replica, true);
	bool same = !strcmp(a, b);
	if (!same) {
		size_t k = 0;
		while (a[k] && a[k] == b[k])
			k++;
		size_t from = k > 120 ? k - 120 : 0;
		fprintf(stderr,
			"    %s: replica differs at byte %zu\n    leader:  %.600s\n    replica: "
			"%.600s\n",
			when, k, a + from, b + from);
	}
	free(a);
	free(b);
	return same;
}

TEST(replica_follows_every_commit)
{
	struct fx f;
	fx_setup(&f, NULL);
	f.replica = cluster_new(NULL, &f.cfg);
	const char *pol = "{batch_size: 1, watch: 20ms, max_instance_failures: 1}";
	running_v1(&f, 4, pol);
	CHECK(agent_register(&f, "n2") > 0);
	fx_commit(&f);
	CHECK(same_views(f.c, f.replica, "service running"));
	CHECK(submit(&f, batch_yaml("bob/prod/batch", 3, 2), NULL) > 0);
	tick(&f);
	run_job(&f, "bob/prod/batch");
	fx_commit(&f);
	CHECK(same_views(f.c, f.replica, "batch running"));
	/* A rolling update with a failing first try: tasks replaced, ended
	 * history, the update record; checked after every commit. */
	CHECK(submit(&f, upd_yaml(WEB, 4, "sleep 2000", pol), NULL) > 0);
	struct play p = {.bad_version = 2, .fail_times = 1};
	for (int s = 0; s < 300 && update_active(&f, WEB); s++) {
		tick(&f);
		play_step(&f, WEB, &p);
		play_step(&f, "bob/prod/batch", NULL);
		fx_commit(&f);
		if (s % 5 == 0 && !same_views(f.c, f.replica, "during the update")) {
			CHECK(false);
			break;
		}
		sleep_ms(3);
	}
	CHECK(!update_active(&f, WEB));
	fx_commit(&f);
	CHECK(same_views(f.c, f.replica, "update over"));
	/* Kill a job until it is forgotten (records deleted), drain a node. */
	CHECK(job_kill(&f, "bob/prod/batch") > 0);
	for (int s = 0; s < 20; s++) {
		tick(&f);
		play_step(&f, "bob/prod/batch", NULL);
	}
	fx_commit(&f);
	pthread_mutex_lock(&f.c->lock);
	CHECK(cluster_node_drain(f.c, "n1", true, &f.err) > 0);
	pthread_mutex_unlock(&f.c->lock);
	for (int s = 0; s < 20; s++) {
		tick(&f);
		play_step(&f, WEB, NULL);
	}
	fx_commit(&f);
	CHECK(job_get(&f, "bob/prod/batch") == NULL);
	CHECK(hmap_get(&f.replica->jobs, "bob/prod/batch") == NULL);
	CHECK(same_views(f.c, f.replica, "job forgotten, node drained"));
	/* Promoted, the replica holds what a load of the store gives. */
	pthread_mutex_lock(&f.replica->lock);
	cluster_replica_promote(f.replica);
	pthread_mutex_unlock(&f.replica->lock);
	struct cluster *promoted = f.replica;
	f.replica = NULL;
	fx_restart(&f);
	char *a = views(f.c, false), *b = views(promoted, false);
	CHECK(!strcmp(a, b));
	free(a);
	free(b);
	CHECK(promoted->tasks.count == f.c->tasks.count);
	CHECK(promoted->nwaiting == f.c->nwaiting);
	cluster_free(promoted);
	fx_teardown(&f);
}

struct record {
	char *key, *value;
	size_t len;
};
struct records {
	struct record *r;
	size_t n;
};

static int collect_record(const char *key, const char *value, size_t len, void *ud)
{
	struct records *rs = ud;
	rs->r = xrealloc(rs->r, (rs->n + 1) * sizeof *rs->r);
	rs->r[rs->n++] = (struct record){xstrdup(key), xstrndup(value, len), len};
	return 0;
}

/* A batch too big for one etcd transaction reaches a follower as several,
 * in any order: tasks may come before their job, nodes after their tasks. */
TEST(replica_takes_records_in_any_order)
{
	struct fx f;
	fx_setup(&f, NULL);
	running_v1(&f, 3, "{batch_size: 1, watch: 20ms}");
	CHECK(submit(&f, batch_yaml("bob/prod/batch", 2, 1), NULL) > 0);
	tick(&f);
	fx_commit(&f);
	fx_restart(&f); /* the reference: a load */
	struct records rs = {0};
	CHECK(store_scan(f.st, "", collect_record, &rs, &f.err) == 0);
	CHECK(rs.n >= 8); /* 2 jobs, 5 tasks, 1 node */
	struct cluster *r = cluster_new(NULL, &f.cfg);
	pthread_mutex_lock(&r->lock);
	/* Reverse key order: updates, tasks, nodes, meta, jobs. A stale
	 * version of a task first, replaced by the real one later. */
	for (size_t i = rs.n; i-- > 0;) {
		const char *stale = "{\"id\":\"x\",\"job\":\"nope/x/y\",\"state\":\"RUNNING\"}";
		if (!strncmp(rs.r[i].key, "tasks/", 6))
			cluster_replica_apply(r, rs.r[i].key, stale, strlen(stale));
		cluster_replica_apply(r, rs.r[i].key, rs.r[i].value, rs.r[i].len);
	}
	/* A record put then deleted leaves nothing. */
	const char *ghost =
	    "{\"id\":\"ghost\",\"job\":\"bob/prod/batch\",\"instance\":0,\"state\":\"FAILED\"}";
	cluster_replica_apply(r, "tasks/ghost", ghost, strlen(ghost));
	cluster_replica_apply(r, "tasks/ghost", NULL, 0);
	pthread_mutex_unlock(&r->lock);
	char *a = views(f.c, false), *b = views(r, true);
	CHECK(!strcmp(a, b));
	free(a);
	free(b);
	CHECK(r->orphans.count == 0);
	CHECK(r->tasks.count == f.c->tasks.count);
	/* A reset forgets everything. */
	pthread_mutex_lock(&r->lock);
	cluster_replica_reset(r);
	cluster_replica_refresh(r);
	CHECK(r->jobs.count == 0 && r->tasks.count == 0 && r->nodes.count == 0);
	pthread_mutex_unlock(&r->lock);
	cluster_free(r);
	for (size_t i = 0; i < rs.n; i++) {
		free(rs.r[i].key);
		free(rs.r[i].value);
	}
	free(rs.r);
	fx_teardown(&f);
}

/* Agents that ask get a /24 of the cluster network each, kept in the node
 * record across server restarts; a full range refuses the next node. */
TEST(nodes_get_subnets_kept_across_restarts_and_refused_when_exhausted)
{
	struct fx f;
	struct cluster_config cfg;
	cluster_config_defaults(&cfg);
	struct berr e = {0};
	CHECK(cidr_parse("10.250.0.0/23", &cfg.cluster_cidr, "x", &e) == 0);
	fx_setup(&f, &cfg);
	const char *names[] = {"n1", "n2", "n3"};
	char *subnet[3] = {0};
	for (int i = 0; i < 3; i++) {
		json_t *body = json_pack("{s:s,s:{s:f,s:I},s:s,s:b}", "name", names[i], "resources",
					 "cpu", 2.0, "memory", (json_int_t)GiB, "addr",
					 "https://10.1.0.9:7000", "network", 1);
		json_t *reply = NULL;
		f.err = (struct berr){0};
		uint64_t seq = cluster_agent_register(f.c, body, &reply, &f.err);
		if (i < 2) {
			CHECK(seq > 0);
			CHECK_STR(jstr(reply, "cluster_cidr"), "10.250.0.0/23");
			subnet[i] = xstrdup(jstr(reply, "subnet") ?: "");
		} else {
			CHECK(seq == 0);
			CHECK(f.err.code == 503);
			CHECK(strstr(f.err.msg, "no free /24 for node 'n3'") != NULL);
		}
		json_decref(reply);
		json_decref(body);
	}
	CHECK_STR(subnet[0], "10.250.0.0/24");
	CHECK_STR(subnet[1], "10.250.1.0/24");
	/* Each sees the other as a peer, at the address its agent advertises. */
	json_t *net = cluster_node_network(f.c, "n1", &f.err);
	CHECK(json_array_size(json_object_get(net, "peers")) == 1);
	json_t *peer = json_array_get(json_object_get(net, "peers"), 0);
	CHECK_STR(jstr(peer, "name"), "n2");
	CHECK_STR(jstr(peer, "ip"), "10.1.0.9");
	CHECK_STR(jstr(peer, "subnet"), "10.250.1.0/24");
	json_decref(net);
	CHECK(cluster_node_network(f.c, "nope", &f.err) == NULL && f.err.code == 404);
	fx_restart(&f);
	net = cluster_node_network(f.c, "n2", &f.err);
	CHECK_STR(jstr(net, "subnet"), "10.250.1.0/24");
	json_decref(net);
	free(subnet[0]);
	free(subnet[1]);
	fx_teardown(&f);
}

/* ---- tests: rolling restart ----------------------------------------------- */

static uint64_t job_restart_rolling(struct fx *f, const char *key, int instance)
{
	pthread_mutex_lock(&f->c->lock);
	uint64_t seq = cluster_job_restart(f->c, key, instance, false, &f->err);
	pthread_mutex_unlock(&f->c->lock);
	return seq;
}

/* Every instance of the job RUNNING on version 1 under a new task id, a
 * successor of its old one. */
static bool all_restarted(struct fx *f, const char *key, int n, char **old)
{
	bool ok = all_on_version(f, key, n, 1);
	for (int i = 0; i < n; i++) {
		struct task *t = active(f, key, i);
		if (!t || !strcmp(t->id, old[i]) || !t->ancestor || strcmp(t->ancestor, old[i])) {
			fprintf(stderr, "    instance %d: not restarted from %s\n", i, old[i]);
			ok = false;
		}
	}
	return ok;
}

TEST(rolling_restart_goes_batch_by_batch_on_the_same_version)
{
	struct fx f;
	fx_setup(&f, NULL);
	running_v1(&f, 4, "{batch_size: 1, watch: 30ms}");
	char *old[4];
	save_ids(&f, WEB, 4, old);
	sleep_ms(40); /* the first tasks are past the watch time */
	CHECK(job_restart_rolling(&f, WEB, -1) > 0);
	CHECK_STR(update_state(&f, WEB), "ROLLING_FORWARD");
	json_t *u = update_json(&f, WEB);
	CHECK_STR(jstr(u, "kind"), "restart");
	CHECK(jint(u, "total") == 4);
	CHECK(jint(u, "from_version") == 1 && jint(u, "to_version") == 1);
	json_decref(u);
	/* Only the first batch stops. */
	CHECK_STR(state_of(active(&f, WEB, 0)), "RESTARTING");
	for (int i = 1; i < 4; i++)
		CHECK_STR(active(&f, WEB, i)->id, old[i]);
	int most = drive(&f, WEB, NULL, 400, 1, 30);
	CHECK(most == 1);
	CHECK_STR(update_state(&f, WEB), "ROLLED_FORWARD");
	CHECK(all_restarted(&f, WEB, 4, old));
	CHECK(job_get(&f, WEB)->version == 1);
	CHECK(live_tasks(&f, WEB) == 4);
	CHECK(update_count(&f, WEB, "updated") == 4);
	free_ids(old, 4);
	fx_teardown(&f);
}

TEST(rolling_restart_start_first_and_pause)
{
	struct fx f;
	fx_setup(&f, NULL);
	running_v1(&f, 3, "{batch_size: 1, watch: 20ms, order: start_first}");
	char *old[3];
	save_ids(&f, WEB, 3, old);
	sleep_ms(30);
	CHECK(job_restart_rolling(&f, WEB, -1) > 0);
	/* start_first: the old task runs on beside the new one. */
	CHECK_STR(state_of(cluster_find_task(f.c, old[0])), "RUNNING");
	CHECK(strcmp(active(&f, WEB, 0)->id, old[0]));
	CHECK(update_control(&f, WEB, "pause") > 0);
	for (int s = 0; s < 20; s++) {
		tick(&f);
		play_step(&f, WEB, NULL);
		sleep_ms(5);
	}
	/* Paused: nothing moves (instance 0 keeps both tasks), no other starts. */
	CHECK_STR(state_of(active(&f, WEB, 0)), "RUNNING");
	CHECK_STR(active(&f, WEB, 1)->id, old[1]);
	CHECK_STR(state_of(active(&f, WEB, 1)), "RUNNING");
	CHECK_STR(active(&f, WEB, 2)->id, old[2]);
	CHECK_STR(update_state(&f, WEB), "ROLL_FORWARD_PAUSED");
	/* A restart has no version to roll back to. */
	CHECK(update_control(&f, WEB, "rollback") == 0);
	CHECK(f.err.code == 409);
	/* A second rolling restart is refused while this one is there. */
	CHECK(job_restart_rolling(&f, WEB, -1) == 0);
	CHECK(f.err.code == 409);
	CHECK(strstr(f.err.msg, "a restart in progress"));
	CHECK(update_control(&f, WEB, "resume") > 0);
	drive(&f, WEB, NULL, 400, 1, 20);
	CHECK_STR(update_state(&f, WEB), "ROLLED_FORWARD");
	CHECK(all_restarted(&f, WEB, 3, old));
	CHECK(live_tasks(&f, WEB) == 3);
	free_ids(old, 3);
	fx_teardown(&f);
}

TEST(rolling_restart_failure_stops_without_rollback)
{
	struct fx f;
	fx_setup(&f, NULL);
	running_v1(&f, 3, "{batch_size: 1, watch: 20ms}");
	sleep_ms(30);
	CHECK(job_restart_rolling(&f, WEB, -1) > 0);
	/* The restarted tasks fail once when they start. */
	struct play p = {.bad_version = 1, .fail_times = 1};
	drive(&f, WEB, &p, 400, 1, 20);
	CHECK_STR(update_state(&f, WEB), "FAILED");
	CHECK(job_get(&f, WEB)->version == 1);
	/* Instances the restart never reached were not touched. */
	CHECK(update_count(&f, WEB, "updated") == 0);
	fx_teardown(&f);
}

TEST(restart_of_one_instance_and_refusals)
{
	struct fx f;
	fx_setup(&f, NULL);
	running_v1(&f, 3, "{batch_size: 1, watch: 20ms}");
	char *old[3];
	save_ids(&f, WEB, 3, old);
	CHECK(job_restart_rolling(&f, WEB, 3) == 0);
	CHECK(f.err.code == 404);
	CHECK(strstr(f.err.msg, "no instance 3"));
	CHECK(job_restart_rolling(&f, WEB, 1) > 0);
	CHECK_STR(state_of(active(&f, WEB, 1)), "RESTARTING");
	CHECK_STR(state_of(active(&f, WEB, 0)), "RUNNING");
	CHECK_STR(state_of(active(&f, WEB, 2)), "RUNNING");
	CHECK_STR(update_state(&f, WEB), "(none)");
	/* A rolling restart while an update is in flight is refused. */
	CHECK(submit(&f, upd_yaml(WEB, 3, "sleep 2000", "{batch_size: 1, watch: 20ms}"), NULL) > 0);
	CHECK(job_restart_rolling(&f, WEB, -1) == 0);
	CHECK(f.err.code == 409);
	CHECK(strstr(f.err.msg, "an update in progress"));
	CHECK(job_restart_rolling(&f, "alice/devel/nope", -1) == 0);
	CHECK(f.err.code == 404);
	free_ids(old, 3);
	fx_teardown(&f);
}

TEST(all_at_once_restart_ends_a_rolling_restart)
{
	struct fx f;
	fx_setup(&f, NULL);
	running_v1(&f, 3, "{batch_size: 1, watch: 20ms}");
	char *old[3];
	save_ids(&f, WEB, 3, old);
	sleep_ms(30);
	CHECK(job_restart_rolling(&f, WEB, -1) > 0);
	CHECK(job_restart(&f, WEB) > 0);
	CHECK_STR(update_state(&f, WEB), "ABORTED");
	for (int i = 0; i < 3; i++)
		CHECK_STR(state_of(active(&f, WEB, i)), "RESTARTING");
	for (int s = 0; s < 30; s++) {
		tick(&f);
		play_step(&f, WEB, NULL);
		sleep_ms(3);
	}
	/* Each instance restarted once: its task is the old one's successor. */
	CHECK(all_restarted(&f, WEB, 3, old));
	CHECK(live_tasks(&f, WEB) == 3);
	free_ids(old, 3);
	fx_teardown(&f);
}

TEST(rolling_restart_survives_server_restart)
{
	struct fx f;
	fx_setup(&f, NULL);
	running_v1(&f, 3, "{batch_size: 1, watch: 20ms}");
	char *old[3];
	save_ids(&f, WEB, 3, old);
	sleep_ms(30);
	CHECK(job_restart_rolling(&f, WEB, -1) > 0);
	fx_restart(&f);
	json_t *u = update_json(&f, WEB);
	CHECK_STR(jstr(u, "kind"), "restart");
	json_decref(u);
	drive(&f, WEB, NULL, 400, 1, 20);
	CHECK_STR(update_state(&f, WEB), "ROLLED_FORWARD");
	CHECK(all_restarted(&f, WEB, 3, old));
	free_ids(old, 3);
	fx_teardown(&f);
}

UNIT_MAIN(
    nodes_get_subnets_kept_across_restarts_and_refused_when_exhausted,
    node_list_is_json_whatever_cpu_a_node_claims, cron_missed_slots_run_once_and_never_twice,
    submit_creates_pending_tasks, tick_without_nodes_keeps_pending,
    tick_assigns_tasks_with_distinct_ports, node_desired_lists_assigned_tasks,
    agent_running_sets_pid, infeasible_job_stays_pending_with_reason,
    service_failure_is_replaced_with_ancestor, service_second_quick_death_is_throttled,
    service_throttle_backoff_doubles_and_caps, service_long_run_resets_quick_deaths,
    batch_finished_instance_is_not_replaced, batch_failure_retried_until_max_task_failures,
    batch_unlimited_failures_keep_retrying, batch_one_instance_failed_others_running_is_failing,
    job_kill_stops_tasks_then_forgets_job, job_kill_of_pending_job_forgets_at_once,
    job_kill_after_watch_omits_killing_task, job_restart_replaces_with_new_ids,
    resubmit_identical_spec_is_unchanged, command_change_bumps_version_and_replaces,
    command_change_replaces_pending_tasks_at_once, instances_change_keeps_version_and_scales,
    scale_down_then_up_while_stopping_keeps_instance, drain_does_not_rerun_finished_batch_instance,
    stale_starting_report_of_a_running_task_is_ignored,
    kill_or_restart_of_draining_task_tries_no_refused_transition,
    agent_cannot_report_server_side_states, ended_keep_zero_replaces_without_history,
    plan_of_new_job_and_fit, plan_of_update_matches_submit, register_and_watch_reject_bad_bodies,
    register_reply_and_reregister_keeps_id, watch_omitting_running_task_marks_it_lost,
    watch_does_not_lose_undelivered_assigned_task,
    watch_report_with_unknown_or_foreign_task_is_ignored, reregister_reconciles_report,
    node_down_tasks_lost_and_pending_without_other_node, node_down_tasks_move_to_second_node,
    returning_node_takes_back_running_tasks_and_cancels_pending_replacements,
    returning_node_cancels_assigned_replacement_but_not_a_running_one,
    returning_node_takes_back_through_replacements_that_never_ran,
    flapping_node_backoff_doubles_and_blocks_placement,
    server_stall_does_not_mark_nodes_down_but_a_dead_agent_still_is,
    intake_lag_is_not_silence_but_a_dead_agent_is_down_once_it_clears,
    paging_returns_every_node_and_job_exactly_once, drain_moves_tasks_off_and_node_is_drained,
    ports_and_resources_released_when_tasks_end, job_status_json_shape, job_list_json_counts_states,
    node_list_json_shape, persistence_round_trip, persistence_port_pool_rebuilt_on_load,
    restart_then_watch_with_old_known_version_keeps_new_assignment,
    replacement_event_survives_long_utf8_message, find_task_by_id_and_ref,
    ended_tasks_kept_per_job_are_bounded, update_good_version_rolls_forward_batch_by_batch,
    update_next_batch_waits_for_watch, update_failing_version_rolls_back_automatically,
    update_rollback_while_batch_mate_still_stopping, update_failure_without_rollback_ends_failed,
    update_max_instance_failures_tolerates_one_per_instance,
    update_second_failure_of_an_instance_rolls_back,
    update_max_total_failures_tolerates_failed_instances,
    update_pause_stops_progress_and_resume_continues,
    update_pause_while_instance_in_flight_finishes_it_but_starts_none,
    update_abort_leaves_instances_where_they_are, update_user_rollback,
    update_canary_updates_only_listed_instances, update_after_canary_same_spec_updates_the_rest,
    update_scale_only_change_starts_no_update, update_start_first_keeps_old_task_until_new_runs,
    update_start_first_rollback_leaves_one_task_per_instance,
    update_instance_given_up_by_restart_policy_fails_the_instance,
    update_of_batch_job_with_finished_instances_ends,
    update_user_rollback_with_start_first_in_flight,
    update_superseded_start_first_leaves_one_task_per_instance,
    update_abort_with_start_first_in_flight_leaves_one_task_per_instance,
    update_rollback_restores_instance_count, update_survives_restart,
    update_start_first_survives_restart, update_json_shape_and_control_errors,
    replica_follows_every_commit, replica_takes_records_in_any_order,
    cron_last_run_years_ago_runs_once, rolling_restart_goes_batch_by_batch_on_the_same_version,
    rolling_restart_start_first_and_pause, rolling_restart_failure_stops_without_rollback,
    restart_of_one_instance_and_refusals, rolling_restart_survives_server_restart,
    all_at_once_restart_ends_a_rolling_restart)
