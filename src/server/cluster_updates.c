/* cluster_updates.c - the rolling-update engine (Aurora's updater).
 *
 * An update moves instances from one config version to another, batch by
 * batch (update_begin starts it, update_advance moves it each tick); each
 * instance goes PENDING -> UPDATING -> WATCHING -> DONE (or FAILED past
 * max_instance_failures); failures past max_total_failures roll back (or
 * fail). Its record is written by persist_update (cluster_records.c).
 */
#include "server/cluster-internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"

static const char *const update_state_names[] = {
    "ROLLING_FORWARD",	"ROLL_FORWARD_PAUSED", "ROLLED_FORWARD", "ROLLING_BACK",
    "ROLL_BACK_PAUSED", "ROLLED_BACK",	       "ABORTED",	 "FAILED"};

static const char *const ui_names[] = {"PENDING", "UPDATING", "WATCHING", "DONE", "FAILED"};

static void update_advance(struct cluster *c, struct job *j, int64_t now);

const char *update_state_name(enum update_state s)
{
	return (unsigned)s < ARRAY_SIZE(update_state_names) ? update_state_names[s] : "UNKNOWN";
}

const char *update_instance_status_name(enum update_instance_status s)
{
	return (unsigned)s < ARRAY_SIZE(ui_names) ? ui_names[s] : "UNKNOWN";
}

bool update_state_active(enum update_state s)
{
	return s == UPDATE_ROLLING_FORWARD || s == UPDATE_ROLL_FORWARD_PAUSED ||
	       s == UPDATE_ROLLING_BACK || s == UPDATE_ROLL_BACK_PAUSED;
}

void update_free(struct update *u)
{
	if (!u)
		return;
	for (size_t i = 0; i < u->n; i++)
		free(u->old_task[i]);
	free(u->old_task);
	free(u->instances);
	free(u->status);
	free(u->failures);
	free(u);
}

static int update_target(const struct update *u)
{
	return u->state == UPDATE_ROLLING_BACK || u->state == UPDATE_ROLL_BACK_PAUSED ||
		       u->state == UPDATE_ROLLED_BACK
		   ? u->from_version
		   : u->to_version;
}

static ssize_t update_slot(const struct update *u, int instance)
{
	for (size_t k = 0; k < u->n; k++)
		if (u->instances[k] == instance)
			return (ssize_t)k;
	return -1;
}

/* start_first keeps an instance's old task running beside its new one
 * (old_task[k]) until the new one runs. An update that ends (aborted,
 * failed, superseded) before that stops those old tasks: each instance
 * keeps the one task the update gave it. A task that task_stop would end at
 * once (its node is gone) is left to end on its own, so that no task ends
 * inside another task's end (update_note_failure runs in handle_task_end). */
static void update_stop_old_tasks(struct cluster *c, struct job *j)
{
	struct update *u = j->update;
	for (size_t k = 0; k < u->n; k++) {
		if (!u->old_task[k])
			continue;
		struct task *old = hmap_get(&c->tasks, u->old_task[k]);
		free(u->old_task[k]);
		u->old_task[k] = NULL;
		if (old && !task_state_terminal(old->state) && old->node &&
		    old->node->state != NODE_DOWN && old->state != TASK_PARTITIONED)
			task_stop(c, old, TASK_KILLING, "replaced by an update");
	}
}

static void update_set_state(struct cluster *c, struct job *j, enum update_state st,
			     const char *msg)
{
	struct update *u = j->update;
	u->state = st;
	if (msg) {
		snprintf(u->message, sizeof u->message, "%s", msg);
		utf8_clean(u->message); /* a cut may split a character */
	}
	if (!update_state_active(st)) {
		u->finished_ms = time_now_ms();
		update_stop_old_tasks(c, j);
	}
	log_info("update of %s: %s%s%s", j->key, update_state_name(st), msg ? ": " : "",
		 msg ? msg : "");
	persist_update(c, j);
}

/* Roll back: every instance of the update goes back to the old version. */
static void update_start_rollback(struct cluster *c, struct job *j, const char *why)
{
	struct update *u = j->update;
	for (size_t k = 0; k < u->n; k++) {
		u->status[k] = UI_PENDING;
		u->failures[k] = 0;
	}
	u->failed_instances = 0;
	j->version = u->from_version;
	update_set_state(c, j, UPDATE_ROLLING_BACK, why);
	persist_job(c, j);
}

/* Instance k of the update has failed: count it, and past the policy's
 * max_total_failures the update fails (rolls back, or stops as FAILED). */
static void update_fail_instance(struct cluster *c, struct job *j, size_t k, const char *why)
{
	struct update *u = j->update;
	u->status[k] = UI_FAILED;
	u->failed_instances++;
	if (u->failed_instances <= u->policy.max_total_failures) {
		persist_update(c, j);
		return;
	}
	if ((u->state == UPDATE_ROLLING_FORWARD || u->state == UPDATE_ROLL_FORWARD_PAUSED) &&
	    u->policy.rollback_on_failure)
		update_start_rollback(c, j, why);
	else
		update_set_state(c, j, UPDATE_FAILED, why);
}

/* A task of the update's target version ended badly: count it. */
void update_note_failure(struct cluster *c, struct job *j, const struct task *t)
{
	struct update *u = j->update;
	if (!u || !update_state_active(u->state) || t->version != update_target(u) ||
	    t->no_replace || t->replace_on_end ||
	    (t->state != TASK_FAILED && t->state != TASK_LOST && t->state != TASK_KILLED))
		return;
	if (task_preempted_by(t))
		return; /* preempted: not the new version's fault */
	ssize_t k = update_slot(u, t->instance);
	if (k < 0 || u->status[k] == UI_DONE || u->status[k] == UI_FAILED ||
	    u->status[k] == UI_PENDING)
		return;
	u->failures[k]++;
	if (u->failures[k] <= u->policy.max_instance_failures) {
		persist_update(c, j);
		return;
	}
	char why[300];
	snprintf(why, sizeof why, "instance %d failed (%s)", t->instance, t->message);
	update_fail_instance(c, j, (size_t)k, why);
}

/* Start a rolling update of instances [first, last] to the job's current
 * version. An update in flight is superseded (ABORTED where it stands). */
void update_begin(struct cluster *c, struct job *j, int from, int first, int last)
{
	const struct job_spec *spec = job_version_get(j, j->version)->spec;
	if (j->update && update_state_active(j->update->state))
		update_set_state(c, j, UPDATE_ABORTED, "superseded by a newer update");
	update_free(j->update);
	struct update *u = xcalloc(1, sizeof *u);
	j->update = u;
	u->from_version = from;
	u->to_version = j->version;
	u->policy = spec->update;
	if (u->policy.batch_size < 1)
		u->policy.batch_size = 1;
	u->started_ms = time_now_ms();
	for (int i = first; i <= last && i < spec->instances; i++) {
		struct task *t = (size_t)i < j->nactive ? j->active[i] : NULL;
		if (!t || t->version == j->version)
			continue;
		u->instances = xrealloc(u->instances, (u->n + 1) * sizeof *u->instances);
		u->instances[u->n++] = i;
	}
	u->status = xcalloc(u->n + 1, sizeof *u->status);
	u->failures = xcalloc(u->n + 1, sizeof *u->failures);
	u->old_task = xcalloc(u->n + 1, sizeof *u->old_task);
	char msg[128];
	snprintf(msg, sizeof msg, "%zu instances from version %d to %d", u->n, from, j->version);
	update_set_state(c, j, u->n ? UPDATE_ROLLING_FORWARD : UPDATE_ROLLED_FORWARD, msg);
	update_advance(c, j, time_now_ms()); /* the first batch starts now */
}

/* A rollback reaches an instance whose start_first old task still runs
 * beside the new one: the old task runs the version the rollback goes back
 * to, so it becomes the instance's task again and the new one stops. */
static void update_restore_old_task(struct cluster *c, struct job *j, size_t k)
{
	struct update *u = j->update;
	struct task *old = hmap_get(&c->tasks, u->old_task[k]);
	free(u->old_task[k]);
	u->old_task[k] = NULL;
	int i = u->instances[k];
	if (!old || task_state_terminal(old->state) || task_stopping(old))
		return;
	if (old->version != update_target(u) || (size_t)i >= j->nactive) {
		task_stop(c, old, TASK_KILLING, "replaced by an update");
		return;
	}
	struct task *cur = j->active[i];
	if (cur && cur != old) {
		cur->no_replace = true;
		cur->replace_on_end = false;
		if (task_stopping(cur))
			persist_task(c, cur);
		else
			task_stop(c, cur, TASK_KILLING, "rolled back: the old task runs on");
	}
	old->no_replace = false;
	persist_task(c, old);
	j->active[i] = old;
}

/* Before a rollback moves instances: old tasks kept by start_first come
 * back, and the job goes back to the old config's instance count (instances
 * the new config added stop, instances it removed come back). Runs from the
 * tick, never inside a task's end. */
static void update_rollback_prepare(struct cluster *c, struct job *j)
{
	struct update *u = j->update;
	for (size_t k = 0; k < u->n; k++)
		if (u->old_task[k])
			update_restore_old_task(c, j, k);
	const struct job_version *fv = job_version_get(j, u->from_version);
	if (!fv || j->killed || fv->spec->type == JOB_CRON)
		return;
	int want = fv->spec->instances;
	for (size_t i = (size_t)want; i < j->nactive; i++) {
		struct task *t = j->active[i];
		if (t && !t->no_replace) {
			t->no_replace = true;
			t->replace_on_end = false;
			if (task_stopping(t))
				persist_task(c, t);
			else
				task_stop(c, t, TASK_KILLING, "instance removed by a rollback");
		}
	}
	job_ensure_instances(j, (size_t)want);
	for (int i = 0; i < want; i++) {
		struct task *t = j->active[i];
		if (!t && !j->instance_done[i]) {
			task_create(c, j, i, NULL, "task created by a rollback", 0);
		} else if (t && t->no_replace && task_stopping(t)) {
			/* Removed by the new config and still stopping: it gets a
			 * successor on the old version when it ends. */
			t->no_replace = false;
			t->replace_on_end = true;
			t->replace_version = u->from_version;
			persist_task(c, t);
		}
	}
}

/* Move one job's update along: start instances up to the batch size, watch
 * the new tasks, finish when every instance is done. */
static void update_advance(struct cluster *c, struct job *j, int64_t now)
{
	struct update *u = j->update;
	if (!u || (u->state != UPDATE_ROLLING_FORWARD && u->state != UPDATE_ROLLING_BACK))
		return;
	int target = update_target(u);
	const struct job_version *tv = job_version_get(j, target);
	if (!tv)
		return;
	if (u->state == UPDATE_ROLLING_BACK)
		update_rollback_prepare(c, j);
	size_t inflight = 0, finished = 0;
	bool changed = false;
	for (size_t k = 0; k < u->n; k++)
		if (u->status[k] == UI_UPDATING || u->status[k] == UI_WATCHING)
			inflight++;
	for (size_t k = 0; k < u->n; k++) {
		int i = u->instances[k];
		struct task *t = (size_t)i < j->nactive ? j->active[i] : NULL;
		switch (u->status[k]) {
		case UI_PENDING: {
			/* A task not placed yet has nothing to protect: it is
			 * replaced at once, outside the batch. */
			bool unplaced = t && (t->state == TASK_PENDING ||
					      t->state == TASK_THROTTLED || t->state == TASK_INIT);
			if (!unplaced && inflight >= (size_t)u->policy.batch_size)
				break;
			if (!unplaced)
				inflight++;
			changed = true;
			u->status[k] = UI_UPDATING;
			if (t && t->version == target) {
				/* A rollback caught its old task stopping for the new
				 * version: the successor runs the target instead. */
				if (t->replace_on_end && t->replace_version &&
				    t->replace_version != target) {
					t->replace_version = target;
					persist_task(c, t);
				}
				break;
			}
			if (!t) {
				if ((size_t)i < j->ninstance_done && j->instance_done[i]) {
					if (tv->spec->type != JOB_SERVICE) {
						/* A batch instance that ran to its end: nothing
						 * to update, and it is not run again. */
						u->status[k] = UI_DONE;
						break;
					}
					/* A service instance its restart policy gave up:
					 * the update gives it a new start. */
					j->instance_done[i] = false;
					persist_job(c, j);
				}
				if (i >= 0 && i < tv->spec->instances) {
					struct task tmp = {.id = "", .version = target};
					task_create(c, j, i, &tmp, "task created by an update", 0);
					free(j->active[i]->ancestor);
					j->active[i]->ancestor = NULL;
				}
				break;
			}
			char msg[128];
			snprintf(msg, sizeof msg, "%s to version %d",
				 u->state == UPDATE_ROLLING_BACK ? "rolling back" : "updating",
				 target);
			if (u->policy.order == UPDATE_START_FIRST &&
			    !task_state_terminal(t->state) && t->node) {
				/* Start the new task first; the old one stops once the
				 * new one runs. */
				free(u->old_task[k]);
				u->old_task[k] = xstrdup(t->id);
				t->no_replace = true;
				j->active[i] = NULL;
				struct task tmp = {.id = t->id, .version = target};
				task_create(c, j, i, &tmp, msg, 0);
			} else {
				t->replace_on_end = true;
				t->replace_version = target;
				task_stop(c, t, TASK_RESTARTING, msg);
			}
			break;
		}
		case UI_UPDATING:
			if (t && t->version == target && t->state == TASK_RUNNING) {
				u->status[k] = UI_WATCHING;
				changed = true;
				if (u->old_task[k]) {
					struct task *old = hmap_get(&c->tasks, u->old_task[k]);
					if (old)
						task_stop(c, old, TASK_KILLING,
							  "replaced by an update");
					free(u->old_task[k]);
					u->old_task[k] = NULL;
				}
			} else if (!t && i >= tv->spec->instances) {
				u->status[k] = UI_DONE; /* the instance went away */
				changed = true;
			} else if (!t && (size_t)i < j->ninstance_done && j->instance_done[i]) {
				changed = true;
				if (tv->spec->type != JOB_SERVICE) {
					u->status[k] = UI_DONE; /* ran to its end */
				} else {
					/* Its restart policy gave the instance up. */
					enum update_state before = u->state;
					char why[160];
					snprintf(
					    why, sizeof why,
					    "instance %d failed (given up by its restart policy)",
					    i);
					update_fail_instance(c, j, k, why);
					if (u->state != before)
						return; /* rolling back or failed: a new pass */
				}
			}
			break;
		case UI_WATCHING:
			if (!t || t->version != target || t->state != TASK_RUNNING) {
				u->status[k] = UI_UPDATING;
				changed = true;
			} else if (now - t->running_since_ms >= (int64_t)u->policy.watch_ms) {
				u->status[k] = UI_DONE;
				changed = true;
			}
			break;
		case UI_DONE:
		case UI_FAILED:
			break;
		}
		if (u->status[k] == UI_DONE || u->status[k] == UI_FAILED)
			finished++;
	}
	if (finished == u->n) {
		bool back = u->state == UPDATE_ROLLING_BACK;
		char msg[sizeof u->message];
		/* A rollback keeps saying why it happened. */
		if (back)
			snprintf(msg, sizeof msg, "%zu instances back on version %d (%s)", u->n,
				 target, u->message);
		else
			snprintf(msg, sizeof msg, "%zu instances on version %d", u->n, target);
		update_set_state(c, j, back ? UPDATE_ROLLED_BACK : UPDATE_ROLLED_FORWARD, msg);
	} else if (changed) {
		persist_update(c, j);
	}
}

void update_stop_for_kill(struct cluster *c, struct job *j)
{
	for (size_t k = 0; j->update && k < j->update->n; k++) {
		struct task *old =
		    j->update->old_task[k] ? hmap_get(&c->tasks, j->update->old_task[k]) : NULL;
		if (old)
			task_stop(c, old, TASK_KILLING, "killed by user (job kill)");
	}
}

void updates_advance(struct cluster *c)
{
	int64_t now = time_now_ms();
	size_t it = 0;
	void *v;
	while (hmap_next(&c->jobs, &it, NULL, &v)) {
		struct job *j = v;
		if (j->update && !j->killed)
			update_advance(c, j, now);
	}
}

uint64_t cluster_update_control(struct cluster *c, const char *key, const char *action,
				struct berr *err)
{
	struct job *j = hmap_get(&c->jobs, key);
	if (!j || j->killed) {
		berr_set(err, 404, "job '%s' not found", key);
		return 0;
	}
	struct update *u = j->update;
	if (!u || !update_state_active(u->state)) {
		berr_set(err, 409, "job '%s' has no update in progress", key);
		return 0;
	}
	enum update_state st = u->state;
	if (!strcmp(action, "pause")) {
		if (st == UPDATE_ROLLING_FORWARD)
			update_set_state(c, j, UPDATE_ROLL_FORWARD_PAUSED, "paused by user");
		else if (st == UPDATE_ROLLING_BACK)
			update_set_state(c, j, UPDATE_ROLL_BACK_PAUSED, "paused by user");
	} else if (!strcmp(action, "resume")) {
		if (st == UPDATE_ROLL_FORWARD_PAUSED)
			update_set_state(c, j, UPDATE_ROLLING_FORWARD, "resumed by user");
		else if (st == UPDATE_ROLL_BACK_PAUSED)
			update_set_state(c, j, UPDATE_ROLLING_BACK, "resumed by user");
	} else if (!strcmp(action, "abort")) {
		update_set_state(c, j, UPDATE_ABORTED, "aborted by user");
	} else if (!strcmp(action, "rollback")) {
		if (st == UPDATE_ROLLING_BACK || st == UPDATE_ROLL_BACK_PAUSED) {
			berr_set(err, 409, "job '%s' is already rolling back", key);
			return 0;
		}
		update_start_rollback(c, j, "rollback asked by user");
	} else {
		berr_set(err, 404, "unknown update action '%s'", action);
		return 0;
	}
	return cluster_touched(c);
}

json_t *cluster_update_json(const struct cluster *c, const char *key, struct berr *err)
{
	struct job *j = hmap_get(&c->jobs, key);
	if (!j) {
		berr_set(err, 404, "job '%s' not found", key);
		return NULL;
	}
	struct update *u = j->update;
	if (!u) {
		berr_set(err, 404, "job '%s' has had no update", key);
		return NULL;
	}
	json_t *inst = json_array();
	int updated = 0, failed = 0, watching = 0;
	for (size_t k = 0; k < u->n; k++) {
		json_array_append_new(inst,
				      json_pack("{s:i,s:s,s:i}", "instance", u->instances[k],
						"status", update_instance_status_name(u->status[k]),
						"failures", u->failures[k]));
		updated += u->status[k] == UI_DONE;
		failed += u->status[k] == UI_FAILED;
		watching += u->status[k] == UI_WATCHING;
	}
	(void)c;
	return json_pack("{s:s,s:s,s:i,s:i,s:i,s:i,s:i,s:i,s:s,s:I,s:I,s:o}", "job", j->key,
			 "state", update_state_name(u->state), "from_version", u->from_version,
			 "to_version", u->to_version, "updated", updated, "healthy",
			 updated + watching, "failed", failed, "total", (int)u->n, "message",
			 u->message, "started_ms", (json_int_t)u->started_ms, "finished_ms",
			 (json_int_t)u->finished_ms, "instances", inst);
}
