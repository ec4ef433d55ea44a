/* lifecycle.h - the task state machine (Aurora's states).
 *
 *   INIT ──► PENDING ──► ASSIGNED ──► STARTING ──► RUNNING ──► FINISHED
 *     │         ▲  │          │            │           │    └──► FAILED
 *     └► THROTTLED─┘          └────────────┴───────────┴──► KILLING ──► KILLED
 *                                                           LOST, PREEMPTING,
 *                                                           RESTARTING, DRAINING,
 *                                                           PARTITIONED
 *
 * The full table is in lifecycle.c (task_transition_allowed). Terminal states:
 * FINISHED, FAILED, KILLED, LOST. A transition outside the table is refused
 * and counted (task_transition_refused_count), never applied.
 * This module is pure: no I/O, no clocks.
 */
#ifndef BERTH_LIFECYCLE_H
#define BERTH_LIFECYCLE_H

#include <stdbool.h>
#include <stdint.h>

enum task_state {
	TASK_INIT = 0,
	TASK_PENDING,
	TASK_THROTTLED,
	TASK_ASSIGNED,
	TASK_STARTING,
	TASK_RUNNING,
	TASK_FINISHED,
	TASK_FAILED,
	TASK_KILLING,
	TASK_KILLED,
	TASK_LOST,
	TASK_PREEMPTING,
	TASK_RESTARTING,
	TASK_DRAINING,
	TASK_PARTITIONED,
	TASK_STATE_COUNT
};

const char *task_state_name(enum task_state s);
/* Returns the state or -1 for an unknown name. */
int task_state_parse(const char *name);
bool task_state_terminal(enum task_state s);
/* Active = not terminal (counts toward a job's live instances). */
static inline bool task_state_active(enum task_state s)
{
	return s != TASK_FINISHED && s != TASK_FAILED && s != TASK_KILLED && s != TASK_LOST;
}
bool task_transition_allowed(enum task_state from, enum task_state to);
/* Checks the table; when refused, counts it and returns false. */
bool task_transition_check(enum task_state from, enum task_state to);
uint64_t task_transition_refused_count(void);

#endif
