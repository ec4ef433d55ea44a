/* cluster-internal.h - what the files of the cluster module share; nothing
 * outside src/server/cluster*.c includes it (cluster.h is the public API).
 *
 * The rooms, and who owns what:
 *
 *   cluster.c          the state: new/free, the only code that links tasks
 *                      into jobs and nodes (create, transition, stop, end,
 *                      history, removal, derive), and the tick
 *   cluster_records.c  the store's records: keys and field names, each
 *                      record's encoding beside its decoding
 *   cluster_replica.c  loading at start, and an HA follower's replica
 *   cluster_jobs.c     job commands (submit, kill, restart, plan) and what
 *                      replaces a task that ended
 *   cluster_updates.c  the rolling-update engine
 *   cluster_cron.c     cron jobs
 *   cluster_nodes.c    nodes and agents: register, watch, status, desired
 *                      sets, heartbeats, drain, flap back-off, take-back
 *   cluster_sched.c    the glue to src/sched's placement
 *   cluster_preempt.c  the glue to src/sched's preemption; reservations
 *   cluster_views.c    read-only JSON views
 *   cluster_endpoints.c where jobs' RUNNING instances answer: the view, the
 *                      table and deltas the agents follow
 *
 * A controller (jobs, updates, cron, nodes, sched) changes tasks, jobs and
 * nodes through the functions of the state below, and writes records
 * through persist_*. Every function here expects c->lock held.
 */
#ifndef BERTH_CLUSTER_INTERNAL_H
#define BERTH_CLUSTER_INTERNAL_H

#include "sched/placement.h"
#include "server/cluster.h"

/* The heartbeat judge looks this often at most. */
#define JUDGE_EVERY_MS 50

/* ---- state (cluster.c) ---- */

/* Bump applied_seq and wake the commit loop: the seq a caller waits for. */
uint64_t cluster_touched(struct cluster *c);
struct job_version *job_version_get(struct job *j, int version);
const struct job_spec *task_spec_of(const struct task *t);
/* Free what a task's record fills (message, ancestor, ports, events). */
void task_clear_record(struct task *t);
void task_add_event(struct task *t, enum task_state s, const char *msg, int64_t now);
/* The node's desired set changed (the server answers its watches). */
void node_touch(struct cluster *c, struct node *n);
/* Apply a transition if the lifecycle table allows it (false: refused). */
bool task_transition(struct cluster *c, struct task *t, enum task_state to, const char *msg);
/* A new task for instance `instance` of j, PENDING (or THROTTLED for
 * throttle_ms); ancestor: the task it replaces, or NULL. */
struct task *task_create(struct cluster *c, struct job *j, int instance,
			 const struct task *ancestor, const char *why, int64_t throttle_ms);
/* Stop a task on purpose (via KILLING, RESTARTING, DRAINING...). */
void task_stop(struct cluster *c, struct task *t, enum task_state via, const char *msg);
bool task_stopping(const struct task *t);
/* Mark the task's record to be written at the next commit. */
void persist_task(struct cluster *c, struct task *t);
/* Link a placed task to node n: its resources and ports are n's. */
void task_charge_node(struct node *n, struct task *t);
/* Remove a task from memory and the store (t must be in no job's lists). */
void task_destroy(struct cluster *c, struct task *t);
void job_ensure_instances(struct job *j, size_t n);
struct job *job_new(struct cluster *c, const char *key);
void job_add_version(struct job *j, int version, struct job_spec *spec, json_t *json);
void job_clear_versions(struct job *j);
bool job_has_active(const struct job *j);
int job_max_version(const struct job *j);
/* Forget job j, its ended tasks and its records (no task of it lives). */
void job_forget(struct cluster *c, struct job *j);
/* Forget job j and every task of it, in memory only (a follower saw its
 * record deleted, or its record does not load). */
void job_remove(struct cluster *c, struct job *j);
void job_free(struct job *j);
struct node *node_new(struct cluster *c, const char *name);
/* Forget node n (its record was deleted); its tasks keep no node. */
void node_remove(struct cluster *c, struct node *n);
/* A task's record was deleted (followers). */
void task_remove(struct cluster *c, struct task *t);
/* Free every task, job, node and set-aside record, and their maps. */
void cluster_release_state(struct cluster *c);
/* Rebuild what derives from the records: per node its tasks and usage,
 * per job its active, ended and live tasks, the waiting list. */
void cluster_derive(struct cluster *c);

/* ---- endpoints (cluster_endpoints.c) ---- */

/* Some jobs' endpoints may have changed (which ones is not known: agents
 * behind get the whole table): watches that follow them answer. */
void endpoints_touch(struct cluster *c);
/* Job `key`'s endpoints may have changed (agents behind get a delta). */
void endpoints_touch_job(struct cluster *c, const char *key);
/* Free the endpoints' texts and change log. */
void endpoints_release(struct cluster *c);
/* A transition from -> to changes the endpoints (enters or leaves RUNNING). */
static inline bool endpoints_moved(enum task_state from, enum task_state to)
{
	return (from == TASK_RUNNING) != (to == TASK_RUNNING);
}

/* ---- records (cluster_records.c) ---- */

enum apply_result { APPLIED = 0, ORPHAN = 1 };

void persist_job(struct cluster *c, struct job *j);
void persist_node(struct cluster *c, struct node *n);
void persist_update(struct cluster *c, struct job *j);
/* The task's record, written from the dirty list when a batch is taken. */
void record_write_task(struct cluster *c, struct task *t);
void record_delete_task(struct cluster *c, const struct task *t);
void record_delete_job(struct cluster *c, const struct job *j);
/* A record put: APPLIED (or ignored), or ORPHAN (it names a job or node
 * not known yet; final: nothing more will come, so never ORPHAN). */
int record_apply(struct cluster *c, const char *key, const char *value, size_t len, bool final);
/* A record deleted (followers only: a load sees no deletes). */
void record_apply_delete(struct cluster *c, const char *key);
/* The key names a job or a node (records that others refer to). */
bool record_is_parent(const char *key);
/* Apply every record of the store, parents first. */
int records_load(struct cluster *c, struct berr *err);
/* `key:integer`, as the records and views write it. */
void sbuf_add_int_field(struct sbuf *sb, const char *key, long long v);

/* ---- controllers, called from the tick and from the state ---- */

/* jobs: what replaces task t, which has just ended (cluster_jobs.c). */
void job_task_ended(struct cluster *c, struct task *t, int64_t now);
/* updates (cluster_updates.c) */
void update_free(struct update *u);
void update_begin(struct cluster *c, struct job *j, int from, int first, int last);
/* A rolling restart of every instance on the job's current version. */
void update_begin_restart(struct cluster *c, struct job *j);
void update_end_restart(struct cluster *c, struct job *j, const char *why);
void update_note_failure(struct cluster *c, struct job *j, const struct task *t);
void updates_advance(struct cluster *c);
/* The job is killed: the old tasks start_first keeps beside new ones stop. */
void update_stop_for_kill(struct cluster *c, struct job *j);
const char *update_instance_status_name(enum update_instance_status s);
/* cron (cluster_cron.c) */
void crons_fire(struct cluster *c, int64_t now);
/* nodes (cluster_nodes.c) */
void node_set_attrs(struct node *n, json_t *attrs);
void node_set_resources(struct node *n, json_t *res);
void nodes_check_heartbeats(struct cluster *c, int64_t mono);
void nodes_drain(struct cluster *c);
/* scheduling (cluster_sched.c) */
void tasks_unthrottle(struct cluster *c, int64_t now);
void schedule_pending(struct cluster *c);
/* The scheduler's view of every node (caller frees both arrays). */
void node_view(struct cluster *c, struct node ***nodes_out, struct placement_node **pn_out,
	       size_t *nn_out);

/* Assign PENDING task t (config jv) to node n: its resources and ports
 * are n's from now on (cluster_sched.c). */
void task_assign(struct cluster *c, struct task *t, struct node *n, const struct job_version *jv);

/* preemption (cluster_preempt.c) */
struct preempt_round;
struct preempt_round *preempt_round_new(struct cluster *c, struct node **nodes,
					struct placement_node *pn, size_t nn);
void preempt_round_free(struct preempt_round *r);
/* tasks[0..nt) of one class (spec) fit nowhere: preempt for them, within
 * the round's budget. pn's job_tasks count the job's tasks per node. */
void preempt_for_class(struct preempt_round *r, const struct job_spec *spec, struct task **tasks,
		       size_t nt);
/* Pending tasks that hold a node's room: assigned there when it fits and
 * their job's hard constraints still hold there, else the room stays
 * theirs; either way they leave pending[] (*np shrinks). One whose
 * constraints no longer hold loses its reservation and stays in pending[]. */
void preempt_reservations(struct cluster *c, struct node **nodes, struct placement_node *pn,
			  size_t nn, struct task **pending, size_t *np);
/* job plan: {"preempt": [ids of the tasks that would be preempted to
 * place `unplaced` more tasks of spec on the view], "fits_with_preemption"}
 * (new ref; merged into the plan). */
json_t *plan_preemption(struct cluster *c, const struct job_spec *spec, size_t unplaced,
			struct node **nodes, struct placement_node *pn, size_t nn);
/* The "preempted by alice/prod/web/3" message of an ended task's
 * PREEMPTING event, or NULL. */
const char *task_preempted_by(const struct task *t);
/* A replacement of a preempted task: its creation's "preempted by ..."
 * (len chars), or NULL. */
const char *task_preempt_note(const struct task *t, size_t *len);

/* secrets (cluster_secrets.c) */
/* Free every secret and release the map. */
void secrets_release(struct cluster *c);
int secret_record_apply(struct cluster *c, const char *key, const char *value, size_t len);
void secret_record_delete(struct cluster *c, const char *key);
/* Set each task.secrets[i].version to the secret's newest; 400 naming the
 * first one that does not exist. */
int job_secrets_resolve(struct cluster *c, struct job_spec *spec, struct berr *err);

/* A job's status as views show it: "running", "killing", "scheduled",
 * "finished", "failed" (cluster_views.c; a static string). */
const char *job_outcome(const struct job *j);

/* ---- notes (cluster_notes.c): figures for /metrics, events ---- */

void cluster_notes_init(struct cluster *c);
void cluster_notes_release(struct cluster *c);
/* A task was made (its state counted) or is gone for good. */
void note_task_created(struct cluster *c, const struct task *t);
void note_task_gone(struct cluster *c, const struct task *t);
/* Task t went from `from` (entered at from_ms) to its state now. */
void note_task_state(struct cluster *c, const struct task *t, enum task_state from, int64_t from_ms,
		     const char *msg);
/* Count the tasks by state afresh (after a load). */
void note_tasks_recount(struct cluster *c);
/* The waiting tasks by reason class (after a scheduling pass). */
void note_pending_reasons(struct cluster *c);
void note_job(struct cluster *c, const char *key, const char *state, const char *msg);
/* Node n's state changed (or it registered). */
void note_node(struct cluster *c, const struct node *n, const char *msg);
/* An update's state (instance -1) or one instance's progress. */
void note_update(struct cluster *c, const struct job *j, int instance, const char *state,
		 const char *msg);

/* ---- loading (cluster_replica.c) ---- */

/* After a load or a promotion: the server leads from this state. */
void cluster_load_finish(struct cluster *c);

#endif
