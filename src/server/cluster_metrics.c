/* cluster_metrics.c - the cluster's part of the server's /metrics
 * (docs/operations.md "Metrics"). Task figures are kept as tasks change
 * (cluster_notes.c); jobs and nodes are walked (far fewer than tasks). */
#include "server/cluster-internal.h"

#include <stdio.h>
#include <string.h>

#include "core/metrics_text.h"
#include "server/events.h"

static void write_tasks(struct cluster *c, struct sbuf *sb)
{
	metrics_family(sb, "berth_tasks", "gauge", "Tasks not ended, by state.");
	for (int s = 0; s < TASK_STATE_COUNT; s++)
		if (!task_state_terminal((enum task_state)s) && s != TASK_INIT)
			metrics_sample(sb, "berth_tasks", (double)c->stats.tasks[s], "state",
				       task_state_name((enum task_state)s), NULL);
	metrics_family(sb, "berth_tasks_ended_total", "counter",
		       "Tasks that ended since the server started leading, by final state.");
	for (int s = 0; s < TASK_STATE_COUNT; s++)
		if (task_state_terminal((enum task_state)s))
			metrics_sample(sb, "berth_tasks_ended_total", (double)c->stats.ended[s],
				       "state", task_state_name((enum task_state)s), NULL);
	metrics_family(sb, "berth_task_restarts_total", "counter",
		       "Tasks created to replace another (restarts, reschedules, updates).");
	metrics_sample(sb, "berth_task_restarts_total", (double)c->stats.restarts, NULL);
	metrics_family(sb, "berth_placements_total", "counter",
		       "Tasks placed on a node (PENDING to ASSIGNED).");
	metrics_sample(sb, "berth_placements_total", (double)c->stats.placements, NULL);
	metrics_family(sb, "berth_placement_latency_seconds", "histogram",
		       "Time from PENDING to ASSIGNED.");
	metrics_hist_write(sb, "berth_placement_latency_seconds", NULL,
			   &c->stats.placement_latency);
	metrics_family(sb, "berth_tasks_pending", "gauge",
		       "Tasks waiting for a node, by reason class (as of the last scheduling "
		       "pass).");
	for (int r = 0; r < PENDING_REASON_COUNT; r++)
		metrics_sample(sb, "berth_tasks_pending", (double)c->stats.pending[r], "reason",
			       pending_reason_name((enum pending_reason)r), NULL);
}

static const char *const job_statuses[] = {"running", "killing", "scheduled", "finished", "failed"};

static void write_jobs(struct cluster *c, struct sbuf *sb)
{
	size_t counts[ARRAY_SIZE(job_statuses)] = {0};
	size_t it = 0;
	void *v;
	while (hmap_next(&c->jobs, &it, NULL, &v)) {
		const char *st = job_outcome(v);
		for (size_t i = 0; i < ARRAY_SIZE(job_statuses); i++)
			if (!strcmp(st, job_statuses[i]))
				counts[i]++;
	}
	metrics_family(sb, "berth_jobs", "gauge", "Jobs by status.");
	for (size_t i = 0; i < ARRAY_SIZE(job_statuses); i++)
		metrics_sample(sb, "berth_jobs", (double)counts[i], "status", job_statuses[i],
			       NULL);
}

static void write_nodes(struct cluster *c, struct sbuf *sb)
{
	size_t counts[NODE_DOWN + 1] = {0};
	size_t it = 0;
	void *v;
	while (hmap_next(&c->nodes, &it, NULL, &v)) {
		struct node *n = v;
		if ((unsigned)n->state <= NODE_DOWN)
			counts[n->state]++;
	}
	metrics_family(sb, "berth_nodes", "gauge", "Nodes by state.");
	for (int s = 0; s <= NODE_DOWN; s++)
		metrics_sample(sb, "berth_nodes", (double)counts[s], "state",
			       node_state_name((enum node_state)s), NULL);
	metrics_family(sb, "berth_node_heartbeat_lag_seconds", "gauge",
		       "Time since the server last heard each node's agent (0 while its watch "
		       "is held).");
	int64_t mono = time_mono_ms();
	it = 0;
	while (hmap_next(&c->nodes, &it, NULL, &v)) {
		struct node *n = v;
		int64_t lag =
		    n->live ? liveness_silence(c->live, n->live, mono) : mono - n->last_seen_mono;
		metrics_sample(sb, "berth_node_heartbeat_lag_seconds",
			       (double)(lag > 0 ? lag : 0) / 1000.0, "node", n->name, NULL);
	}
}

static void write_updates(struct cluster *c, struct sbuf *sb)
{
	metrics_family(sb, "berth_update_instances", "gauge",
		       "Instances of each active rolling update, by progress (total: in the "
		       "update).");
	size_t it = 0;
	void *v;
	while (hmap_next(&c->jobs, &it, NULL, &v)) {
		struct job *j = v;
		struct update *u = j->update;
		if (!u || !update_state_active(u->state))
			continue;
		size_t by[UI_FAILED + 1] = {0};
		for (size_t k = 0; k < u->n; k++)
			if ((unsigned)u->status[k] <= UI_FAILED)
				by[u->status[k]]++;
		const char *state = update_state_name(u->state);
		for (int s = 0; s <= UI_FAILED; s++)
			metrics_sample(sb, "berth_update_instances", (double)by[s], "job", j->key,
				       "update_state", state, "progress",
				       update_instance_status_name((enum update_instance_status)s),
				       NULL);
		metrics_sample(sb, "berth_update_instances", (double)u->n, "job", j->key,
			       "update_state", state, "progress", "total", NULL);
	}
}

void cluster_metrics_write(struct cluster *c, struct sbuf *sb)
{
	write_jobs(c, sb);
	write_tasks(c, sb);
	write_nodes(c, sb);
	write_updates(c, sb);
	metrics_family(sb, "berth_events_index", "gauge",
		       "The newest event's index (GET /v1/events).");
	metrics_sample(sb, "berth_events_index", (double)events_newest(c->events), NULL);
}
