/* berth update: follow, pause, resume, abort and roll back a job's update */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd/cli.h"
#include "cmd/commands.h"

enum { U_ADDR, U_JSON, U_HELP, U_COUNT };

static void update_opts(struct cli_opt *o)
{
	struct cli_opt all[U_COUNT] = {
	    [U_ADDR] = {"--addr", NULL, true, false, "server address (default $BERTH_ADDR)"},
	    [U_JSON] = {"--json", NULL, false, false, "print JSON"},
	    [U_HELP] = {"--help", "-h", false, false, "show this help"},
	};
	memcpy(o, all, sizeof all);
}

/* berth update status|pause|resume|abort|rollback KEY [--json] */
int cmd_update(int argc, char **argv)
{
	struct cli_opt o[U_COUNT];
	update_opts(o);
	const char *usage = "berth update status|pause|resume|abort|rollback KEY [--json]";
	_cleanup_free_ const char **pos = NULL;
	size_t npos;
	int begun = cli_begin(argc, argv, usage, o, U_COUNT, &pos, &npos);
	if (begun >= 0)
		return begun;
	const char *verb = argv[0];
	struct berr err = {0};
	int rc = 0;
	if (npos != 1) {
		rc = cli_fail("usage: %s", usage);
	} else if (job_key_check(pos[0], &err) < 0) {
		rc = cli_fail("%s", err.msg);
	} else if (strcmp(verb, "status") && strcmp(verb, "pause") && strcmp(verb, "resume") &&
		   strcmp(verb, "abort") && strcmp(verb, "rollback")) {
		rc = cli_fail("unknown command 'update %s' (see 'berth update --help')", verb);
	} else {
		struct http_client *hc = cli_client(o[U_ADDR].value);
		char path[600];
		json_t *u = NULL;
		int r;
		if (!strcmp(verb, "status")) {
			snprintf(path, sizeof path, "/v1/jobs/%s/update", pos[0]);
			r = http_json(hc, "GET", path, NULL, 10000, &u, &err);
		} else {
			snprintf(path, sizeof path, "/v1/jobs/%s/update/%s", pos[0], verb);
			r = http_json(hc, "POST", path, NULL, 10000, &u, &err);
		}
		if (r < 0) {
			rc = cli_fail("%s", err.msg);
		} else if (o[U_JSON].set) {
			cli_print_json(u);
		} else if (!strcmp(json_string_value(json_object_get(u, "kind")) ?: "",
				   "restart")) {
			printf("%s: restart %s (version %d): %d/%d restarted, %d failed%s%s\n",
			       pos[0], json_string_value(json_object_get(u, "state")),
			       (int)json_integer_value(json_object_get(u, "to_version")),
			       (int)json_integer_value(json_object_get(u, "updated")),
			       (int)json_integer_value(json_object_get(u, "total")),
			       (int)json_integer_value(json_object_get(u, "failed")),
			       *json_string_value(json_object_get(u, "message")) ? ": " : "",
			       json_string_value(json_object_get(u, "message")));
		} else {
			printf("%s: %s (version %d -> %d): %d/%d updated, %d failed%s%s\n", pos[0],
			       json_string_value(json_object_get(u, "state")),
			       (int)json_integer_value(json_object_get(u, "from_version")),
			       (int)json_integer_value(json_object_get(u, "to_version")),
			       (int)json_integer_value(json_object_get(u, "updated")),
			       (int)json_integer_value(json_object_get(u, "total")),
			       (int)json_integer_value(json_object_get(u, "failed")),
			       *json_string_value(json_object_get(u, "message")) ? ": " : "",
			       json_string_value(json_object_get(u, "message")));
		}
		json_decref(u);
		http_client_free(hc);
	}
	return rc;
}
