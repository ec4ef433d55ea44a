/* logtail.h - the kept tails of ended tasks' logs (cluster_logtail.c
 * writes them with a task's final report, server_logtail.c reads them for
 * GET /v1/tasks/REF/logs). */
#ifndef BERTH_LOGTAIL_H
#define BERTH_LOGTAIL_H

#include <jansson.h>
#include <stdbool.h>

struct cluster;
struct node;
struct task;
struct agent_task_report;
struct server;
struct request;

/* "logtails/KEY/INSTANCE" (caller frees). */
char *cluster_logtail_key(const char *job_key, int instance);
/* Under the cluster lock, after t's transition to its end: keep the tails
 * the agent of node n sent ("logs" of its report u) when t ended FAILED or
 * KILLED. Malformed tails are dropped with a log line. */
void cluster_logtail_keep(struct cluster *c, struct node *n, struct task *t,
			  const struct agent_task_report *u);
/* Into the pending batch: forget the tails of the job's instances. */
void cluster_logtail_delete_job(struct cluster *c, const char *job_key);

/* The logs route's part (under the cluster lock): when t's logs cannot be
 * read from its agent (it never ran, its node is DOWN or gone) or the
 * client asked for the kept tail (?kept=1), answer q from the instance's
 * kept tail and return true; false leaves q to the caller. */
bool server_logtail_answer(struct request *q, const struct task *t, bool asked);

#endif
