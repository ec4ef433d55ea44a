/* cluster_notes.c - what the cluster's changes tell the figures of
 * /metrics (cluster_stats.h) and the event log (events.h). The state's
 * functions call these as they change tasks, jobs, nodes and updates. */
#include "server/cluster-internal.h"

#include <stdio.h>
#include <string.h>

#include "server/events.h"

static const char *const reason_names[PENDING_REASON_COUNT] = {
    "no_nodes", "cpu", "memory", "disk", "ports", "addresses", "constraint", "throttled", "other"};

const char *pending_reason_name(enum pending_reason r)
{
	return (unsigned)r < PENDING_REASON_COUNT ? reason_names[r] : "other";
}

enum pending_reason pending_reason_of(const char *why)
{
	if (!why || !*why)
		return PENDING_OTHER;
	/* The first part names the most common failing check. */
	size_t n = strcspn(why, ";");
	char part[160];
	snprintf(part, sizeof part, "%.*s", (int)(n < sizeof part ? n : sizeof part - 1), why);
	static const struct {
		const char *word;
		enum pending_reason r;
	} words[] = {
	    {"no nodes", PENDING_NO_NODES},
	    {"schedulable", PENDING_NO_NODES},
	    {"drain", PENDING_NO_NODES},
	    {"cpu", PENDING_CPU},
	    {"memory", PENDING_MEMORY},
	    {"disk", PENDING_DISK},
	    {"port", PENDING_PORTS},
	    {"address", PENDING_ADDRESSES},
	    {"constraint", PENDING_CONSTRAINT},
	    {"limit", PENDING_CONSTRAINT},
	    {"attribute", PENDING_CONSTRAINT},
	    {"throttle", PENDING_THROTTLED},
	};
	for (size_t i = 0; i < ARRAY_SIZE(words); i++)
		if (strstr(part, words[i].word))
			return words[i].r;
	return PENDING_OTHER;
}

void cluster_notes_init(struct cluster *c)
{
	metrics_hist_init(&c->stats.placement_latency, metrics_latency_bounds,
			  metrics_latency_nbounds);
	c->events = events_new(EVENTS_DEFAULT_CAPACITY, (uint64_t)time_now_ms() * 1000);
}

void cluster_notes_release(struct cluster *c)
{
	metrics_hist_destroy(&c->stats.placement_latency);
	events_free(c->events);
	c->events = NULL;
}

static void count_task(struct cluster *c, enum task_state s, int by)
{
	if ((unsigned)s < TASK_STATE_COUNT && !task_state_terminal(s))
		c->stats.tasks[s] += by;
}

void note_task_created(struct cluster *c, const struct task *t)
{
	count_task(c, t->state, 1);
	if (t->ancestor)
		c->stats.restarts++;
}

void note_task_gone(struct cluster *c, const struct task *t)
{
	count_task(c, t->state, -1);
}

void note_task_state(struct cluster *c, const struct task *t, enum task_state from, int64_t from_ms,
		     const char *msg)
{
	enum task_state to = t->state;
	count_task(c, from, -1);
	count_task(c, to, 1);
	if (task_state_terminal(to) && (unsigned)to < TASK_STATE_COUNT)
		c->stats.ended[to]++;
	if (from == TASK_PENDING && to == TASK_ASSIGNED) {
		c->stats.placements++;
		int64_t now = time_now_ms();
		metrics_hist_observe(&c->stats.placement_latency,
				     (double)(now > from_ms ? now - from_ms : 0) / 1000.0);
	}
	struct event_fields f = {
	    .type = EVENT_TASK,
	    .job = t->job ? t->job->key : NULL,
	    .task = t->id,
	    .instance = t->instance,
	    .node = t->node ? t->node->name : NULL,
	    .state = task_state_name(to),
	    .message = msg,
	};
	events_append(c->events, &f);
}

void note_tasks_recount(struct cluster *c)
{
	memset(c->stats.tasks, 0, sizeof c->stats.tasks);
	size_t it = 0;
	void *v;
	while (hmap_next(&c->tasks, &it, NULL, &v))
		count_task(c, ((struct task *)v)->state, 1);
}

void note_pending_reasons(struct cluster *c)
{
	memset(c->stats.pending, 0, sizeof c->stats.pending);
	for (struct task *t = c->waiting; t; t = t->wnext)
		c->stats.pending[t->state == TASK_THROTTLED ? PENDING_THROTTLED
							    : pending_reason_of(t->message)]++;
}

void note_job(struct cluster *c, const char *key, const char *state, const char *msg)
{
	struct event_fields f = {
	    .type = EVENT_JOB, .job = key, .instance = -1, .state = state, .message = msg};
	events_append(c->events, &f);
}

void note_node(struct cluster *c, const struct node *n, const char *msg)
{
	struct event_fields f = {.type = EVENT_NODE,
				 .instance = -1,
				 .node = n->name,
				 .state = node_state_name(n->state),
				 .message = msg};
	events_append(c->events, &f);
}

void note_update(struct cluster *c, const struct job *j, int instance, const char *state,
		 const char *msg)
{
	struct event_fields f = {.type = EVENT_UPDATE,
				 .job = j->key,
				 .instance = instance,
				 .state = state,
				 .message = msg};
	events_append(c->events, &f);
}

void cluster_note_leader(struct cluster *c, const char *state, const char *msg)
{
	struct event_fields f = {
	    .type = EVENT_LEADER, .instance = -1, .state = state, .message = msg};
	events_append(c->events, &f);
}
