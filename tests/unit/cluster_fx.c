/* cluster_fx.c - the unit tests' cluster fixture (cluster_fx.h): a cluster
 * over a SQLite store in its own mkdtemp directory, driven through its
 * public API with the JSON bodies of docs/protocol.md. */
#include "cluster_fx.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/agent_report.h"
#include "core/log.h"
#include "store/store-internal.h" /* the replica is fed committed batches */
#include "unit.h"
static void fx_open_cluster(struct fx *f)
{
	f->c = cluster_new(f->st, &f->cfg);
	if (!f->c) {
		fprintf(stderr, "    cluster_new failed\n");
		exit(1);
	}
}

/* cfg may be NULL (defaults). */
void fx_setup(struct fx *f, const struct cluster_config *cfg)
{
	memset(f, 0, sizeof *f);
	log_set_level(LOG_OFF);
	strcpy(f->dir, "/tmp/berth-test-cluster.XXXXXX");
	if (!mkdtemp(f->dir)) {
		perror("mkdtemp");
		exit(1);
	}
	f->loc = xasprintf("sqlite:%s/state.db", f->dir);
	f->st = store_open(f->loc, &f->err);
	if (!f->st) {
		fprintf(stderr, "    store_open: %s\n", f->err.msg);
		exit(1);
	}
	if (cfg)
		f->cfg = *cfg;
	else
		cluster_config_defaults(&f->cfg);
	fx_open_cluster(f);
}

void fx_teardown(struct fx *f)
{
	cluster_free(f->c);
	store_close(f->st);
	rm_rf(f->dir);
	free(f->loc);
}

/* Make everything applied so far durable, as the server's commit loop does. */
void fx_commit(struct fx *f)
{
	pthread_mutex_lock(&f->c->lock);
	uint64_t seq = 0;
	struct store_batch *b = cluster_take_pending(f->c, &seq);
	pthread_mutex_unlock(&f->c->lock);
	if (b) {
		struct berr err = {0};
		if (store_commit(f->st, b, &err) < 0) {
			fprintf(stderr, "    store_commit: %s\n", err.msg);
			exit(1);
		}
		if (f->replica) {
			/* What an HA follower's store watch delivers, in order. */
			pthread_mutex_lock(&f->replica->lock);
			for (size_t i = 0; i < b->n; i++) {
				const struct store_op *op = &b->ops[i];
				/* A removed job's kept log tails go by prefix; the
				 * replica keeps no tails (they are read from the
				 * store), so nothing else may. */
				if (op->kind == STORE_OP_DELETE_PREFIX &&
				    !strncmp(op->key, "logtails/", 9))
					continue;
				if (op->kind == STORE_OP_DELETE_PREFIX) {
					fprintf(stderr,
						"    replica: delete_prefix not expected\n");
					exit(1);
				}
				cluster_replica_apply(f->replica, op->key, op->value, op->len);
			}
			pthread_mutex_unlock(&f->replica->lock);
		}
		store_batch_free(b);
	}
	pthread_mutex_lock(&f->c->lock);
	f->c->committed_seq = seq;
	pthread_mutex_unlock(&f->c->lock);
}

/* Commit, drop the cluster, reopen the store and load a new cluster from it:
 * a server restart. */
void fx_restart(struct fx *f)
{
	fx_commit(f);
	cluster_free(f->c);
	store_close(f->st);
	f->st = store_open(f->loc, &f->err);
	if (!f->st) {
		fprintf(stderr, "    store_open: %s\n", f->err.msg);
		exit(1);
	}
	fx_open_cluster(f);
	pthread_mutex_lock(&f->c->lock);
	int r = cluster_load(f->c, &f->err);
	pthread_mutex_unlock(&f->c->lock);
	if (r < 0) {
		fprintf(stderr, "    cluster_load: %s\n", f->err.msg);
		exit(1);
	}
}

void sleep_ms(long ms)
{
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
	while (nanosleep(&ts, &ts) < 0)
		;
}

/* ---- jobs ---------------------------------------------------------------- */

char *yamlf(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	char *s = NULL;
	if (vasprintf(&s, fmt, ap) < 0)
		abort();
	va_end(ap);
	return s;
}

struct job_spec *parse_spec(char *yaml)
{
	struct job_spec *spec = NULL;
	struct berr err = {0};
	if (spec_parse_yaml(yaml, strlen(yaml), "test.yaml", &spec, &err) < 0) {
		fprintf(stderr, "    spec: %s\n", err.msg);
		exit(1);
	}
	free(yaml);
	return spec;
}

uint64_t submit_spec(struct fx *f, struct job_spec *spec, struct submit_result *res)
{
	struct submit_result dummy;
	f->err = (struct berr){0};
	pthread_mutex_lock(&f->c->lock);
	uint64_t seq = cluster_job_submit(f->c, spec, res ? res : &dummy, &f->err);
	pthread_mutex_unlock(&f->c->lock);
	return seq;
}

uint64_t submit(struct fx *f, char *yaml, struct submit_result *res)
{
	struct job_spec *spec = NULL;
	if (spec_parse_yaml(yaml, strlen(yaml), "test.yaml", &spec, &f->err) < 0) {
		fprintf(stderr, "    spec_parse_yaml: %s\n", f->err.msg);
		free(yaml);
		return 0;
	}
	free(yaml);
	return submit_spec(f, spec, res);
}

json_t *plan(struct fx *f, char *yaml)
{
	struct job_spec *spec = NULL;
	if (spec_parse_yaml(yaml, strlen(yaml), "test.yaml", &spec, &f->err) < 0) {
		fprintf(stderr, "    spec_parse_yaml: %s\n", f->err.msg);
		free(yaml);
		return NULL;
	}
	free(yaml);
	pthread_mutex_lock(&f->c->lock);
	uint64_t seq = f->c->applied_seq;
	json_t *p = cluster_job_plan(f->c, spec, &f->err);
	CHECK(f->c->applied_seq == seq); /* a plan changes nothing */
	pthread_mutex_unlock(&f->c->lock);
	spec_free(spec);
	return p;
}

uint64_t tick(struct fx *f)
{
	pthread_mutex_lock(&f->c->lock);
	uint64_t seq = cluster_tick(f->c);
	pthread_mutex_unlock(&f->c->lock);
	return seq;
}

/* The server's commit loop ticks every 50 ms at least: let ms pass so. A
 * judge that is not called for long counts that time as its own deafness
 * (server/liveness.h), so tests of heartbeats must tick as the server does. */
void run_for(struct fx *f, long ms)
{
	for (long t = 0; t < ms; t += 10) {
		sleep_ms(10);
		tick(f);
	}
}

uint64_t job_kill(struct fx *f, const char *key)
{
	pthread_mutex_lock(&f->c->lock);
	uint64_t seq = cluster_job_kill(f->c, key, &f->err);
	pthread_mutex_unlock(&f->c->lock);
	return seq;
}

uint64_t job_restart(struct fx *f, const char *key)
{
	pthread_mutex_lock(&f->c->lock);
	uint64_t seq = cluster_job_restart(f->c, key, -1, true, &f->err);
	pthread_mutex_unlock(&f->c->lock);
	return seq;
}

struct job *job_get(struct fx *f, const char *key)
{
	return hmap_get(&f->c->jobs, key);
}

/* The active task of an instance, or NULL. */
struct task *active(struct fx *f, const char *key, int instance)
{
	struct job *j = job_get(f, key);
	if (!j || instance < 0 || (size_t)instance >= j->nactive)
		return NULL;
	return j->active[instance];
}

const char *state_of(struct task *t)
{
	return t ? task_state_name(t->state) : "(none)";
}

const char *node_of(struct task *t)
{
	return t && t->node ? t->node->name : "(none)";
}

/* Tasks of a job in c->tasks (active and kept ended). */
size_t count_job_tasks(struct fx *f, const char *key)
{
	size_t n = 0, it = 0;
	void *v;
	while (hmap_next(&f->c->tasks, &it, NULL, &v))
		if (!strcmp(((struct task *)v)->job->key, key))
			n++;
	return n;
}

/* ---- the agent ----------------------------------------------------------- */

uint64_t agent_register_full(struct fx *f, const char *name, double cpu, long long mem, int port_lo,
			     int port_hi, json_t *report)
{
	json_t *body =
	    json_pack("{s:s,s:{s:s,s:s,s:s},s:{s:f,s:I,s:I,s:i,s:i},s:s}", "name", name,
		      "attributes", "host", name, "os", "linux", "rack", "r1", "resources", "cpu",
		      cpu, "memory", (json_int_t)mem, "disk", (json_int_t)(100 * GiB), "port_lo",
		      port_lo, "port_hi", port_hi, "addr", "http://127.0.0.1:40123");
	if (report)
		json_object_set_new(body, "tasks", report);
	return agent_register_body(f, body);
}

uint64_t agent_register_body(struct fx *f, json_t *body)
{
	json_t *reply = NULL;
	pthread_mutex_lock(&f->c->lock);
	uint64_t seq = cluster_agent_register(f->c, body, &reply, &f->err);
	pthread_mutex_unlock(&f->c->lock);
	json_decref(reply);
	json_decref(body);
	return seq;
}

uint64_t agent_register(struct fx *f, const char *name)
{
	return agent_register_full(f, name, 4.0, 8 * GiB, 20000, 20999, NULL);
}

/* One entry of a full-state report. */
json_t *rep(const char *id, const char *state, int pid)
{
	return json_pack("{s:s,s:s,s:i,s:s,s:i}", "id", id, "state", state, "pid", pid, "message",
			 "", "exit_code", 0);
}

/* A watch of a whole body (consumed). */
static uint64_t watch_body(struct fx *f, json_t *body)
{
	struct node *n = NULL;
	struct agent_report *r = agent_report_from_json(body, AGENT_CALL_WATCH, &f->err);
	json_decref(body);
	if (!r)
		return 0;
	pthread_mutex_lock(&f->c->lock);
	uint64_t seq = cluster_agent_watch(f->c, r, &n, &f->err);
	pthread_mutex_unlock(&f->c->lock);
	agent_report_free(r);
	return seq;
}

/* A watch with known_version and a report (the array is consumed). */
uint64_t agent_watch(struct fx *f, const char *name, long long known, json_t *report)
{
	return watch_body(f, json_pack("{s:s,s:I,s:i,s:o}", "name", name, "known_version",
				       (json_int_t)known, "wait_ms", 1000, "tasks",
				       report ? report : json_array()));
}

uint64_t agent_status(struct fx *f, const char *name, const char *id, const char *state, int pid,
		      int exit_code, const char *msg)
{
	json_t *body =
	    json_pack("{s:s,s:[{s:s,s:s,s:i,s:i,s:s}]}", "name", name, "updates", "id", id, "state",
		      state, "pid", pid, "exit_code", exit_code, "message", msg ? msg : "");
	struct agent_report *r = agent_report_from_json(body, AGENT_CALL_STATUS, &f->err);
	json_decref(body);
	if (!r)
		return 0;
	pthread_mutex_lock(&f->c->lock);
	uint64_t seq = cluster_agent_status(f->c, r, &f->err);
	pthread_mutex_unlock(&f->c->lock);
	agent_report_free(r);
	return seq;
}

struct node *node_get(struct fx *f, const char *name)
{
	return hmap_get(&f->c->nodes, name);
}

/* A pure heartbeat: a watch without a report. */
uint64_t agent_heartbeat(struct fx *f, const char *name)
{
	struct node *nd = node_get(f, name);
	return watch_body(f,
			  json_pack("{s:s,s:I,s:i}", "name", name, "known_version",
				    (json_int_t)(nd ? nd->desired_version : 0), "wait_ms", 1000));
}

/* ms pass, the server ticking, the node's agent heartbeating every 20 ms. */
void heartbeat_for(struct fx *f, const char *name, long ms)
{
	for (long t = 0; t < ms; t += 20) {
		run_for(f, 20);
		agent_heartbeat(f, name);
	}
}

/* The node's desired set (new reference). */
json_t *desired(struct fx *f, const char *name)
{
	pthread_mutex_lock(&f->c->lock);
	json_t *d = cluster_node_desired(f->c, node_get(f, name));
	pthread_mutex_unlock(&f->c->lock);
	return d;
}

long long desired_version(struct fx *f, const char *name)
{
	json_t *d = desired(f, name);
	long long v = json_integer_value(json_object_get(d, "version"));
	json_decref(d);
	return v;
}

bool desired_has(struct fx *f, const char *name, const char *id)
{
	json_t *d = desired(f, name);
	bool found = false;
	size_t i;
	json_t *t;
	json_array_foreach(json_object_get(d, "tasks"), i, t)
	{
		if (!strcmp(json_string_value(json_object_get(t, "id")) ?: "", id))
			found = true;
	}
	json_decref(d);
	return found;
}

/* Report every ASSIGNED task of the job as RUNNING (pid 1000 + instance). */
void run_job(struct fx *f, const char *key)
{
	struct job *j = job_get(f, key);
	if (!j)
		return;
	for (size_t i = 0; i < j->nactive; i++) {
		struct task *t = j->active[i];
		if (t && t->node && (t->state == TASK_ASSIGNED || t->state == TASK_STARTING))
			agent_status(f, t->node->name, t->id, "RUNNING", 1000 + (int)i, 0, "");
	}
}

json_t *job_status(struct fx *f, const char *key, bool all)
{
	pthread_mutex_lock(&f->c->lock);
	json_t *o = cluster_job_status_json(f->c, key, all, &f->err);
	pthread_mutex_unlock(&f->c->lock);
	return o;
}

json_t *node_json(struct fx *f, const char *name)
{
	pthread_mutex_lock(&f->c->lock);
	json_t *arr = cluster_node_list_json(f->c);
	pthread_mutex_unlock(&f->c->lock);
	json_t *found = NULL;
	size_t i;
	json_t *n;
	json_array_foreach(arr, i, n)
	{
		if (!strcmp(json_string_value(json_object_get(n, "name")) ?: "", name))
			found = json_incref(n);
	}
	json_decref(arr);
	return found;
}

const char *jstr(json_t *o, const char *k)
{
	return json_string_value(json_object_get(o, k));
}

long long jint(json_t *o, const char *k)
{
	return json_integer_value(json_object_get(o, k));
}

#define WEB "alice/devel/web"
#define BAT "bob/test/count"
