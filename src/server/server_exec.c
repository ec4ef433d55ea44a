/* server_exec.c - POST /v1/tasks/REF/exec: where a `berth task exec` goes.
 *
 * The server runs nothing: it checks the caller may act on the task's role
 * (auth.h), that the task runs on a node that is up, and answers with the
 * agent's exec URL and a ticket the cluster CA signs over
 * "exec|TASK|EXPIRY|TTY|COMMAND" (COMMAND: the base64 of the JSON list of
 * words, sent to the agent as X-Berth-Command), valid EXEC_TICKET_S
 * seconds. The request is a POST, so the audit log has who exec'd into
 * which task (server_audit). The agent checks the ticket (agent_exec.h). */
#include "server/server-internal.h"

#include <stdlib.h>
#include <string.h>

#include "core/base64.h"
#include "core/log.h"
#include "core/pki.h"

#define EXEC_TICKET_S 60

static char *exec_ticket(struct server *s, const char *task_id, bool tty, const char *command)
{
	if (!s->tls)
		return NULL;
	int64_t expiry = time_now_ms() / 1000 + EXEC_TICKET_S;
	char *data =
	    xasprintf("exec|%s|%lld|%d|%s", task_id, (long long)expiry, tty ? 1 : 0, command);
	char *ticket = server_ticket(s, "an exec", expiry, data);
	free(data);
	return ticket;
}

void server_route_task_exec(struct request *q, const char *method, const char *ref)
{
	struct cluster *c = q->srv->c;
	if (strcmp(method, "POST")) {
		reply_error(q, 405, "method not allowed");
		return;
	}
	struct task *t = cluster_find_task(c, ref);
	if (!t) {
		reply_error(q, 404, "task not found");
		return;
	}
	if (!auth_role(q, t->job->key))
		return;
	json_t *body = parse_body(q);
	if (!body)
		return;
	json_t *cmd = json_object_get(body, "command");
	json_t *tty = json_object_get(body, "tty");
	size_t n = json_array_size(cmd);
	bool words_ok = json_is_array(cmd) && n > 0 && n <= 256;
	for (size_t i = 0; words_ok && i < n; i++) {
		const char *w = json_string_value(json_array_get(cmd, i));
		words_ok = w && (i || *w);
	}
	if (!words_ok || (tty && !json_is_boolean(tty))) {
		json_decref(body);
		reply_error(q, 400,
			    "expected {\"command\": [WORD, ...] (1 to 256 words), \"tty\"?: bool}");
		return;
	}
	if (t->state != TASK_RUNNING || !t->node || !t->node->addr) {
		char msg[300];
		snprintf(msg, sizeof msg, "task '%s' is not running (it is %s)", t->id,
			 task_state_name(t->state));
		json_decref(body);
		reply_error(q, 409, msg);
		return;
	}
	if (t->node->state == NODE_DOWN) {
		char msg[300];
		snprintf(msg, sizeof msg, "task '%s' is on node '%s', which is DOWN", t->id,
			 t->node->name);
		json_decref(body);
		reply_error(q, 409, msg);
		return;
	}
	char *text = json_dumps(cmd, JSON_COMPACT);
	char *command = base64_encode(text, strlen(text));
	free(text);
	bool want_tty = json_is_true(tty);
	char *ticket = exec_ticket(q->srv, t->id, want_tty, command);
	char *url = xasprintf("%s/v1/exec/%s?tty=%d%s%s", t->node->addr, t->id, want_tty ? 1 : 0,
			      ticket ? "&ticket=" : "", ticket ? ticket : "");
	log_info("exec into task %s on %s (%zu words%s)", t->id, t->node->name, n,
		 want_tty ? ", tty" : "");
	reply_ok(q, json_pack("{s:s,s:s,s:s,s:s}", "task", t->id, "node", t->node->name, "url", url,
			      "command", command));
	free(url);
	free(ticket);
	free(command);
	json_decref(body);
}
