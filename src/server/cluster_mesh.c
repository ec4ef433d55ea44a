/* cluster_mesh.c - the routing mesh's controller on the server: the
 * published-ports table (who owns which port, checked at submit) and the
 * feed the agents poll (POST /v1/agent/mesh): every published port with
 * where each port's connections go: the job and its target port. The
 * endpoints in rotation come with the watches (cluster_endpoints.c).
 *
 * In rotation = the task is RUNNING (its health check passed, when it has
 * one). A task the server stops (update, kill, drain, scale down) leaves
 * RUNNING at once (KILLING, DRAINING...), so it leaves the endpoints
 * before its agent stops it; the agent waits task.drain_delay before the
 * graceful step and SIGTERM (agent_task_stop).
 *
 * The table is the jobs' own specs: a port is owned by the job whose
 * current version publishes it, until that job is killed. Scanning the
 * jobs is O(jobs) per look; fine for thousands of jobs, and never stale
 * (a replica, a load or a kill changes nothing here to keep in step).
 */
#include <string.h>

#include "server/cluster-internal.h"

static const struct job_spec *job_current_spec(struct job *j)
{
	struct job_version *v = job_version_get(j, j->version);
	return v ? v->spec : NULL;
}

int cluster_mesh_check_publish(struct cluster *c, const struct job_spec *spec, struct berr *err)
{
	for (size_t i = 0; i < spec->npublish; i++) {
		int port = spec->publish[i].port;
		size_t it = 0;
		void *v;
		while (hmap_next(&c->jobs, &it, NULL, &v)) {
			struct job *j = v;
			if (j->killed || !strcmp(j->key, spec->key))
				continue;
			const struct job_spec *s = job_current_spec(j);
			for (size_t k = 0; s && k < s->npublish; k++)
				if (s->publish[k].port == port)
					return berr_set(err, 409,
							"publish: port %d is already published by "
							"job '%s'",
							port, j->key);
		}
		it = 0;
		while (hmap_next(&c->nodes, &it, NULL, &v)) {
			struct node *n = v;
			if (port >= n->port_lo && port <= n->port_hi)
				return berr_set(
				    err, 400,
				    "publish: port %d is in node '%s''s task port range "
				    "%d-%d (publish a port outside every agent's "
				    "--ports range)",
				    port, n->name, n->port_lo, n->port_hi);
		}
	}
	return 0;
}

json_t *cluster_mesh_json(struct cluster *c)
{
	json_t *svcs = json_array();
	size_t it = 0;
	void *v;
	while (hmap_next(&c->jobs, &it, NULL, &v)) {
		struct job *j = v;
		const struct job_spec *s = job_current_spec(j);
		if (j->killed || !s || !s->npublish)
			continue;
		for (size_t k = 0; k < s->npublish; k++) {
			const struct publish_spec *p = &s->publish[k];
			json_array_append_new(
			    svcs, json_pack("{s:i,s:s,s:s,s:s,s:I}", "port", p->port, "job", j->key,
					    "target", p->target, "mode", publish_mode_name(p->mode),
					    "drain_delay", (json_int_t)s->task.drain_delay_ms));
		}
	}
	return json_pack("{s:o}", "services", svcs);
}
