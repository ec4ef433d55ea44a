/* report_bench.c - CPU per task entry to read an agent's watch body: the
 * jansson tree the server built before (json_loadb with
 * JSON_REJECT_DUPLICATES, then the members it used looked up) against
 * core/agent_report.h. The body is what an agent sends at a million tasks
 * on 10,000 nodes: 100 entries as agent_task_report_json writes them.
 *
 * Build and run (after make):
 *   cc -std=gnu11 -O2 -D_GNU_SOURCE -Isrc -o build/report_bench bench/report_bench.c \
 *      build/libberth.a -lmimalloc -ljansson -lm
 *   build/report_bench [ENTRIES [ROUNDS]]     (default 100 20000)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/agent_report.h"

static double cpu_ns(void)
{
	struct timespec t;
	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
	return (double)t.tv_sec * 1e9 + (double)t.tv_nsec;
}

/* What the server read of the tree, per entry. */
static long walk_tree(json_t *body)
{
	long sum = json_integer_value(json_object_get(body, "known_version"));
	size_t i;
	json_t *u;
	json_array_foreach(json_object_get(body, "tasks"), i, u)
	{
		const char *id = json_string_value(json_object_get(u, "id"));
		const char *st = json_string_value(json_object_get(u, "state"));
		const char *msg = json_string_value(json_object_get(u, "message"));
		const char *addr = json_string_value(json_object_get(u, "address"));
		sum += (id ? 1 : 0) + (st ? 1 : 0) + (msg ? 1 : 0) + (addr ? 1 : 0) +
		       json_integer_value(json_object_get(u, "pid")) +
		       json_integer_value(json_object_get(u, "exit_code")) +
		       (json_object_get(u, "logs") ? 1 : 0);
	}
	return sum;
}

int main(int argc, char **argv)
{
	int entries = argc > 1 ? atoi(argv[1]) : 100;
	int rounds = argc > 2 ? atoi(argv[2]) : 20000;
	if (entries <= 0 || rounds <= 0) {
		fprintf(stderr, "usage: report_bench [ENTRIES [ROUNDS]]\n");
		return 2;
	}
	struct sbuf sb;
	sbuf_init(&sb);
	sbuf_adds(&sb, "{\"name\":\"sim-04242\",\"known_version\":1234,\"wait_ms\":1000,"
		       "\"endpoints_version\":17,\"tasks\":[");
	for (int k = 0; k < entries; k++)
		sbuf_addf(&sb,
			  "%s{\"id\":\"scale/prod/j%d/%d-1a2b3c4d\",\"state\":\"RUNNING\","
			  "\"pid\":%d,\"message\":\"running on sim-04242\",\"address\":"
			  "\"10.244.3.%d\"}",
			  k ? "," : "", k % 1000, k, 10000 + k, k % 250 + 2);
	sbuf_adds(&sb, "]}");
	long sink = 0;
	double a = cpu_ns();
	for (int r = 0; r < rounds; r++) {
		json_t *body = json_loadb(sb.buf, sb.len, JSON_REJECT_DUPLICATES, NULL);
		sink += walk_tree(body);
		json_decref(body);
	}
	double tree = cpu_ns() - a;
	a = cpu_ns();
	for (int r = 0; r < rounds; r++) {
		struct berr err = {0};
		struct agent_report *rep =
		    agent_report_parse(sb.buf, sb.len, AGENT_CALL_WATCH, &err);
		if (!rep) {
			fprintf(stderr, "report_bench: %s\n", err.msg);
			return 1;
		}
		sink += (long)rep->ntasks;
		agent_report_free(rep);
	}
	double scan = cpu_ns() - a;
	double n = (double)entries * rounds;
	printf("body %zu bytes, %d entries, %d rounds\n", sb.len, entries, rounds);
	printf("jansson tree + lookups %7.0f ns/entry\n", tree / n);
	printf("agent_report_parse     %7.0f ns/entry (%.1fx less)\n", scan / n, tree / scan);
	sbuf_release(&sb);
	return sink == 42 ? 3 : 0;
}
