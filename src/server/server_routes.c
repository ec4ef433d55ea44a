/* server_routes.c - the API's routes (docs/api.md): each parses and checks
 * its input, calls the cluster, and answers at once (reads) or after the
 * commit (writes). Every bad input gets a JSON error naming it. */
#include "server/server-internal.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/agent_report.h"
#include "core/base64.h"
#include "core/spec.h"
#include "server/logtail.h"

/* The request's body as a job spec, or NULL with q answered. */
static struct job_spec *parse_spec_body(struct request *q)
{
	json_t *body = parse_body(q);
	if (!body)
		return NULL;
	struct berr err = {0};
	struct job_spec *spec;
	int r = spec_parse_json(body, &spec, &err);
	json_decref(body);
	if (r < 0) {
		reply_error(q, err.code ? err.code : 400, err.msg);
		return NULL;
	}
	return spec;
}

static void route_jobs_post(struct request *q)
{
	struct job_spec *spec = parse_spec_body(q);
	if (!spec)
		return;
	if (!auth_role(q, spec->key)) {
		spec_free(spec);
		return;
	}
	struct berr err = {0};
	char *key = xstrdup(spec->key);
	struct submit_result res;
	/* ?instances=A-B (or A): a canary, only those instances are updated. */
	int first = 0, last = INT_MAX;
	const char *inst = MHD_lookup_connection_value(q->conn, MHD_GET_ARGUMENT_KIND, "instances");
	if (inst && *inst) {
		int used = -1;
		int n = sscanf(inst, "%d-%d%n", &first, &last, &used);
		if (n != 2) {
			used = -1;
			n = sscanf(inst, "%d%n", &first, &used);
			last = first;
		}
		if (n < 1 || used < 0 || inst[used] || first < 0 || last < first) {
			spec_free(spec);
			free(key);
			reply_error(q, 400,
				    "query 'instances': expected A or A-B with 0 <= A <= B");
			return;
		}
	}
	uint64_t seq = cluster_job_submit_instances(q->srv->c, spec, first, last, &res, &err);
	if (!seq)
		reply_error(q, err.code ? err.code : 500, err.msg);
	else
		reply_after_commit(q, seq,
				   json_pack("{s:s,s:i,s:b,s:b,s:b}", "job", key, "version",
					     res.version, "created", res.created, "changed",
					     res.changed, "update", res.update));
	free(key);
}

static bool query_flag(struct request *q, const char *name)
{
	const char *v = MHD_lookup_connection_value(q->conn, MHD_GET_ARGUMENT_KIND, name);
	return v && (!*v || !strcmp(v, "1") || !strcmp(v, "true"));
}

/* /v1/jobs/ROLE/ENV/NAME[/ACTION] */
static void route_job(struct request *q, const char *method, const char *rest)
{
	char key[400], action[64] = "";
	const char *p = rest;
	int slashes = 0;
	const char *cut = NULL;
	for (; *p; p++)
		if (*p == '/' && ++slashes == 3)
			cut = p;
	size_t klen = cut ? (size_t)(cut - rest) : strlen(rest);
	if (klen >= sizeof key) {
		reply_error(q, 400, "job key too long");
		return;
	}
	memcpy(key, rest, klen);
	key[klen] = 0;
	if (cut)
		snprintf(action, sizeof action, "%s", cut + 1);
	struct berr err = {0};
	if (job_key_check(key, &err) < 0) {
		reply_error(q, 400, err.msg);
		return;
	}
	if (!auth_role(q, key))
		return;
	struct cluster *c = q->srv->c;
	if (!*action && !strcmp(method, "GET")) {
		json_t *o = cluster_job_status_json(c, key, query_flag(q, "all"), &err);
		if (o)
			reply_ok(q, o);
		else
			reply_error(q, err.code, err.msg);
		return;
	}
	if (!strcmp(action, "endpoints") && !strcmp(method, "GET")) {
		json_t *o = cluster_job_endpoints_json(c, key, &err);
		if (o)
			reply_ok(q, o);
		else
			reply_error(q, err.code, err.msg);
		return;
	}
	if (!strcmp(action, "update") && !strcmp(method, "GET")) {
		json_t *o = cluster_update_json(c, key, &err);
		if (o)
			reply_ok(q, o);
		else
			reply_error(q, err.code, err.msg);
		return;
	}
	uint64_t seq = 0;
	if (!strncmp(action, "update/", 7) && !strcmp(method, "POST")) {
		seq = cluster_update_control(c, key, action + 7, &err);
		if (!seq)
			reply_error(q, err.code ? err.code : 500, err.msg);
		else
			reply_after_commit(q, seq, cluster_update_json(c, key, &err));
		return;
	}
	if (!strcmp(action, "cron/start") && !strcmp(method, "POST")) {
		seq = cluster_cron_start(c, key, &err);
		if (!seq)
			reply_error(q, err.code ? err.code : 500, err.msg);
		else
			reply_after_commit(q, seq, json_pack("{s:s,s:b}", "job", key, "ok", 1));
		return;
	}
	if ((!*action && !strcmp(method, "DELETE")) ||
	    (!strcmp(action, "kill") && !strcmp(method, "POST")))
		seq = cluster_job_kill(c, key, &err);
	else if (!strcmp(action, "restart") && !strcmp(method, "POST")) {
		/* ?instance=N restarts one instance; ?all_at_once=1 every task at
		 * once; else a rolling restart. */
		const char *inst =
		    MHD_lookup_connection_value(q->conn, MHD_GET_ARGUMENT_KIND, "instance");
		int instance = -1;
		if (inst) {
			char *end = NULL;
			long v = strtol(inst, &end, 10);
			if (!*inst || *end || v < 0 || v > INT_MAX) {
				reply_error(q, 400,
					    "query 'instance': expected an instance number >= 0");
				return;
			}
			instance = (int)v;
		}
		seq = cluster_job_restart(c, key, instance, query_flag(q, "all_at_once"), &err);
		if (seq) {
			/* "rolling": a rolling restart was started (service jobs). */
			json_t *u = instance < 0 ? cluster_update_json(c, key, &err) : NULL;
			const char *kind = json_string_value(json_object_get(u, "kind"));
			const char *st = json_string_value(json_object_get(u, "state"));
			bool rolling = kind && !strcmp(kind, "restart") && st &&
				       !strcmp(st, "ROLLING_FORWARD");
			json_decref(u);
			reply_after_commit(
			    q, seq,
			    json_pack("{s:s,s:b,s:b}", "job", key, "ok", 1, "rolling", rolling));
			return;
		}
	} else {
		reply_error(q, *action ? 404 : 405,
			    *action ? "unknown route" : "method not allowed");
		return;
	}
	if (!seq)
		reply_error(q, err.code ? err.code : 500, err.msg);
	else
		reply_after_commit(q, seq, json_pack("{s:s,s:b}", "job", key, "ok", 1));
}

static void route_task(struct request *q, const char *method, const char *rest)
{
	struct cluster *c = q->srv->c;
	struct berr err = {0};
	const char *ex = strstr(rest, "/exec");
	if (ex && !strcmp(ex, "/exec")) {
		char *ref = xstrndup(rest, (size_t)(ex - rest));
		server_route_task_exec(q, method, ref);
		free(ref);
		return;
	}
	const char *logs = strstr(rest, "/logs");
	if (logs && !strcmp(logs, "/logs")) {
		char *ref = xstrndup(rest, (size_t)(logs - rest));
		struct task *t = cluster_find_task(c, ref);
		free(ref);
		if (!t) {
			reply_error(q, 404, "task not found");
			return;
		}
		if (!auth_role(q, t->job->key))
			return;
		/* A node gone: the tail the server kept (logtail.h). */
		const char *kept =
		    MHD_lookup_connection_value(q->conn, MHD_GET_ARGUMENT_KIND, "kept");
		if (server_logtail_answer(q, t, kept && !strcmp(kept, "1")))
			return;
		/* The logs live on the agent: send the client there. */
		const char *addr = t->node ? t->node->addr : NULL;
		if (!addr) {
			/* An ended task keeps no node link; find it by its last node. */
			reply_error(q, 404, "task has no node: it never ran, so it has no logs");
			return;
		}
		const char *stream =
		    MHD_lookup_connection_value(q->conn, MHD_GET_ARGUMENT_KIND, "stream");
		const char *off =
		    MHD_lookup_connection_value(q->conn, MHD_GET_ARGUMENT_KIND, "offset");
		/* Only "stdout"/"stderr" and a number reach the agent's URL. */
		if (stream && strcmp(stream, "stdout") && strcmp(stream, "stderr")) {
			reply_error(q, 400, "query 'stream': expected stdout or stderr");
			return;
		}
		int64_t offv = 0;
		if (off && (parse_int64(off, &offv) < 0 || offv < 0)) {
			reply_error(q, 400, "query 'offset': expected a byte offset");
			return;
		}
		/* The agent serves a task's logs to whoever holds a ticket
		 * signed by the cluster's CA, as here, after the role check. */
		char *ticket = server_logs_ticket(q->srv, t->id);
		q->location = xasprintf("%s/v1/logs/%s?stream=%s&offset=%lld%s%s", addr, t->id,
					stream ? stream : "stdout", (long long)offv,
					ticket ? "&ticket=" : "", ticket ? ticket : "");
		free(ticket);
		q->status = 307;
		q->phase = REQ_READY;
		q->reply = json_pack("{s:s}", "location", q->location);
		return;
	}
	if (strcmp(method, "GET")) {
		reply_error(q, 405, "method not allowed");
		return;
	}
	struct task *t = cluster_find_task(c, rest);
	if (t && !auth_role(q, t->job->key))
		return;
	json_t *o = cluster_task_json(c, rest, &err);
	if (o)
		reply_ok(q, o);
	else
		reply_error(q, err.code, err.msg);
}

/* POST /v1/agent/secrets {"name": NODE, "task": ID, "secrets"?: [NAME]}:
 * the values of the secrets a task placed on that node lists, opened here,
 * for the agent that launches it; 403 for any other node, task or secret. */
static void route_agent_secrets(struct request *q, json_t *body)
{
	const char *node = json_string_value(json_object_get(body, "name"));
	const char *task = json_string_value(json_object_get(body, "task"));
	json_t *only = json_object_get(body, "secrets");
	if (!node || !*node || !task || !*task) {
		reply_error(q, 400, "expected {\"name\": NODE, \"task\": TASK_ID}");
		return;
	}
	if (only && !json_is_array(only)) {
		reply_error(q, 400, "secrets: expected a list of secret names");
		return;
	}
	if (!auth_node(q, node))
		return;
	struct berr err = {0};
	json_t *list = cluster_task_secrets(q->srv->c, node, task, only, &err);
	if (!list) {
		reply_error(q, err.code ? err.code : 403, err.msg);
		return;
	}
	const struct secret_key *key = &q->srv->secrets_key;
	json_t *out = json_array();
	size_t i;
	json_t *e;
	json_array_foreach(list, i, e)
	{
		const char *full = json_string_value(json_object_get(e, "full_name"));
		const char *kid = json_string_value(json_object_get(e, "key_id"));
		int version = (int)json_integer_value(json_object_get(e, "version"));
		char *aad = secret_aad(full, version), *plain = NULL;
		size_t len = 0;
		int r = strcmp(kid, key->id)
			    ? berr_set(&err, 500,
				       "secret '%s' was sealed with key %s, this server has key %s "
				       "(servers must share one --secrets-key-file)",
				       full, kid, key->id)
			    : secret_open(key, aad, json_string_value(json_object_get(e, "sealed")),
					  &plain, &len, &err);
		free(aad);
		if (r < 0) {
			json_decref(out);
			json_decref(list);
			reply_error(q, err.code ? err.code : 500, err.msg);
			return;
		}
		char *b64 = base64_encode(plain, len);
		memset(plain, 0, len);
		free(plain);
		json_array_append_new(out, json_pack("{s:O,s:O,s:i,s:s%}", "name",
						     json_object_get(e, "name"), "path",
						     json_object_get(e, "path"), "version", version,
						     "data", b64, strlen(b64)));
		memset(b64, 0, strlen(b64));
		free(b64);
	}
	json_decref(list);
	reply_ok(q, json_pack("{s:s,s:o}", "task", task, "secrets", out));
}

/* /v1/secrets[/ROLE/NAME]: create (a new version), list, remove. Values go
 * in, sealed; they never come out. */
static void route_secrets(struct request *q, const char *method, const char *rest)
{
	struct cluster *c = q->srv->c;
	struct berr err = {0};
	if (!*rest && !strcmp(method, "GET")) {
		const char *role =
		    MHD_lookup_connection_value(q->conn, MHD_GET_ARGUMENT_KIND, "role");
		if (role && (!*role || strlen(role) > 128 || strchr(role, '/'))) {
			reply_error(q, 400, "query 'role': expected a role name");
			return;
		}
		if (!role && q->who.kind == PRINCIPAL_ROLE)
			role = q->who.name; /* a role's token sees its own */
		if (role ? !auth_role(q, role) : !auth_admin(q))
			return;
		reply_ok(q, cluster_secrets_json(c, role));
		return;
	}
	if (!*rest && !strcmp(method, "POST")) {
		json_t *body = parse_body(q);
		if (!body)
			return;
		char *name = NULL, *value = NULL;
		size_t len = 0;
		int r = secret_body_parse(body, &name, &value, &len, &err);
		json_decref(body);
		if (r < 0) {
			reply_error(q, err.code ? err.code : 400, err.msg);
			return;
		}
		if (!auth_role(q, name)) {
			memset(value, 0, len);
			free(value);
			free(name);
			return;
		}
		int version = cluster_secret_next_version(c, name);
		char *aad = secret_aad(name, version);
		char *sealed = secret_seal(&q->srv->secrets_key, aad, value, len, &err);
		memset(value, 0, len);
		free(value);
		free(aad);
		json_t *reply = NULL;
		uint64_t seq = sealed
				   ? cluster_secret_put(c, name, version, sealed,
							q->srv->secrets_key.id, len, &reply, &err)
				   : 0;
		if (seq)
			reply_after_commit(q, seq, reply);
		else
			reply_error(q, err.code ? err.code : 500, err.msg);
		free(sealed);
		free(name);
		return;
	}
	if (*rest && !strcmp(method, "DELETE")) {
		if (secret_name_check(rest, &err) < 0) {
			reply_error(q, 400, err.msg);
			return;
		}
		if (!auth_role(q, rest))
			return;
		uint64_t seq = cluster_secret_delete(c, rest, &err);
		if (seq)
			reply_after_commit(q, seq, json_pack("{s:s,s:b}", "name", rest, "ok", 1));
		else
			reply_error(q, err.code ? err.code : 500, err.msg);
		return;
	}
	reply_error(q, 405, "method not allowed");
}

/* The long poll a watch asks for (wait_ms), within reason. */
int64_t watch_wait_ms(const struct cluster *c, bool given, int64_t wait)
{
	int64_t hb = cluster_heartbeat_ms(c);
	int64_t w = given ? wait : hb;
	return w < 0 || w > 60000 ? hb : w;
}

/* A watch or a status report: the body read without a tree. */
static void route_agent_report(struct request *q, bool watch)
{
	struct cluster *c = q->srv->c;
	struct agent_report *body = q->agent_report;
	q->agent_report = NULL;
	if (!body)
		body = parse_agent_report(q, watch);
	if (!body)
		return;
	if (!auth_node(q, body->name)) {
		agent_report_free(body);
		return;
	}
	struct berr err = {0};
	uint64_t seq = 0;
	if (!watch) {
		seq = cluster_agent_status(c, body, &err);
		if (seq)
			reply_after_commit(q, seq, json_pack("{s:b}", "ok", 1));
	} else {
		struct node *n = NULL;
		seq = cluster_agent_watch(c, body, &n, &err);
		if (seq) {
			int64_t wait_ms = watch_wait_ms(c, body->has_wait_ms, body->wait_ms);
			q->watch_node = n;
			q->known_version =
			    body->has_known_version ? (uint64_t)body->known_version : 0;
			/* Agents that follow the endpoints say which version they
			 * have (0: none yet); others never get the table. */
			q->endpoints_follow = body->has_endpoints_version;
			q->endpoints_known =
			    q->endpoints_follow ? (uint64_t)body->endpoints_version : 0;
			q->deadline_mono = time_mono_ms() + wait_ms;
			q->wait_seq = seq;
			q->phase = REQ_WATCH;
			q->status = 200;
			if (watch_has_news(c, q, n)) {
				/* Something new already: answer at once. */
				watch_answer(c, q, n);
				q->phase = REQ_READY;
			}
		}
	}
	agent_report_free(body);
	if (!seq)
		reply_error(q, err.code ? err.code : 500, err.msg);
}

static void route_agent(struct request *q, const char *what)
{
	struct cluster *c = q->srv->c;
	if (!strcmp(what, "watch") || !strcmp(what, "status")) {
		route_agent_report(q, !strcmp(what, "watch"));
		return;
	}
	json_t *body = q->agent_body;
	q->agent_body = NULL;
	if (!body)
		body = parse_body(q);
	if (!body)
		return;
	if (!auth_node(q, json_string_value(json_object_get(body, "name")))) {
		json_decref(body);
		return;
	}
	struct berr err = {0};
	uint64_t seq = 0;
	if (!strcmp(what, "register")) {
		json_t *reply = NULL;
		seq = cluster_agent_register(c, body, &reply, &err);
		if (seq)
			reply_after_commit(q, seq, reply);
	} else if (!strcmp(what, "network")) {
		json_t *net =
		    cluster_node_network(c, json_string_value(json_object_get(body, "name")), &err);
		json_decref(body);
		if (net)
			reply_ok(q, net);
		else
			reply_error(q, err.code, err.msg);
		return;
	} else if (!strcmp(what, "mesh")) {
		/* The routing mesh's feed (cluster_mesh.c): read only. */
		json_decref(body);
		reply_ok(q, cluster_mesh_json(c));
		return;
	} else if (!strcmp(what, "secrets")) {
		route_agent_secrets(q, body);
		json_decref(body);
		return;
	} else {
		json_decref(body);
		reply_error(q, 404, "unknown route");
		return;
	}
	json_decref(body);
	if (!seq)
		reply_error(q, err.code ? err.code : 500, err.msg);
}

static const char *query_arg(struct request *q, const char *name)
{
	return MHD_lookup_connection_value(q->conn, MHD_GET_ARGUMENT_KIND, name);
}

/* ?limit=N&after=NAME, and ?state=S (nodes) or ?role=R (jobs): the paging
 * and filters of a large view. Query parameters are untrusted: a bad one is
 * a 400 that names it. */
static bool view_query(struct request *q, bool nodes, struct view_filter *f, bool *paged)
{
	memset(f, 0, sizeof *f);
	f->state = -1;
	const char *limit = query_arg(q, "limit"), *after = query_arg(q, "after");
	const char *state = query_arg(q, "state"), *role = query_arg(q, "role");
	*paged = limit || after;
	if (limit) {
		int64_t v;
		if (parse_int64(limit, &v) < 0 || v < 1 || v > PAGE_MAX) {
			reply_error(q, 400, "query 'limit': expected an integer from 1 to 100000");
			return false;
		}
		f->limit = (size_t)v;
	}
	if (after) {
		if (strlen(after) > 1024) {
			reply_error(q, 400, "query 'after': expected a name from a 'next' cursor");
			return false;
		}
		f->after = *after ? after : NULL;
	}
	if (state && nodes) {
		for (int st = NODE_ACTIVE; st <= NODE_DOWN; st++)
			if (!strcasecmp(state, node_state_name((enum node_state)st)))
				f->state = st;
		if (f->state < 0) {
			reply_error(q, 400,
				    "query 'state': expected ACTIVE, DRAINING, DRAINED or DOWN");
			return false;
		}
	}
	if (!nodes && q->who.kind == PRINCIPAL_ROLE) {
		/* A role's token sees its role's jobs. */
		if (role && strcmp(role, q->who.name)) {
			auth_role(q, role);
			return false;
		}
		role = q->who.name;
	}
	if (role && !nodes) {
		if (!*role || strlen(role) > 128 || strchr(role, '/')) {
			reply_error(q, 400, "query 'role': expected a role name");
			return false;
		}
		f->role = role;
	}
	return true;
}

/* A large view: its snapshot is taken here (under the lock) and written
 * out by send_ready, after the lock. */
static void route_view(struct request *q, bool nodes)
{
	struct view_filter f;
	bool paged;
	if (!view_query(q, nodes, &f, &paged))
		return;
	view_rows_free(q->view);
	q->view = nodes ? cluster_node_rows(q->srv->c, &f) : cluster_job_rows(q->srv->c, &f);
	q->view_paged = paged;
	q->status = 200;
	q->phase = REQ_READY;
}

/* /v1/tokens: the admin's (docs/security.md). POST {"role", "ttl"} makes
 * a role's token, shown once; GET lists them (no secrets); DELETE
 * /v1/tokens/ID revokes one. */
static void route_tokens(struct request *q, const char *method, const char *rest)
{
	struct cluster *c = q->srv->c;
	if (!auth_admin(q))
		return;
	if (!q->srv->tls) {
		reply_error(q, 400, "this server runs --insecure: it has no tokens");
		return;
	}
	if (!*rest && !strcmp(method, "GET")) {
		server_tokens_refresh(q->srv); /* also those other servers wrote */
		reply_ok(q, json_pack("{s:o}", "tokens",
				      token_table_json(c->tokens, time_now_ms() / 1000)));
		return;
	}
	if (!*rest && !strcmp(method, "POST")) {
		json_t *body = parse_body(q);
		if (!body)
			return;
		const char *role = json_string_value(json_object_get(body, "role"));
		json_t *ttl = json_object_get(body, "ttl");
		struct berr err = {0};
		if (!role || role_name_check(role, &err) < 0) {
			reply_error(q, 400, role ? err.msg : "field 'role': expected a role name");
			json_decref(body);
			return;
		}
		if (ttl && (!json_is_integer(ttl) || json_integer_value(ttl) < 0)) {
			reply_error(q, 400, "field 'ttl': expected seconds (0 = no expiry)");
			json_decref(body);
			return;
		}
		struct token_rec rec;
		char *token =
		    token_make(TOKEN_ROLE, role, ttl ? json_integer_value(ttl) : 0, NULL, &rec);
		json_decref(body);
		reply_after_commit(q, cluster_token_put(c, &rec),
				   json_pack("{s:s,s:s,s:s,s:I}", "token", token, "id", rec.id,
					     "role", rec.role, "expires", (json_int_t)rec.expires));
		explicit_bzero(token, strlen(token));
		free(token);
		return;
	}
	if (rest[0] == '/' && !strcmp(method, "DELETE")) {
		const char *id = rest + 1;
		/* Known here, or written to the store by another server. */
		if (token_id_ok(id) && !token_table_has_id(c->tokens, id))
			server_token_fetch(q->srv, id);
		uint64_t seq = strlen(id) == TOKEN_ID_LEN ? cluster_token_delete(c, id) : 0;
		if (!seq) {
			reply_error(q, 404, "no such token");
			return;
		}
		reply_after_commit(q, seq, json_pack("{s:s,s:b}", "id", id, "revoked", 1));
		return;
	}
	reply_error(q, *rest ? 404 : 405, *rest ? "unknown route" : "method not allowed");
}

void server_route(struct request *q, const char *method, const char *url)
{
	struct cluster *c = q->srv->c;
	if (!strncmp(url, "/v1/agent/", 10) && !strcmp(method, "POST")) {
		if (!strcmp(url, "/v1/agent/join") || !strcmp(url, "/v1/agent/renew"))
			/* served before the cluster lock (server_http.c) */
			reply_error(q, 500, "join and renew are not served under the cluster lock");
		else
			route_agent(q, url + 10);
		return;
	}
	/* Everything else is the users' API: a node's certificate is not a
	 * user, nor is the join token. */
	if (q->who.kind == PRINCIPAL_NODE) {
		reply_error(q, 403,
			    "forbidden: a node's certificate speaks only the agent protocol");
		return;
	}
	if (!auth_any(q))
		return;
	if (!strncmp(url, "/v1/tokens", 10)) {
		route_tokens(q, method, url + 10);
		return;
	}
	if (!strcmp(url, "/v1/leader")) {
		reply_ok(q, json_pack("{s:b,s:s,s:s}", "ok", 1, "leader", q->srv->self_url, "role",
				      "leader"));
		return;
	}
	if (!strcmp(url, "/v1/jobs")) {
		if (!strcmp(method, "GET"))
			route_view(q, false);
		else if (!strcmp(method, "POST"))
			route_jobs_post(q);
		else
			reply_error(q, 405, "method not allowed");
		return;
	}
	if (!strcmp(url, "/v1/jobs/plan") || !strcmp(url, "/v1/plan")) {
		if (strcmp(method, "POST")) {
			reply_error(q, 405, "method not allowed");
			return;
		}
		struct job_spec *spec = parse_spec_body(q);
		if (!spec)
			return;
		/* A plan shows the job's current spec (its env among it): the
		 * role's own jobs only, as a submit. */
		if (!auth_role(q, spec->key)) {
			spec_free(spec);
			return;
		}
		struct berr err = {0};
		json_t *plan = cluster_job_plan(c, spec, &err);
		if (plan)
			reply_ok(q, plan);
		else
			reply_error(q, err.code ? err.code : 500, err.msg);
		spec_free(spec);
		return;
	}
	if (!strncmp(url, "/v1/jobs/", 9)) {
		route_job(q, method, url + 9);
		return;
	}
	if (!strncmp(url, "/v1/tasks/", 10)) {
		route_task(q, method, url + 10);
		return;
	}
	if (!strcmp(url, "/v1/cron")) {
		if (!strcmp(method, "GET"))
			reply_ok(q, cluster_cron_list_json(
					c, q->who.kind == PRINCIPAL_ROLE ? q->who.name : NULL));
		else
			reply_error(q, 405, "method not allowed");
		return;
	}
	if (!strcmp(url, "/v1/nodes")) {
		if (!strcmp(method, "GET"))
			route_view(q, true);
		else
			reply_error(q, 405, "method not allowed");
		return;
	}
	if (!strncmp(url, "/v1/nodes/", 10) && !strcmp(method, "POST")) {
		const char *name = url + 10, *slash = strrchr(name, '/');
		if (slash && (!strcmp(slash, "/drain") || !strcmp(slash, "/activate"))) {
			if (!auth_admin(q))
				return;
			char *n = xstrndup(name, (size_t)(slash - name));
			struct berr err = {0};
			uint64_t seq = cluster_node_drain(c, n, !strcmp(slash, "/drain"), &err);
			if (seq)
				reply_after_commit(q, seq,
						   json_pack("{s:s,s:b}", "node", n, "ok", 1));
			else
				reply_error(q, err.code, err.msg);
			free(n);
			return;
		}
	}
	if (!strcmp(url, "/v1/secrets") || !strncmp(url, "/v1/secrets/", 12)) {
		route_secrets(q, method, url[11] ? url + 12 : "");
		return;
	}
	if (!strcmp(url, "/v1/quotas") || !strncmp(url, "/v1/quotas/", 11)) {
		route_quotas(q, method, url[10] ? url + 11 : "");
		return;
	}
	reply_error(q, 404, "unknown route");
}
