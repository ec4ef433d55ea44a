/* cluster_system.h - system jobs (type: system): one instance on every
 * eligible node, as Swarm's global services and Nomad's system jobs.
 *
 * A node is eligible for a system job when it is ACTIVE (not draining,
 * drained or down) and satisfies the job's value constraints. Whether its
 * task fits (cpu, memory, disk, ports) is not eligibility: a node that
 * cannot fit keeps a PENDING task whose message says why.
 *
 * Instances are slots: the first time a node is eligible it gets the next
 * instance number, and keeps it for the job's life (the slot table is in
 * the job's record), so alice/prod/agent/3 always runs on the same node,
 * across server restarts and updates. A slot whose node is not eligible is
 * vacant: no task, and the job's instance_done flag set, so the
 * rolling-update engine and the loader pass over it.
 *
 * The job's specs carry instances = 0 as the user wrote them (canonical
 * JSON); in memory every version's spec->instances is the number of slots,
 * so the code that walks instances [0, instances) walks the slots.
 *
 * Everything here expects c->lock held.
 */
#ifndef BERTH_CLUSTER_SYSTEM_H
#define BERTH_CLUSTER_SYSTEM_H

#include <jansson.h>
#include <stdbool.h>

#include "server/cluster.h"

struct system_slots;

/* Free a job's slot table (NULL is fine). */
void system_slots_free(struct system_slots *s);

/* The tick: start an instance on every eligible node without one, stop
 * those on nodes no longer eligible (draining: via DRAINING; otherwise
 * KILLING), never moving one elsewhere. A job is looked at only after a
 * node event (c->nodes_gen: registered, up, down, drained, attributes; or
 * a node added or removed) or a new config version, and every 5 s. */
void systems_reconcile(struct cluster *c);

/* The scheduler's hook: when t belongs to a system job, place it on its
 * slot's node if it fits there (or leave it PENDING with the reason) and
 * return true; false for every other task. */
bool system_task_place(struct cluster *c, struct task *t);

/* The task of a system job's instance ended (job_task_ended): true when
 * its node is no longer eligible, so nothing replaces it (the slot is
 * vacant now); false when the usual service rules replace it. */
bool system_instance_vacate(struct cluster *c, struct job *j, struct task *t);

/* Set every system version's spec->instances to the slot count (after a
 * version was added or replaced, or a record loaded). */
void system_sync_instances(struct job *j);

/* A resubmission may not turn a job into a system job or back: 409. */
int system_check_resubmit(const struct job *j, const struct job_spec *cur,
			  const struct job_spec *spec, struct berr *err);

/* What a plan of `spec` counts as the job's instances: j's slots (j may be
 * NULL) and one more per eligible node without one. */
int system_plan_instances(struct cluster *c, struct job *j, const struct job_spec *spec);

/* Instances shown in views: the slots not vacant (eligible nodes). */
int system_instances_wanted(const struct job *j);

/* The job record's "system" member ({"nodes": [NAME...], "vacant": [bool...]}),
 * or NULL when the job has no slots (new ref). */
json_t *system_record_json(const struct job *j);
/* Load it (rec may be NULL), then system_sync_instances. */
void system_record_apply(struct job *j, json_t *rec);

#endif
