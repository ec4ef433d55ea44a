/* spec_validate.c - the field rules of job specs: the snode tree that both
 * front ends build becomes a struct job_spec, or the first error with its
 * path. Each map of the spec (job, task, resources, health, shutdown,
 * volumes[i], restart, update) is one table of fields: a key and how its
 * value is read, side by side: a kind and a type-checked member for plain
 * values (F_INT, F_DURATION, ...), a function for the rest (F_READ).
 * Cross-field rules (image vs driver, health and shutdown ports, cron
 * schedules, templates) run after a map's fields are read. docs/spec.md is
 * the user reference for the fields.
 */
#include "core/spec-fields.h"
#include "core/cron.h"

#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------------ */
/* Sections                                                                  */

static int v_env(struct sctx *c, const struct snode *n, struct task_spec *t)
{
	if (spec__check_section(c, n, "a map of environment variables") < 0)
		return -1;
	size_t count = spec__section_size(n) / 2;
	t->env = xcalloc(count ? count : 1, sizeof *t->env);
	for (size_t i = 0; i < count; i++) {
		const struct snode *k = n->kids[2 * i], *v = n->kids[2 * i + 1];
		size_t saved = spec__path_push_key(c, k);
		if (k->kind == SN_NULL || snode_has_nul(k) || !spec__word_ok(k->text, "_", 256) ||
		    spec__is_digit(k->text[0]))
			return spec__expect(c, k, k,
					    "an environment variable name such as GREETING");
		/* Values: numbers and booleans are their text ("8080",
		 * "yes"), which is what a shell would see. */
		struct spec_kv *kv = &t->env[t->nenv++];
		kv->key = xstrdup(k->text);
		if (spec__get_string(c, v, "a string", &kv->value) < 0)
			return -1;
		spec__path_pop(c, saved);
	}
	return 0;
}

static int v_ports(struct sctx *c, const struct snode *n, struct resources *r)
{
	if (n->kind == SN_NULL)
		return 0;
	if (n->kind != SN_SEQ)
		return spec__expect(c, n, n, "a list of port names");
	if (n->nkids > SPEC_MAX_PORTS) {
		_cleanup_free_ char *found = xasprintf("%zu ports", n->nkids);
		return spec__expect_found(c, n, found, "at most %d ports", SPEC_MAX_PORTS);
	}
	r->ports = xcalloc(n->nkids ? n->nkids : 1, sizeof *r->ports);
	for (size_t i = 0; i < n->nkids; i++) {
		const struct snode *p = n->kids[i];
		size_t saved = spec__path_push_index(c, i);
		char *name = NULL;
		if (spec__get_string(c, p, "a port name", &name) < 0)
			return -1;
		r->ports[r->nports++] = name;
		if (!spec__port_name_ok(name))
			return spec__expect(c, p, p, "a port name such as http ([a-z][a-z0-9_-]*)");
		for (size_t j = 0; j < i; j++) {
			if (!strcmp(r->ports[j], name)) {
				_cleanup_free_ char *q = spec__quote(name, strlen(name));
				_cleanup_free_ char *found = xasprintf("%s again", q);
				return spec__expect_found(c, p, found, "each port name once");
			}
		}
		spec__path_pop(c, saved);
	}
	return 0;
}

static int res_cpu(struct sctx *c, const struct snode *v, void *obj)
{
	return spec__get_cpu(c, v, &((struct resources *)obj)->cpu);
}

static int res_ports(struct sctx *c, const struct snode *v, void *obj)
{
	return v_ports(c, v, obj);
}

/* task.resources: struct resources */
static const struct field resource_fields[] = {
    F_READ("cpu", res_cpu),
    F_SIZE("memory", struct resources, memory, 1),
    F_SIZE("disk", struct resources, disk, 0),
    F_READ("ports", res_ports),
};

static int v_resources(struct sctx *c, const struct snode *n, struct resources *r)
{
	if (spec__check_section(c, n, "a map of resources (cpu, memory, disk, ports)") < 0)
		return -1;
	return spec__read_fields(c, n, resource_fields, ARRAY_SIZE(resource_fields), r);
	return 0;
}

/* One constraint string: "v", "!v", "a,b", "!a,b" or "limit:N". */
static int parse_constraint(const char *s, struct constraint *k)
{
	if (!strncmp(s, "limit:", 6)) {
		int64_t v;
		if (spec__text_to_int(s + 6, &v) < 0 || v < 1 || v > SPEC_MAX_INSTANCES ||
		    s[6] == '+' || s[6] == '-')
			return -1;
		k->kind = CONSTRAINT_LIMIT;
		k->limit = (int)v;
		return 0;
	}
	k->kind = CONSTRAINT_VALUE;
	k->negated = *s == '!';
	if (k->negated)
		s++;
	if (!strncmp(s, "limit:", 6))
		return -1;
	size_t n = 1;
	for (const char *p = s; *p; p++)
		n += *p == ',';
	k->values = xcalloc(n, sizeof *k->values);
	for (;;) {
		size_t len = strcspn(s, ",");
		const char *a = s, *b = s + len;
		while (a < b && (*a == ' ' || *a == '\t'))
			a++;
		while (b > a && (b[-1] == ' ' || b[-1] == '\t'))
			b--;
		if (a == b || *a == '!')
			return -1;
		for (const char *p = a; p < b; p++)
			if ((unsigned char)*p <= ' ' || *p == 0x7f)
				return -1;
		k->values[k->nvalues++] = xstrndup(a, (size_t)(b - a));
		if (!s[len])
			return 0;
		s += len + 1;
	}
}

static int v_constraints(struct sctx *c, const struct snode *n, struct task_spec *t)
{
	if (spec__check_section(c, n, "a map of attribute constraints") < 0)
		return -1;
	size_t count = spec__section_size(n) / 2;
	t->constraints = xcalloc(count ? count : 1, sizeof *t->constraints);
	for (size_t i = 0; i < count; i++) {
		const struct snode *k = n->kids[2 * i], *v = n->kids[2 * i + 1];
		size_t saved = spec__path_push_key(c, k);
		if (k->kind == SN_NULL || snode_has_nul(k) ||
		    !spec__word_ok(k->text, "_.-", SPEC_MAX_NAME))
			return spec__expect(c, k, k, "an attribute name such as rack");
		struct constraint *ck = &t->constraints[t->nconstraints++];
		ck->attribute = xstrdup(k->text);
		char *s = NULL;
		const char *what = "a constraint such as 'r1', '!r3', 'a,b' or 'limit:1'";
		if (spec__get_string(c, v, what, &s) < 0)
			return -1;
		int r = parse_constraint(s, ck);
		free(s);
		if (r < 0)
			return spec__expect(c, v, v, "%s", what);
		spec__path_pop(c, saved);
	}
	return 0;
}

/* task.prefer: a list of {ATTRIBUTE: CONSTRAINT, weight: 1..100}. */
static int v_prefer(struct sctx *c, const struct snode *n, struct task_spec *t)
{
	const char *what = "a list of preferences such as {rack: r1, weight: 50}";
	if (n->kind == SN_NULL)
		return 0;
	if (n->kind != SN_SEQ)
		return spec__expect(c, n, n, "%s", what);
	if (n->nkids > SPEC_MAX_PREFER) {
		_cleanup_free_ char *found = xasprintf("%zu preferences", n->nkids);
		return spec__expect_found(c, n, found, "at most %d preferences", SPEC_MAX_PREFER);
	}
	t->prefer = xcalloc(n->nkids ? n->nkids : 1, sizeof *t->prefer);
	for (size_t i = 0; i < n->nkids; i++) {
		const struct snode *pn = n->kids[i];
		size_t saved = spec__path_push_index(c, i);
		if (pn->kind != SN_MAP)
			return spec__expect(c, pn, pn,
					    "a preference such as {rack: r1, weight: 50}");
		struct preference *pr = &t->prefer[t->nprefer++];
		pr->weight = 1;
		const struct snode *attr = NULL, *val = NULL;
		for (size_t k = 0; k + 1 < pn->nkids; k += 2) {
			const struct snode *key = pn->kids[k], *v = pn->kids[k + 1];
			if (snode_key_is(key, "weight")) {
				size_t s2 = spec__path_push(c, "weight", 6);
				if (spec__get_int(c, v, 1, SPEC_MAX_PREFER_WEIGHT, &pr->weight) < 0)
					return -1;
				spec__path_pop(c, s2);
				continue;
			}
			if (attr) {
				spec__path_push_key(c, key);
				return spec__expect(c, key, key,
						    "one attribute per preference (this one has "
						    "'%s' already)",
						    attr->text);
			}
			attr = key;
			val = v;
		}
		if (!attr)
			return spec__expect(c, pn, NULL,
					    "an attribute and its value, such as rack: r1");
		size_t s2 = spec__path_push_key(c, attr);
		if (attr->kind == SN_NULL || snode_has_nul(attr) ||
		    !spec__word_ok(attr->text, "_.-", SPEC_MAX_NAME))
			return spec__expect(c, attr, attr, "an attribute name such as rack");
		pr->c.attribute = xstrdup(attr->text);
		char *s = NULL;
		const char *cwhat = "a preference such as 'r1', '!r3', 'a,b' or 'limit:1'";
		if (spec__get_string(c, val, cwhat, &s) < 0)
			return -1;
		int r = parse_constraint(s, &pr->c);
		free(s);
		if (r < 0)
			return spec__expect(c, val, val, "%s", cwhat);
		spec__path_pop(c, s2);
		spec__path_pop(c, saved);
	}
	return 0;
}

/* Health check kinds are exclusive: the second one given is refused. */
static int set_health_kind(struct sctx *c, const struct snode *v, struct health_spec *h,
			   enum health_kind kind)
{
	if (h->kind != HEALTH_NONE)
		return spec__expect(c, v, v, "only one of http, tcp or command");
	h->kind = kind;
	return 0;
}

static int health_http(struct sctx *c, const struct snode *v, void *obj)
{
	struct health_spec *h = obj;
	if (spec__get_string(c, v, "an http path such as /health", &h->http_path) < 0)
		return -1;
	if (h->http_path[0] != '/' || strpbrk(h->http_path, " \t\r\n"))
		return spec__expect(c, v, v, "an http path such as /health");
	return set_health_kind(c, v, h, HEALTH_HTTP);
}

/* tcp: false is the same as no tcp check. */
static int health_tcp(struct sctx *c, const struct snode *v, void *obj)
{
	bool tcp = false;
	if (spec__get_bool(c, v, &tcp) < 0)
		return -1;
	return tcp ? set_health_kind(c, v, obj, HEALTH_TCP) : 0;
}

static int health_command(struct sctx *c, const struct snode *v, void *obj)
{
	struct health_spec *h = obj;
	if (spec__get_command(c, v, &h->command, &h->ncommand) < 0)
		return -1;
	return set_health_kind(c, v, h, HEALTH_COMMAND);
}

/* task.health: struct health_spec */
static const struct field health_fields[] = {
    F_READ("http", health_http),
    F_READ("tcp", health_tcp),
    F_READ("command", health_command),
    F_STRING("port", struct health_spec, port, "a port name"),
    F_DURATION("interval", struct health_spec, interval_ms, 1),
    F_DURATION("timeout", struct health_spec, timeout_ms, 1),
    F_INT("failures", struct health_spec, failures, 1, SPEC_MAX_COUNT),
    F_INT("successes", struct health_spec, successes, 1, SPEC_MAX_COUNT),
    F_DURATION("initial_delay", struct health_spec, initial_delay_ms, 0),
};

static int v_health(struct sctx *c, const struct snode *n, struct health_spec *h)
{
	if (spec__check_section(c, n, "a map with one of http, tcp or command") < 0)
		return -1;
	return spec__read_fields(c, n, health_fields, ARRAY_SIZE(health_fields), h);
	return 0;
}

/* Cross-field checks of the health section, once the ports are known. */
static int check_health(struct sctx *c, const struct snode *hn, const struct task_spec *t)
{
	const struct health_spec *h = &t->health;
	const struct snode *port = spec__map_get(hn, "port");
	size_t saved = spec__path_push(c, "health", 6);
	if (h->kind == HEALTH_HTTP || h->kind == HEALTH_TCP) {
		if (!port)
			return spec__missing(c, hn, "port",
					     "a port from task.resources.ports for the check");
		spec__path_push(c, "port", 4);
		if (!spec__port_declared(&t->resources, h->port, strlen(h->port)))
			return spec__expect(c, port, port,
					    "a port declared in task.resources.ports");
	} else if (port) {
		spec__path_push(c, "port", 4);
		return spec__expect(c, port, port, "no port without an http or tcp check");
	}
	spec__path_pop(c, saved);
	return 0;
}

static int v_shutdown(struct sctx *c, const struct snode *n, struct shutdown_spec *sh);
static int v_volumes(struct sctx *c, const struct snode *n, struct task_spec *t);
static int v_secrets(struct sctx *c, const struct snode *n, struct task_spec *t);

static int task_driver(struct sctx *c, const struct snode *v, void *obj)
{
	int e = 0;
	if (spec__get_enum(c, v, spec__driver_names, ARRAY_SIZE(spec__driver_names), &e) < 0)
		return -1;
	((struct task_spec *)obj)->driver = (enum task_driver)e;
	return 0;
}

static int task_network(struct sctx *c, const struct snode *v, void *obj)
{
	int e = 0;
	if (spec__get_enum(c, v, spec__network_names, ARRAY_SIZE(spec__network_names), &e) < 0)
		return -1;
	((struct task_spec *)obj)->network = (enum task_network)e;
	return 0;
}

static int task_command(struct sctx *c, const struct snode *v, void *obj)
{
	struct task_spec *t = obj;
	return spec__get_command(c, v, &t->command, &t->ncommand);
}

static int task_env(struct sctx *c, const struct snode *v, void *obj)
{
	return v_env(c, v, obj);
}

static int task_user(struct sctx *c, const struct snode *v, void *obj)
{
	struct task_spec *t = obj;
	if (spec__get_string(c, v, "a user name or uid", &t->user) < 0)
		return -1;
	if (*t->user && (!spec__word_ok(t->user, "_.-", SPEC_MAX_NAME) || *t->user == '-'))
		return spec__expect(c, v, v, "a user name or uid");
	return 0;
}

static int task_resources(struct sctx *c, const struct snode *v, void *obj)
{
	return v_resources(c, v, &((struct task_spec *)obj)->resources);
}

static int task_constraints(struct sctx *c, const struct snode *v, void *obj)
{
	return v_constraints(c, v, obj);
}

static int task_prefer(struct sctx *c, const struct snode *v, void *obj)
{
	return v_prefer(c, v, obj);
}

static int task_health(struct sctx *c, const struct snode *v, void *obj)
{
	return v_health(c, v, &((struct task_spec *)obj)->health);
}

static int task_shutdown(struct sctx *c, const struct snode *v, void *obj)
{
	return v_shutdown(c, v, &((struct task_spec *)obj)->shutdown);
}

static int task_volumes(struct sctx *c, const struct snode *v, void *obj)
{
	return v_volumes(c, v, obj);
}

static int task_secrets(struct sctx *c, const struct snode *v, void *obj)
{
	return v_secrets(c, v, obj);
}

/* task: struct task_spec */
static const struct field task_fields[] = {
    F_READ("driver", task_driver),
    F_STRING("image", struct task_spec, image, "an image reference or path"),
    F_READ("command", task_command),
    F_READ("env", task_env),
    F_READ("user", task_user),
    F_READ("resources", task_resources),
    F_READ("constraints", task_constraints),
    F_READ("prefer", task_prefer),
    F_READ("health", task_health),
    F_DURATION("stop_grace", struct task_spec, stop_grace_ms, 0),
    F_READ("shutdown", task_shutdown),
    F_READ("volumes", task_volumes),
    F_READ("secrets", task_secrets),
    F_DURATION("drain_delay", struct task_spec, drain_delay_ms, 0),
    F_READ("network", task_network),
};

static int v_task(struct sctx *c, const struct snode *n, struct task_spec *t)
{
	if (n->kind != SN_MAP)
		return spec__expect(c, n, n, "a map of task fields such as command and resources");
	if (spec__read_fields(c, n, task_fields, ARRAY_SIZE(task_fields), t) < 0)
		return -1;

	if (!t->command)
		return spec__missing(c, n, "command", "a command (a list of strings or a string)");
	const struct snode *image = spec__map_get(n, "image"), *driver = spec__map_get(n, "driver");
	if (!spec__map_get(n, "network"))
		t->network = task_network_default(t->driver);
	if (t->driver != DRIVER_EXEC && !*t->image) {
		spec__path_push(c, "image", 5);
		return spec__expect(c, image ? image : driver, image, "an image for driver %s",
				    task_driver_name(t->driver));
	}
	if (t->driver == DRIVER_EXEC && *t->image) {
		spec__path_push(c, "image", 5);
		return spec__expect(c, image, image,
				    "no image for driver exec (use oci or docker)");
	}
	if (check_health(c, spec__map_get(n, "health"), t) < 0)
		return -1;
	if (*t->shutdown.http_path || *t->shutdown.port) {
		const struct snode *sn = spec__map_get(n, "shutdown");
		bool declared =
		    spec__port_declared(&t->resources, t->shutdown.port, strlen(t->shutdown.port));
		if (!*t->shutdown.http_path) {
			spec__path_push(c, "shutdown", 8);
			return spec__missing(c, sn, "http", "an http path such as /quitquitquit");
		}
		if (!declared) {
			const struct snode *pn = spec__map_get(sn, "port");
			spec__path_push(c, "shutdown", 8);
			spec__path_push(c, "port", 4);
			return spec__expect(c, pn ? pn : sn, pn,
					    "a port declared in task.resources.ports");
		}
	}
	/* Templates last: {{ports.NAME}} may come before the ports it names. */
	if (spec__check_command_templates(c, spec__map_get(n, "command"), "command",
					  &t->resources) < 0)
		return -1;
	const struct snode *env = spec__map_get(n, "env");
	for (size_t i = 0; env && i < spec__section_size(env); i += 2) {
		size_t saved = spec__path_push(c, "env", 3);
		spec__path_push_key(c, env->kids[i]);
		if (spec__check_templates(c, env->kids[i + 1], &t->resources) < 0)
			return -1;
		spec__path_pop(c, saved);
	}
	const struct snode *health = spec__map_get(n, "health");
	size_t saved = spec__path_push(c, "health", 6);
	if (spec__check_command_templates(c, spec__map_get(health, "command"), "command",
					  &t->resources) < 0)
		return -1;
	spec__path_pop(c, saved);
	return 0;
}

static int shutdown_http(struct sctx *c, const struct snode *v, void *obj)
{
	struct shutdown_spec *sh = obj;
	if (spec__get_string(c, v, "an http path such as /quitquitquit", &sh->http_path) < 0)
		return -1;
	if (sh->http_path[0] != '/' || strpbrk(sh->http_path, " \t\r\n"))
		return spec__expect(c, v, v, "an http path such as /quitquitquit");
	return 0;
}

/* task.shutdown: struct shutdown_spec */
static const struct field shutdown_fields[] = {
    F_READ("http", shutdown_http),
    F_STRING("port", struct shutdown_spec, port, "a port name"),
    F_DURATION("wait", struct shutdown_spec, wait_ms, 0),
};

static int v_shutdown(struct sctx *c, const struct snode *n, struct shutdown_spec *sh)
{
	if (spec__check_section(c, n, "a map with http, port and wait") < 0)
		return -1;
	return spec__read_fields(c, n, shutdown_fields, ARRAY_SIZE(shutdown_fields), sh);
	return 0;
}

/* Why a volume path is refused, or NULL: absolute, no ".." component, not
 * the root, no ':' or ',' (option separators of bind strings: "src:dst:opts"
 * in Docker's Binds, ',' in mount options), no control characters. */
static const char *volume_path_problem(const char *p)
{
	if (p[0] != '/')
		return "not absolute";
	if (strlen(p) > SPEC_MAX_VOLUME_PATH)
		return "longer than 4096 bytes";
	for (const char *s = p; *s;) {
		size_t len = strcspn(s, "/");
		if (len == 2 && s[0] == '.' && s[1] == '.')
			return "a '..' component";
		s += len;
		if (*s)
			s++;
	}
	if (strspn(p, "/") == strlen(p))
		return "nothing but '/'";
	for (const char *s = p; *s; s++) {
		if (*s == ':' || *s == ',')
			return *s == ':' ? "a ':'" : "a ','";
		if ((unsigned char)*s < 0x20 || *s == 0x7f)
			return "a control character";
	}
	return NULL;
}

static int get_volume_path(struct sctx *c, const struct snode *v, char **out)
{
	const char *what = "an absolute path without '..'";
	if (spec__get_string(c, v, what, out) < 0)
		return -1;
	const char *why = volume_path_problem(*out);
	if (why && (!strcmp(why, "not absolute") || !strcmp(why, "a '..' component")))
		return spec__expect(c, v, v, "%s", what);
	if (why)
		return spec__expect(c, v, v,
				    "a path other than '/' without ':', ',' or control "
				    "characters (this one has %s)",
				    why);
	return 0;
}

static int volume_host(struct sctx *c, const struct snode *v, void *obj)
{
	return get_volume_path(c, v, &((struct volume *)obj)->host);
}

static int volume_path(struct sctx *c, const struct snode *v, void *obj)
{
	return get_volume_path(c, v, &((struct volume *)obj)->path);
}

/* task.volumes[i]: struct volume */
static const struct field volume_fields[] = {
    F_READ("host", volume_host),
    F_READ("path", volume_path),
    F_BOOL("read_only", struct volume, read_only),
};

static int v_volume(struct sctx *c, const struct snode *n, struct volume *vol)
{
	if (n->kind != SN_MAP)
		return spec__expect(c, n, n, "a map with host, path and read_only");
	if (spec__read_fields(c, n, volume_fields, ARRAY_SIZE(volume_fields), vol) < 0)
		return -1;
	if (!vol->host)
		return spec__missing(c, n, "host", "a host path such as /srv/data");
	if (!vol->path)
		return spec__missing(c, n, "path", "a path in the task such as /data");
	return 0;
}

static int v_volumes(struct sctx *c, const struct snode *n, struct task_spec *t)
{
	if (n->kind == SN_NULL)
		return 0;
	if (n->kind != SN_SEQ)
		return spec__expect(c, n, n,
				    "a list of volumes such as {host: /srv/data, path: /data}");
	if (n->nkids > SPEC_MAX_VOLUMES) {
		_cleanup_free_ char *found = xasprintf("%zu volumes", n->nkids);
		return spec__expect_found(c, n, found, "at most %d volumes", SPEC_MAX_VOLUMES);
	}
	t->volumes = xcalloc(n->nkids ? n->nkids : 1, sizeof *t->volumes);
	for (size_t i = 0; i < n->nkids; i++) {
		const struct snode *vn = n->kids[i];
		size_t saved = spec__path_push_index(c, i);
		struct volume *vol = &t->volumes[t->nvolumes++];
		if (v_volume(c, vn, vol) < 0)
			return -1;
		for (size_t j = 0; j < i; j++) {
			if (!strcmp(t->volumes[j].path, vol->path)) {
				const struct snode *pn = spec__map_get(vn, "path");
				spec__path_push(c, "path", 4);
				_cleanup_free_ char *q = spec__quote(vol->path, strlen(vol->path));
				_cleanup_free_ char *found = xasprintf("%s again", q);
				return spec__expect_found(c, pn, found, "each volume path once");
			}
		}
		spec__path_pop(c, saved);
	}
	return 0;
}

static int secret_name(struct sctx *c, const struct snode *v, void *obj)
{
	const char *what = "a secret name of the job's role such as db-pass ([a-z0-9_-])";
	struct secret_ref *s = obj;
	if (spec__get_string(c, v, what, &s->name) < 0)
		return -1;
	if (!spec__word_ok(s->name, "_-", SPEC_MAX_NAME) || *s->name == '-' || *s->name == '_')
		return spec__expect(c, v, v, "%s", what);
	for (const char *p = s->name; *p; p++)
		if (*p >= 'A' && *p <= 'Z')
			return spec__expect(c, v, v, "%s", what);
	return 0;
}

static int secret_path(struct sctx *c, const struct snode *v, void *obj)
{
	struct secret_ref *s = obj;
	if (get_volume_path(c, v, &s->path) < 0)
		return -1;
	if (!strcmp(s->path, "/") || s->path[strlen(s->path) - 1] == '/')
		return spec__expect(c, v, v, "a file path such as /run/secrets/db-pass");
	return 0;
}

/* task.secrets[i]: struct secret_ref */
static const struct field secret_fields[] = {
    F_READ("name", secret_name),
    F_READ("path", secret_path),
    F_INT("version", struct secret_ref, version, 0, INT32_MAX),
};

static int v_secret(struct sctx *c, const struct snode *n, struct secret_ref *s)
{
	if (n->kind != SN_MAP)
		return spec__expect(c, n, n, "a map with name and path");
	if (spec__read_fields(c, n, secret_fields, ARRAY_SIZE(secret_fields), s) < 0)
		return -1;
	if (!s->name)
		return spec__missing(c, n, "name", "a secret name such as db-pass");
	if (!s->path)
		s->path = xasprintf("/run/secrets/%s", s->name);
	return 0;
}

static int v_secrets(struct sctx *c, const struct snode *n, struct task_spec *t)
{
	if (n->kind == SN_NULL)
		return 0;
	if (n->kind != SN_SEQ)
		return spec__expect(
		    c, n, n,
		    "a list of secrets such as {name: db-pass, path: /run/secrets/db-pass}");
	if (n->nkids > SPEC_MAX_SECRETS) {
		_cleanup_free_ char *found = xasprintf("%zu secrets", n->nkids);
		return spec__expect_found(c, n, found, "at most %d secrets", SPEC_MAX_SECRETS);
	}
	t->secrets = xcalloc(n->nkids ? n->nkids : 1, sizeof *t->secrets);
	for (size_t i = 0; i < n->nkids; i++) {
		const struct snode *sn = n->kids[i];
		size_t saved = spec__path_push_index(c, i);
		struct secret_ref *s = &t->secrets[t->nsecrets++];
		if (v_secret(c, sn, s) < 0)
			return -1;
		for (size_t j = 0; j < i; j++) {
			bool same_name = !strcmp(t->secrets[j].name, s->name);
			if (same_name || !strcmp(t->secrets[j].path, s->path)) {
				const char *k = same_name ? "name" : "path";
				const char *val = same_name ? s->name : s->path;
				const struct snode *at = spec__map_get(sn, k);
				spec__path_push(c, k, strlen(k));
				_cleanup_free_ char *q = spec__quote(val, strlen(val));
				_cleanup_free_ char *found = xasprintf("%s again", q);
				return spec__expect_found(c, at ? at : sn, found,
							  "each secret %s once", k);
			}
		}
		spec__path_pop(c, saved);
	}
	return 0;
}

/* restart: struct restart_policy */
static const struct field restart_fields[] = {
    F_DURATION("delay", struct restart_policy, delay_ms, 0),
    F_DURATION("max_delay", struct restart_policy, max_delay_ms, 0),
    F_INT("max_attempts", struct restart_policy, max_attempts, 0, SPEC_MAX_COUNT),
    F_DURATION("window", struct restart_policy, window_ms, 1),
};

static int v_restart(struct sctx *c, const struct snode *n, struct restart_policy *r)
{
	if (spec__check_section(c, n, "a map of restart settings") < 0)
		return -1;
	r->set = true;
	return spec__read_fields(c, n, restart_fields, ARRAY_SIZE(restart_fields), r);
	return 0;
}

static int update_order(struct sctx *c, const struct snode *v, void *obj)
{
	int e = 0;
	if (spec__get_enum(c, v, spec__update_order_names, ARRAY_SIZE(spec__update_order_names),
			   &e) < 0)
		return -1;
	((struct update_spec *)obj)->order = (enum update_order)e;
	return 0;
}

/* update: struct update_spec */
static const struct field update_fields[] = {
    F_INT("batch_size", struct update_spec, batch_size, 1, SPEC_MAX_INSTANCES),
    F_DURATION("watch", struct update_spec, watch_ms, 0),
    F_INT("max_instance_failures", struct update_spec, max_instance_failures, 0, SPEC_MAX_COUNT),
    F_INT("max_total_failures", struct update_spec, max_total_failures, 0, SPEC_MAX_COUNT),
    F_BOOL("rollback_on_failure", struct update_spec, rollback_on_failure),
    F_READ("order", update_order),
};

static int v_update(struct sctx *c, const struct snode *n, struct update_spec *u)
{
	if (spec__check_section(c, n, "a map of update settings") < 0)
		return -1;
	return spec__read_fields(c, n, update_fields, ARRAY_SIZE(update_fields), u);
	return 0;
}

/* Numbers, names (JAN, MON), ranges, steps, lists and Quartz-style ?#. */
static bool cron_char_ok(char ch)
{
	return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || spec__is_digit(ch) ||
	       (ch && strchr("*/,-?#", ch));
}

/* Five whitespace-separated cron fields; kept with single spaces. */
static int v_schedule(struct sctx *c, const struct snode *n, char **out)
{
	const char *what = "a cron schedule of 5 fields such as '*/5 * * * *'";
	char *s = NULL;
	if (spec__get_string(c, n, what, &s) < 0)
		return -1;
	struct sbuf sb;
	int fields = 0;
	bool ok = true;
	sbuf_init(&sb);
	for (char *p = s; *p;) {
		p += strspn(p, " \t");
		size_t len = strcspn(p, " \t");
		if (!len)
			break;
		for (size_t i = 0; i < len; i++)
			if (!cron_char_ok(p[i]))
				ok = false;
		if (fields++)
			sbuf_adds(&sb, " ");
		sbuf_add(&sb, p, len);
		p += len;
	}
	free(s);
	/* "" is what the canonical form of a non-cron job holds. */
	if (!ok || (fields != 5 && fields != 0) || (fields == 0 && sb.len != n->len)) {
		sbuf_release(&sb);
		return spec__expect(c, n, n, "%s", what);
	}
	/* The fields must also mean something (ranges, names, steps). */
	struct cron_expr ce;
	struct berr cerr = {0};
	if (fields == 5 && cron_parse(sb.buf, &ce, &cerr) < 0) {
		int r = spec__expect(c, n, n, "%s (%s)", what, cerr.msg);
		sbuf_release(&sb);
		return r;
	}
	free(*out);
	*out = sbuf_detach(&sb);
	return 0;
}

static int v_jobkey(struct sctx *c, const struct snode *n, struct job_spec *s)
{
	struct berr e = {0};
	if (spec__get_string(c, n, "a job key such as alice/prod/web", &s->key) < 0)
		return -1;
	if (job_key_check(s->key, &e) < 0) {
		if (c->file && n->line > 0)
			return berr_set(c->err, 400, "%s:%d:%d: %s: %s", c->file, n->line, n->col,
					c->path.buf, e.msg);
		return berr_set(c->err, 400, "%s: %s", c->path.buf, e.msg);
	}
	char *a = strchr(s->key, '/'), *b = strchr(a + 1, '/');
	free(s->role);
	free(s->environment);
	free(s->name);
	s->role = xstrndup(s->key, (size_t)(a - s->key));
	s->environment = xstrndup(a + 1, (size_t)(b - a - 1));
	s->name = xstrdup(b + 1);
	return 0;
}

static int job_key(struct sctx *c, const struct snode *v, void *obj)
{
	return v_jobkey(c, v, obj);
}

static int job_type(struct sctx *c, const struct snode *v, void *obj)
{
	int e = 0;
	if (spec__get_enum(c, v, spec__job_type_names, ARRAY_SIZE(spec__job_type_names), &e) < 0)
		return -1;
	((struct job_spec *)obj)->type = (enum job_type)e;
	return 0;
}

static int job_schedule(struct sctx *c, const struct snode *v, void *obj)
{
	return v_schedule(c, v, &((struct job_spec *)obj)->schedule);
}

static int job_cron_collision(struct sctx *c, const struct snode *v, void *obj)
{
	int e = 0;
	if (spec__get_enum(c, v, spec__cron_collision_names, ARRAY_SIZE(spec__cron_collision_names),
			   &e) < 0)
		return -1;
	((struct job_spec *)obj)->cron_collision = (enum cron_collision)e;
	return 0;
}

static int job_placement(struct sctx *c, const struct snode *v, void *obj)
{
	int e = 0;
	if (spec__get_enum(c, v, spec__placement_names, ARRAY_SIZE(spec__placement_names), &e) < 0)
		return -1;
	((struct job_spec *)obj)->placement = (enum placement_strategy)e;
	return 0;
}

static int job_tier(struct sctx *c, const struct snode *v, void *obj)
{
	int e = 0;
	if (spec__get_enum(c, v, spec__tier_names, ARRAY_SIZE(spec__tier_names), &e) < 0)
		return -1;
	((struct job_spec *)obj)->tier = (enum job_tier)e;
	return 0;
}

static int job_task(struct sctx *c, const struct snode *v, void *obj)
{
	return v_task(c, v, &((struct job_spec *)obj)->task);
}

static int job_update(struct sctx *c, const struct snode *v, void *obj)
{
	return v_update(c, v, &((struct job_spec *)obj)->update);
}

static int job_restart(struct sctx *c, const struct snode *v, void *obj)
{
	return v_restart(c, v, &((struct job_spec *)obj)->restart);
}

static int publish_mode(struct sctx *c, const struct snode *v, void *obj)
{
	int e = 0;
	if (spec__get_enum(c, v, spec__publish_mode_names, ARRAY_SIZE(spec__publish_mode_names),
			   &e) < 0)
		return -1;
	((struct publish_spec *)obj)->mode = (enum publish_mode)e;
	return 0;
}

/* publish[i]: struct publish_spec */
static const struct field publish_fields[] = {
    F_INT("port", struct publish_spec, port, 1, 65535),
    F_STRING("target", struct publish_spec, target, "a port name"),
    F_READ("mode", publish_mode),
};

static int v_publish_one(struct sctx *c, const struct snode *n, struct publish_spec *p)
{
	if (n->kind != SN_MAP)
		return spec__expect(c, n, n, "a map with port, target and mode");
	if (spec__read_fields(c, n, publish_fields, ARRAY_SIZE(publish_fields), p) < 0)
		return -1;
	if (!spec__map_get(n, "port"))
		return spec__missing(c, n, "port", "a port number such as 8080");
	if (!p->target)
		return spec__missing(c, n, "target", "a port declared in task.resources.ports");
	return 0;
}

static int job_publish(struct sctx *c, const struct snode *n, void *obj)
{
	struct job_spec *s = obj;
	if (n->kind == SN_NULL)
		return 0;
	if (n->kind != SN_SEQ)
		return spec__expect(c, n, n,
				    "a list of published ports such as {port: 8080, "
				    "target: http}");
	if (n->nkids > SPEC_MAX_PUBLISH) {
		_cleanup_free_ char *found = xasprintf("%zu published ports", n->nkids);
		return spec__expect_found(c, n, found, "at most %d published ports",
					  SPEC_MAX_PUBLISH);
	}
	s->publish = xcalloc(n->nkids ? n->nkids : 1, sizeof *s->publish);
	for (size_t i = 0; i < n->nkids; i++) {
		const struct snode *pn = n->kids[i];
		size_t saved = spec__path_push_index(c, i);
		struct publish_spec *p = &s->publish[s->npublish++];
		if (v_publish_one(c, pn, p) < 0)
			return -1;
		for (size_t j = 0; j < i; j++) {
			if (s->publish[j].port == p->port) {
				spec__path_push(c, "port", 4);
				_cleanup_free_ char *found = xasprintf("%d again", p->port);
				return spec__expect_found(c, spec__map_get(pn, "port"), found,
							  "each published port once");
			}
		}
		spec__path_pop(c, saved);
	}
	return 0;
}

/* Each publish.target names a declared port; only services publish. */
static int check_publish(struct sctx *c, const struct snode *root, const struct job_spec *s)
{
	const struct snode *pub = spec__map_get(root, "publish");
	for (size_t i = 0; i < s->npublish; i++) {
		const struct publish_spec *p = &s->publish[i];
		const struct snode *pn = pub && i < pub->nkids ? pub->kids[i] : pub;
		if (s->type != JOB_SERVICE) {
			spec__path_push(c, "publish", 7);
			return spec__expect(c, pub, pub, "no published port for a %s job",
					    spec__job_type_names[s->type]);
		}
		if (!spec__port_declared(&s->task.resources, p->target, strlen(p->target))) {
			const struct snode *tn = spec__map_get(pn, "target");
			spec__path_push(c, "publish", 7);
			spec__path_push_index(c, i);
			spec__path_push(c, "target", 6);
			return spec__expect(c, tn ? tn : pn, tn,
					    "a port declared in task.resources.ports");
		}
	}
	return 0;
}

/* A system job runs one instance on every eligible node: it names no
 * instance count (0 is accepted: the canonical JSON writes it) and no limit
 * constraint (one per node already). */
static int check_system(struct sctx *c, const struct snode *root, struct job_spec *s)
{
	const struct snode *in = spec__map_get(root, "instances");
	if (in && s->instances != 0) {
		spec__path_push(c, "instances", 9);
		return spec__expect(c, in, in,
				    "no instances for a system job (it runs one instance on every "
				    "eligible node)");
	}
	s->instances = 0;
	const struct snode *task = spec__map_get(root, "task");
	const struct snode *cons = task ? spec__map_get(task, "constraints") : NULL;
	for (size_t i = 0; i < s->task.nconstraints; i++) {
		const struct constraint *k = &s->task.constraints[i];
		if (k->kind != CONSTRAINT_LIMIT)
			continue;
		const struct snode *v = cons ? spec__map_get(cons, k->attribute) : NULL;
		spec__path_push(c, "task", 4);
		spec__path_push(c, "constraints", 11);
		spec__path_push(c, k->attribute, strlen(k->attribute));
		return spec__expect(c, v, v,
				    "a value constraint such as 'r1' (a system job runs one "
				    "instance per node: no limit)");
	}
	return 0;
}

/* The top level: struct job_spec */
static const struct field job_fields[] = {
    F_READ("job", job_key),
    F_READ("type", job_type),
    F_INT("instances", struct job_spec, instances, 0, SPEC_MAX_INSTANCES),
    F_READ("schedule", job_schedule),
    F_READ("cron_collision", job_cron_collision),
    F_INT("priority", struct job_spec, priority, -SPEC_MAX_COUNT, SPEC_MAX_COUNT),
    F_READ("tier", job_tier),
    F_INT("max_task_failures", struct job_spec, max_task_failures, -1, SPEC_MAX_COUNT),
    F_READ("placement", job_placement),
    F_READ("task", job_task),
    F_READ("update", job_update),
    F_READ("restart", job_restart),
    F_READ("publish", job_publish),
};

int spec__validate(struct sctx *c, const struct snode *root, struct job_spec *s)
{
	if (!root || root->kind != SN_MAP)
		return spec__expect(c, root, root, "a map of job fields such as job and task");
	if (spec__read_fields(c, root, job_fields, ARRAY_SIZE(job_fields), s) < 0)
		return -1;
	if (!spec__map_get(root, "job"))
		return spec__missing(c, root, "job", "a job key such as alice/prod/web");
	if (!spec__map_get(root, "task"))
		return spec__missing(c, root, "task", "a task section with a command");
	if (!spec__map_get(root, "tier"))
		s->tier = strcmp(s->environment, "prod") ? TIER_PREEMPTIBLE : TIER_PREFERRED;
	if (s->type == JOB_CRON && !*s->schedule) {
		const struct snode *sched = spec__map_get(root, "schedule");
		spec__path_push(c, "schedule", 8);
		return spec__expect(c, sched ? sched : spec__map_get(root, "type"), sched,
				    "a cron schedule such as '*/5 * * * *' for a cron job");
	}
	if (s->type != JOB_CRON && *s->schedule) {
		const struct snode *sched = spec__map_get(root, "schedule");
		spec__path_push(c, "schedule", 8);
		return spec__expect(c, sched, sched, "no schedule for a %s job (use type: cron)",
				    spec__job_type_names[s->type]);
	}
	if (s->type == JOB_SYSTEM && check_system(c, root, s) < 0)
		return -1;
	return check_publish(c, root, s);
}
