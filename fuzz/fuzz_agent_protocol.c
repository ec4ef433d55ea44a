/* clang-format off */
/* fuzz_agent_protocol.c - libFuzzer target for the server side of the agent
 * protocol (docs/protocol.md) and the cluster state behind it
 * (src/server/cluster_nodes.c).
 *
 * fuzz-sources: src/core/util.c src/core/spec.c src/core/spec_yaml.c src/core/spec_json.c src/core/spec_validate.c src/core/spec_fields.c src/core/spec_template.c src/core/cron.c src/core/lifecycle.c src/core/hmap.c src/core/log.c src/sched/placement.c src/sched/ports.c src/store/store.c src/store/store_sqlite.c src/store/store_etcd.c src/store/store_etcd_follow.c src/store/etcd_client.c src/core/base64.c src/server/cluster.c src/server/cluster_secrets.c src/server/cluster_quota.c src/sched/quota.c src/server/secret_box.c src/server/cluster_records.c src/server/cluster_replica.c src/server/cluster_jobs.c src/server/cluster_mesh.c src/server/cluster_updates.c src/server/cluster_cron.c src/server/cluster_nodes.c src/server/cluster_sched.c src/server/cluster_system.c src/server/cluster_views.c src/server/cluster_endpoints.c src/server/liveness.c src/server/tokens.c src/core/pki.c src/core/cidr.c src/core/json_scan.c src/core/agent_report.c src/core/intern.c src/server/cluster_logtail.c src/server/cluster_notes.c src/server/cluster_preempt.c src/sched/preemption.c src/server/events.c src/core/metrics_text.c
 * fuzz-libs: -lcrypto -ljansson -lyaml -lsqlite3 -lcurl -lpthread -lm -Wl,--wrap=time_mono_ms -Wl,--wrap=time_now_ms
 * (the two lines above stay one line each: scripts/fuzz.sh reads them)
 *
 * One cluster lives across inputs, over a SQLite store in a temp directory
 * made once, with node "n1" registered. An input is a selector byte and a
 * JSON object; the selector picks what the object is fed to:
 *
 *   0 register   POST /v1/agent/register body
 *   1 watch      POST /v1/agent/watch body
 *   2 status     POST /v1/agent/status body
 *   3 submit     POST /v1/jobs body (spec_parse_json, cluster_job_plan, which
 *                must change nothing, then cluster_job_submit)
 *   4 control    {"kill": J, "restart": J, "drain": NODE, "activate": NODE,
 *                 "task": REF} (J: a job key, or an integer picking a job)
 *   5 commit     commit the pending batch
 *   6 restart    commit, free the cluster, load a new one from the store
 *   7 clock      {"ms": N}: move the clock N ms on (0..100000)
 *
 * Time is virtual (the link wraps time_mono_ms and time_now_ms): it moves
 * only with selector 7, so heartbeat deadlines, throttles and quick deaths
 * are reachable and an input does the same thing however fast it runs.
 * Task ids are random, so a report or update entry whose "id" is an integer
 * k is given the id of the k-th task the cluster holds. After every input
 * the scheduler ticks and every view is rendered. Checks: no crash, leak or
 * UB; refusals carry a 4xx code and a message; applied_seq never goes back.
 */
/* clang-format on */
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/agent_report.h"
#include "core/log.h"
#include "core/spec.h"
#include "core/util.h"
#include "server/cluster.h"
#include "store/store.h"

#define MAX_INSTANCES 16 /* bigger specs are skipped: they only cost time */
#define MAX_TASKS 2000	 /* beyond, the state is thrown away and rebuilt */
#define MAX_JOBS 256
#define MAX_NODES 64

static int64_t clock_offset_ms;
static int64_t clock_base_mono, clock_base_wall;

int64_t __real_time_mono_ms(void);
int64_t __real_time_now_ms(void);
int64_t __wrap_time_mono_ms(void);
int64_t __wrap_time_now_ms(void);

int64_t __wrap_time_mono_ms(void)
{
	return clock_base_mono + clock_offset_ms;
}

int64_t __wrap_time_now_ms(void)
{
	return clock_base_wall + clock_offset_ms;
}

static char dir[64];
static char *loc;
static struct store *st;
static struct cluster *c;
static struct cluster_config cfg;

static void check_err(const struct berr *e)
{
	if (e->code < 400 || e->code > 499 || !e->msg[0])
		abort();
}

static void commit(void)
{
	uint64_t seq = 0;
	struct store_batch *b = cluster_take_pending(c, &seq);
	if (b) {
		struct berr err = {0};
		if (store_commit(st, b, &err) < 0) {
			fprintf(stderr, "store_commit: %s\n", err.msg);
			abort();
		}
		store_batch_free(b);
	}
	c->committed_seq = seq;
}

static void register_n1(void)
{
	json_t *body = json_pack("{s:s,s:{s:s},s:{s:i,s:I,s:I,s:i,s:i},s:s}", "name", "n1",
				 "attributes", "rack", "r1", "resources", "cpu", 8, "memory",
				 (json_int_t)(16LL << 30), "disk", (json_int_t)(100LL << 30),
				 "port_lo", 20000, "port_hi", 20100, "addr", "http://127.0.0.1:1");
	json_t *reply = NULL;
	struct berr err = {0};
	if (!cluster_agent_register(c, body, &reply, &err))
		abort();
	json_decref(reply);
	json_decref(body);
}

static void cleanup(void)
{
	if (c)
		cluster_free(c);
	if (st)
		store_close(st);
	rm_rf(dir);
	free(loc);
}

/* A fresh store and cluster. */
static void setup(void)
{
	if (c)
		cleanup();
	strcpy(dir, "/tmp/berth-fuzz-agent.XXXXXX");
	if (!mkdtemp(dir))
		abort();
	loc = xasprintf("sqlite:%s/state.db", dir);
	struct berr err = {0};
	st = store_open(loc, &err);
	if (!st) {
		fprintf(stderr, "store_open: %s\n", err.msg);
		abort();
	}
	c = cluster_new(st, &cfg);
	register_n1();
	cluster_tick(c);
	commit();
}

static void reload(void)
{
	commit();
	cluster_free(c);
	c = cluster_new(st, &cfg);
	struct berr err = {0};
	if (cluster_load(c, &err) < 0) {
		fprintf(stderr, "cluster_load: %s\n", err.msg);
		abort();
	}
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	log_set_level(LOG_OFF);
	clock_base_mono = __real_time_mono_ms();
	clock_base_wall = __real_time_now_ms();
	cluster_config_defaults(&cfg);
	cfg.ended_keep = 4;
	setup();
	atexit(cleanup);
	return 0;
}

/* The k-th task / job / node the cluster holds (hash order). */
static const char *nth_task_id(uint64_t k)
{
	if (!c->tasks.count)
		return "none";
	size_t want = (size_t)k % c->tasks.count, i = 0, it = 0;
	void *v;
	while (hmap_next(&c->tasks, &it, NULL, &v))
		if (i++ == want)
			return ((struct task *)v)->id;
	return "none";
}

static const char *nth_key(struct hmap *m, uint64_t k)
{
	if (!m->count)
		return "none";
	size_t want = (size_t)k % m->count, i = 0, it = 0;
	const char *key;
	while (hmap_next(m, &it, &key, NULL))
		if (i++ == want)
			return key;
	return "none";
}

/* Integer ids in a report or update list become real task ids. */
static void resolve_ids(json_t *list)
{
	size_t i;
	json_t *u;
	json_array_foreach(list, i, u)
	{
		json_t *id = json_object_get(u, "id");
		if (json_is_integer(id)) {
			uint64_t k = (uint64_t)json_integer_value(id);
			json_object_set_new(u, "id", json_string(nth_task_id(k)));
		}
	}
}

static const char *pick(json_t *v, struct hmap *m)
{
	if (json_is_integer(v))
		return nth_key(m, (uint64_t)json_integer_value(v));
	return json_string_value(v);
}

static void views(void)
{
	json_decref(cluster_job_list_json(c));
	json_decref(cluster_node_list_json(c));
	size_t it = 0;
	const char *key;
	while (hmap_next(&c->jobs, &it, &key, NULL)) {
		struct berr err = {0};
		json_t *s = cluster_job_status_json(c, key, true, &err);
		if (!s)
			abort();
		char *dump = json_dumps(s, JSON_COMPACT);
		if (!dump)
			abort(); /* a view that does not serialise */
		free(dump);
		json_decref(s);
		json_t *e = cluster_job_endpoints_json(c, key, &err);
		if (!e || !json_is_array(json_object_get(e, "endpoints")))
			abort();
		json_decref(e);
	}
	/* The endpoints table every agent gets: valid JSON, cached per version. */
	const char *table = cluster_endpoints_text(c);
	json_t *tj = table ? json_loads(table, 0, NULL) : NULL;
	if (!json_is_object(tj) || cluster_endpoints_text(c) != table)
		abort();
	json_decref(tj);
	it = 0;
	struct node *n;
	while (hmap_next(&c->nodes, &it, NULL, (void **)&n))
		json_decref(cluster_node_desired(c, n));
}

static void control(json_t *o)
{
	struct berr err = {0};
	const char *s;
	if ((s = pick(json_object_get(o, "kill"), &c->jobs)) && !cluster_job_kill(c, s, &err))
		check_err(&err);
	if ((s = pick(json_object_get(o, "restart"), &c->jobs)) &&
	    !cluster_job_restart(c, s, -1, false, &err))
		check_err(&err);
	if ((s = pick(json_object_get(o, "drain"), &c->nodes)) &&
	    !cluster_node_drain(c, s, true, &err))
		check_err(&err);
	if ((s = pick(json_object_get(o, "activate"), &c->nodes)) &&
	    !cluster_node_drain(c, s, false, &err))
		check_err(&err);
	json_t *ref = json_object_get(o, "task");
	if (json_is_integer(ref))
		s = nth_task_id((uint64_t)json_integer_value(ref));
	else
		s = json_string_value(ref);
	if (s) {
		json_t *t = cluster_task_json(c, s, &err);
		if (t)
			json_decref(t);
		else
			check_err(&err);
	}
}

static void submit(json_t *o)
{
	struct job_spec *spec = NULL;
	struct berr err = {0};
	if (spec_parse_json(o, &spec, &err) < 0)
		return;
	if (spec->instances > MAX_INSTANCES) {
		spec_free(spec);
		return;
	}
	uint64_t seq = c->applied_seq;
	size_t pending = store_batch_count(c->pending);
	json_t *plan = cluster_job_plan(c, spec, &err);
	if (!plan)
		check_err(&err);
	char *dump = plan ? json_dumps(plan, JSON_COMPACT) : NULL;
	if (plan && !dump)
		abort();
	free(dump);
	json_decref(plan);
	if (c->applied_seq != seq || store_batch_count(c->pending) != pending)
		abort(); /* a plan changed the state */
	struct submit_result res;
	if (!cluster_job_submit(c, spec, &res, &err))
		check_err(&err);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	unsigned op = data[0] % 8;
	json_t *o = json_loadb((const char *)data + 1, size - 1, 0, NULL);
	if (!o || !json_is_object(o)) {
		json_decref(o);
		return 0;
	}
	if (op == 6)
		reload(); /* frees the cluster: not under its lock */
	pthread_mutex_lock(&c->lock);
	uint64_t before = c->applied_seq;
	struct berr err = {0};
	switch (op) {
	case 0: {
		resolve_ids(json_object_get(o, "tasks"));
		json_t *reply = NULL;
		if (cluster_agent_register(c, o, &reply, &err)) {
			if (!json_is_string(json_object_get(reply, "node_id")))
				abort();
			json_decref(reply);
		} else {
			check_err(&err);
			if (reply)
				abort();
		}
		break;
	}
	case 1: {
		resolve_ids(json_object_get(o, "tasks"));
		struct node *n = NULL;
		struct agent_report *r = agent_report_from_json(o, AGENT_CALL_WATCH, &err);
		if (!r)
			abort(); /* jansson's object, dumped: always read */
		uint64_t seq = cluster_agent_watch(c, r, &n, &err);
		agent_report_free(r);
		if (seq) {
			if (!n)
				abort();
			json_decref(cluster_node_desired(c, n));
		} else {
			check_err(&err);
		}
		break;
	}
	case 2: {
		resolve_ids(json_object_get(o, "updates"));
		struct agent_report *r = agent_report_from_json(o, AGENT_CALL_STATUS, &err);
		if (!r)
			abort();
		if (!cluster_agent_status(c, r, &err))
			check_err(&err);
		agent_report_free(r);
		break;
	}
	case 3:
		submit(o);
		break;
	case 4:
		control(o);
		break;
	case 5:
		commit();
		break;
	case 7: {
		json_int_t ms = json_integer_value(json_object_get(o, "ms"));
		if (ms > 0 && ms <= 100000)
			clock_offset_ms += ms;
		break;
	}
	}
	cluster_tick(c);
	if (c->applied_seq < before)
		abort();
	views();
	/* Keep the pending batch and the state small. */
	if (store_batch_count(c->pending) > 4096)
		commit();
	bool reset =
	    c->tasks.count > MAX_TASKS || c->jobs.count > MAX_JOBS || c->nodes.count > MAX_NODES;
	pthread_mutex_unlock(&c->lock);
	json_decref(o);
	if (reset)
		setup();
	return 0;
}
