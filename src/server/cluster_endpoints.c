/* cluster_endpoints.c - where each job's healthy instances answer: the
 * endpoints view (GET /v1/jobs/KEY/endpoints) and the whole table the
 * agents follow through their watches (docs/protocol.md, "Endpoints").
 *
 * An endpoint is a task in RUNNING: a task with a health check reaches
 * RUNNING only once its check passed, and leaves it (KILLING, DRAINING,
 * RESTARTING...) before it is stopped, so the table is the rotation. The
 * version moves on every change (endpoints_touch); the text is rendered at
 * most once per version, whatever the number of agents that want it. */
#include <stdlib.h>
#include <string.h>

#include "server/cluster-internal.h"

/* How many versions back a delta can reach. */
#define ENDPOINTS_LOG 4096

void endpoints_touch(struct cluster *c)
{
	c->endpoints_version++;
	c->endpoints_log_from = c->endpoints_version; /* no delta across this */
}

void endpoints_touch_job(struct cluster *c, const char *key)
{
	if (!c->endpoints_log) {
		c->endpoints_log = xcalloc(ENDPOINTS_LOG, sizeof *c->endpoints_log);
		c->endpoints_log_from = c->endpoints_version;
	}
	uint64_t v = ++c->endpoints_version;
	char **slot = &c->endpoints_log[v % ENDPOINTS_LOG];
	free(*slot);
	*slot = xstrdup(key);
	if (v - c->endpoints_log_from >= ENDPOINTS_LOG)
		c->endpoints_log_from = v - ENDPOINTS_LOG + 1;
}

void endpoints_release(struct cluster *c)
{
	if (c->endpoints_log)
		for (size_t i = 0; i < ENDPOINTS_LOG; i++)
			free(c->endpoints_log[i]);
	free(c->endpoints_log);
	free(c->endpoints_text);
	free(c->endpoints_delta_text);
	c->endpoints_log = NULL;
	c->endpoints_text = c->endpoints_delta_text = NULL;
}

/* The host of the agent's registered address ("https://10.0.0.2:40123"),
 * into buf; "" when it has none. */
static void node_host(const struct node *n, char *buf, size_t size)
{
	buf[0] = 0;
	if (!n || !n->addr)
		return;
	const char *p = strstr(n->addr, "://");
	p = p ? p + 3 : n->addr;
	const char *end;
	if (*p == '[') {
		p++;
		end = strchr(p, ']');
	} else {
		end = strrchr(p, ':');
	}
	size_t len = end ? (size_t)(end - p) : strlen(p);
	if (len >= size)
		return;
	memcpy(buf, p, len);
	buf[len] = 0;
}

/* Where the task answers: its node's address until tasks have addresses
 * of their own (task.network: bridge), which then win. */
static void task_address(const struct task *t, char *buf, size_t size)
{
	if (t->address && size >= 16)
		ip4_format(t->address, buf);
	else
		node_host(t->node, buf, size);
}

static json_t *endpoint_json(const struct task *t)
{
	char address[64];
	task_address(t, address, sizeof address);
	json_t *ports = t->ports ? json_deep_copy(t->ports) : json_object();
	return json_pack("{s:i,s:s,s:s,s:s,s:o}", "instance", t->instance, "task", t->id, "node",
			 t->node ? t->node->name : "", "address", address, "ports", ports);
}

static bool task_is_endpoint(const struct task *t)
{
	return t && t->state == TASK_RUNNING && t->node;
}

/* The job's endpoints, by instance: active tasks, and the old tasks a
 * start_first update keeps running beside their replacements. */
static json_t *job_endpoints(const struct cluster *c, const struct job *j)
{
	json_t *arr = json_array();
	for (size_t i = 0; i < j->nactive; i++)
		if (task_is_endpoint(j->active[i]))
			json_array_append_new(arr, endpoint_json(j->active[i]));
	const struct update *u = j->update;
	if (u && u->old_task)
		for (size_t k = 0; k < u->n; k++) {
			if (!u->old_task[k])
				continue;
			const struct task *old = hmap_get(&c->tasks, u->old_task[k]);
			if (task_is_endpoint(old) && old->job == j)
				json_array_append_new(arr, endpoint_json(old));
		}
	return arr;
}

json_t *cluster_job_endpoints_json(const struct cluster *c, const char *key, struct berr *err)
{
	const struct job *j = hmap_get(&c->jobs, key);
	if (!j) {
		berr_set(err, 404, "job '%s' not found", key);
		return NULL;
	}
	return json_pack("{s:s,s:I,s:o}", "job", j->key, "version",
			 (json_int_t)c->endpoints_version, "endpoints", job_endpoints(c, j));
}

const char *cluster_endpoints_text(struct cluster *c)
{
	if (c->endpoints_text && c->endpoints_text_version == c->endpoints_version)
		return c->endpoints_text;
	json_t *all = json_object();
	size_t it = 0;
	void *v;
	while (hmap_next(&c->jobs, &it, NULL, &v)) {
		struct job *j = v;
		if (j->killed)
			continue; /* its name goes with it */
		json_object_set_new(all, j->key, job_endpoints(c, j));
	}
	free(c->endpoints_text);
	c->endpoints_text = json_dumps(all, JSON_COMPACT | JSON_SORT_KEYS);
	json_decref(all);
	c->endpoints_text_version = c->endpoints_version;
	return c->endpoints_text;
}

const char *cluster_endpoints_delta_text(struct cluster *c, uint64_t from)
{
	uint64_t to = c->endpoints_version;
	if (!c->endpoints_log || from < c->endpoints_log_from || from >= to)
		return NULL;
	if (c->endpoints_delta_text && c->endpoints_delta_from == from &&
	    c->endpoints_delta_to == to)
		return c->endpoints_delta_text;
	json_t *delta = json_object();
	for (uint64_t v = from + 1; v <= to; v++) {
		const char *key = c->endpoints_log[v % ENDPOINTS_LOG];
		if (!key || json_object_get(delta, key))
			continue;
		const struct job *j = hmap_get(&c->jobs, key);
		json_object_set_new(delta, key,
				    j && !j->killed ? job_endpoints(c, j) : json_null());
	}
	free(c->endpoints_delta_text);
	c->endpoints_delta_text = json_dumps(delta, JSON_COMPACT | JSON_SORT_KEYS);
	json_decref(delta);
	c->endpoints_delta_from = from;
	c->endpoints_delta_to = to;
	return c->endpoints_delta_text;
}
