/* cluster_fx.h - the unit tests' cluster fixture: a cluster (src/server/
 * cluster.c) over a SQLite store in its own mkdtemp directory, driven
 * through its public API. The test plays the server's commit loop (fx_commit,
 * tick) and the agents (agent_*, with the JSON bodies of docs/protocol.md).
 *
 *   struct fx f;
 *   fx_setup(&f, NULL);              (NULL: cluster_config_defaults)
 *   agent_register(&f, "n1");
 *   CHECK(submit(&f, yamlf("job: a/prod/x\n..."), NULL) > 0);
 *   tick(&f);
 *   run_job(&f, "a/prod/x");
 *   CHECK_STR(state_of(active(&f, "a/prod/x", 0)), "RUNNING");
 *   fx_teardown(&f);
 *
 * Every helper takes the cluster's lock around the call it wraps, as the
 * server's handlers do. A fixture failure (store, load) exits the test's
 * process; a check that fails counts as the test's (unit.h). */
#ifndef BERTH_CLUSTER_FX_H
#define BERTH_CLUSTER_FX_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/util.h"
#include "server/cluster.h"
#include "store/store.h"

#define MiB (1024LL * 1024)
#define GiB (1024LL * MiB)

struct fx {
	char dir[64];
	char *loc;
	struct store *st;
	struct cluster *c;
	struct cluster_config cfg;
	struct berr err;
	struct cluster *replica; /* when set: fed every committed batch (an HA follower) */
};

/* ---- the cluster and its store ------------------------------------------ */

/* A new cluster over a new store; cfg may be NULL (defaults). */
void fx_setup(struct fx *f, const struct cluster_config *cfg);
void fx_teardown(struct fx *f);
/* Make everything applied so far durable, as the server's commit loop does
 * (and feed the replica, when set). */
void fx_commit(struct fx *f);
/* Commit, drop the cluster, reopen the store and load a new cluster from it:
 * a server restart. */
void fx_restart(struct fx *f);
void sleep_ms(long ms);

/* ---- jobs ---------------------------------------------------------------- */

/* A malloc'd string (a YAML spec for submit). */
char *yamlf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* A valid YAML spec (freed here), parsed; exits the test when it is not. */
struct job_spec *parse_spec(char *yaml);
/* Submit a YAML spec (freed here); returns the seq, 0 on error (f->err).
 * res may be NULL. */
uint64_t submit(struct fx *f, char *yaml, struct submit_result *res);
/* The same with a parsed spec (the cluster takes it); f->err is cleared
 * first. */
uint64_t submit_spec(struct fx *f, struct job_spec *spec, struct submit_result *res);
/* `berth job plan` of a YAML spec (freed here): the plan (new reference), or
 * NULL (f->err). Checks that planning changed nothing. */
json_t *plan(struct fx *f, char *yaml);
/* One scheduling round (the server's tick). */
uint64_t tick(struct fx *f);
/* The server's commit loop ticks every 50 ms at least: let ms pass so. A
 * judge that is not called for long counts that time as its own deafness
 * (server/liveness.h), so tests of heartbeats must tick as the server does. */
void run_for(struct fx *f, long ms);
uint64_t job_kill(struct fx *f, const char *key);
uint64_t job_restart(struct fx *f, const char *key);
struct job *job_get(struct fx *f, const char *key);
/* The active task of an instance, or NULL. */
struct task *active(struct fx *f, const char *key, int instance);
/* The task's state name, "(none)" for NULL. */
const char *state_of(struct task *t);
/* The task's node name, "(none)" when it has none. */
const char *node_of(struct task *t);
/* Tasks of a job in c->tasks (active and kept ended). */
size_t count_job_tasks(struct fx *f, const char *key);
json_t *job_status(struct fx *f, const char *key, bool all);

/* ---- the agents ---------------------------------------------------------- */

/* Register node `name` (attributes host=name, os=linux, rack=r1) with its
 * resources and a full-state report (consumed; may be NULL). */
uint64_t agent_register_full(struct fx *f, const char *name, double cpu, long long mem, int port_lo,
			     int port_hi, json_t *report);
/* A registration of a whole body (consumed): other attributes. */
uint64_t agent_register_body(struct fx *f, json_t *body);
/* 4 cpu, 8 GiB, ports 20000-20999, no report. */
uint64_t agent_register(struct fx *f, const char *name);
/* One entry of a full-state report. */
json_t *rep(const char *id, const char *state, int pid);
/* A watch with known_version and a report (the array is consumed). */
uint64_t agent_watch(struct fx *f, const char *name, long long known, json_t *report);
/* One status update of task id (msg may be NULL). */
uint64_t agent_status(struct fx *f, const char *name, const char *id, const char *state, int pid,
		      int exit_code, const char *msg);
struct node *node_get(struct fx *f, const char *name);
/* A pure heartbeat: a watch without a report. */
uint64_t agent_heartbeat(struct fx *f, const char *name);
/* ms pass, the server ticking, the node's agent heartbeating every 20 ms. */
void heartbeat_for(struct fx *f, const char *name, long ms);
/* The node's desired set (new reference). */
json_t *desired(struct fx *f, const char *name);
long long desired_version(struct fx *f, const char *name);
bool desired_has(struct fx *f, const char *name, const char *id);
/* Report every ASSIGNED (or STARTING) task of the job as RUNNING (pid 1000 +
 * instance). */
void run_job(struct fx *f, const char *key);
/* The node's entry of the node list (new reference), or NULL. */
json_t *node_json(struct fx *f, const char *name);

/* ---- JSON ---------------------------------------------------------------- */

const char *jstr(json_t *o, const char *k);
long long jint(json_t *o, const char *k);

#endif
