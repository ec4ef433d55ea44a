/* spec_json.c - job specs as JSON: a json_t body (POST /v1/jobs) to the
 * snode tree the validator reads, without positions; and a job_spec back to
 * its canonical JSON, which reads back as the same spec.
 */
#include "core/spec-internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------------ */
/* JSON to tree                                                              */

/* Shortest text that reads back as the same double. */
static void real_text(struct snode *n, double d)
{
	char buf[64];
	snprintf(buf, sizeof buf, "%.15g", d);
	if (strtod(buf, NULL) != d)
		snprintf(buf, sizeof buf, "%.17g", d);
	snode_set_text(n, buf, strlen(buf));
}

static int json_node(struct sctx *c, json_t *j, int depth, struct snode **out);

/* Read j as the next kid of n; its path is pushed, `saved` the length to pop
 * back to. */
static int json_kid(struct sctx *c, struct snode *n, json_t *j, int depth, size_t saved)
{
	struct snode *val = NULL;
	if (json_node(c, j, depth + 1, &val) < 0)
		return -1;
	spec__path_pop(c, saved);
	snode_add(n, val);
	return 0;
}

static int json_node(struct sctx *c, json_t *j, int depth, struct snode **out)
{
	struct snode *n;
	char buf[32];
	if ((json_is_object(j) || json_is_array(j)) && depth >= SPEC_MAX_DEPTH)
		return spec__expect_pos(c, 0, 0, "deeper nesting", "at most %d levels of nesting",
					SPEC_MAX_DEPTH);
	switch (json_typeof(j)) {
	case JSON_OBJECT:
		n = snode_new(SN_MAP, 0, 0);
		for (void *it = json_object_iter(j); it; it = json_object_iter_next(j, it)) {
			const char *k = json_object_iter_key(it);
			size_t klen = json_object_iter_key_len(it);
			struct snode *key = snode_new(SN_STR, 0, 0);
			snode_set_text(key, k, klen);
			snode_add(n, key);
			size_t saved = spec__path_push_key(c, key);
			if (snode_has_nul(key)) {
				spec__expect(c, NULL, key, "a key without NUL bytes");
				goto error;
			}
			if (json_kid(c, n, json_object_iter_value(it), depth, saved) < 0)
				goto error;
		}
		break;
	case JSON_ARRAY:
		n = snode_new(SN_SEQ, 0, 0);
		for (size_t i = 0; i < json_array_size(j); i++)
			if (json_kid(c, n, json_array_get(j, i), depth,
				     spec__path_push_index(c, i)) < 0)
				goto error;
		break;
	case JSON_STRING:
		n = snode_new(SN_STR, 0, 0);
		snode_set_text(n, json_string_value(j), json_string_length(j));
		break;
	case JSON_INTEGER:
		n = snode_new(SN_INT, 0, 0);
		n->ival = json_integer_value(j);
		snprintf(buf, sizeof buf, "%" JSON_INTEGER_FORMAT, json_integer_value(j));
		snode_set_text(n, buf, strlen(buf));
		break;
	case JSON_REAL:
		n = snode_new(SN_REAL, 0, 0);
		n->dval = json_real_value(j);
		real_text(n, n->dval);
		break;
	case JSON_TRUE:
	case JSON_FALSE:
		n = snode_new(SN_BOOL, 0, 0);
		n->bval = json_is_true(j);
		snode_set_text(n, n->bval ? "true" : "false", n->bval ? 4 : 5);
		break;
	default:
		n = snode_new(SN_NULL, 0, 0);
		snode_set_text(n, "null", 4);
		break;
	}
	*out = n;
	return 0;
error:
	snode_free(n);
	return -1;
}

int spec__json_tree(struct sctx *c, json_t *j, struct snode **root)
{
	return json_node(c, j, 0, root);
}

/* ------------------------------------------------------------------------ */
/* Public: canonical JSON                                                    */

static json_t *strv_json(char *const *v, size_t n)
{
	json_t *a = json_array();
	for (size_t i = 0; i < n; i++)
		json_array_append_new(a, json_string(v[i]));
	return a;
}

/* The string form a constraint was written in, normalized ("a, b" → "a,b"). */
static json_t *constraint_json(const struct constraint *k)
{
	struct sbuf sb;
	sbuf_init(&sb);
	if (k->kind == CONSTRAINT_LIMIT) {
		sbuf_addf(&sb, "limit:%d", k->limit);
	} else {
		if (k->negated)
			sbuf_adds(&sb, "!");
		for (size_t i = 0; i < k->nvalues; i++)
			sbuf_addf(&sb, "%s%s", i ? "," : "", k->values[i]);
	}
	json_t *j = json_string(sb.buf);
	sbuf_release(&sb);
	return j;
}

static json_t *task_json(const struct task_spec *t)
{
	json_t *task = json_object(), *env = json_object(), *res = json_object();
	json_t *cons = json_object(), *health = json_object();
	const struct health_spec *h = &t->health;

	json_object_set_new(task, "driver", json_string(task_driver_name(t->driver)));
	/* Only when not the driver's default: the task JSON of jobs written
	 * before the field existed stays the same (their config versions do
	 * not move; their next tasks take the default). */
	if (t->network != task_network_default(t->driver))
		json_object_set_new(task, "network", json_string(task_network_name(t->network)));
	json_object_set_new(task, "image", json_string(t->image));
	json_object_set_new(task, "command", strv_json(t->command, t->ncommand));
	for (size_t i = 0; i < t->nenv; i++)
		json_object_set_new(env, t->env[i].key, json_string(t->env[i].value));
	json_object_set_new(task, "env", env);
	json_object_set_new(task, "user", json_string(t->user));
	json_object_set_new(res, "cpu", json_real(t->resources.cpu));
	json_object_set_new(res, "memory", json_integer((json_int_t)t->resources.memory));
	json_object_set_new(res, "disk", json_integer((json_int_t)t->resources.disk));
	json_object_set_new(res, "ports", strv_json(t->resources.ports, t->resources.nports));
	json_object_set_new(task, "resources", res);
	for (size_t i = 0; i < t->nconstraints; i++)
		json_object_set_new(cons, t->constraints[i].attribute,
				    constraint_json(&t->constraints[i]));
	json_object_set_new(task, "constraints", cons);
	/* Only when there are any: specs without keep their canonical form. */
	if (t->nprefer) {
		json_t *pref = json_array();
		for (size_t i = 0; i < t->nprefer; i++)
			json_array_append_new(pref, json_pack("{s:o,s:i}", t->prefer[i].c.attribute,
							      constraint_json(&t->prefer[i].c),
							      "weight", t->prefer[i].weight));
		json_object_set_new(task, "prefer", pref);
	}
	/* The check kinds are alternatives: only the one in use appears. */
	if (h->kind == HEALTH_HTTP)
		json_object_set_new(health, "http", json_string(h->http_path));
	else if (h->kind == HEALTH_TCP)
		json_object_set_new(health, "tcp", json_true());
	else if (h->kind == HEALTH_COMMAND)
		json_object_set_new(health, "command", strv_json(h->command, h->ncommand));
	if (h->kind == HEALTH_HTTP || h->kind == HEALTH_TCP)
		json_object_set_new(health, "port", json_string(h->port));
	json_object_set_new(health, "interval", json_integer((json_int_t)h->interval_ms));
	json_object_set_new(health, "timeout", json_integer((json_int_t)h->timeout_ms));
	json_object_set_new(health, "failures", json_integer(h->failures));
	json_object_set_new(health, "successes", json_integer(h->successes));
	json_object_set_new(health, "initial_delay", json_integer((json_int_t)h->initial_delay_ms));
	json_object_set_new(task, "health", health);
	json_object_set_new(task, "stop_grace", json_integer((json_int_t)t->stop_grace_ms));
	if (*t->shutdown.http_path)
		json_object_set_new(task, "shutdown",
				    json_pack("{s:s,s:s,s:I}", "http", t->shutdown.http_path,
					      "port", t->shutdown.port, "wait",
					      (json_int_t)t->shutdown.wait_ms));
	/* Only when not the default: specs written before it keep their
	 * canonical JSON (and their config version). */
	if (t->drain_delay_ms != SPEC_DEFAULT_DRAIN_DELAY_MS)
		json_object_set_new(task, "drain_delay",
				    json_integer((json_int_t)t->drain_delay_ms));
	/* Only when set: specs without volumes keep their canonical JSON. */
	if (t->nvolumes) {
		json_t *vols = json_array();
		for (size_t i = 0; i < t->nvolumes; i++)
			json_array_append_new(vols,
					      json_pack("{s:s,s:s,s:b}", "host", t->volumes[i].host,
							"path", t->volumes[i].path, "read_only",
							t->volumes[i].read_only));
		json_object_set_new(task, "volumes", vols);
	}
	/* The same: only when set. The version is part of the config. */
	if (t->nsecrets) {
		json_t *secs = json_array();
		for (size_t i = 0; i < t->nsecrets; i++)
			json_array_append_new(
			    secs, json_pack("{s:s,s:s,s:i}", "name", t->secrets[i].name, "path",
					    t->secrets[i].path, "version", t->secrets[i].version));
		json_object_set_new(task, "secrets", secs);
	}
	return task;
}

json_t *spec_task_to_json(const struct job_spec *spec)
{
	return task_json(&spec->task);
}

json_t *spec_to_json(const struct job_spec *s)
{
	json_t *j = json_object(), *u = json_object();
	json_object_set_new(j, "job", json_string(s->key));
	json_object_set_new(j, "type", json_string(spec__job_type_names[s->type]));
	json_object_set_new(j, "instances", json_integer(s->instances));
	json_object_set_new(j, "schedule", json_string(s->schedule));
	json_object_set_new(j, "cron_collision",
			    json_string(spec__cron_collision_names[s->cron_collision]));
	json_object_set_new(j, "priority", json_integer(s->priority));
	json_object_set_new(j, "tier", json_string(spec__tier_names[s->tier]));
	json_object_set_new(j, "max_task_failures", json_integer(s->max_task_failures));
	json_object_set_new(j, "placement", json_string(spec__placement_names[s->placement]));
	json_object_set_new(j, "task", task_json(&s->task));
	json_object_set_new(u, "batch_size", json_integer(s->update.batch_size));
	json_object_set_new(u, "watch", json_integer((json_int_t)s->update.watch_ms));
	json_object_set_new(u, "max_instance_failures",
			    json_integer(s->update.max_instance_failures));
	json_object_set_new(u, "max_total_failures", json_integer(s->update.max_total_failures));
	json_object_set_new(u, "rollback_on_failure", json_boolean(s->update.rollback_on_failure));
	json_object_set_new(u, "order", json_string(spec__update_order_names[s->update.order]));
	json_object_set_new(j, "update", u);
	if (s->restart.set)
		json_object_set_new(
		    j, "restart",
		    json_pack("{s:I,s:I,s:i,s:I}", "delay", (json_int_t)s->restart.delay_ms,
			      "max_delay", (json_int_t)s->restart.max_delay_ms, "max_attempts",
			      s->restart.max_attempts, "window", (json_int_t)s->restart.window_ms));
	/* Only when set, as volumes. Not part of the task: publishing changes
	 * no task's config. */
	if (s->npublish) {
		json_t *pub = json_array();
		for (size_t i = 0; i < s->npublish; i++)
			json_array_append_new(pub,
					      json_pack("{s:i,s:s,s:s}", "port", s->publish[i].port,
							"target", s->publish[i].target, "mode",
							publish_mode_name(s->publish[i].mode)));
		json_object_set_new(j, "publish", pub);
	}
	return j;
}
