/* agent_mesh.c - the routing mesh on a node (docs/networking.md): a thread
 * polls the server's feed (POST /v1/agent/mesh) and hands the table to the
 * proxy (mesh_proxy.h); it also remembers which jobs publish, so that
 * their instances drain before they stop (agent_task_stop).
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

/* Build the proxy's table from the feed; under the lock, note the jobs. */
static size_t mesh_apply(struct agent *a, json_t *reply)
{
	json_t *list = json_object_get(reply, "services");
	size_t n = json_array_size(list), nsvc = 0;
	struct mesh_service *svcs = xcalloc(n ? n : 1, sizeof *svcs);
	struct mesh_backend **bufs = xcalloc(n ? n : 1, sizeof *bufs);
	int64_t now = time_mono_ms();
	pthread_mutex_lock(&a->lock);
	for (size_t i = 0; i < n; i++) {
		json_t *s = json_array_get(list, i);
		const char *job = json_string_value(json_object_get(s, "job"));
		const char *mode = json_string_value(json_object_get(s, "mode"));
		json_int_t port = json_integer_value(json_object_get(s, "port"));
		json_t *eps = json_object_get(s, "endpoints");
		if (!job || port < 1 || port > 65535)
			continue;
		struct mesh_job_seen *seen = hmap_get(&a->mesh_jobs, job);
		if (!seen) {
			seen = xcalloc(1, sizeof *seen);
			hmap_put(&a->mesh_jobs, job, seen);
		}
		seen->seen_mono = now;
		bool host = mode && !strcmp(mode, "host");
		struct mesh_backend *b = xcalloc(json_array_size(eps) + 1, sizeof *b);
		size_t nb = 0, k;
		json_t *e;
		json_array_foreach(eps, k, e)
		{
			const char *addr = json_string_value(json_object_get(e, "addr"));
			const char *node = json_string_value(json_object_get(e, "node"));
			json_int_t p = json_integer_value(json_object_get(e, "port"));
			if (!addr || strlen(addr) >= MESH_ADDR_MAX || p < 1 || p > 65535)
				continue;
			if (host && (!node || strcmp(node, a->name)))
				continue;
			snprintf(b[nb].addr, sizeof b[nb].addr, "%s", addr);
			b[nb].port = (int)p;
			nb++;
		}
		if (host && !nb) {
			free(b);
			continue; /* host mode: no instance here, no listener */
		}
		bufs[nsvc] = b;
		svcs[nsvc++] = (struct mesh_service){
		    .port = (int)port, .job = job, .backends = b, .nbackends = nb};
	}
	pthread_mutex_unlock(&a->lock);
	mesh_proxy_set(a->mesh, svcs, nsvc);
	for (size_t i = 0; i < nsvc; i++)
		free(bufs[i]);
	free(bufs);
	free(svcs);
	return nsvc;
}

static void *mesh_main(void *arg)
{
	struct agent *a = arg;
	unsigned id_gen;
	struct http_client *hc = NULL;
	int64_t last_error_log = 0;
	size_t nsvc = 0;
	while (!a->stopping) {
		agent_sleep_ms(nsvc ? MESH_FEED_MS : MESH_FEED_IDLE_MS);
		if (a->stopping || !agent_identity_ready(a))
			continue;
		if (!hc)
			hc = agent_identity_client(a, &id_gen);
		agent_identity_refresh(a, hc, &id_gen);
		json_t *body = json_pack("{s:s}", "name", a->name), *reply = NULL;
		struct berr err = {0};
		int r = http_json(hc, "POST", "/v1/agent/mesh", body, 5000, &reply, &err);
		json_decref(body);
		if (r < 0) {
			if (time_mono_ms() - last_error_log > 10000) {
				log_warn("mesh: cannot read the server's feed: %s", err.msg);
				last_error_log = time_mono_ms();
			}
			continue;
		}
		nsvc = mesh_apply(a, reply);
		json_decref(reply);
	}
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
