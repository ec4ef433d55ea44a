/* cluster_cron.c - cron jobs: a run per schedule slot, with the job's
 * collision policy when the previous run still goes. */
#include "server/cluster-internal.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "server/cluster_quota.h"

static void set_cron_message(struct job *j, const char *msg)
{
	free(j->cron_message);
	j->cron_message = msg ? xstrdup(msg) : NULL;
}

/* Start one run of a cron job: every instance gets a new task. A run still
 * going is killed first (kill_existing) or this run is skipped (cancel_new).
 * A run its role's quota cannot take does not start (err 409, and the
 * job's cron_message says why). */
static bool cron_fire(struct cluster *c, struct job *j, const char *why, struct berr *err)
{
	struct job_version *jv = job_version_get(j, j->version);
	if (!jv || j->killed)
		return false;
	bool running = job_has_active(j);
	if (running && jv->spec->cron_collision == CRON_CANCEL_NEW) {
		log_info("cron %s: run skipped, the previous one is still going (cancel_new)",
			 j->key);
		berr_set(err, 409,
			 "job '%s' is still running and its collision policy is cancel_new",
			 j->key);
		return false;
	}
	char refused[512];
	if (quota_admit_cron_run(c, j, refused, sizeof refused) < 0) {
		char msg[600];
		snprintf(msg, sizeof msg, "cron run not started: %s", refused);
		log_warn("cron %s: %s", j->key, msg);
		set_cron_message(j, msg);
		berr_set(err, 409, "%s", msg);
		return false;
	}
	set_cron_message(j, NULL);
	for (size_t i = 0; running && i < j->nactive; i++) {
		struct task *t = j->active[i];
		if (!t)
			continue;
		/* The old run's task leaves its slot and is stopped. */
		t->no_replace = true;
		t->replace_on_end = false;
		j->active[i] = NULL;
		task_stop(c, t, TASK_KILLING, "killed by the next cron run (kill_existing)");
	}
	job_ensure_instances(j, (size_t)jv->spec->instances);
	for (int i = 0; i < jv->spec->instances; i++) {
		j->instance_done[i] = false;
		task_create(c, j, i, NULL, why, 0);
	}
	if (j->cron_runs < INT_MAX)
		j->cron_runs++;
	persist_job(c, j);
	return true;
}

/* A live cron job's current version, or NULL for any other job. */
static struct job_version *cron_version(struct job *j)
{
	struct job_version *jv = j->killed ? NULL : job_version_get(j, j->version);
	return jv && jv->spec->type == JOB_CRON ? jv : NULL;
}

void crons_fire(struct cluster *c, int64_t now)
{
	size_t it = 0;
	void *v;
	while (hmap_next(&c->jobs, &it, NULL, &v)) {
		struct job *j = v;
		struct job_version *jv = cron_version(j);
		if (!jv)
			continue;
		bool utc = !c->cfg.cron_local_time;
		int64_t next = cron_next(&jv->cron, j->cron_last_ms, utc);
		if (next < 0 || next > now)
			continue;
		/* Missed slots (the server was down) make one run, not one each:
		 * take the newest slot not after now. Looked for in the last hour,
		 * day, month, year first, so that a long gap (a minutely job whose
		 * last run is a year old) costs a few steps, not one per slot. */
		static const int64_t windows_ms[] = {3600000LL, 86400000LL, 32 * 86400000LL,
						     400 * 86400000LL};
		for (size_t w = 0; w < ARRAY_SIZE(windows_ms); w++) {
			if (now - windows_ms[w] <= next)
				break;
			int64_t recent = cron_next(&jv->cron, now - windows_ms[w], utc);
			if (recent >= 0 && recent <= now) {
				next = recent;
				break;
			}
		}
		for (int guard = 0; guard < 100000; guard++) {
			int64_t after = cron_next(&jv->cron, next, utc);
			if (after < 0 || after > now)
				break;
			next = after;
		}
		j->cron_last_ms = next;
		char ts[40], why[80];
		time_format_ms(next, ts, sizeof ts);
		snprintf(why, sizeof why, "cron run scheduled for %s", ts);
		struct berr err = {0};
		if (!cron_fire(c, j, why, &err))
			persist_job(c, j); /* the slot is used up all the same */
	}
}

uint64_t cluster_cron_start(struct cluster *c, const char *key, struct berr *err)
{
	struct job *j = hmap_get(&c->jobs, key);
	struct job_version *jv = j && !j->killed ? job_version_get(j, j->version) : NULL;
	if (!jv) {
		berr_set(err, 404, "job '%s' not found", key);
		return 0;
	}
	if (jv->spec->type != JOB_CRON) {
		berr_set(err, 400, "job '%s' is not a cron job", key);
		return 0;
	}
	if (!cron_fire(c, j, "cron run started by user", err)) {
		persist_job(c, j); /* its cron_message */
		return 0;
	}
	return cluster_touched(c);
}

json_t *cluster_cron_list_json(const struct cluster *c, const char *role)
{
	json_t *arr = json_array();
	size_t it = 0;
	void *v;
	size_t rlen = role ? strlen(role) : 0;
	while (hmap_next(&c->jobs, &it, NULL, &v)) {
		struct job *j = v;
		if (role && (strncmp(j->key, role, rlen) || j->key[rlen] != '/'))
			continue;
		struct job_version *jv = cron_version(j);
		if (!jv)
			continue;
		int64_t next = cron_next(&jv->cron, j->cron_last_ms, !c->cfg.cron_local_time);
		int running = 0;
		for (size_t i = 0; i < j->nactive; i++)
			running += j->active[i] != NULL;
		char ts[40] = "";
		if (next >= 0)
			time_format_ms(next, ts, sizeof ts);
		json_t *row = json_pack(
		    "{s:s,s:s,s:s,s:I,s:I,s:s,s:i,s:i}", "job", j->key, "schedule",
		    jv->spec->schedule, "collision",
		    jv->spec->cron_collision == CRON_CANCEL_NEW ? "cancel_new" : "kill_existing",
		    "last_run_ms", (json_int_t)j->cron_last_ms, "next_run_ms", (json_int_t)next,
		    "next_run", ts, "running", running, "runs", j->cron_runs);
		/* Why the last run did not start (its quota), when one did not. */
		if (j->cron_message)
			json_object_set_new(row, "message", json_string(j->cron_message));
		json_array_append_new(arr, row);
	}
	return arr;
}
