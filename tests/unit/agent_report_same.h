/* agent_report_same.h - the differential check of core/agent_report.h
 * against jansson, shared by test_agent_report.c and
 * fuzz/fuzz_agent_report.c: on any text, agent_report_parse accepts exactly
 * when json_loadb(JSON_REJECT_DUPLICATES) gives an object, refuses with the
 * message the server built from jansson's error, and reads every member
 * the server uses as json_object_get plus a type test would. */
#ifndef BERTH_AGENT_REPORT_SAME_H
#define BERTH_AGENT_REPORT_SAME_H

#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "core/agent_report.h"
#include "core/cidr.h"
#include "core/lifecycle.h"

static bool same_str(const char *a, const char *b)
{
	return (!a && !b) || (a && b && !strcmp(a, b));
}

static bool same_int(json_t *v, bool has, int64_t got)
{
	return json_is_integer(v) ? has && got == json_integer_value(v) : !has;
}

static bool same_tail(json_t *v, const struct agent_log_tail *t)
{
	if (!v)
		return !t->given;
	if (!t->given)
		return false;
	if (!json_is_string(v))
		return !t->text;
	return t->text && t->len == json_string_length(v) &&
	       !memcmp(t->text, json_string_value(v), t->len) && !t->text[t->len];
}

static bool same_task(json_t *u, const struct agent_task_report *t)
{
	const char *st = json_string_value(json_object_get(u, "state"));
	uint32_t address;
	bool has_address =
	    ip4_parse(json_string_value(json_object_get(u, "address")), &address) == 0;
	json_t *logs = json_object_get(u, "logs");
	return same_str(json_string_value(json_object_get(u, "id")), t->id) &&
	       (st ? task_state_parse(st) : -1) == t->state &&
	       same_int(json_object_get(u, "pid"), t->has_pid, t->pid) &&
	       same_int(json_object_get(u, "exit_code"), t->has_exit_code, t->exit_code) &&
	       same_str(json_string_value(json_object_get(u, "message")), t->message) &&
	       has_address == t->has_address && (!has_address || address == t->address) &&
	       json_is_object(logs) == t->has_logs &&
	       (!t->has_logs || (same_tail(json_object_get(logs, "stdout"), &t->out) &&
				 same_tail(json_object_get(logs, "stderr"), &t->err)));
}

/* NULL when agent_report_parse and jansson agree on text, else what
 * differs. */
static const char *agent_report_differs(const char *text, size_t len, enum agent_call call)
{
	struct berr err = {0};
	struct agent_report *r = agent_report_parse(text, len, call, &err);
	json_error_t je;
	json_t *j = json_loadb(text, len, JSON_REJECT_DUPLICATES, &je);
	const char *why = NULL;
	if (!j || !json_is_object(j)) {
		char msg[sizeof err.msg];
		if (j)
			snprintf(msg, sizeof msg, "malformed request: expected a JSON object");
		else
			snprintf(msg, sizeof msg, "malformed JSON at line %d column %d: %s",
				 je.line, je.column, je.text);
		if (r)
			why = "accepted what jansson refuses";
		else if (err.code != 400 || strcmp(err.msg, msg))
			why = "refused with another message";
		goto out;
	}
	if (!r) {
		why = "refused what jansson accepts";
		goto out;
	}
	json_t *list = json_object_get(j, call == AGENT_CALL_STATUS ? "updates" : "tasks");
	enum agent_list kind = !list		     ? AGENT_LIST_ABSENT
			       : json_is_array(list) ? AGENT_LIST_ARRAY
						     : AGENT_LIST_NOT_ARRAY;
	if (!same_str(json_string_value(json_object_get(j, "name")), r->name))
		why = "name";
	else if (!same_int(json_object_get(j, "known_version"), r->has_known_version,
			   r->known_version) ||
		 !same_int(json_object_get(j, "wait_ms"), r->has_wait_ms, r->wait_ms) ||
		 !same_int(json_object_get(j, "endpoints_version"), r->has_endpoints_version,
			   r->endpoints_version))
		why = "an integer member";
	else if (kind != r->list)
		why = "the list's kind";
	if (why || kind != AGENT_LIST_ARRAY)
		goto out;
	size_t k = 0, i;
	json_t *u;
	json_array_foreach(list, i, u)
	{
		if (!json_string_value(json_object_get(u, "id")))
			continue; /* left out */
		if (k >= r->ntasks || !same_task(u, &r->tasks[k])) {
			why = "a task entry";
			goto out;
		}
		k++;
	}
	if (k != r->ntasks)
		why = "the number of task entries";
out:
	json_decref(j);
	agent_report_free(r);
	return why;
}

#endif
