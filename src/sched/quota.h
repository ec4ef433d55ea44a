/* quota.h - quotas per role: the arithmetic of admission (docs/scheduling.md,
 * "Quotas").
 *
 * A role's quota caps the production work (tier preferred) its jobs hold:
 * cpu, memory, disk and a number of tasks. Preemptible work is not counted:
 * it fills what production leaves and steps aside (Aurora, Borg).
 *
 * What a job counts (its "amount") is its current spec's instances times
 * its task's resources, whatever its tasks are doing; the cluster glue
 * (server/cluster_quota.c) says which instances: a service all of them, a
 * batch job those not finished, a cron job all while a run is active.
 *
 * Cpu is counted in milli-cpus (integers: sums never drift). A task's cpu
 * rounds up to the next milli-cpu, so that a task of cpu 0.0001 still
 * counts; a limit rounds to the nearest.
 *
 * Admission compares a role's use before and after a change:
 *   a resource refuses the change when after > limit and after > before.
 * A change that does not raise a resource (a scale down, a config whose
 * resources shrink, a new version of a secret) is never refused for it,
 * even when the role is over its quota already (the quota was lowered).
 *
 * Pure functions: no locks, no cluster. */
#ifndef BERTH_QUOTA_H
#define BERTH_QUOTA_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/spec.h"
#include "core/util.h"

/* How much production work: sums saturate at INT64_MAX. */
struct quota_amount {
	int64_t cpu_milli;
	int64_t memory; /* bytes */
	int64_t disk;	/* bytes */
	int64_t tasks;
};

/* A role's quota; QUOTA_UNLIMITED for a resource without a limit. */
#define QUOTA_UNLIMITED (-1)
struct quota_limit {
	int64_t cpu_milli;
	int64_t memory;
	int64_t disk;
	int64_t tasks;
};

/* The largest limits a quota takes. */
#define QUOTA_MAX_CPU 1000000.0	     /* cores */
#define QUOTA_MAX_SIZE (1LL << 60)   /* 1 EiB */
#define QUOTA_MAX_TASKS 1000000000LL /* a billion tasks */

/* A task's cpu (cores) in milli-cpus, rounded up (a tolerance of 1e-6
 * milli-cpu absorbs the binary fractions of decimal cpus: 0.1 -> 100). */
int64_t quota_cpu_milli(double cpu);

/* Does the spec's work count against its role's quota (tier preferred)? */
bool quota_counts(const struct job_spec *spec);

/* `instances` instances of the spec's task, or nothing for preemptible
 * work. */
void quota_amount_of(const struct job_spec *spec, int64_t instances, struct quota_amount *out);

/* a += b, a -= b (saturating; never below 0). */
void quota_amount_add(struct quota_amount *a, const struct quota_amount *b);
void quota_amount_sub(struct quota_amount *a, const struct quota_amount *b);

/* Every resource unlimited. */
void quota_limit_unlimited(struct quota_limit *lim);

/* The admission rule above. 0 when allowed; -1 with why = "quota exceeded
 * for role ROLE: cpu 4.5 of 4.0, memory 9GiB of 8GiB" (every resource
 * refused, in the order cpu, memory, disk, tasks). */
int quota_admit(const char *role, const struct quota_limit *lim, const struct quota_amount *before,
		const struct quota_amount *after, char *why, size_t whylen);

/* Is any resource of `use` over its limit? */
bool quota_over(const struct quota_limit *lim, const struct quota_amount *use);

/* Text as the messages write it: cpu "4.0", "4.5", "0.01"; sizes "8GiB",
 * "1.5GiB", "512MiB", "100B". */
void quota_format_cpu(int64_t milli, char *buf, size_t n);
void quota_format_size(int64_t bytes, char *buf, size_t n);

/* A quota from untrusted JSON (an API body, or a stored record):
 *   {"cpu": 4 | 4.5 | "4.5", "memory": 8589934592 | "8GiB", "disk": ...,
 *    "tasks": 10}
 * every field optional (absent or null: unlimited), nothing else allowed;
 * extra_ok lists other keys to pass over (a record's "role"), or NULL.
 * 0, or -1 with err (400) naming the field. */
int quota_limit_from_json(const json_t *body, const char *const *extra_ok, struct quota_limit *out,
			  struct berr *err);
/* {"cpu": 4.0, "memory": N, "disk": N, "tasks": N}: the limited ones only
 * (new ref). */
json_t *quota_limit_json(const struct quota_limit *lim);
/* {"cpu": 2.5, "memory": N, "disk": N, "tasks": N} (new ref). */
json_t *quota_amount_json(const struct quota_amount *a);

#endif
