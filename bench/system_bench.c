/* system_bench.c - the cost of system jobs in the server's tick
 * (src/server/cluster_system.c), in CPU time, on N registered nodes.
 *
 * Registers N nodes (4 cpu, 8 GiB; rack r1 on 4 nodes of 5, r2 on the
 * rest), submits one system job constrained to rack r1, and measures:
 *   - the tick without any system job;
 *   - the first tick after the submit (a slot, a task and its placement
 *     per eligible node);
 *   - a tick with nothing to do (no node event: the job is skipped);
 *   - a reconcile pass after a node event (every node and slot looked at).
 *
 * Build and run (after make):
 *   cc -std=gnu11 -O2 -D_GNU_SOURCE -Isrc -o build/system_bench bench/system_bench.c \
 *      build/libberth.a -lnl-route-3 -lnl-3 -lnftnl -lmnl -lmicrohttpd -lgnutls \
 *      -ljansson -lyaml -lsqlite3 -lcurl -lssl -lcrypto -lz -lpthread -lm
 *   build/system_bench [NODES]        (default 10000)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/log.h"
#include "server/cluster.h"
#include "store/store.h"

/* Internal to the cluster module (cluster-internal.h, cluster_system.h). */
void systems_reconcile(struct cluster *c);

static double cpu_ms(void)
{
	struct timespec t;
	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
	return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
}

static double avg_tick(struct cluster *c, int rounds, bool node_event)
{
	double total = 0;
	for (int k = 0; k < rounds; k++) {
		if (node_event)
			c->nodes_gen++;
		double a = cpu_ms();
		if (node_event)
			systems_reconcile(c);
		else
			cluster_tick(c);
		total += cpu_ms() - a;
	}
	return total / rounds;
}

int main(int argc, char **argv)
{
	int nodes = argc > 1 ? atoi(argv[1]) : 10000;
	log_set_level(LOG_OFF);
	struct berr err = {0};
	char dir[] = "/tmp/berth-system-bench.XXXXXX";
	if (!mkdtemp(dir))
		return 1;
	char loc[128];
	snprintf(loc, sizeof loc, "sqlite:%s/state.db", dir);
	struct store *st = store_open(loc, &err);
	if (!st) {
		fprintf(stderr, "%s\n", err.msg);
		return 1;
	}
	struct cluster_config cfg;
	cluster_config_defaults(&cfg);
	struct cluster *c = cluster_new(st, &cfg);
	pthread_mutex_lock(&c->lock);
	for (int i = 0; i < nodes; i++) {
		char name[32];
		snprintf(name, sizeof name, "n%d", i);
		json_t *body =
		    json_pack("{s:s,s:{s:s},s:{s:f,s:I,s:I,s:i,s:i},s:s}", "name", name,
			      "attributes", "rack", i % 5 ? "r1" : "r2", "resources", "cpu", 4.0,
			      "memory", (json_int_t)(8LL << 30), "disk", (json_int_t)(100LL << 30),
			      "port_lo", 20000, "port_hi", 20999, "addr", "http://127.0.0.1:1");
		json_t *reply = NULL;
		cluster_agent_register(c, body, &reply, &err);
		json_decref(reply);
		json_decref(body);
	}
	printf("tick, no system job (%d nodes): %.2f ms\n", nodes, avg_tick(c, 20, false));
	const char *y = "job: ops/prod/exporter\ntype: system\ntask:\n  command: sleep 1\n"
			"  resources: {cpu: 0.01, memory: 16MiB}\n  constraints: {rack: r1}\n";
	struct job_spec *spec;
	struct submit_result res;
	if (spec_parse_yaml(y, strlen(y), "bench", &spec, &err) < 0 ||
	    !cluster_job_submit(c, spec, &res, &err)) {
		fprintf(stderr, "%s\n", err.msg);
		return 1;
	}
	double a = cpu_ms();
	cluster_tick(c);
	printf("first tick after the submit (%d instances created and placed): %.1f ms\n",
	       nodes - (nodes + 4) / 5, cpu_ms() - a);
	printf("tick, system job, no node event: %.2f ms\n", avg_tick(c, 20, false));
	printf("reconcile pass after a node event: %.2f ms\n", avg_tick(c, 20, true));
	uint64_t seq;
	store_batch_free(cluster_take_pending(c, &seq));
	pthread_mutex_unlock(&c->lock);
	cluster_free(c);
	store_close(st);
	rm_rf(dir);
	return 0;
}
