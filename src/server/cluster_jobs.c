/* cluster_jobs.c - job commands (submit, kill, restart, plan), and what
 * replaces a task that ended (the job's type and restart policy, Aurora's
 * flapping throttle). */
#include "server/cluster-internal.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "server/cluster_quota.h"

/* What replaces task t, which has just ended (handle_task_end, cluster.c). */
void job_task_ended(struct cluster *c, struct task *t, int64_t now)
{
	struct job *j = t->job;
	const struct job_version *cjv = job_version_get(j, j->version);
	const struct job_spec *cur = cjv ? cjv->spec : NULL;
	if (j->killed || t->no_replace || !cur || t->instance >= cur->instances)
		return;

	char why[300];
	const char *preempted = task_preempted_by(t);
	if (preempted) {
		/* Not its fault: replaced at once, no failure or quick death
		 * counted; it waits for room (cluster_preempt.c). */
		snprintf(why, sizeof why, "%s: replaces %s", preempted, t->id);
		task_create(c, j, t->instance, t, why, 0);
		return;
	}
	if (cur->type != JOB_SERVICE && t->state == TASK_FINISHED) {
		/* Ran to completion, even if a drain or restart was stopping it. */
		j->instance_done[t->instance] = true;
		persist_job(c, j);
		return;
	}
	if (t->replace_on_end) {
		if (t->replace_version && t->replace_version != t->version)
			snprintf(why, sizeof why, "update to version %d: replaces %s",
				 t->replace_version, t->id);
		else
			snprintf(why, sizeof why, "restart: replaces %s", t->id);
		task_create(c, j, t->instance, t, why, 0);
		return;
	}
	if (cur->type == JOB_BATCH || cur->type == JOB_CRON) {
		if (t->state == TASK_FINISHED) {
			j->instance_done[t->instance] = true;
			persist_job(c, j);
			return;
		}
		if (t->state == TASK_FAILED)
			t->failures++;
		if (t->state == TASK_FAILED && cur->max_task_failures >= 0 &&
		    t->failures >= cur->max_task_failures) {
			j->instance_done[t->instance] = true;
			persist_job(c, j);
			return;
		}
		snprintf(why, sizeof why, "retry %d: replaces %s (%s)", t->failures, t->id,
			 t->message);
		task_create(c, j, t->instance, t, why, 0);
		return;
	}
	if (cur->restart.set) {
		/* The job's restart policy: a doubling delay from `delay`, and a
		 * limit on restarts within a window. */
		const struct restart_policy *rp = &cur->restart;
		if (!t->restart_window_ms || now - t->restart_window_ms > (int64_t)rp->window_ms) {
			t->restart_window_ms = now;
			t->restarts = 0;
		}
		t->restarts++;
		if (rp->max_attempts > 0 && t->restarts > rp->max_attempts) {
			char msg[300];
			snprintf(
			    msg, sizeof msg,
			    "instance given up: %d restarts within %llds (restart.max_attempts %d)",
			    t->restarts - 1, (long long)(rp->window_ms / 1000), rp->max_attempts);
			task_add_event(t, t->state, msg, now);
			log_warn("%s instance %d: %s", j->key, t->instance, msg);
			j->instance_done[t->instance] = true;
			persist_job(c, j);
			return;
		}
		int64_t delay = (int64_t)rp->delay_ms;
		for (int i = 1; i < t->restarts && delay < (int64_t)rp->max_delay_ms; i++)
			delay *= 2;
		if (delay > (int64_t)rp->max_delay_ms)
			delay = (int64_t)rp->max_delay_ms;
		snprintf(why, sizeof why, "restart %d: replaces %s (%s)", t->restarts, t->id,
			 t->message);
		task_create(c, j, t->instance, t, why, delay);
		return;
	}
	/* A service: always replaced. Aurora's flapping throttle: the first quick
	 * death is replaced at once, then the back-off doubles per quick death. */
	int64_t ran = t->running_since_ms ? now - t->running_since_ms : 0;
	if (t->state != TASK_LOST && ran < c->cfg.flap_threshold_ms)
		t->quick_deaths++;
	else
		t->quick_deaths = 0;
	int64_t backoff = 0;
	if (t->quick_deaths >= 2) {
		backoff = c->cfg.throttle_base_ms;
		for (int i = 2; i < t->quick_deaths && backoff < c->cfg.throttle_max_ms; i++)
			backoff *= 2;
		if (backoff > c->cfg.throttle_max_ms)
			backoff = c->cfg.throttle_max_ms;
	}
	snprintf(why, sizeof why, "replaces %s (%s)", t->id, t->message);
	task_create(c, j, t->instance, t, why, backoff);
}

uint64_t cluster_job_submit(struct cluster *c, struct job_spec *spec, struct submit_result *res,
			    struct berr *err)
{
	return cluster_job_submit_instances(c, spec, 0, INT_MAX, res, err);
}

uint64_t cluster_job_submit_instances(struct cluster *c, struct job_spec *spec, int first, int last,
				      struct submit_result *res, struct berr *err)
{
	memset(res, 0, sizeof *res);
	if (job_secrets_resolve(c, spec, err) < 0 || cluster_mesh_check_publish(c, spec, err) < 0) {
		spec_free(spec);
		return 0;
	}
	struct job *j = hmap_get(&c->jobs, spec->key);
	json_t *json = spec_to_json(spec);
	if (j && j->killed) {
		/* A job being killed cannot be resubmitted until its tasks are gone. */
		json_decref(json);
		spec_free(spec);
		berr_set(err, 409, "job '%s' is being killed; submit again once its tasks ended",
			 j->key);
		return 0;
	}
	/* Quota: the job's new total against its role's (cluster_quota.h). */
	if (quota_admit_job(c, j, spec, err) < 0) {
		json_decref(json);
		spec_free(spec);
		return 0;
	}
	if (!j) {
		j = job_new(c, spec->key);
		job_add_version(j, 1, spec, json);
		res->created = res->changed = true;
		res->version = 1;
		if (spec->type == JOB_CRON)
			j->cron_last_ms = time_now_ms(); /* runs start at the next slot */
		else
			for (int i = 0; i < spec->instances; i++)
				task_create(c, j, i, NULL, "task created", 0);
		persist_job(c, j);
		return cluster_touched(c);
	}
	struct job_version *cur = job_version_get(j, j->version);
	if (json_equal(cur->json, json)) {
		json_decref(json);
		spec_free(spec);
		res->version = j->version;
		/* The same spec again after a canary: the instances still on an
		 * older version are updated now. */
		bool behind = false;
		for (int i = first < 0 ? 0 : first;
		     i <= last && (size_t)i < j->nactive && i < cur->spec->instances; i++)
			behind = behind || (j->active[i] && j->active[i]->version != j->version);
		if (behind && cur->spec->type != JOB_CRON &&
		    (!j->update || !update_state_active(j->update->state))) {
			int from = j->update ? j->update->from_version : j->version;
			update_begin(c, j, from, first < 0 ? 0 : first, last);
			res->update = res->changed = true;
			persist_job(c, j);
		}
		return cluster_touched(c);
	}
	res->changed = true;
	json_t *old_task = spec_task_to_json(cur->spec), *new_task = spec_task_to_json(spec);
	bool task_changed = !json_equal(old_task, new_task) || cur->spec->type != spec->type;
	json_decref(old_task);
	json_decref(new_task);
	int old_instances = cur->spec->instances;
	int from = j->version;
	if (task_changed) {
		job_add_version(j, job_max_version(j) + 1, spec, json);
	} else {
		/* Same task config: the version stays, the spec (instances,
		 * update policy...) is replaced in place. */
		spec_free(cur->spec);
		json_decref(cur->json);
		free(cur->task_text);
		cur->task_text = NULL;
		cur->spec = spec;
		cur->json = json;
		if (spec->type == JOB_CRON)
			cron_parse(spec->schedule, &cur->cron, NULL);
	}
	res->version = j->version;
	j->updated_ms = time_now_ms();
	/* Scale down: stop instances beyond the new count. */
	for (size_t i = (size_t)spec->instances; i < j->nactive; i++) {
		struct task *t = j->active[i];
		if (t) {
			t->no_replace = true;
			task_stop(c, t, TASK_KILLING, "instance removed by a job update");
		}
	}
	/* Scale up, and batch instances that ended are not re-run. */
	job_ensure_instances(j, (size_t)spec->instances);
	for (int i = old_instances; i < spec->instances && spec->type != JOB_CRON; i++) {
		struct task *t = j->active[i];
		if (!t) {
			j->instance_done[i] = false;
			task_create(c, j, i, NULL, "task created (scale up)", 0);
		} else if (t->no_replace) {
			/* Removed by an earlier update and still stopping: it gets a
			 * successor when it ends. */
			t->no_replace = false;
			t->replace_on_end = true;
		}
	}
	/* A new task config rolls out with the update policy. */
	if (task_changed) {
		update_begin(c, j, from, first < 0 ? 0 : first, last);
		res->update = true;
	}
	persist_job(c, j);
	return cluster_touched(c);
}

uint64_t cluster_job_kill(struct cluster *c, const char *key, struct berr *err)
{
	struct job *j = hmap_get(&c->jobs, key);
	if (!j) {
		berr_set(err, 404, "job '%s' not found", key);
		return 0;
	}
	j->killed = true;
	endpoints_touch_job(c, j->key); /* its name goes now */
	update_stop_for_kill(c, j);
	for (size_t i = 0; i < j->nactive; i++) {
		struct task *t = j->active[i];
		if (t) {
			t->no_replace = true;
			task_stop(c, t, TASK_KILLING, "killed by user (job kill)");
		}
	}
	persist_job(c, j);
	/* Forgotten only when no task of it lives, in active[] or not (start
	 * first or cron runs leave tasks outside it): they point at the job. */
	if (!j->live)
		job_forget(c, j);
	return cluster_touched(c);
}

uint64_t cluster_job_restart(struct cluster *c, const char *key, struct berr *err)
{
	struct job *j = hmap_get(&c->jobs, key);
	if (!j || j->killed) {
		berr_set(err, 404, "job '%s' not found", key);
		return 0;
	}
	struct job_version *jv = job_version_get(j, j->version);
	for (size_t i = 0; i < j->nactive; i++) {
		struct task *t = j->active[i];
		if (!t) {
			/* A service instance its restart policy gave up: start over. */
			if (jv && jv->spec->type == JOB_SERVICE && (int)i < jv->spec->instances &&
			    i < j->ninstance_done && j->instance_done[i]) {
				j->instance_done[i] = false;
				task_create(c, j, (int)i, NULL, "restarted by user", 0);
				persist_job(c, j);
			}
			continue;
		}
		t->replace_on_end = true;
		t->quick_deaths = 0;
		t->restarts = 0;
		t->restart_window_ms = 0;
		task_stop(c, t, TASK_RESTARTING, "restarted by user");
	}
	return cluster_touched(c);
}

static void json_diff(json_t *old, json_t *new, const char *path, json_t *out)
{
	if (json_equal(old, new))
		return;
	if (json_is_object(old) && json_is_object(new)) {
		const char *k;
		json_t *v;
		json_object_foreach(old, k, v)
		{
			char *p = *path ? xasprintf("%s.%s", path, k) : xstrdup(k);
			json_t *nv = json_object_get(new, k);
			json_diff(v, nv ? nv : json_null(), p, out);
			free(p);
		}
		json_object_foreach(new, k, v)
		{
			if (json_object_get(old, k))
				continue;
			char *p = *path ? xasprintf("%s.%s", path, k) : xstrdup(k);
			json_diff(json_null(), v, p, out);
			free(p);
		}
		return;
	}
	json_array_append_new(out,
			      json_pack("{s:s,s:O,s:O}", "field", path, "old", old, "new", new));
}

json_t *cluster_job_plan(struct cluster *c, struct job_spec *spec, struct berr *err)
{
	struct job *j = hmap_get(&c->jobs, spec->key);
	if (j && j->killed) {
		berr_set(err, 409, "job '%s' is being killed; plan again once its tasks ended",
			 j->key);
		return NULL;
	}
	if (job_secrets_resolve(c, spec, err) < 0 || cluster_mesh_check_publish(c, spec, err) < 0)
		return NULL;
	json_t *newj = spec_to_json(spec);
	json_t *diff = json_array();
	json_t *add = json_array(), *remove = json_array(), *update = json_array(),
	       *keep = json_array();
	struct job_version *cur = j && !j->killed ? job_version_get(j, j->version) : NULL;
	bool task_changed = true;
	if (cur) {
		json_diff(cur->json, newj, "", diff);
		json_t *a = spec_task_to_json(cur->spec), *b = spec_task_to_json(spec);
		task_changed = !json_equal(a, b) || cur->spec->type != spec->type;
		json_decref(a);
		json_decref(b);
	} else {
		json_array_append_new(diff, json_pack("{s:s,s:n,s:O}", "field", "job", "old", "new",
						      json_object_get(newj, "job")));
	}
	size_t nn;
	struct node **nodes;
	struct placement_node *pn;
	node_view(c, &nodes, &pn, &nn);
	size_t need = 0;
	for (int i = 0; i < spec->instances; i++) {
		struct task *t = cur && (size_t)i < j->nactive ? j->active[i] : NULL;
		if (!t) {
			bool done = cur && (size_t)i < j->ninstance_done && j->instance_done[i];
			json_array_append_new(done ? keep : add, json_integer(i));
			need += !done;
		} else if (task_changed) {
			json_array_append_new(update, json_integer(i));
			need++;
			/* Its replacement may use what it frees. */
			const struct job_spec *os = task_spec_of(t);
			if (t->node && os) {
				struct placement_node *p = &pn[t->node->sched_index];
				p->cpu_free += os->task.resources.cpu;
				p->mem_free += os->task.resources.memory;
				p->disk_free += os->task.resources.disk;
				p->ports_free += (uint32_t)os->task.resources.nports;
				if (os->task.network == NETWORK_BRIDGE &&
				    p->addrs_free != UINT32_MAX)
					p->addrs_free++;
			}
		} else {
			json_array_append_new(keep, json_integer(i));
		}
	}
	if (cur)
		for (size_t i = (size_t)spec->instances; i < j->nactive; i++)
			if (j->active[i])
				json_array_append_new(remove, json_integer((json_int_t)i));
	bool fits = true;
	char *why = NULL;
	size_t unplaced = 0;
	if (need) {
		struct placement_request req = {.job = spec, .count = need, .sample_limit = 0};
		struct placement_result res = {0};
		placement_place(pn, nn, &req, &res);
		fits = res.placed == need;
		unplaced = need - res.placed;
		if (!fits && res.reason)
			why = xstrdup(res.reason);
		placement_result_release(&res);
	}
	/* What the rest would preempt (cluster_preempt.c). */
	json_t *preempt = plan_preemption(c, spec, unplaced, nodes, pn, nn);
	free(nodes);
	free(pn);
	bool changed = !cur || json_array_size(diff) > 0;
	json_t *o = json_pack(
	    "{s:s,s:b,s:b,s:i,s:i,s:o,s:{s:o,s:o,s:o,s:o},s:b}", "job", spec->key, "changed",
	    changed, "create", !cur, "version", cur ? j->version : 0, "next_version",
	    !cur ? 1 : (task_changed ? j->version + 1 : j->version), "diff", diff, "instances",
	    "add", add, "remove", remove, "update", update, "unchanged", keep, "fits", fits);
	if (why)
		json_object_set_new(o, "fit_message", json_string(why));
	json_object_update(o, preempt);
	json_decref(preempt);
	free(why);
	json_object_set_new(o, "quota", quota_plan_json(c, cur ? j : NULL, spec));
	json_decref(newj);
	return o;
}
