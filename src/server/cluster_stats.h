/* cluster_stats.h - the figures the server's /metrics shows that are kept
 * as the cluster changes (a scrape never walks every task), and the event
 * log every change is told to (events.h). Part of struct cluster, under
 * its lock; the histograms have their own.
 *
 * Task counts are of tasks not ended, by state; they move with each
 * transition and are counted afresh whenever the state is rebuilt from
 * its records (cluster_derive). Pending reasons are those of the last
 * scheduling pass.
 */
#ifndef BERTH_CLUSTER_STATS_H
#define BERTH_CLUSTER_STATS_H

#include <stdint.h>

#include "core/lifecycle.h"
#include "core/metrics_text.h"

/* Why a task waits, in classes (the scheduler's reason, first part). */
enum pending_reason {
	PENDING_NO_NODES = 0, /* no node registered, or none schedulable */
	PENDING_CPU,
	PENDING_MEMORY,
	PENDING_DISK,
	PENDING_PORTS,
	PENDING_ADDRESSES,
	PENDING_CONSTRAINT, /* constraints, limits, attribute values */
	PENDING_THROTTLED,  /* flapping: waiting out its back-off */
	PENDING_OTHER,	    /* not looked at yet, or another reason */
	PENDING_REASON_COUNT
};
const char *pending_reason_name(enum pending_reason r);
/* The class of a scheduler's reason text. */
enum pending_reason pending_reason_of(const char *why);

struct cluster_stats {
	int64_t tasks[TASK_STATE_COUNT];  /* tasks not ended, by state */
	uint64_t ended[TASK_STATE_COUNT]; /* tasks that ended in each terminal state */
	uint64_t placements;		  /* PENDING -> ASSIGNED */
	uint64_t restarts;		  /* tasks created to replace another */
	uint64_t pending[PENDING_REASON_COUNT];
	struct metrics_hist placement_latency; /* seconds from PENDING to ASSIGNED */
};

#endif
