/* server_logtail.c - GET /v1/tasks/REF/logs from a kept tail (logtail.h).
 *
 *   ?kept=1                  200 {"task", "state", "node", "ended",
 *                                 "stdout"?, "stderr"? (base64), "kept": true}
 *                            or 404 when the instance has none
 *   the node DOWN or gone    410 {"error", "kept": true}: ask with ?kept=1
 *
 * The tail is the instance's latest kept one: it may be of an earlier task
 * of the instance than REF names ("task" says which). Read from the store
 * under its lock: a rare request, for a node that is gone. */
#include "server/logtail.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server/server-internal.h"

static json_t *tail_read(struct server *s, const struct task *t)
{
	char *key = cluster_logtail_key(t->job->key, t->instance);
	char *val = NULL;
	size_t len = 0;
	struct berr err = {0};
	pthread_mutex_lock(&s->store_lock);
	int r = store_get(s->store, key, &val, &len, &err);
	pthread_mutex_unlock(&s->store_lock);
	free(key);
	json_t *j = r == 0 ? json_loadb(val, len, 0, NULL) : NULL;
	free(val);
	if (j && !json_is_object(j)) {
		json_decref(j);
		j = NULL;
	}
	return j;
}

bool server_logtail_answer(struct request *q, const struct task *t, bool asked)
{
	bool gone = !t->node || t->node->state == NODE_DOWN || !t->node->addr;
	if (!asked && !gone)
		return false;
	json_t *tail = tail_read(q->srv, t);
	if (!tail) {
		if (!asked)
			return false;
		reply_error(q, 404,
			    "no log tail kept for this instance (tails are kept for "
			    "tasks that ended FAILED or KILLED)");
		return true;
	}
	if (!asked) {
		char msg[400];
		snprintf(msg, sizeof msg,
			 "the logs of task '%s' cannot be read from its node%s%s%s: the server "
			 "keeps the tail of task '%s' (?kept=1)",
			 t->id, t->node ? " '" : "", t->node ? t->node->name : "",
			 t->node ? "', which is DOWN" : " (it never ran)",
			 json_string_value(json_object_get(tail, "task")));
		json_decref(tail);
		q->status = 410;
		q->phase = REQ_READY;
		q->reply = json_pack("{s:s,s:i,s:b}", "error", msg, "status", 410, "kept", 1);
		return true;
	}
	char when[40];
	time_format_ms(json_integer_value(json_object_get(tail, "ended_ms")), when, sizeof when);
	json_object_set_new(tail, "ended", json_string(when));
	json_object_del(tail, "ended_ms");
	json_object_set_new(tail, "kept", json_true());
	reply_ok(q, tail);
	return true;
}
