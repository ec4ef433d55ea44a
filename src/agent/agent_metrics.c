/* agent_metrics.c - the agent's GET /metrics on its HTTPS listener
 * (docs/operations.md "Metrics"): launches and their latency, restarts,
 * and each task's usage read from its cgroup at scrape time.
 *
 * With TLS, a scrape shows a metrics ticket as its bearer token: "EXPIRY.SIG",
 * the cluster CA's signature of "metrics|EXPIRY", which the server gives the
 * admin (GET /v1/admin/metrics-ticket) and every agent checks with the CA it
 * already trusts: no secret on the nodes, one credential for all of them. */
#include <microhttpd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/agent-internal.h"
#include "agent/cgroup.h"
#include "core/log.h"
#include "core/metrics_text.h"
#include "core/pki.h"

/* Job instances remembered to tell a restart from a first launch. */
#define SEEN_MAX 65536

struct agent_metrics {
	pthread_mutex_t lock;
	uint64_t launches, launch_failures, restarts;
	struct metrics_hist launch_seconds;
	struct hmap seen; /* "JOB#INSTANCE" -> (void *)1 */
};

struct agent_metrics *agent_metrics_new(void)
{
	struct agent_metrics *m = xcalloc(1, sizeof *m);
	pthread_mutex_init(&m->lock, NULL);
	metrics_hist_init(&m->launch_seconds, metrics_latency_bounds, metrics_latency_nbounds);
	hmap_init(&m->seen);
	return m;
}

void agent_metrics_free(struct agent_metrics *m)
{
	if (!m)
		return;
	hmap_release(&m->seen);
	metrics_hist_destroy(&m->launch_seconds);
	pthread_mutex_destroy(&m->lock);
	free(m);
}

void agent_metrics_launched(struct agent_metrics *m, const char *job, int instance, bool ok)
{
	pthread_mutex_lock(&m->lock);
	if (!ok) {
		m->launch_failures++;
		pthread_mutex_unlock(&m->lock);
		return;
	}
	m->launches++;
	char key[400];
	snprintf(key, sizeof key, "%s#%d", job ? job : "", instance);
	if (hmap_get(&m->seen, key)) {
		m->restarts++;
	} else {
		if (m->seen.count >= SEEN_MAX) {
			hmap_release(&m->seen);
			hmap_init(&m->seen);
		}
		hmap_put(&m->seen, key, (void *)1);
	}
	pthread_mutex_unlock(&m->lock);
}

void agent_metrics_running(struct agent_metrics *m, int64_t launch_ms)
{
	metrics_hist_observe(&m->launch_seconds, (double)(launch_ms > 0 ? launch_ms : 0) / 1000.0);
}

/* "EXPIRY.SIG" signed by the cluster CA over "metrics|EXPIRY", not expired. */
static bool ticket_ok(struct agent *a, const char *auth)
{
	if (!auth || strncmp(auth, "Bearer ", 7))
		return false;
	const char *ticket = auth + 7;
	int64_t expiry = agent_ticket_expiry(ticket);
	if (expiry < 0)
		return false;
	char *data = xasprintf("metrics|%lld", (long long)expiry);
	bool ok = agent_ticket_signed(a, ticket, data);
	free(data);
	return ok;
}

struct task_row {
	char *id, *job;
	int instance;
	const char *state;
};

/* The instance from a task id "ROLE-ENV-NAME-INSTANCE-RANDOM". */
static int instance_of(const char *id)
{
	const char *last = strrchr(id, '-');
	if (!last || last == id)
		return -1;
	const char *p = last - 1;
	while (p > id && *p >= '0' && *p <= '9')
		p--;
	if (*p != '-' || p + 1 == last)
		return -1;
	return atoi(p + 1);
}

static void write_tasks(struct agent *a, struct sbuf *sb)
{
	pthread_mutex_lock(&a->lock);
	struct task_row *rows = xcalloc(a->tasks.count + 1, sizeof *rows);
	size_t n = 0, it = 0;
	void *v;
	while (hmap_next(&a->tasks, &it, NULL, &v)) {
		struct agent_task *t = v;
		if (task_state_terminal(t->state) || t->queued)
			continue;
		rows[n].id = xstrdup(t->id);
		rows[n].job = xstrdup(t->job ? t->job : "");
		rows[n].instance = instance_of(t->id);
		rows[n].state = task_state_name(t->state);
		n++;
	}
	pthread_mutex_unlock(&a->lock);
	metrics_family(sb, "berth_agent_tasks", "gauge", "Tasks on this node not ended, by state.");
	/* Counted by state name over the rows. */
	for (int s = 0; s < TASK_STATE_COUNT; s++) {
		const char *name = task_state_name((enum task_state)s);
		size_t k = 0;
		for (size_t i = 0; i < n; i++)
			k += !strcmp(rows[i].state, name);
		if (k)
			metrics_sample(sb, "berth_agent_tasks", (double)k, "state", name, NULL);
	}
	/* Usage from each task's cgroup, read now, without the agent's lock
	 * (exec and oci tasks: docker's containers live in docker's cgroups). */
	struct sbuf cpu, mem, pids;
	sbuf_init(&cpu);
	sbuf_init(&mem);
	sbuf_init(&pids);
	enum cgroup_version ver = cgroup_detect();
	for (size_t i = 0; i < n; i++) {
		struct cgroup *cg = NULL;
		if (ver == CGROUP_NONE ||
		    cgroup_open(ver, NULL, a->o.cgroup_parent, rows[i].id, &cg) < 0)
			continue;
		struct sbuf l;
		sbuf_init(&l);
		metrics_label(&l, "job", rows[i].job);
		char inst[16];
		snprintf(inst, sizeof inst, "%d", rows[i].instance);
		metrics_label(&l, "instance", inst);
		metrics_label(&l, "task", rows[i].id);
		uint64_t val;
		if (cgroup_cpu_usage_ns(cg, &val) == 0)
			metrics_sample_raw(&cpu, "berth_task_cpu_seconds_total", l.buf,
					   (double)val / 1e9);
		if (cgroup_memory_usage(cg, &val) == 0)
			metrics_sample_raw(&mem, "berth_task_memory_bytes", l.buf, (double)val);
		if (cgroup_pids_current(cg, &val) == 0)
			metrics_sample_raw(&pids, "berth_task_pids", l.buf, (double)val);
		sbuf_release(&l);
		cgroup_free(cg);
	}
	metrics_family(sb, "berth_task_cpu_seconds_total", "counter",
		       "CPU time used by each task's processes (its cgroup).");
	sbuf_add(sb, cpu.buf, cpu.len);
	metrics_family(sb, "berth_task_memory_bytes", "gauge",
		       "Memory used by each task's processes (its cgroup, page cache included).");
	sbuf_add(sb, mem.buf, mem.len);
	metrics_family(sb, "berth_task_pids", "gauge",
		       "Processes and threads in each task's cgroup.");
	sbuf_add(sb, pids.buf, pids.len);
	sbuf_release(&cpu);
	sbuf_release(&mem);
	sbuf_release(&pids);
	for (size_t i = 0; i < n; i++) {
		free(rows[i].id);
		free(rows[i].job);
	}
	free(rows);
}

static void write_launches(struct agent *a, struct sbuf *sb)
{
	struct agent_metrics *m = a->metrics;
	pthread_mutex_lock(&m->lock);
	uint64_t launches = m->launches, failures = m->launch_failures, restarts = m->restarts;
	pthread_mutex_unlock(&m->lock);
	metrics_family(sb, "berth_agent_launches_total", "counter",
		       "Tasks launched (a supervisor started) on this node.");
	metrics_sample(sb, "berth_agent_launches_total", (double)launches, NULL);
	metrics_family(sb, "berth_agent_launch_failures_total", "counter",
		       "Launches that failed before the task's supervisor started.");
	metrics_sample(sb, "berth_agent_launch_failures_total", (double)failures, NULL);
	metrics_family(sb, "berth_agent_restarts_total", "counter",
		       "Launches of a job instance this node had launched before.");
	metrics_sample(sb, "berth_agent_restarts_total", (double)restarts, NULL);
	metrics_family(sb, "berth_agent_launch_seconds", "histogram",
		       "Time from a launcher taking a task to the task RUNNING.");
	metrics_hist_write(sb, "berth_agent_launch_seconds", NULL, &m->launch_seconds);
}

static enum MHD_Result answer(struct MHD_Connection *conn, int status, const char *type, char *body)
{
	struct MHD_Response *r =
	    MHD_create_response_from_buffer(strlen(body), body, MHD_RESPMEM_MUST_FREE);
	MHD_add_response_header(r, "Content-Type", type);
	enum MHD_Result ret = MHD_queue_response(conn, (unsigned)status, r);
	MHD_destroy_response(r);
	return ret;
}

int agent_metrics_answer(struct agent *a, struct MHD_Connection *conn, const char *method)
{
	if (strcmp(method, "GET"))
		return answer(conn, 405, "application/json",
			      xstrdup("{\"error\":\"method not allowed: GET /metrics\","
				      "\"status\":405}\n"));
	if (a->id.tls &&
	    !ticket_ok(a, MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Authorization")))
		return answer(
		    conn, 401, "application/json",
		    xstrdup("{\"error\":\"an agent's /metrics needs a metrics ticket as "
			    "its bearer token (GET /v1/admin/metrics-ticket on the "
			    "server, or berth admin metrics-ticket)\",\"status\":401}\n"));
	struct sbuf sb;
	sbuf_init(&sb);
	metrics_family(&sb, "berth_agent_info", "gauge", "This agent: its node's name.");
	metrics_sample(&sb, "berth_agent_info", 1, "node", a->name, "cgroup",
		       cgroup_version_name(cgroup_detect()), NULL);
	write_launches(a, &sb);
	write_tasks(a, &sb);
	return answer(conn, 200, METRICS_CONTENT_TYPE, sbuf_detach(&sb));
}
