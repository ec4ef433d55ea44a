/* cluster.h - the server's in-memory view of the cluster, and every change to it.
 *
 * The server holds the whole state here and decides from it; the store is its
 * durable log. Every change takes one path:
 *
 *   validate -> apply to memory -> append to the pending store batch
 *            -> (commit thread) store_commit -> acknowledge
 *
 * Mutating functions append to `pending` and return the sequence number the
 * caller must see committed (cluster->committed_seq >= seq) before it
 * acknowledges anything to a user or an agent.
 *
 * Locking: one mutex, `lock`, guards everything in struct cluster. Every
 * function here expects it held, except cluster_new/cluster_free and
 * view_rows_render/view_rows_free (they work on a snapshot). Heartbeat
 * stamps live apart, in `live` (liveness.h), under that table's own lock:
 * request threads stamp them without this one.
 */
#ifndef BERTH_CLUSTER_H
#define BERTH_CLUSTER_H

#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "core/cidr.h"
#include "core/cron.h"
#include "core/hmap.h"
#include "core/lifecycle.h"
#include "core/spec.h"
#include "core/util.h"
#include "sched/quota.h"
#include "server/cluster_stats.h"
#include "server/liveness.h"
#include "server/tokens.h"
#include "store/store.h"

enum node_state { NODE_ACTIVE = 0, NODE_DRAINING, NODE_DRAINED, NODE_DOWN };
const char *node_state_name(enum node_state s);

/* A task keeps its first event and its newest, MAX_EVENTS in all. */
#define MAX_EVENTS 16
struct task_event {
	int64_t time_ms;
	enum task_state state;
	bool interned; /* message is the shared copy (core/intern.h): not freed */
	char *message;
};

struct job;
struct node;

struct task {
	char *id;
	struct job *job;
	int instance;
	int version;
	enum task_state state;
	struct node *node; /* where it is assigned, or NULL */
	int pid;
	int exit_code;	  /* -1 when unknown */
	char *message;	  /* last transition's message (or why PENDING) */
	char *ancestor;	  /* the task this one replaces, or NULL */
	json_t *ports;	  /* {"http": 20001, ...} once assigned */
	uint32_t address; /* its address on the node's subnet (bridge network), 0 = none */
	int64_t created_ms;
	int64_t running_since_ms;
	int failures;		   /* failures of this instance so far (inherited) */
	int quick_deaths;	   /* consecutive quick deaths (inherited) */
	int restarts;		   /* restart policy: restarts in the window (inherited) */
	int64_t restart_window_ms; /* when that window began */
	int64_t throttle_until_ms;
	uint64_t assigned_at; /* node desired_version when it was assigned */
	bool replace_on_end;  /* RESTARTING: replace at once, no throttle */
	int replace_version;  /* the successor's config version (0 = same) */
	bool no_replace;      /* killed on purpose (job kill, scale down) */
	struct task_event *events;
	size_t nevents;
	struct task *wprev, *wnext; /* in cluster.waiting while PENDING or THROTTLED */
	bool waiting;
	bool message_shared;  /* message is interned (intern.h), not its own copy */
	uint32_t report_mark; /* cluster.report_mark when its node's last report named it */
	size_t dirty_slot;    /* 1 + index in cluster.dirty, 0 when clean */
	/* Preemption (cluster_preempt.c), in memory only: a PENDING task that
	 * preempted tasks on a node holds that node's room until they are gone
	 * (or until reserved_until_ms); preempt_after_ms: no new preemption
	 * attempt before then (the last one found nothing). */
	char *reserved_node;
	int64_t reserved_until_ms;
	int64_t preempt_after_ms;
};

struct job_version {
	int version;
	struct job_spec *spec;
	json_t *json;	       /* canonical spec */
	char *task_text;       /* its task section as JSON text (cached) */
	struct cron_expr cron; /* cron jobs: the parsed schedule */
};

/* A rolling update (Aurora's updater): instances move from one config
 * version to another batch by batch; each must stay RUNNING for `watch`
 * before it counts as updated; failures beyond the policy roll back. */
enum update_state {
	UPDATE_ROLLING_FORWARD = 0,
	UPDATE_ROLL_FORWARD_PAUSED,
	UPDATE_ROLLED_FORWARD,
	UPDATE_ROLLING_BACK,
	UPDATE_ROLL_BACK_PAUSED,
	UPDATE_ROLLED_BACK,
	UPDATE_ABORTED,
	UPDATE_FAILED,
};
const char *update_state_name(enum update_state s);
bool update_state_active(enum update_state s);

enum update_instance_status {
	UI_PENDING = 0, /* not touched yet */
	UI_UPDATING,	/* its old task is stopping or its new one starting */
	UI_WATCHING,	/* new task RUNNING, waiting out the watch time */
	UI_DONE,	/* on the target version and stayed up */
	UI_FAILED,	/* failed more than max_instance_failures times */
};

struct update {
	enum update_state state;
	int from_version, to_version;
	struct update_spec policy;
	size_t n; /* instances in the update */
	int *instances;
	enum update_instance_status *status;
	int *failures;
	char **old_task; /* start_first: the task being replaced */
	int failed_instances;
	int64_t started_ms, finished_ms;
	char message[256];
	bool restart; /* a rolling restart: same version, every instance a new task */
};

enum job_outcome { JOB_OUTCOME_RUNNING = 0, JOB_OUTCOME_FINISHED, JOB_OUTCOME_FAILED };

struct job {
	char *key;
	int version; /* current config version */
	struct job_version *versions;
	size_t nversions;
	bool killed;
	int64_t created_ms, updated_ms;
	struct task **active; /* per instance: the active task, or NULL */
	size_t nactive;	      /* length of active[] */
	struct task **ended;  /* ended tasks kept for history, oldest first */
	size_t nended;
	bool *instance_done; /* batch: the instance finished or failed for good */
	size_t ninstance_done;
	struct update *update; /* the newest update, or NULL */
	size_t live;	       /* its non-terminal tasks, in active[] or not */
	int64_t cron_last_ms;  /* cron: the scheduled time of the last run started */
	int cron_runs;
	char *cron_message; /* why the last cron run did not start (quota), or NULL */
	struct quota_amount quota_counted; /* in its role's quota use (cluster_quota.c) */
	struct system_slots *system;	   /* system jobs: instance -> node (cluster_system.h) */
};

struct node {
	char *name;
	char *id;
	enum node_state state;
	bool drain_requested; /* the operator drained it (survives restarts) */
	struct spec_kv *attrs;
	size_t nattrs;
	double cpu_total, cpu_used;
	uint64_t mem_total, mem_used, disk_total, disk_used;
	int port_lo, port_hi;
	struct port_pool *ports;
	char *addr;	     /* the agent's own HTTP address (logs) */
	int subnet;	     /* its /24 of the cluster network (index in the range), -1 = none */
	uint32_t addrs_used; /* its network: bridge tasks (each holds an address) */
	int64_t last_seen_mono;
	struct node_live *live; /* its heartbeat stamps (c->live) */
	uint64_t record_hash;	/* of the record last persisted: unchanged, not written */
	/* Flapping (DOWN -> up again, repeatedly): no new placements until
	 * backoff_until_mono; the back-off doubles per flap, reset after a
	 * stable period. */
	int flaps;
	int64_t up_since_mono; /* when it last came up */
	int64_t down_mono;     /* when it was judged DOWN (0: not since it came up) */
	int64_t backoff_until_mono;
	bool in_backoff;
	/* Tasks it ran when it went DOWN (ids): kept in its desired set after
	 * it returns, until its next full report says which it still runs
	 * (those are taken back where their replacement has not started). */
	char **held;
	size_t nheld;
	int64_t held_until_mono;
	size_t sched_index; /* its slot in the scheduler's node array */
	bool changed;	    /* in cluster.changed */
	void *watchers;	    /* the server's suspended watches of this node */
	uint64_t desired_version;
	struct hmap tasks; /* id -> struct task*, tasks assigned here */
};

/* Addresses a node's /24 gives tasks: .2 to .254 (.1 is its bridge). */
#define NODE_SUBNET_ADDRS 253

struct cluster_config {
	int64_t heartbeat_ms;	   /* agents watch with this timeout */
	int64_t down_after_ms;	   /* no contact this long: node DOWN */
	int64_t flap_threshold_ms; /* a task that dies sooner died quickly */
	int64_t throttle_base_ms;  /* back-off after the 2nd quick death */
	int64_t throttle_max_ms;
	size_t ended_keep;	      /* ended tasks kept per job */
	int64_t ended_max_age_ms;     /* and for at most this long */
	size_t sample_limit;	      /* placement sampling */
	bool cron_local_time;	      /* cron schedules in the process's TZ (else UTC) */
	int64_t flap_backoff_base_ms; /* a node back from DOWN: no placements this long */
	int64_t flap_backoff_max_ms;  /* doubling per flap up to this */
	int64_t flap_stable_ms;	      /* up this long: its flaps are forgotten */
	struct cidr cluster_cidr;     /* the tasks' network; a /24 of it per node */
	size_t preempt_max_victims;   /* tasks preempted per scheduling round at most */
	/* Heartbeats per second the server takes at most (0: no limit): with
	 * more nodes than heartbeat_ms allows within it, the heartbeat and
	 * down_after both grow in proportion (cluster_pace_heartbeats). */
	int64_t max_heartbeats;
};

/* The heartbeat agents are asked for now, and the silence that makes a
 * node DOWN now: the configured ones, scaled up when the nodes would send
 * more than max_heartbeats per second (docs/protocol.md, "Heartbeats at
 * scale"). Callable without the cluster lock. */
struct cluster;
int64_t cluster_heartbeat_ms(const struct cluster *c);
int64_t cluster_down_after_ms(const struct cluster *c);

struct cluster {
	pthread_mutex_t lock;
	pthread_cond_t wake; /* the commit loop sleeps on it */
	struct cluster_config cfg;
	struct store *store;
	struct hmap jobs;      /* key -> struct job* */
	struct hmap tasks;     /* id -> struct task* (active and kept ended) */
	struct hmap nodes;     /* name -> struct node* */
	struct hmap secrets;   /* ROLE/NAME -> its sealed versions (cluster_secrets.c) */
	struct hmap quotas;    /* ROLE -> its quota (cluster_quota.c) */
	struct hmap quota_use; /* ROLE -> the sum of its jobs' quota_counted */
	struct store_batch *pending;
	struct node **changed; /* nodes whose desired set changed since last looked */
	size_t nchanged, changed_cap;
	struct task **dirty; /* tasks to write at the next commit (NULL = freed) */
	size_t ndirty, dirty_cap;
	struct sbuf record_buf; /* a task record's text, reused from one to the next */
	uint32_t report_mark;	/* bumped by each agent report (task.report_mark) */
	uint64_t applied_seq;	/* bumped by each mutation */
	uint64_t committed_seq;
	bool sched_needed;
	size_t sched_offset;
	struct task *waiting; /* PENDING and THROTTLED tasks (intrusive list) */
	size_t nwaiting;
	int64_t loaded_mono; /* grace for agents after a server start */
	int64_t pruned_mono; /* last age pruning of ended tasks */
	int64_t judged_mono; /* the heartbeat judge's last look */
	/* heartbeat_ms and down_after_ms scaled to the node count
	 * (cluster_pace_heartbeats, by the judge); read without the lock. */
	_Atomic int64_t heartbeat_now_ms, down_after_now_ms;
	int64_t paced_logged_mono, paced_logged_hb; /* the last log line about them */
	/* nodes_drain's last scan: at nodes_gen, and whether a node drained */
	uint64_t drain_scanned_gen;
	bool drain_scanned, drain_busy;
	int64_t lag_logged_mono;    /* last intake-lag warning (nodes_check_heartbeats) */
	struct token_table *tokens; /* the cluster's tokens (tokens.h), own lock */
	struct liveness *live;	    /* heartbeat stamps and deaf time (liveness.h) */
	uint64_t changes;	    /* bumped by every change of state (watches: wake or not) */
	uint64_t net_version;	    /* bumped when a node's subnet or address changes */
	uint64_t nodes_down_total;  /* nodes judged DOWN since start */
	uint64_t preempted_total;   /* tasks preempted since start */
	uint64_t nodes_gen;	    /* bumped when a node's state or attributes change */
	int64_t system_mono;	    /* system jobs' last full reconcile (cluster_system.c) */
	/* Nodes and jobs sorted by name, for paged views; rebuilt when a node
	 * or job came or went (its gen moved). */
	struct name_index {
		void **items;
		size_t n;
		uint64_t gen, built_gen;
	} node_index, job_index;
	/* Replicas (HA followers, cluster_replica_*): */
	bool derived_stale;  /* records changed since cluster_derive() */
	struct hmap orphans; /* key -> record naming a job or node not known yet */
	bool orphans_retry;  /* jobs or nodes arrived since they were set aside */
	/* Endpoints (cluster_endpoints.c): bumped whenever a task enters or
	 * leaves RUNNING, a job or node goes, or a node's address changes;
	 * starts from the clock, so a new leader never repeats one. The whole
	 * table's text is rendered once per version, for every watch. */
	uint64_t endpoints_version;
	char *endpoints_text;
	uint64_t endpoints_text_version;
	/* The change log for deltas: the job key each version changed, by
	 * version % ENDPOINTS_LOG; versions after endpoints_log_from are all
	 * in it. The last delta's text is kept for the agents that ask for the
	 * same one. */
	char **endpoints_log;
	uint64_t endpoints_log_from;
	char *endpoints_delta_text;
	uint64_t endpoints_delta_from, endpoints_delta_to;
	/* What /metrics shows (cluster_stats.h) and the event log (events.h,
	 * its own lock), fed by cluster_notes.c. */
	struct cluster_stats stats;
	struct event_log *events;
};

struct cluster *cluster_new(struct store *st, const struct cluster_config *cfg);
void cluster_free(struct cluster *c);
void cluster_config_defaults(struct cluster_config *cfg);

/* Load jobs, tasks and nodes from the store (at start). */
int cluster_load(struct cluster *c, struct berr *err);

/* Replicas: an HA follower keeps the state current by applying the leader's
 * records as the store's watch delivers them (store_follow), answers reads
 * from it, and leads from it when elected, without loading anything.
 *   reset:   forget everything (a full copy of the store follows);
 *   apply:   one record put (value, len) or deleted (value NULL), in the
 *            store's order; records may refer to ones not seen yet;
 *   refresh: bring what reads look at (usage, per-job views) up to date;
 *   promote: this server leads now: the state is as cluster_load leaves it. */
void cluster_replica_reset(struct cluster *c);
void cluster_replica_apply(struct cluster *c, const char *key, const char *value, size_t len);
void cluster_replica_refresh(struct cluster *c);
void cluster_replica_promote(struct cluster *c);

/* Jobs. Each returns the seq to wait for, or 0 with err set (err->code is
 * the HTTP status). */
struct submit_result {
	bool created, changed;
	bool update; /* a rolling update started */
	int version;
};
uint64_t cluster_job_submit(struct cluster *c, struct job_spec *spec, struct submit_result *res,
			    struct berr *err);
/* Like cluster_job_submit; a changed task config updates only the instances
 * in [first, last] (a canary), the others keep their version. */
uint64_t cluster_job_submit_instances(struct cluster *c, struct job_spec *spec, int first, int last,
				      struct submit_result *res, struct berr *err);
/* Update control: "pause", "resume", "abort", "rollback". */
uint64_t cluster_update_control(struct cluster *c, const char *key, const char *action,
				struct berr *err);
/* {"job", "state", "from_version", "to_version", "instances": [{instance, status,
 *  failures}], "updated", "failed", "total", "message"} (new ref). */
json_t *cluster_update_json(const struct cluster *c, const char *key, struct berr *err);
/* Cron: run a cron job now (its collision policy applies). */
uint64_t cluster_cron_start(struct cluster *c, const char *key, struct berr *err);
/* [{"job", "schedule", "collision", "last_run_ms", "next_run_ms", "next_run",
 *   "running", "runs"}] (new ref): every role's cron jobs, or only those of
 * `role` when not NULL (a role's token sees its own). */
json_t *cluster_cron_list_json(const struct cluster *c, const char *role);
/* What submitting spec would change, without changing anything:
 * {"job", "changed", "create", "version", "next_version",
 *  "diff": [{"field", "old", "new"}],
 *  "instances": {"add", "remove", "update", "unchanged"}, "fits", "fit_message"?}.
 * Does not take ownership of spec. */
json_t *cluster_job_plan(struct cluster *c, struct job_spec *spec, struct berr *err);
uint64_t cluster_job_kill(struct cluster *c, const char *key, struct berr *err);
/* Restart a job's tasks: one instance (instance >= 0) at once; else every
 * instance, all at once or (the default) in batches of the job's update
 * policy, health-gated like an update (a "restart" update). */
uint64_t cluster_job_restart(struct cluster *c, const char *key, int instance, bool all_at_once,
			     struct berr *err);

/* Nodes and agents. */
uint64_t cluster_agent_register(struct cluster *c, json_t *body, json_t **reply, struct berr *err);
/* A watch: heartbeat + full-state report. Sets *changed when the node's
 * desired set differs from known_version. */
struct agent_report; /* core/agent_report.h: the body, read without a tree */
uint64_t cluster_agent_watch(struct cluster *c, const struct agent_report *body,
			     struct node **node_out, struct berr *err);
uint64_t cluster_agent_status(struct cluster *c, const struct agent_report *body, struct berr *err);
/* The desired set for a node: {"version": N, "tasks": [...]} (new ref);
 * every task in full. */
json_t *cluster_node_desired(struct cluster *c, struct node *n);
/* The cluster network as the named node sees it (POST /v1/agent/network):
 * {version, cluster_cidr, subnet?, peers: [{name, ip, subnet}]}; 404 when
 * the node is not registered. */
json_t *cluster_node_network(struct cluster *c, const char *name, struct berr *err);
/* The same as the JSON text a watch answers with (caller frees): tasks
 * assigned at or before `known` are listed by id only ({"id": ...}); known =
 * 0 lists every task in full. */
char *cluster_node_desired_text(struct cluster *c, struct node *n, uint64_t known);
uint64_t cluster_node_drain(struct cluster *c, const char *name, bool drain, struct berr *err);

/* The routing mesh (cluster_mesh.c). */
/* A spec's published ports are free: 409 naming the job that owns one, 400
 * when one lies in a node's task port range. */
int cluster_mesh_check_publish(struct cluster *c, const struct job_spec *spec, struct berr *err);
/* The agents' feed of published ports: {"services": [{"port", "job",
 * "target", "mode", "drain_delay"}]}, jobs not killed. New ref. */
json_t *cluster_mesh_json(struct cluster *c);

/* Secrets (cluster_secrets.c): sealed values only; the routes seal and open
 * them (secret_box.h). name is ROLE/NAME, already checked. */
/* The version the next cluster_secret_put of `name` must carry. */
int cluster_secret_next_version(const struct cluster *c, const char *name);
/* Store a new sealed version; every job that uses the secret gets a new
 * job version (a rolling update). *reply: {"name", "version", "size",
 * "jobs": [{"job", "version"}]} (new ref). */
uint64_t cluster_secret_put(struct cluster *c, const char *name, int version, const char *sealed,
			    const char *key_id, size_t size, json_t **reply, struct berr *err);
/* Remove a secret (409 while a job uses it). */
uint64_t cluster_secret_delete(struct cluster *c, const char *name, struct berr *err);
/* [{"name", "version", "size", "created_ms", "created", "versions": [{"version",
 *  "size", "created_ms"}], "jobs": [KEY]}] sorted by name, of one role or
 * all (role NULL): never a value. New ref. */
json_t *cluster_secrets_json(struct cluster *c, const char *role);
/* What an agent fetches for a task it launches: only when the task is
 * placed on `node` and its job lists the secrets (`only`: a JSON array of
 * NAMEs, or NULL for all of the task's); otherwise NULL with err 403.
 * [{"name", "full_name", "path", "version", "key_id", "sealed"}] (new ref). */
json_t *cluster_task_secrets(struct cluster *c, const char *node, const char *task_id, json_t *only,
			     struct berr *err);

/* Endpoints (cluster_endpoints.c): where a job's RUNNING (hence healthy:
 * a task with a health check is RUNNING once it passed) instances answer.
 * One endpoint: {"instance", "task", "node", "address", "ports": {NAME: PORT}}.
 * The address is the task's own when it has one, else its node's (the host
 * of the agent's registered addr). */
/* {"job", "version", "endpoints": [ENDPOINT...]} (new ref); 404 for an
 * unknown job. */
json_t *cluster_job_endpoints_json(const struct cluster *c, const char *key, struct berr *err);
/* Every job's endpoints as JSON text, {"KEY": [ENDPOINT...], ...} (jobs
 * with no endpoint included: their names exist). Cached per
 * endpoints_version; owned by the cluster, valid until the lock is
 * released. */
const char *cluster_endpoints_text(struct cluster *c);
/* What changed since version `from`: {"KEY": [ENDPOINT...] | null, ...}
 * (null: the job went), or NULL when the log does not reach back that
 * far (send the whole table). Owned by the cluster, valid until the lock
 * is released. */
const char *cluster_endpoints_delta_text(struct cluster *c, uint64_t from);

/* Periodic work: scheduling, throttles, heartbeat deadlines, drains. Returns
 * the seq of what it changed (0 when nothing). */
uint64_t cluster_tick(struct cluster *c);

/* Views (new references). */
json_t *cluster_job_status_json(const struct cluster *c, const char *key, bool all,
				struct berr *err);
json_t *cluster_job_list_json(struct cluster *c);
json_t *cluster_node_list_json(struct cluster *c);

/* Large views, paged: a snapshot is copied under the lock (only what the
 * page may need), and written as JSON text outside it, sorted by name (by
 * job key). limit 0 = no limit; after NULL = from the start. The text is
 * the plain array, or with `paged` {"nodes"|"jobs": [...], "next": NAME|null}
 * (next: pass it as `after` for the following page). */
struct view_filter {
	const char *after;
	size_t limit;
	int state;	  /* nodes: an enum node_state, or -1 for any */
	const char *role; /* jobs: only this role's, or NULL */
};
struct view_rows;
struct view_rows *cluster_node_rows(struct cluster *c, const struct view_filter *f);
struct view_rows *cluster_job_rows(struct cluster *c, const struct view_filter *f);
/* Without the lock; frees rows; the caller frees the text. */
char *view_rows_render(struct view_rows *rows, bool paged);
void view_rows_free(struct view_rows *rows);
json_t *cluster_task_json(const struct cluster *c, const char *id, struct berr *err);
/* Find a task by id, or by "role/env/name/instance" (the active one, else
 * the newest ended one). */
struct task *cluster_find_task(const struct cluster *c, const char *ref);
/* A token made or revoked (tokens.h): in the table at once, in the store
 * at the returned seq (0: no such token to revoke). */
uint64_t cluster_token_put(struct cluster *c, const struct token_rec *rec);
uint64_t cluster_token_delete(struct cluster *c, const char *id);

/* The cluster's figures in the Prometheus text format (cluster_metrics.c):
 * jobs, tasks, placements, pending reasons, nodes, heartbeat lags, updates.
 * Walks jobs and nodes, never every task. */
void cluster_metrics_write(struct cluster *c, struct sbuf *sb);
/* A leadership change, for the event log: state "leader" or "follower". */
void cluster_note_leader(struct cluster *c, const char *state, const char *msg);

/* Take the pending batch for committing (NULL when empty); *seq is the
 * applied_seq it covers. */
struct store_batch *cluster_take_pending(struct cluster *c, uint64_t *seq);
/* Let go of t->message (freed unless interned); t->message is NULL after. */
void task_message_release(struct task *t);
/* The commit loop committed everything up to seq. */
void cluster_set_committed(struct cluster *c, uint64_t seq);
/* seq is durable: what waited for it may be acknowledged. */
bool cluster_committed(const struct cluster *c, uint64_t seq);
/* Changes were applied that are not committed yet. */
bool cluster_uncommitted(const struct cluster *c);

/* The agents' grace window. While the server cannot hear its agents (a
 * backup's scan holds a request thread), no node may be judged DOWN: hold
 * stops the judge, grace starts it again with a full detection window for
 * every agent (as after a server start). */
void cluster_judge_hold(struct cluster *c);
void cluster_judge_grace(struct cluster *c);

/* Watches. The server keeps the watches it holds for a node in a list of
 * its own, headed at *cluster_node_watchers(n) (NULL: none). */
void **cluster_node_watchers(struct node *n);
/* Call fn for each node whose desired set changed since the last call
 * (each once), and forget them. */
void cluster_take_changed_nodes(struct cluster *c, void (*fn)(void *ud, struct node *n), void *ud);
/* Call fn for each node with watches held. */
void cluster_each_watched_node(struct cluster *c, void (*fn)(void *ud, struct node *n), void *ud);

#endif
