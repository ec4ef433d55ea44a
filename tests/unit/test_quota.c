/* test_quota.c - quotas per role: the arithmetic (src/sched/quota.c) and
 * admission in the cluster (src/server/cluster_quota.c) at submit, on
 * update (scale up, scale down, resource change), on a tier switch, for
 * batch and cron jobs, and across a reload from the store. */
#include "sched/quota.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "core/util.h"
#include "server/cluster.h"
#include "server/cluster_quota.h"
#include "store/store-internal.h" /* the replica test reads committed batches */
#include "store/store.h"
#include "cluster_fx.h"
#include "unit.h"

/* ---- the arithmetic ---------------------------------------------------- */

/* A service of `key` with n instances of cpu and memory (MiB), tier
 * given or the environment's default (tier NULL). */
static struct job_spec *svc(const char *key, int n, const char *cpu, int mem_mib, const char *tier)
{
	return parse_spec(yamlf("job: %s\ninstances: %d\n%s%s%stask:\n  command: [\"/bin/true\"]\n"
				"  resources: {cpu: %s, memory: %dMiB}\n",
				key, n, tier ? "tier: " : "", tier ? tier : "", tier ? "\n" : "",
				cpu, mem_mib));
}

static struct quota_limit limit(double cpu, int64_t mem, int64_t disk, int64_t tasks)
{
	struct quota_limit l = {.cpu_milli =
				    cpu < 0 ? QUOTA_UNLIMITED : (int64_t)(cpu * 1000 + 0.5),
				.memory = mem,
				.disk = disk,
				.tasks = tasks};
	return l;
}

TEST(cpu_rounds_up_to_milli_cpus_without_drift)
{
	CHECK(quota_cpu_milli(0.1) == 100);
	CHECK(quota_cpu_milli(0.01) == 10);
	CHECK(quota_cpu_milli(1.5) == 1500);
	CHECK(quota_cpu_milli(0.0001) == 1); /* tiny still counts */
	CHECK(quota_cpu_milli(0.3333) == 334);
	CHECK(quota_cpu_milli(0) == 0);
	/* Ten tasks of 0.1 make exactly 1.0: no float drift in the sums. */
	struct job_spec *s = svc("alice/prod/a", 10, "0.1", 32, NULL);
	struct quota_amount a;
	quota_amount_of(s, 10, &a);
	CHECK(a.cpu_milli == 1000);
	struct quota_limit l = limit(1.0, QUOTA_UNLIMITED, QUOTA_UNLIMITED, QUOTA_UNLIMITED);
	struct quota_amount zero = {0};
	char why[256];
	CHECK(quota_admit("alice", &l, &zero, &a, why, sizeof why) == 0);
	spec_free(s);
	char buf[32];
	quota_format_cpu(4000, buf, sizeof buf);
	CHECK_STR(buf, "4.0");
	quota_format_cpu(4500, buf, sizeof buf);
	CHECK_STR(buf, "4.5");
	quota_format_cpu(10, buf, sizeof buf);
	CHECK_STR(buf, "0.01");
	quota_format_cpu(1234, buf, sizeof buf);
	CHECK_STR(buf, "1.234");
	quota_format_size(8 * GiB, buf, sizeof buf);
	CHECK_STR(buf, "8GiB");
	quota_format_size(3 * GiB / 2, buf, sizeof buf);
	CHECK_STR(buf, "1.5GiB");
	quota_format_size(100, buf, sizeof buf);
	CHECK_STR(buf, "100B");
}

TEST(only_preferred_tier_counts)
{
	struct job_spec *prod = svc("alice/prod/a", 3, "0.5", 64, NULL);
	struct job_spec *devel = svc("alice/devel/a", 3, "0.5", 64, NULL);
	struct job_spec *prod_pre = svc("alice/prod/b", 3, "0.5", 64, "preemptible");
	struct job_spec *devel_pref = svc("alice/devel/b", 3, "0.5", 64, "preferred");
	CHECK(quota_counts(prod) && !quota_counts(devel));
	CHECK(!quota_counts(prod_pre) && quota_counts(devel_pref));
	struct quota_amount a;
	quota_amount_of(prod, 3, &a);
	CHECK(a.cpu_milli == 1500 && a.memory == 192 * MiB && a.tasks == 3 && a.disk == 0);
	quota_amount_of(devel, 3, &a);
	CHECK(a.cpu_milli == 0 && a.memory == 0 && a.tasks == 0);
	quota_amount_of(prod_pre, 3, &a);
	CHECK(a.tasks == 0);
	spec_free(prod);
	spec_free(devel);
	spec_free(prod_pre);
	spec_free(devel_pref);
}

TEST(admit_refuses_a_rise_beyond_the_limit_and_names_it)
{
	struct quota_limit l = limit(4.0, 8 * GiB, QUOTA_UNLIMITED, 10);
	struct quota_amount before = {.cpu_milli = 2000, .memory = 1 * GiB, .tasks = 2};
	struct quota_amount after = {.cpu_milli = 4500, .memory = 9 * GiB, .tasks = 3};
	char why[256];
	CHECK(quota_admit("alice", &l, &before, &after, why, sizeof why) == -1);
	CHECK_STR(why, "quota exceeded for role alice: cpu 4.5 of 4.0, memory 9GiB of 8GiB");
	/* Exactly at the limit: allowed. */
	after.cpu_milli = 4000;
	after.memory = 8 * GiB;
	CHECK(quota_admit("alice", &l, &before, &after, why, sizeof why) == 0);
	CHECK_STR(why, "");
	/* Tasks alone. */
	after.tasks = 11;
	CHECK(quota_admit("alice", &l, &before, &after, why, sizeof why) == -1);
	CHECK_STR(why, "quota exceeded for role alice: tasks 11 of 10");
	/* Over already (the quota was lowered): a change that does not raise
	 * the resource passes, one that raises it does not. */
	before = (struct quota_amount){.cpu_milli = 6000, .memory = GiB, .tasks = 6};
	after = (struct quota_amount){.cpu_milli = 5000, .memory = GiB, .tasks = 5};
	CHECK(quota_admit("alice", &l, &before, &after, why, sizeof why) == 0);
	after.cpu_milli = 6001;
	CHECK(quota_admit("alice", &l, &before, &after, why, sizeof why) == -1);
	CHECK_CONTAINS(why, "cpu 6.001 of 4.0");
	/* No quota at all: anything goes. */
	CHECK(quota_admit("alice", NULL, &before, &after, why, sizeof why) == 0);
}

TEST(limits_parse_from_json_with_clear_errors)
{
	struct quota_limit l;
	struct berr err = {0};
	json_t *j = json_loads("{\"cpu\": \"4.5\", \"memory\": \"8GiB\", \"tasks\": 10}", 0, NULL);
	CHECK(quota_limit_from_json(j, NULL, &l, &err) == 0);
	CHECK(l.cpu_milli == 4500 && l.memory == 8 * GiB && l.disk == QUOTA_UNLIMITED &&
	      l.tasks == 10);
	json_t *back = quota_limit_json(&l);
	struct quota_limit l2;
	CHECK(quota_limit_from_json(back, NULL, &l2, &err) == 0);
	CHECK(!memcmp(&l, &l2, sizeof l));
	json_decref(back);
	json_decref(j);
	static const struct {
		const char *body, *msg;
	} bad[] = {
	    {"{\"cpu\": -1}", "cpu: expected a number of cores"},
	    {"{\"cpu\": \"lots\"}", "cpu: expected a number of cores"},
	    {"{\"cpu\": \"1e3\"}", "cpu: expected a number of cores"},
	    {"{\"cpu\": 1e12}", "cpu: expected a number of cores"},
	    {"{\"memory\": \"8 potatoes\"}", "memory: expected a size"},
	    {"{\"disk\": -5}", "disk: expected a size"},
	    {"{\"tasks\": 1.5}", "tasks: expected a number of tasks"},
	    {"{\"tasks\": \"-1\"}", "tasks: expected a number of tasks"},
	    {"{\"gpus\": 1}", "unknown field 'gpus'"},
	    {"[1]", "expected a JSON object"},
	};
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		j = json_loads(bad[i].body, JSON_DECODE_ANY, NULL);
		err = (struct berr){0};
		CHECK(quota_limit_from_json(j, NULL, &l, &err) == -1);
		CHECK(err.code == 400);
		CHECK_CONTAINS(err.msg, bad[i].msg);
		json_decref(j);
	}
	/* null: unlimited; a record's extra "role" passes when allowed. */
	static const char *const extra[] = {"role", NULL};
	j = json_loads("{\"cpu\": null, \"role\": \"alice\"}", 0, NULL);
	CHECK(quota_limit_from_json(j, extra, &l, &err) == 0);
	CHECK(l.cpu_milli == QUOTA_UNLIMITED);
	CHECK(quota_limit_from_json(j, NULL, &l, &err) == -1);
	json_decref(j);
}

/* ---- admission in the cluster ----------------------------------------- */

static void set_quota(struct fx *f, const char *role, struct quota_limit l)
{
	json_t *reply = NULL;
	CHECK(cluster_quota_set(f->c, role, &l, &reply) > 0);
	json_decref(reply);
}

/* The running sums match a count from scratch. */
static void check_sums(struct fx *f)
{
	json_t *a = cluster_quotas_json(f->c, NULL);
	quotas_recount(f->c);
	json_t *b = cluster_quotas_json(f->c, NULL);
	CHECK(json_equal(a, b));
	if (!json_equal(a, b)) {
		char *x = json_dumps(a, 0), *y = json_dumps(b, 0);
		fprintf(stderr, "    kept %s\n    count %s\n", x, y);
		free(x);
		free(y);
	}
	json_decref(a);
	json_decref(b);
}

/* The role's use of one resource, from the view. */
static double use_of(struct fx *f, const char *role, const char *what)
{
	json_t *q = cluster_quota_json(f->c, role);
	double v = json_number_value(json_object_get(json_object_get(q, "use"), what));
	json_decref(q);
	return v;
}

TEST(submit_within_quota_runs_and_over_it_is_refused_409)
{
	struct fx f;
	fx_setup(&f, NULL);
	set_quota(&f, "alice", limit(4.0, 8 * GiB, QUOTA_UNLIMITED, QUOTA_UNLIMITED));
	CHECK(submit_spec(&f, svc("alice/prod/web", 4, "0.5", 512, NULL), NULL) > 0);
	CHECK(use_of(&f, "alice", "cpu") == 2.0);
	CHECK(submit_spec(&f, svc("alice/prod/api", 5, "0.5", 512, NULL), NULL) == 0);
	CHECK(f.err.code == 409);
	CHECK_STR(f.err.msg, "quota exceeded for role alice: cpu 4.5 of 4.0");
	/* Nothing of the refused job exists. */
	struct berr e = {0};
	json_t *st = cluster_job_status_json(f.c, "alice/prod/api", false, &e);
	CHECK(!st && e.code == 404);
	/* Exactly up to the limit fits; preemptible work is not counted; other
	 * roles are not limited by alice's quota. */
	CHECK(submit_spec(&f, svc("alice/prod/api", 4, "0.5", 512, NULL), NULL) > 0);
	CHECK(submit_spec(&f, svc("alice/devel/batchy", 50, "1", 1024, NULL), NULL) > 0);
	CHECK(submit_spec(&f, svc("bob/prod/web", 50, "1", 1024, NULL), NULL) > 0);
	CHECK(use_of(&f, "alice", "cpu") == 4.0);
	CHECK(use_of(&f, "alice", "tasks") == 8);
	CHECK(use_of(&f, "bob", "cpu") == 50.0);
	check_sums(&f);
	fx_teardown(&f);
}

TEST(update_counts_the_new_total_not_old_plus_new)
{
	struct fx f;
	fx_setup(&f, NULL);
	set_quota(&f, "alice", limit(4.0, QUOTA_UNLIMITED, QUOTA_UNLIMITED, 6));
	CHECK(submit_spec(&f, svc("alice/prod/web", 4, "1", 64, NULL), NULL) > 0);
	/* A resource change of every instance (a rolling update): the new
	 * total is 4 x 0.9, not 4 x 1 + 4 x 0.9. */
	CHECK(submit_spec(&f, svc("alice/prod/web", 4, "0.9", 64, NULL), NULL) > 0);
	CHECK(use_of(&f, "alice", "cpu") == 3.6);
	/* Resource rise beyond: refused, the job keeps its config. */
	CHECK(submit_spec(&f, svc("alice/prod/web", 4, "1.1", 64, NULL), NULL) == 0);
	CHECK_STR(f.err.msg, "quota exceeded for role alice: cpu 4.4 of 4.0");
	CHECK(use_of(&f, "alice", "cpu") == 3.6);
	/* Scale up beyond the limit: refused; within it: allowed. */
	CHECK(submit_spec(&f, svc("alice/prod/web", 5, "0.9", 64, NULL), NULL) == 0);
	CHECK_CONTAINS(f.err.msg, "cpu 4.5 of 4.0");
	CHECK(submit_spec(&f, svc("alice/prod/web", 4, "1", 64, NULL), NULL) > 0);
	CHECK(use_of(&f, "alice", "cpu") == 4.0);
	/* Quota lowered under the use: a scale down is never refused, a
	 * scale up that stays over is. */
	set_quota(&f, "alice", limit(2.0, QUOTA_UNLIMITED, QUOTA_UNLIMITED, 6));
	CHECK(submit_spec(&f, svc("alice/prod/web", 3, "1", 64, NULL), NULL) > 0);
	CHECK(use_of(&f, "alice", "cpu") == 3.0);
	CHECK(submit_spec(&f, svc("alice/prod/web", 4, "1", 64, NULL), NULL) == 0);
	CHECK_STR(f.err.msg, "quota exceeded for role alice: cpu 4.0 of 2.0");
	/* The same spec again: no change, never refused. */
	CHECK(submit_spec(&f, svc("alice/prod/web", 3, "1", 64, NULL), NULL) > 0);
	check_sums(&f);
	fx_teardown(&f);
}

TEST(tier_switch_takes_or_gives_back_quota)
{
	struct fx f;
	fx_setup(&f, NULL);
	set_quota(&f, "alice", limit(2.0, QUOTA_UNLIMITED, QUOTA_UNLIMITED, QUOTA_UNLIMITED));
	CHECK(submit_spec(&f, svc("alice/prod/big", 3, "1", 64, "preemptible"), NULL) > 0);
	CHECK(use_of(&f, "alice", "cpu") == 0);
	/* preemptible -> preferred: it must fit now. */
	CHECK(submit_spec(&f, svc("alice/prod/big", 3, "1", 64, "preferred"), NULL) == 0);
	CHECK_STR(f.err.msg, "quota exceeded for role alice: cpu 3.0 of 2.0");
	CHECK(submit_spec(&f, svc("alice/prod/small", 2, "1", 64, NULL), NULL) > 0);
	CHECK(use_of(&f, "alice", "cpu") == 2.0);
	/* preferred -> preemptible frees its share for others. */
	CHECK(submit_spec(&f, svc("alice/prod/small", 2, "1", 64, "preemptible"), NULL) > 0);
	CHECK(use_of(&f, "alice", "cpu") == 0);
	CHECK(submit_spec(&f, svc("alice/devel/x", 2, "1", 64, "preferred"), NULL) > 0);
	CHECK(use_of(&f, "alice", "cpu") == 2.0);
	check_sums(&f);
	fx_teardown(&f);
}

TEST(batch_counts_unfinished_instances_cron_counts_while_a_run_is_active)
{
	struct fx f;
	fx_setup(&f, NULL);
	set_quota(&f, "alice", limit(QUOTA_UNLIMITED, QUOTA_UNLIMITED, QUOTA_UNLIMITED, 4));
	CHECK(submit_spec(&f,
			  parse_spec(yamlf("job: alice/prod/b\ntype: batch\ninstances: 3\ntask:\n"
					   "  command: [\"/bin/true\"]\n"
					   "  resources: {cpu: 0.01, memory: 8MiB}\n")),
			  NULL) > 0);
	CHECK(use_of(&f, "alice", "tasks") == 3);
	/* A cron job counts nothing until a run starts. */
	CHECK(
	    submit_spec(&f,
			parse_spec(yamlf("job: alice/prod/c\ntype: cron\nschedule: \"0 0 1 1 *\"\n"
					 "instances: 2\ntask:\n  command: [\"/bin/true\"]\n"
					 "  resources: {cpu: 0.01, memory: 8MiB}\n")),
			NULL) > 0);
	CHECK(use_of(&f, "alice", "tasks") == 3);
	/* Its run would make 5 tasks: not started, and it says why. */
	struct berr e = {0};
	CHECK(cluster_cron_start(f.c, "alice/prod/c", &e) == 0);
	CHECK(e.code == 409);
	CHECK_STR(e.msg, "cron run not started: quota exceeded for role alice: tasks 5 of 4");
	json_t *st = cluster_job_status_json(f.c, "alice/prod/c", false, &e);
	CHECK_CONTAINS(json_string_value(json_object_get(st, "message")), "tasks 5 of 4");
	CHECK(json_array_size(json_object_get(st, "tasks")) == 0);
	json_decref(st);
	json_t *crons = cluster_cron_list_json(f.c, NULL);
	CHECK_CONTAINS(json_string_value(json_object_get(json_array_get(crons, 0), "message")),
		       "quota exceeded");
	json_decref(crons);
	/* Room made (the batch job shrinks): the run starts and counts. */
	CHECK(submit_spec(&f,
			  parse_spec(yamlf("job: alice/prod/b\ntype: batch\ninstances: 2\ntask:\n"
					   "  command: [\"/bin/true\"]\n"
					   "  resources: {cpu: 0.01, memory: 8MiB}\n")),
			  NULL) > 0);
	e = (struct berr){0};
	CHECK(cluster_cron_start(f.c, "alice/prod/c", &e) > 0);
	CHECK(use_of(&f, "alice", "tasks") == 4);
	st = cluster_job_status_json(f.c, "alice/prod/c", false, &e);
	CHECK(!json_object_get(st, "message"));
	json_decref(st);
	check_sums(&f);
	/* Killed: its share is given back at once. */
	CHECK(cluster_job_kill(f.c, "alice/prod/c", &e) > 0);
	CHECK(use_of(&f, "alice", "tasks") == 2);
	CHECK(cluster_job_kill(f.c, "alice/prod/b", &e) > 0);
	CHECK(use_of(&f, "alice", "tasks") == 0);
	check_sums(&f);
	fx_teardown(&f);
}

TEST(quota_survives_a_restart_and_delete_removes_it)
{
	struct fx f;
	fx_setup(&f, NULL);
	set_quota(&f, "alice", limit(1.5, 2 * GiB, 10 * GiB, 7));
	CHECK(submit_spec(&f, svc("alice/prod/web", 1, "1", 64, NULL), NULL) > 0);
	fx_restart(&f);
	json_t *q = cluster_quota_json(f.c, "alice");
	json_t *l = json_object_get(q, "limit");
	CHECK(json_number_value(json_object_get(l, "cpu")) == 1.5);
	CHECK(json_integer_value(json_object_get(l, "memory")) == 2 * GiB);
	CHECK(json_integer_value(json_object_get(l, "disk")) == 10 * GiB);
	CHECK(json_integer_value(json_object_get(l, "tasks")) == 7);
	CHECK(json_number_value(json_object_get(json_object_get(q, "use"), "cpu")) == 1.0);
	json_decref(q);
	CHECK(submit_spec(&f, svc("alice/prod/web", 2, "1", 64, NULL), NULL) == 0);
	CHECK_STR(f.err.msg, "quota exceeded for role alice: cpu 2.0 of 1.5");
	/* The list: alice (quota and use), bob (use only), carol (quota only). */
	CHECK(submit_spec(&f, svc("bob/prod/web", 1, "0.25", 64, NULL), NULL) > 0);
	set_quota(&f, "carol", limit(1, QUOTA_UNLIMITED, QUOTA_UNLIMITED, QUOTA_UNLIMITED));
	json_t *all = cluster_quotas_json(f.c, NULL);
	CHECK(json_array_size(all) == 3);
	CHECK_STR(json_string_value(json_object_get(json_array_get(all, 1), "role")), "bob");
	CHECK(json_is_null(json_object_get(json_array_get(all, 1), "limit")));
	CHECK(json_number_value(
		  json_object_get(json_object_get(json_array_get(all, 1), "use"), "cpu")) == 0.25);
	json_decref(all);
	struct berr e = {0};
	CHECK(cluster_quota_delete(f.c, "alice", &e) > 0);
	CHECK(cluster_quota_delete(f.c, "alice", &e) == 0 && e.code == 404);
	fx_restart(&f);
	CHECK(submit_spec(&f, svc("alice/prod/web", 2, "1", 64, NULL), NULL) > 0);
	check_sums(&f);
	fx_teardown(&f);
}

TEST(plan_shows_the_quota_effect)
{
	struct fx f;
	fx_setup(&f, NULL);
	set_quota(&f, "alice", limit(4.0, QUOTA_UNLIMITED, QUOTA_UNLIMITED, QUOTA_UNLIMITED));
	CHECK(submit_spec(&f, svc("alice/prod/web", 2, "1", 64, NULL), NULL) > 0);
	struct job_spec *s = svc("alice/prod/web", 3, "1.5", 64, NULL);
	json_t *plan = cluster_job_plan(f.c, s, &f.err);
	json_t *q = json_object_get(plan, "quota");
	CHECK(json_is_false(json_object_get(q, "fits")));
	CHECK(json_number_value(json_object_get(json_object_get(q, "use"), "cpu")) == 2.0);
	CHECK(json_number_value(json_object_get(json_object_get(q, "after"), "cpu")) == 4.5);
	CHECK_STR(json_string_value(json_object_get(q, "message")),
		  "quota exceeded for role alice: cpu 4.5 of 4.0");
	json_decref(plan);
	spec_free(s);
	s = svc("alice/prod/web", 2, "1.5", 64, NULL);
	plan = cluster_job_plan(f.c, s, &f.err);
	q = json_object_get(plan, "quota");
	CHECK(json_is_true(json_object_get(q, "fits")));
	CHECK(json_number_value(json_object_get(json_object_get(q, "after"), "cpu")) == 3.0);
	json_decref(plan);
	spec_free(s);
	check_sums(&f);
	fx_teardown(&f);
}

TEST(an_ha_follower_replica_follows_quotas)
{
	struct fx f;
	fx_setup(&f, NULL);
	f.replica = cluster_new(f.st, &f.cfg);
	set_quota(&f, "alice", limit(2.0, QUOTA_UNLIMITED, QUOTA_UNLIMITED, QUOTA_UNLIMITED));
	CHECK(submit_spec(&f, svc("alice/prod/web", 2, "0.5", 64, NULL), NULL) > 0);
	fx_commit(&f);
	cluster_replica_refresh(f.replica);
	json_t *q = cluster_quota_json(f.replica, "alice");
	CHECK(json_number_value(json_object_get(json_object_get(q, "limit"), "cpu")) == 2.0);
	CHECK(json_number_value(json_object_get(json_object_get(q, "use"), "cpu")) == 1.0);
	json_decref(q);
	/* Promoted, it refuses what the old leader would have. */
	cluster_replica_promote(f.replica);
	struct submit_result res;
	struct berr e = {0};
	CHECK(cluster_job_submit(f.replica, svc("alice/prod/api", 3, "0.5", 64, NULL), &res, &e) ==
	      0);
	CHECK_STR(e.msg, "quota exceeded for role alice: cpu 2.5 of 2.0");
	struct berr e2 = {0};
	CHECK(cluster_quota_delete(f.c, "alice", &e2) > 0);
	fx_commit(&f);
	q = cluster_quota_json(f.replica, "alice");
	CHECK(json_is_null(json_object_get(q, "limit")));
	json_decref(q);
	cluster_free(f.replica);
	check_sums(&f);
	fx_teardown(&f);
}

UNIT_MAIN(cpu_rounds_up_to_milli_cpus_without_drift, only_preferred_tier_counts,
	  admit_refuses_a_rise_beyond_the_limit_and_names_it,
	  limits_parse_from_json_with_clear_errors,
	  submit_within_quota_runs_and_over_it_is_refused_409,
	  update_counts_the_new_total_not_old_plus_new, tier_switch_takes_or_gives_back_quota,
	  batch_counts_unfinished_instances_cron_counts_while_a_run_is_active,
	  quota_survives_a_restart_and_delete_removes_it, plan_shows_the_quota_effect,
	  an_ha_follower_replica_follows_quotas)
