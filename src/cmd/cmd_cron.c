/* berth cron: list cron jobs, start one now */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd/cli.h"
#include "cmd/commands.h"

enum { C_ADDR, C_JSON, C_HELP, C_COUNT };

static void cron_opts(struct cli_opt *o)
{
	struct cli_opt all[C_COUNT] = {
	    [C_ADDR] = {"--addr", NULL, true, false, "server address (default $BERTH_ADDR)"},
	    [C_JSON] = {"--json", NULL, false, false, "print JSON"},
	    [C_HELP] = {"--help", "-h", false, false, "show this help"},
	};
	memcpy(o, all, sizeof all);
}

/* berth cron start KEY | berth cron list [--json] */
int cmd_cron(int argc, char **argv)
{
	struct cli_opt o[C_COUNT];
	cron_opts(o);
	const char *usage = "berth cron start KEY | list [--json]";
	_cleanup_free_ const char **pos = NULL;
	size_t npos;
	int begun = cli_begin(argc, argv, usage, o, C_COUNT, &pos, &npos);
	if (begun >= 0)
		return begun;
	struct berr err = {0};
	int rc = 0;
	struct http_client *hc = cli_client(o[C_ADDR].value);
	if (!strcmp(argv[0], "start")) {
		char path[600];
		if (npos != 1 || job_key_check(pos[0], &err) < 0) {
			rc = cli_fail("%s", npos != 1 ? "usage: berth cron start KEY" : err.msg);
		} else {
			snprintf(path, sizeof path, "/v1/jobs/%s/cron/start", pos[0]);
			if (http_json(hc, "POST", path, NULL, 10000, NULL, &err) < 0)
				rc = cli_fail("%s", err.msg);
			else
				printf("%s: run started\n", pos[0]);
		}
	} else if (!strcmp(argv[0], "list")) {
		json_t *arr = NULL;
		if (http_json(hc, "GET", "/v1/cron", NULL, 10000, &arr, &err) < 0) {
			rc = cli_fail("%s", err.msg);
		} else if (o[C_JSON].set) {
			cli_print_json(arr);
		} else {
			printf("%-40s %-16s %-14s %-25s %s\n", "JOB", "SCHEDULE", "COLLISION",
			       "NEXT RUN", "RUNNING");
			size_t i;
			json_t *j;
			json_array_foreach(arr, i, j)
			{
				printf("%-40s %-16s %-14s %-25s %d\n",
				       json_string_value(json_object_get(j, "job")),
				       json_string_value(json_object_get(j, "schedule")),
				       json_string_value(json_object_get(j, "collision")),
				       json_string_value(json_object_get(j, "next_run")),
				       (int)json_integer_value(json_object_get(j, "running")));
				const char *msg = json_string_value(json_object_get(j, "message"));
				if (msg)
					printf("  %s\n", msg);
			}
		}
		json_decref(arr);
	} else {
		rc = cli_fail("unknown command 'cron %s' (see 'berth cron --help')", argv[0]);
	}
	http_client_free(hc);
	return rc;
}
