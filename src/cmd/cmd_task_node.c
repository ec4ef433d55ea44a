/* berth task logs | berth node list | drain | activate */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <curl/curl.h>

#include "cmd/cli.h"
#include "cmd/commands.h"

enum { T_ADDR, T_STDERR, T_FOLLOW, T_JSON, T_STATE, T_HELP, T_COUNT };

static void opts(struct cli_opt *o)
{
	struct cli_opt all[T_COUNT] = {
	    [T_ADDR] = {"--addr", NULL, true, false, "server address (default $BERTH_ADDR)"},
	    [T_STDERR] = {"--stderr", NULL, false, false, "show stderr instead of stdout"},
	    [T_FOLLOW] = {"--follow", "-f", false, false, "keep printing new output"},
	    [T_JSON] = {"--json", NULL, false, false, "print JSON"},
	    [T_STATE] = {"--state", NULL, true, false,
			 "node list: only nodes in this state (ACTIVE, DRAINING, DRAINED, DOWN)"},
	    [T_HELP] = {"--help", "-h", false, false, "show this help"},
	};
	memcpy(o, all, sizeof all);
}

static int task_logs(struct cli_opt *o, const char *ref)
{
	struct http_client *hc = cli_client(o[T_ADDR].value);
	int rc = cli_task_logs(hc, ref, o[T_STDERR].set, o[T_FOLLOW].set);
	http_client_free(hc);
	return rc;
}

int cmd_task(int argc, char **argv)
{
	struct cli_opt o[T_COUNT];
	opts(o);
	const char *usage =
	    "berth task logs KEY/INSTANCE[/TASK_ID]|TASK_ID [--stderr] [-f]\n"
	    "       berth task exec KEY/INSTANCE|TASK_ID [-i] [-t] -- COMMAND [ARG...]";
	if (argc >= 1 && !strcmp(argv[0], "exec"))
		return cmd_task_exec_cli(argc, argv);
	_cleanup_free_ const char **pos = NULL;
	size_t npos;
	int begun = cli_begin(argc, argv, usage, o, T_COUNT, &pos, &npos);
	if (begun >= 0)
		return begun;
	int rc;
	if (strcmp(argv[0], "logs")) {
		rc = cli_fail("unknown command 'task %s' (see 'berth task --help')", argv[0]);
	} else if (npos != 1) {
		rc = cli_fail("usage: %s", usage);
	} else {
		rc = task_logs(o, pos[0]);
	}
	return rc;
}

static void print_nodes(json_t *arr)
{
	printf("%-20s %-9s %-14s %-22s %-6s %s\n", "NAME", "STATE", "CPU USED/ALL",
	       "MEMORY USED/ALL", "TASKS", "ATTRIBUTES");
	size_t i;
	json_t *n;
	json_array_foreach(arr, i, n)
	{
		json_t *r = json_object_get(n, "resources");
		char cpu[32], mem[64], mu[24], mt[24];
		snprintf(cpu, sizeof cpu, "%.1f/%.1f",
			 json_number_value(json_object_get(r, "cpu_used")),
			 json_number_value(json_object_get(r, "cpu")));
		cli_format_size(
		    (unsigned long long)json_integer_value(json_object_get(r, "memory_used")), mu,
		    sizeof mu);
		cli_format_size(
		    (unsigned long long)json_integer_value(json_object_get(r, "memory")), mt,
		    sizeof mt);
		snprintf(mem, sizeof mem, "%s/%s", mu, mt);
		struct sbuf sb;
		sbuf_init(&sb);
		const char *k;
		json_t *v;
		json_object_foreach(json_object_get(n, "attributes"), k, v)
		    sbuf_addf(&sb, "%s%s=%s", sb.len ? "," : "", k, json_string_value(v));
		printf("%-20s %-9s %-14s %-22s %-6d %s\n",
		       json_string_value(json_object_get(n, "name")),
		       json_string_value(json_object_get(n, "state")), cpu, mem,
		       (int)json_integer_value(json_object_get(r, "tasks")), sb.buf);
		sbuf_release(&sb);
	}
}

int cmd_node(int argc, char **argv)
{
	struct cli_opt o[T_COUNT];
	opts(o);
	const char *usage = "berth node list [--json] [--state S] | drain NODE | activate NODE";
	_cleanup_free_ const char **pos = NULL;
	size_t npos;
	int begun = cli_begin(argc, argv, usage, o, T_COUNT, &pos, &npos);
	if (begun >= 0)
		return begun;
	int rc = 0;
	struct berr err = {0};
	struct http_client *hc = cli_client(o[T_ADDR].value);
	if (!strcmp(argv[0], "list")) {
		json_t *arr = NULL;
		char *query = NULL;
		if (o[T_STATE].set) {
			char *esc = curl_easy_escape(NULL, o[T_STATE].value, 0);
			query = xasprintf("state=%s", esc);
			curl_free(esc);
		}
		int r = o[T_JSON].set
			    ? cli_print_all_pages(hc, "/v1/nodes", query, "nodes", &err)
			    : cli_get_all_pages(hc, "/v1/nodes", query, "nodes", &arr, &err);
		free(query);
		if (r < 0)
			rc = cli_fail("%s", err.msg);
		else if (!o[T_JSON].set)
			print_nodes(arr);
		json_decref(arr);
	} else if (!strcmp(argv[0], "drain") || !strcmp(argv[0], "activate")) {
		if (npos != 1) {
			rc = cli_fail("usage: berth node %s NODE", argv[0]);
		} else {
			char path[400];
			snprintf(path, sizeof path, "/v1/nodes/%s/%s", pos[0], argv[0]);
			if (http_json(hc, "POST", path, NULL, 10000, NULL, &err) < 0)
				rc = cli_fail("%s", err.msg);
			else
				printf("node %s: %s\n", pos[0],
				       !strcmp(argv[0], "drain") ? "draining" : "active");
		}
	} else {
		rc = cli_fail("unknown command 'node %s' (see 'berth node --help')", argv[0]);
	}
	http_client_free(hc);
	return rc;
}
