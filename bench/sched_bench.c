/* sched_bench.c - where the server's time goes per task placed, in CPU
 * time, with no network and no agents: an in-process cluster on a SQLite
 * store (the default), N registered nodes, J jobs of I instances.
 *
 * Stages, each timed on its own (CPU time of this process):
 *   submit   - the job spec parsed from JSON and submitted (tasks created,
 *              PENDING, quota checked), as POST /v1/jobs does;
 *   schedule - cluster_tick: ranking, placement, PENDING -> ASSIGNED
 *              (task events, event ring, metrics);
 *   encode   - cluster_take_pending: every dirty task's record as text,
 *              into the store batch;
 *   commit   - store_commit of those batches (SQLite, one fsync each);
 *   watch    - per node, its desired set as the agent's watch gets it;
 *   parse    - per node, the agent's report (every task RUNNING) read
 *              from its JSON text (core/agent_report.h; the server does it
 *              in the HTTP thread, without the cluster's lock);
 *   report   - that report applied (ASSIGNED -> RUNNING);
 *   encode2  - the RUNNING records as text (cluster_take_pending);
 *   commit2  - their commit.
 * Commits happen every B submitted jobs (default 16: the scale bench's
 * submitters), as the server's commit loop would batch them.
 *
 * Build and run (after make):
 *   cc -std=gnu11 -O2 -D_GNU_SOURCE -Isrc -I/usr/include/libnl3 -o build/sched_bench \
 *      bench/sched_bench.c build/libberth.a -lmimalloc -lnl-route-3 -lnl-3 -lnftnl -lmnl \
 *      -lmicrohttpd -lgnutls -ljansson -lyaml -lsqlite3 -lcurl -lssl -lcrypto -lz \
 *      -lpthread -lm
 *   build/sched_bench [NODES [JOBS [INSTANCES]]]     (default 10000 100 1000)
 * Prints one line per stage (ms and ns per task), the total, and the
 * resident memory the tasks added (bytes per task).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/agent_report.h"
#include "core/log.h"
#include "server/cluster.h"
#include "store/store.h"

enum {
	S_SUBMIT,
	S_SCHEDULE,
	S_ENCODE,
	S_COMMIT,
	S_WATCH,
	S_PARSE,
	S_REPORT,
	S_ENCODE2,
	S_COMMIT2,
	S_COUNT
};
static const char *stage_names[S_COUNT] = {"submit", "schedule", "encode",  "commit", "watch",
					   "parse",  "report",	 "encode2", "commit2"};
static double stage_ms[S_COUNT];

static double cpu_ms(void)
{
	struct timespec t;
	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
	return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
}

static long rss_kib(void)
{
	FILE *f = fopen("/proc/self/status", "r");
	char line[256];
	long kib = 0;
	while (f && fgets(line, sizeof line, f))
		if (!strncmp(line, "VmRSS:", 6))
			kib = atol(line + 6);
	if (f)
		fclose(f);
	return kib;
}

static void die(const char *what, const struct berr *err)
{
	fprintf(stderr, "sched_bench: %s: %s\n", what, err->msg);
	exit(1);
}

/* Take the pending batch and commit it, timing both. */
static void commit(struct cluster *c, struct store *st, int enc, int com)
{
	uint64_t seq;
	double a = cpu_ms();
	struct store_batch *b = cluster_take_pending(c, &seq);
	double m = cpu_ms();
	stage_ms[enc] += m - a;
	if (!b)
		return;
	struct berr err = {0};
	if (store_commit(st, b, &err) < 0)
		die("commit", &err);
	store_batch_free(b);
	cluster_set_committed(c, seq);
	stage_ms[com] += cpu_ms() - m;
}

static void schedule(struct cluster *c, struct store *st)
{
	double a = cpu_ms();
	cluster_tick(c);
	stage_ms[S_SCHEDULE] += cpu_ms() - a;
	commit(c, st, S_ENCODE, S_COMMIT);
}

int main(int argc, char **argv)
{
	int nodes = argc > 1 ? atoi(argv[1]) : 10000;
	int jobs = argc > 2 ? atoi(argv[2]) : 100;
	int instances = argc > 3 ? atoi(argv[3]) : 1000;
	int batch = 16;
	if (nodes <= 0 || jobs <= 0 || instances <= 0) {
		fprintf(stderr, "usage: sched_bench [NODES [JOBS [INSTANCES]]]\n");
		return 2;
	}
	log_set_level(LOG_OFF);
	alloc_prefer_large_pages(); /* as `berth server` does */
	struct berr err = {0};
	char dir[] = "/tmp/berth-sched-bench.XXXXXX";
	if (!mkdtemp(dir))
		return 1;
	char loc[128];
	snprintf(loc, sizeof loc, "sqlite:%s/state.db", dir);
	struct store *st = store_open(loc, &err);
	if (!st)
		die("store", &err);
	struct cluster_config cfg;
	cluster_config_defaults(&cfg);
	/* No agent heartbeats here: large runs outlast the detection window,
	 * and every node would go DOWN (its tasks LOST) before reporting. */
	cfg.down_after_ms = 3600 * 1000;
	struct cluster *c = cluster_new(st, &cfg);
	pthread_mutex_lock(&c->lock);
	for (int i = 0; i < nodes; i++) {
		char name[32], rack[16];
		snprintf(name, sizeof name, "sim-%05d", i);
		snprintf(rack, sizeof rack, "r%d", i % 20);
		json_t *body =
		    json_pack("{s:s,s:{s:s},s:{s:f,s:I,s:I,s:i,s:i},s:s}", "name", name,
			      "attributes", "rack", rack, "resources", "cpu", 16.0, "memory",
			      (json_int_t)(64LL << 30), "disk", (json_int_t)(1LL << 40), "port_lo",
			      20000, "port_hi", 29999, "addr", "http://127.0.0.1:1");
		json_t *reply = NULL;
		if (!cluster_agent_register(c, body, &reply, &err))
			die("register", &err);
		json_decref(reply);
		json_decref(body);
		body = json_pack("{s:s,s:[],s:i}", "name", name, "tasks", "known_version", 0);
		struct agent_report *r = agent_report_from_json(body, AGENT_CALL_WATCH, &err);
		struct node *n;
		if (!r || !cluster_agent_watch(c, r, &n, &err))
			die("watch", &err);
		agent_report_free(r);
		json_decref(body);
	}
	commit(c, st, S_ENCODE, S_COMMIT);
	memset(stage_ms, 0, sizeof stage_ms);
	long rss0 = rss_kib();

	for (int k = 0; k < jobs; k++) {
		char *text = xasprintf("{\"job\":\"scale/prod/j%d\",\"instances\":%d,\"task\":"
				       "{\"command\":[\"/bin/true\"],\"resources\":"
				       "{\"cpu\":0.01,\"memory\":\"4MiB\"}}}",
				       k, instances);
		double a = cpu_ms();
		json_t *obj = json_loads(text, 0, NULL);
		struct job_spec *spec;
		struct submit_result res;
		if (spec_parse_json(obj, &spec, &err) < 0 ||
		    !cluster_job_submit(c, spec, &res, &err))
			die("submit", &err);
		json_decref(obj);
		stage_ms[S_SUBMIT] += cpu_ms() - a;
		free(text);
		if ((k + 1) % batch == 0 || k + 1 == jobs)
			schedule(c, st);
	}
	for (int r = 0; r < 5; r++)
		schedule(c, st);

	/* Every node's agent: its desired set, then its report of all RUNNING. */
	struct node **all = xcalloc((size_t)nodes, sizeof *all);
	size_t na = 0;
	json_t *list = cluster_node_list_json(c);
	size_t i;
	json_t *e;
	json_array_foreach(list, i, e)
	{
		struct node *n = NULL;
		json_t *body =
		    json_pack("{s:s}", "name", json_string_value(json_object_get(e, "name")));
		struct agent_report *r = agent_report_from_json(body, AGENT_CALL_WATCH, &err);
		if (!r || !cluster_agent_watch(c, r, &n, &err))
			die("watch", &err);
		agent_report_free(r);
		json_decref(body);
		if (n && na < (size_t)nodes)
			all[na++] = n;
	}
	json_decref(list);
	size_t placed = 0;
	for (size_t k = 0; k < na; k++) {
		struct node *n = all[k];
		double a = cpu_ms();
		char *desired = cluster_node_desired_text(c, n, 0);
		stage_ms[S_WATCH] += cpu_ms() - a;
		json_t *d = json_loads(desired, 0, NULL);
		free(desired);
		json_t *tasks = json_object_get(d, "tasks");
		struct sbuf sb;
		sbuf_init(&sb);
		sbuf_addf(&sb, "{\"name\":\"%s\",\"known_version\":%llu,\"tasks\":[", n->name,
			  (unsigned long long)n->desired_version);
		json_t *t;
		size_t j;
		json_array_foreach(tasks, j, t)
		{
			sbuf_addf(&sb, "%s{\"id\":\"%s\",\"state\":\"RUNNING\",\"pid\":%zu}",
				  j ? "," : "", json_string_value(json_object_get(t, "id")),
				  100 + j);
			placed++;
		}
		sbuf_adds(&sb, "]}");
		json_decref(d);
		a = cpu_ms();
		struct agent_report *body =
		    agent_report_parse(sb.buf, sb.len, AGENT_CALL_WATCH, &err);
		double p = cpu_ms();
		stage_ms[S_PARSE] += p - a;
		a = p;
		struct node *back;
		if (!body || !cluster_agent_watch(c, body, &back, &err))
			die("report", &err);
		agent_report_free(body);
		stage_ms[S_REPORT] += cpu_ms() - a;
		sbuf_release(&sb);
		if ((k + 1) % 100 == 0 || k + 1 == na)
			commit(c, st, S_ENCODE2, S_COMMIT2);
	}
	free(all);
	long rss1 = rss_kib();
	pthread_mutex_unlock(&c->lock);
	double tasks = (double)jobs * instances, total = 0;
	for (int s = 0; s < S_COUNT; s++) {
		total += stage_ms[s];
		printf("%-8s %9.1f ms %7.0f ns/task\n", stage_names[s], stage_ms[s],
		       stage_ms[s] * 1e6 / tasks);
	}
	printf("total    %9.1f ms %7.0f ns/task (%d nodes, %.0f tasks, %zu in desired sets)\n",
	       total, total * 1e6 / tasks, nodes, tasks, placed);
	printf("rss      %9.1f MiB after, %.0f bytes per task\n", rss1 / 1024.0,
	       (double)(rss1 - rss0) * 1024 / tasks);
	cluster_free(c);
	store_close(st);
	rm_rf(dir);
	return 0;
}
