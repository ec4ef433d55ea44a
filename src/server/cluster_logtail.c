/* cluster_logtail.c - the kept tails of ended tasks' logs
 * (docs/operations.md, "Logs").
 *
 * An agent sends the last 64 KiB of stdout and stderr with the final
 * report of a task that ended FAILED or KILLED (agent_logtail.h). The
 * server writes them to the store, never to memory:
 *
 *   logtails/<role>/<env>/<name>/<instance>
 *       {"task", "state", "node", "ended_ms", "stdout"?, "stderr"?}  (base64)
 *
 * One tail per instance, the latest: a new end of the instance replaces
 * it, and the job's deletion deletes them all. So the store holds at most
 * instances x ~176 KiB of tails (base64 of 2 x 64 KiB), memory none
 * (they are read back on demand, server_logtail.c), and a status report
 * at most LOGTAIL_BATCH of them. */
#include "server/cluster-internal.h"
#include "server/logtail.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/agent_report.h"
#include "core/base64.h"
#include "core/log.h"

/* Base64 of 64 KiB: 87384 characters; a little room, nothing more. */
#define TAIL_B64_MAX 90000

static bool tail_ok(const struct agent_log_tail *v)
{
	if (!v->given)
		return true;
	char *dec = NULL;
	size_t len = 0;
	if (!v->text || v->len > TAIL_B64_MAX || base64_decode(v->text, v->len, &dec, &len) < 0)
		return false;
	free(dec);
	return true;
}

char *cluster_logtail_key(const char *job_key, int instance)
{
	return xasprintf("logtails/%s/%d", job_key, instance);
}

void cluster_logtail_keep(struct cluster *c, struct node *n, struct task *t,
			  const struct agent_task_report *u)
{
	if (!u->has_logs || (t->state != TASK_FAILED && t->state != TASK_KILLED))
		return;
	const struct agent_log_tail *out = &u->out, *err = &u->err;
	if ((!out->given && !err->given) || !tail_ok(out) || !tail_ok(err)) {
		log_warn("task %s: node %s sent malformed log tails: not kept", t->id, n->name);
		return;
	}
	json_t *rec =
	    json_pack("{s:s,s:s,s:s,s:I}", "task", t->id, "state", task_state_name(t->state),
		      "node", n->name, "ended_ms", (json_int_t)time_now_ms());
	if (out->given)
		json_object_set_new(rec, "stdout", json_stringn(out->text, out->len));
	if (err->given)
		json_object_set_new(rec, "stderr", json_stringn(err->text, err->len));
	char *key = cluster_logtail_key(t->job->key, t->instance);
	char *text = json_dumps(rec, JSON_COMPACT);
	store_batch_put(c->pending, key, text, strlen(text));
	c->changes++;
	free(text);
	free(key);
	json_decref(rec);
}

void cluster_logtail_delete_job(struct cluster *c, const char *job_key)
{
	char *prefix = xasprintf("logtails/%s/", job_key);
	store_batch_delete_prefix(c->pending, prefix);
	free(prefix);
}
