/* agent_mesh.c - the routing mesh on a node (docs/networking.md): a thread
 * reads the published ports (POST /v1/agent/mesh), joins each with its
 * job's endpoints in rotation (endpoints.h, from the watch replies) and
 * hands the table to the proxy (mesh_proxy.h); it also remembers which
 * jobs publish, so that their instances drain before they stop
 * (agent_task_stop).
 *
 *   ingress  every node listens; connections go to every endpoint
 *   host     a node listens only while it runs an instance of the job,
 *            and sends connections to its own instances only
 *
 * Until the feed answers once, nothing listens. When the server cannot be
 * reached the last table stays: instances keep being served.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "agent/agent-internal.h"
#include "agent/endpoints.h"
#include "agent/mesh_proxy.h"
#include "core/http_client.h"
#include "core/log.h"

struct mesh_job_seen {
	int64_t seen_mono;
};

bool agent_mesh_publishes(struct agent *a, const char *job)
{
	struct mesh_job_seen *s = hmap_get(&a->mesh_jobs, job);
	return s && time_mono_ms() - s->seen_mono < MESH_JOB_MEMORY_MS;
}

struct collect {
	const char *target, *self;
	bool host;
	struct mesh_backend *b;
	size_t n, cap;
};

static void collect_endpoint(void *ud, const char *key, const struct endpoint *e)
{
	struct collect *c = ud;
	int port = endpoint_port(e, c->target);
	if (port < 1 || port > 65535 || !e->address || !*e->address ||
	    strlen(e->address) >= MESH_ADDR_MAX)
		return;
	if (c->host && (!e->node || strcmp(e->node, c->self)))
		return;
	if (c->n == c->cap) {
		c->cap = c->cap ? 2 * c->cap : 8;
		c->b = xrealloc(c->b, c->cap * sizeof *c->b);
	}
	snprintf(c->b[c->n].addr, MESH_ADDR_MAX, "%s", e->address);
	c->b[c->n++].port = port;
}

/* The proxy's table: the feed's published ports (services), each with the
 * endpoints of its job in rotation now; under the lock, note the jobs.
 * Returns how many ports are published here. */
static size_t mesh_apply(struct agent *a, json_t *services)
{
	size_t n = json_array_size(services), nsvc = 0;
	struct mesh_service *svcs = xcalloc(n ? n : 1, sizeof *svcs);
	struct mesh_backend **bufs = xcalloc(n ? n : 1, sizeof *bufs);
	int64_t now = time_mono_ms();
	for (size_t i = 0; i < n; i++) {
		json_t *s = json_array_get(services, i);
		const char *job = json_string_value(json_object_get(s, "job"));
		const char *mode = json_string_value(json_object_get(s, "mode"));
		const char *target = json_string_value(json_object_get(s, "target"));
		json_int_t port = json_integer_value(json_object_get(s, "port"));
		if (!job || !target || port < 1 || port > 65535)
			continue;
		pthread_mutex_lock(&a->lock);
		struct mesh_job_seen *seen = hmap_get(&a->mesh_jobs, job);
		if (!seen) {
			seen = xcalloc(1, sizeof *seen);
			hmap_put(&a->mesh_jobs, job, seen);
		}
		seen->seen_mono = now;
		pthread_mutex_unlock(&a->lock);
		struct collect c = {
		    .target = target, .self = a->name, .host = mode && !strcmp(mode, "host")};
		endpoints_each(a->endpoints, job, collect_endpoint, &c);
		if (c.host && !c.n) {
			free(c.b);
			continue; /* host mode: no instance here, no listener */
		}
		bufs[nsvc] = c.b;
		svcs[nsvc++] = (struct mesh_service){
		    .port = (int)port, .job = job, .backends = c.b, .nbackends = c.n};
	}
	mesh_proxy_set(a->mesh, svcs, nsvc);
	for (size_t i = 0; i < nsvc; i++)
		free(bufs[i]);
	free(bufs);
	free(svcs);
	return nsvc;
}

/* Read the published ports; NULL when the server cannot say. */
static json_t *mesh_fetch(struct agent *a, struct http_client *hc, int64_t *last_error_log)
{
	json_t *body = json_pack("{s:s}", "name", a->name), *reply = NULL;
	struct berr err = {0};
	int r = http_json(hc, "POST", "/v1/agent/mesh", body, 5000, &reply, &err);
	json_decref(body);
	if (r < 0) {
		if (time_mono_ms() - *last_error_log > 10000) {
			log_warn("mesh: cannot read the published ports: %s", err.msg);
			*last_error_log = time_mono_ms();
		}
		return NULL;
	}
	json_t *svcs = json_incref(json_object_get(reply, "services"));
	json_decref(reply);
	return json_is_array(svcs) ? svcs : (json_decref(svcs), NULL);
}

/* The published ports change seldom: read every MESH_FEED_MS. The
 * endpoints change with every start and stop: they come with the watch
 * (endpoints.h), looked at every MESH_ENDPOINTS_MS. */
static void *mesh_main(void *arg)
{
	struct agent *a = arg;
	unsigned id_gen;
	struct http_client *hc = NULL;
	int64_t last_error_log = 0, last_fetch = 0;
	json_t *services = NULL;
	uint64_t applied_version = 0;
	while (!a->stopping) {
		agent_sleep_ms(MESH_ENDPOINTS_MS);
		if (a->stopping || !agent_identity_ready(a))
			continue;
		bool changed = false, fetched = false;
		if (time_mono_ms() - last_fetch >= MESH_FEED_MS) {
			fetched = true;
			last_fetch = time_mono_ms();
			if (!hc)
				hc = agent_identity_client(a, &id_gen);
			agent_identity_refresh(a, hc, &id_gen);
			json_t *fresh = mesh_fetch(a, hc, &last_error_log);
			if (fresh && (!services || !json_equal(fresh, services))) {
				json_decref(services);
				services = json_incref(fresh);
				changed = true;
			}
			json_decref(fresh);
		}
		uint64_t v = endpoints_version(a->endpoints);
		if (services && (changed || fetched || v != applied_version)) {
			/* Also after each read: the jobs published stay noted
			 * (their instances drain). */
			applied_version = v;
			mesh_apply(a, services);
		}
	}
	json_decref(services);
	http_client_free(hc);
	return NULL;
}

int agent_mesh_start(struct agent *a, struct berr *err)
{
	a->mesh = mesh_proxy_start(err);
	if (!a->mesh)
		return -1;
	if (pthread_create(&a->mesh_thread, NULL, mesh_main, a) != 0) {
		mesh_proxy_stop(a->mesh);
		a->mesh = NULL;
		return berr_set(err, 500, "cannot start the mesh thread");
	}
	a->mesh_started = true;
	return 0;
}

void agent_mesh_stop(struct agent *a)
{
	if (a->mesh_started) {
		pthread_join(a->mesh_thread, NULL);
		a->mesh_started = false;
	}
	mesh_proxy_stop(a->mesh);
	a->mesh = NULL;
	size_t it = 0;
	void *v;
	while (hmap_next(&a->mesh_jobs, &it, NULL, &v))
		free(v);
	hmap_release(&a->mesh_jobs);
}
