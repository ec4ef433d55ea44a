/* cluster_quota.h - quotas per role in the cluster (docs/scheduling.md,
 * "Quotas"): the records, the views, and admission at submit, update and
 * cron runs. The arithmetic is sched/quota.h.
 *
 * Record: quotas/ROLE = {"role": ROLE, "cpu"?: 4.0, "memory"?: BYTES,
 * "disk"?: BYTES, "tasks"?: N} (a resource absent is unlimited). Kept in
 * the cluster's state like secrets: written through the pending batch,
 * loaded at start, replayed by HA followers, in backups.
 *
 * A role's use is the sum over its live jobs of what each counts
 * (quota.h): a service its instances, a batch job its instances not
 * finished, a cron job its instances while a run is active; a job of tier
 * preemptible nothing. It is kept as running sums (c->quota_use, each job's
 * share in j->quota_counted), so that an admission costs O(1) whatever
 * the number of jobs. Each function expects c->lock held. */
#ifndef BERTH_CLUSTER_QUOTA_H
#define BERTH_CLUSTER_QUOTA_H

#include <jansson.h>

#include "core/spec.h"
#include "sched/quota.h"
#include "server/cluster.h"

/* Set (replace) a role's quota: the seq to wait for; *reply is the role's
 * view (below). */
uint64_t cluster_quota_set(struct cluster *c, const char *role, const struct quota_limit *lim,
			   json_t **reply);
/* Remove a role's quota: 0 with err 404 when it has none. */
uint64_t cluster_quota_delete(struct cluster *c, const char *role, struct berr *err);
/* One role: {"role", "limit": {...} | null, "use": {cpu, memory, disk,
 * tasks}, "over": bool} (new ref); a role with neither quota nor use is
 * listed with a zero use. */
json_t *cluster_quota_json(struct cluster *c, const char *role);
/* Every role with a quota or a use (role NULL), or one role's, sorted by
 * role (new ref). */
json_t *cluster_quotas_json(struct cluster *c, const char *role);

/* ---- for the cluster's own files (cluster_*.c) ---- */

struct job;

/* Submit or update: may the job `j` (NULL when new) take spec? 0, or -1
 * with err 409 "quota exceeded for role alice: cpu 4.5 of 4.0". */
int quota_admit_job(struct cluster *c, const struct job *j, const struct job_spec *spec,
		    struct berr *err);
/* A cron run of j about to start: 0, or -1 with why. */
int quota_admit_cron_run(struct cluster *c, const struct job *j, char *why, size_t whylen);
/* The plan's "quota" object: {"role", "tier", "counted", "limit": {...} |
 * null, "use", "after", "fits", "message"?} (new ref). */
json_t *quota_plan_json(struct cluster *c, const struct job *j, const struct job_spec *spec);

/* Job j's share may have changed (its spec, instances done, killed, a
 * cron run's tasks): bring it and its role's use up to date. Called from
 * persist_job (every change of what a job counts is persisted) and when a
 * task leaves its instance's slot. Cheap: one lookup. */
void quota_job_recount(struct cluster *c, struct job *j);
/* A task of j left its instance's slot: a cron job's run may have ended
 * (its share goes back). O(1) for other jobs. */
void quota_job_slot_freed(struct cluster *c, struct job *j);
/* Job j is about to be freed: its share leaves its role's use. */
void quota_job_gone(struct cluster *c, struct job *j);
/* Every role's use again from every job (after a load or a replica's
 * records were applied: cluster_derive). */
void quotas_recount(struct cluster *c);

int quota_record_apply(struct cluster *c, const char *key, const char *value, size_t len);
void quota_record_delete(struct cluster *c, const char *key);
/* Free every quota and use, and release both maps. */
void quotas_release(struct cluster *c);

#endif
