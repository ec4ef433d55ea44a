/* agent_report.h - an agent's watch or status body, read into plain C.
 *
 * POST /v1/agent/watch   {"name", "known_version", "wait_ms",
 *                         "endpoints_version", "tasks": [REPORT...]}
 * POST /v1/agent/status  {"name", "updates": [REPORT...]}
 * REPORT                 {"id", "state", "pid", "exit_code", "message",
 *                         "address", "logs": {"stdout", "stderr"}}
 *
 * Every agent sends a watch every second or so, naming every task it holds
 * (100 each at a million tasks): building a jansson tree of it and walking
 * it was half the server's cost per task placed. This reads the members the
 * server uses in one pass over the text (json_scan.h) and skips the rest.
 * The body is untrusted: it is accepted exactly when jansson would accept
 * it (json_loadb with JSON_REJECT_DUPLICATES, an object), and refused with
 * jansson's own message ("malformed JSON at line L column C: ...").
 *
 * A member of the wrong type reads as absent, as json_object_get plus a
 * type test did: the server's checks (cluster_nodes.c) stay where they
 * were.
 */
#ifndef BERTH_AGENT_REPORT_H
#define BERTH_AGENT_REPORT_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/util.h"

enum agent_call {
	AGENT_CALL_WATCH,    /* its list is "tasks" */
	AGENT_CALL_STATUS,   /* its list is "updates" */
	AGENT_CALL_REGISTER, /* its list is "tasks" (other members not read) */
};

/* The list member: absent, there but not an array, an array. */
enum agent_list { AGENT_LIST_ABSENT, AGENT_LIST_NOT_ARRAY, AGENT_LIST_ARRAY };

/* A log tail (base64 text): given when the member is there; text NULL
 * when it is not a string. */
struct agent_log_tail {
	bool given;
	const char *text;
	size_t len;
};

/* One task as the agent tells it. Entries without a string id are left
 * out (the server ignored them). */
struct agent_task_report {
	const char *id;
	int state; /* enum task_state; -1 when absent, not a string, unknown */
	bool has_pid, has_exit_code, has_address;
	int64_t pid, exit_code; /* when they are integers */
	uint32_t address;	/* when it is a string and an IPv4 address */
	const char *message;	/* NULL when absent or not a string */
	bool has_logs;		/* "logs" is an object */
	struct agent_log_tail out, err;
};

struct agent_report {
	const char *name; /* NULL when absent or not a string */
	bool has_known_version, has_wait_ms, has_endpoints_version;
	int64_t known_version, wait_ms, endpoints_version; /* when integers */
	enum agent_list list;
	struct agent_task_report *tasks;
	size_t ntasks;
	char *arena; /* the decoded strings */
};

/* The body text[0..len) of a call; NULL with err (400, the message the
 * server always gave) when it is not a valid JSON object. */
struct agent_report *agent_report_parse(const char *text, size_t len, enum agent_call call,
					struct berr *err);

/* The same from a tree (a registering agent's body, tests). */
struct agent_report *agent_report_from_json(const json_t *body, enum agent_call call,
					    struct berr *err);

void agent_report_free(struct agent_report *r);

#endif
