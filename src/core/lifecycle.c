#include "core/lifecycle.h"

#include <stdatomic.h>
#include <string.h>

static const char *const state_names[TASK_STATE_COUNT] = {
    [TASK_INIT] = "INIT",
    [TASK_PENDING] = "PENDING",
    [TASK_THROTTLED] = "THROTTLED",
    [TASK_ASSIGNED] = "ASSIGNED",
    [TASK_STARTING] = "STARTING",
    [TASK_RUNNING] = "RUNNING",
    [TASK_FINISHED] = "FINISHED",
    [TASK_FAILED] = "FAILED",
    [TASK_KILLING] = "KILLING",
    [TASK_KILLED] = "KILLED",
    [TASK_LOST] = "LOST",
    [TASK_PREEMPTING] = "PREEMPTING",
    [TASK_RESTARTING] = "RESTARTING",
    [TASK_DRAINING] = "DRAINING",
    [TASK_PARTITIONED] = "PARTITIONED",
};

#define B(s) (1u << (s))
/* Where a task that has been handed to an agent may go next. */
#define ON_AGENT                                                                                   \
	(B(TASK_FINISHED) | B(TASK_FAILED) | B(TASK_KILLING) | B(TASK_KILLED) | B(TASK_LOST) |     \
	 B(TASK_PREEMPTING) | B(TASK_RESTARTING) | B(TASK_DRAINING) | B(TASK_PARTITIONED))
/* Where a task that is being stopped may end. */
#define STOPPING (B(TASK_FINISHED) | B(TASK_FAILED) | B(TASK_KILLED) | B(TASK_LOST))

/* allowed[from] is the set of states `from` may move to. */
static const uint32_t allowed[TASK_STATE_COUNT] = {
    [TASK_INIT] = B(TASK_PENDING) | B(TASK_THROTTLED),
    [TASK_PENDING] = B(TASK_ASSIGNED) | B(TASK_KILLING) | B(TASK_KILLED),
    [TASK_THROTTLED] = B(TASK_PENDING) | B(TASK_KILLING) | B(TASK_KILLED),
    [TASK_ASSIGNED] = B(TASK_STARTING) | B(TASK_RUNNING) | ON_AGENT,
    [TASK_STARTING] = B(TASK_RUNNING) | ON_AGENT,
    [TASK_RUNNING] = ON_AGENT,
    [TASK_FINISHED] = 0,
    [TASK_FAILED] = 0,
    [TASK_KILLING] = STOPPING,
    [TASK_KILLED] = 0,
    [TASK_LOST] = 0,
    [TASK_PREEMPTING] = STOPPING,
    [TASK_RESTARTING] = STOPPING,
    [TASK_DRAINING] = STOPPING,
    /* A partitioned agent may come back with the task in any live state. */
    [TASK_PARTITIONED] =
	B(TASK_ASSIGNED) | B(TASK_STARTING) | B(TASK_RUNNING) | B(TASK_KILLING) | STOPPING,
};

static _Atomic uint64_t refused;

const char *task_state_name(enum task_state s)
{
	if ((unsigned)s >= TASK_STATE_COUNT)
		return "UNKNOWN";
	return state_names[s];
}

int task_state_parse(const char *name)
{
	if (!name)
		return -1;
	for (int i = 0; i < TASK_STATE_COUNT; i++)
		if (!strcmp(state_names[i], name))
			return i;
	return -1;
}

bool task_state_terminal(enum task_state s)
{
	return !task_state_active(s);
}

bool task_transition_allowed(enum task_state from, enum task_state to)
{
	if ((unsigned)from >= TASK_STATE_COUNT || (unsigned)to >= TASK_STATE_COUNT)
		return false;
	return (allowed[from] & B(to)) != 0;
}

bool task_transition_check(enum task_state from, enum task_state to)
{
	if (task_transition_allowed(from, to))
		return true;
	atomic_fetch_add(&refused, 1);
	return false;
}

uint64_t task_transition_refused_count(void)
{
	return atomic_load(&refused);
}
