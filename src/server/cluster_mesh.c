/* cluster_mesh.c - the routing mesh's controller on the server: the
 * published-ports table (who owns which port, checked at submit) and the
 * feed the agents poll (POST /v1/agent/mesh): every published port with
 * the endpoints in rotation.
 *
 * In rotation = the task is RUNNING (its health check passed, when it has
 * one) on a node that is not DOWN. A task the server stops (update, kill,
 * drain, scale down) leaves RUNNING at once (KILLING, DRAINING...), so it
 * leaves the feed before its agent stops it; the agent waits
 * task.drain_delay before the graceful step and SIGTERM (agent_watch.c).
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

/* "https://10.0.0.2:7071" -> "10.0.0.2" (IPv6 in brackets unwrapped). */
static void node_host(const struct node *n, char *out, size_t cap)
{
	out[0] = 0;
	const char *p = n->addr ? strstr(n->addr, "://") : NULL;
	if (!p)
		return;
	p += 3;
	const char *end;
	if (*p == '[') {
		p++;
		end = strchr(p, ']');
	} else {
		end = strrchr(p, ':');
	}
	size_t len = end ? (size_t)(end - p) : strlen(p);
	if (len >= cap)
		return;
	memcpy(out, p, len);
	out[len] = 0;
}

static void add_endpoint(json_t *eps, const struct task *t, const char *target)
{
	if (!t || t->state != TASK_RUNNING || !t->node || t->node->state == NODE_DOWN)
		return;
	json_t *port = json_object_get(t->ports, target);
	char host[128];
	node_host(t->node, host, sizeof host);
	if (!json_is_integer(port) || !*host)
		return;
	json_array_append_new(eps, json_pack("{s:s,s:I,s:s,s:s}", "addr", host, "port",
					     json_integer_value(port), "node", t->node->name,
					     "task", t->id));
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
			json_t *eps = json_array();
			for (size_t i = 0; i < j->nactive; i++)
				add_endpoint(eps, j->active[i], p->target);
			/* start_first: the task being replaced runs beside its
			 * successor until that one runs. */
			for (size_t i = 0; j->update && i < j->update->n; i++)
				if (j->update->old_task && j->update->old_task[i])
					add_endpoint(eps,
						     hmap_get(&c->tasks, j->update->old_task[i]),
						     p->target);
			json_array_append_new(
			    svcs, json_pack("{s:i,s:s,s:s,s:s,s:I,s:o}", "port", p->port, "job",
					    j->key, "target", p->target, "mode",
					    publish_mode_name(p->mode), "drain_delay",
					    (json_int_t)s->task.drain_delay_ms, "endpoints", eps));
		}
	}
	return json_pack("{s:o}", "services", svcs);
}
