/* server.c - the HTTP/JSON API over the cluster, and the commit loop.
 *
 * A request's life in libmicrohttpd: the access handler is called once with
 * the headers (we allocate a struct request), then once per body chunk (we
 * buffer up to MAX_BODY), then with no data: we route. A read answers at
 * once. A write applies to memory under the cluster lock, notes the seq it
 * needs durable and suspends the connection; the commit thread resumes it
 * after store_commit. An agent's watch suspends until its node's desired set
 * changes or its heartbeat interval passes.
 */
#include "server/server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <curl/curl.h>
#include <microhttpd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "core/addr.h"
#include "core/log.h"
#include "core/spec.h"
#include "server/leader.h"
#include "store/store.h"

#define MAX_BODY (1u << 20)
#define COMMIT_TICK_MS 50
/* Request threads: a large response or a slow handler on one leaves the
 * others hearing agents. */
#define REQUEST_THREADS 4
/* Paged views: at most this many items a page. */
#define PAGE_MAX 100000

enum req_phase { REQ_NEW = 0, REQ_WAIT_COMMIT, REQ_WATCH, REQ_READY };

struct request {
	struct server *srv;
	struct MHD_Connection *conn;
	struct sbuf body;
	bool too_big;
	enum req_phase phase;
	uint64_t wait_seq;
	int status;
	json_t *reply;
	char *location; /* redirect */
	char *text;	/* a ready JSON text reply (instead of reply) */
	struct node *watch_node;
	uint64_t known_version;
	int64_t deadline_mono;
	struct request *next; /* in srv->waiting */
	bool suspended;
	bool from_replica;	/* answered by a follower from its replica */
	json_t *agent_body;	/* an agent call's body, parsed before the cluster lock */
	struct node_live *live; /* a watch: its node's liveness entry, held meanwhile */
	int64_t live_wait_ms;	/* the wait the watch asked for */
	struct view_rows *view; /* a large view's snapshot, written out after the lock */
	bool view_paged;
};

struct server {
	struct cluster *c;
	struct store *store;
	struct MHD_Daemon *mhd;
	pthread_t commit_thread;
	bool stopping;
	int port;
	struct request *waiting;    /* writes waiting for their commit (under c->lock) */
	pthread_mutex_t store_lock; /* the store is used by one thread at a time */
	struct leader *leader;	    /* HA (etcd store): the election */
	_Atomic bool leading;	    /* without HA: always */
	bool commit_started;
	pthread_t elect_thread; /* HA: loads the state once elected */
	_Atomic bool elect_started;
	int64_t last_sweep_mono;
	char *self_url;
	/* HA follower: the replica (cluster_replica_*) kept by a store watch.
	 * Under c->lock: */
	char *store_location;
	pthread_t follow_thread;
	bool follow_started;
	_Atomic bool follow_stop;
	bool replica_synced;	      /* a full copy arrived; changes follow */
	int64_t replica_rev;	      /* the store revision the replica is at */
	int64_t elected_rev;	      /* the store revision of this server's election */
	pthread_cond_t replica_moved; /* replica_rev moved */
};

void server_options_defaults(struct server_options *o)
{
	memset(o, 0, sizeof *o);
	o->addr = "127.0.0.1:7070";
	cluster_config_defaults(&o->cluster);
}

/* ---- responses ---------------------------------------------------------- */

static enum MHD_Result send_json(struct MHD_Connection *conn, int status, json_t *body,
				 bool from_replica)
{
	char *s = json_dumps(body, JSON_COMPACT);
	size_t n = strlen(s);
	s = xrealloc(s, n + 2);
	s[n++] = '\n';
	s[n] = 0;
	struct MHD_Response *r = MHD_create_response_from_buffer(n, s, MHD_RESPMEM_MUST_FREE);
	MHD_add_response_header(r, "Content-Type", "application/json");
	if (from_replica)
		MHD_add_response_header(r, "X-Berth-Served-By", "follower");
	enum MHD_Result ret = MHD_queue_response(conn, (unsigned)status, r);
	MHD_destroy_response(r);
	return ret;
}

static void reply_error(struct request *q, int status, const char *msg)
{
	/* A view that could not be built says so rather than "200" or "". */
	if (status < 400 || status > 599)
		status = 500;
	if (!msg || !*msg)
		msg = "internal error: the answer could not be built";
	json_decref(q->reply);
	q->status = status;
	q->reply = json_pack("{s:s,s:i}", "error", msg, "status", status);
	q->phase = REQ_READY;
}

static void reply_ok(struct request *q, json_t *body)
{
	json_decref(q->reply);
	q->status = 200;
	q->reply = body;
	q->phase = REQ_READY;
}

/* Acknowledge once `seq` is durable. */
static void reply_after_commit(struct request *q, uint64_t seq, json_t *body)
{
	struct server *s = q->srv;
	json_decref(q->reply);
	q->status = 200;
	q->reply = body;
	if (cluster_committed(s->c, seq)) {
		q->phase = REQ_READY;
		return;
	}
	q->phase = REQ_WAIT_COMMIT;
	q->wait_seq = seq;
}

/* ---- routes -------------------------------------------------------------- */

static json_t *parse_body(struct request *q)
{
	if (q->too_big) {
		char msg[128];
		snprintf(msg, sizeof msg, "request body too large (limit %u bytes)", MAX_BODY);
		reply_error(q, 413, msg);
		return NULL;
	}
	json_error_t je;
	json_t *j = json_loadb(q->body.buf, q->body.len, JSON_REJECT_DUPLICATES, &je);
	if (!j) {
		char msg[300];
		snprintf(msg, sizeof msg, "malformed JSON at line %d column %d: %s", je.line,
			 je.column, je.text);
		reply_error(q, 400, msg);
		return NULL;
	}
	if (!json_is_object(j)) {
		json_decref(j);
		reply_error(q, 400, "malformed request: expected a JSON object");
		return NULL;
	}
	return j;
}

static void route_jobs_post(struct request *q)
{
	json_t *body = parse_body(q);
	if (!body)
		return;
	struct berr err = {0};
	struct job_spec *spec;
	int r = spec_parse_json(body, &spec, &err);
	json_decref(body);
	if (r < 0) {
		reply_error(q, err.code ? err.code : 400, err.msg);
		return;
	}
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
	struct cluster *c = q->srv->c;
	if (!*action && !strcmp(method, "GET")) {
		json_t *o = cluster_job_status_json(c, key, query_flag(q, "all"), &err);
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
	else if (!strcmp(action, "restart") && !strcmp(method, "POST"))
		seq = cluster_job_restart(c, key, &err);
	else {
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
	const char *logs = strstr(rest, "/logs");
	if (logs && !strcmp(logs, "/logs")) {
		char *ref = xstrndup(rest, (size_t)(logs - rest));
		struct task *t = cluster_find_task(c, ref);
		free(ref);
		if (!t) {
			reply_error(q, 404, "task not found");
			return;
		}
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
		q->location = xasprintf("%s/v1/logs/%s?stream=%s&offset=%s", addr, t->id,
					stream ? stream : "stdout", off ? off : "0");
		q->status = 307;
		q->phase = REQ_READY;
		q->reply = json_pack("{s:s}", "location", q->location);
		return;
	}
	if (strcmp(method, "GET")) {
		reply_error(q, 405, "method not allowed");
		return;
	}
	json_t *o = cluster_task_json(c, rest, &err);
	if (o)
		reply_ok(q, o);
	else
		reply_error(q, err.code, err.msg);
}

/* The long poll a watch asks for (wait_ms), within reason. */
static int64_t watch_wait_ms(const struct cluster *c, json_t *wait)
{
	int64_t w = json_is_integer(wait) ? json_integer_value(wait) : c->cfg.heartbeat_ms;
	return w < 0 || w > 60000 ? c->cfg.heartbeat_ms : w;
}

static void route_agent(struct request *q, const char *what)
{
	struct cluster *c = q->srv->c;
	json_t *body = q->agent_body;
	q->agent_body = NULL;
	if (!body)
		body = parse_body(q);
	if (!body)
		return;
	struct berr err = {0};
	uint64_t seq = 0;
	if (!strcmp(what, "register")) {
		json_t *reply = NULL;
		seq = cluster_agent_register(c, body, &reply, &err);
		if (seq)
			reply_after_commit(q, seq, reply);
	} else if (!strcmp(what, "status")) {
		seq = cluster_agent_status(c, body, &err);
		if (seq)
			reply_after_commit(q, seq, json_pack("{s:b}", "ok", 1));
	} else if (!strcmp(what, "watch")) {
		struct node *n = NULL;
		seq = cluster_agent_watch(c, body, &n, &err);
		if (seq) {
			json_t *kv = json_object_get(body, "known_version");
			json_t *wait = json_object_get(body, "wait_ms");
			int64_t wait_ms = watch_wait_ms(c, wait);
			q->watch_node = n;
			q->known_version =
			    json_is_integer(kv) ? (uint64_t)json_integer_value(kv) : 0;
			q->deadline_mono = time_mono_ms() + wait_ms;
			q->wait_seq = seq;
			q->phase = REQ_WATCH;
			q->status = 200;
			if (n->desired_version != q->known_version) {
				/* Something new already: answer at once. */
				q->text = cluster_node_desired_text(c, n, q->known_version);
				q->phase = REQ_READY;
			}
		}
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

static void route(struct request *q, const char *method, const char *url)
{
	struct cluster *c = q->srv->c;
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
		json_t *body = parse_body(q);
		if (!body)
			return;
		struct berr err = {0};
		struct job_spec *spec;
		int r = spec_parse_json(body, &spec, &err);
		json_decref(body);
		if (r < 0) {
			reply_error(q, err.code ? err.code : 400, err.msg);
			return;
		}
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
			reply_ok(q, cluster_cron_list_json(c));
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
	if (!strncmp(url, "/v1/agent/", 10) && !strcmp(method, "POST")) {
		route_agent(q, url + 10);
		return;
	}
	reply_error(q, 404, "unknown route");
}

struct query_ctx {
	struct sbuf *sb;
	int n;
};

static enum MHD_Result add_query_arg(void *cls, enum MHD_ValueKind kind, const char *key,
				     const char *value)
{
	struct query_ctx *qc = cls;
	(void)kind;
	char *k = curl_easy_escape(NULL, key, 0),
	     *v = value ? curl_easy_escape(NULL, value, 0) : NULL;
	sbuf_addf(qc->sb, "%c%s%s%s", qc->n++ ? '&' : '?', k, v ? "=" : "", v ? v : "");
	curl_free(k);
	curl_free(v);
	return MHD_YES;
}

static enum MHD_Result send_ready(struct request *q)
{
	if (q->status == 307 && q->location) {
		struct MHD_Response *r =
		    MHD_create_response_from_buffer(0, "", MHD_RESPMEM_PERSISTENT);
		MHD_add_response_header(r, "Location", q->location);
		enum MHD_Result ret = MHD_queue_response(q->conn, 307, r);
		MHD_destroy_response(r);
		return ret;
	}
	if (q->view && q->status == 200) {
		/* Written here, without the cluster lock. */
		free(q->text);
		q->text = view_rows_render(q->view, q->view_paged);
		q->view = NULL;
	}
	if (q->text) {
		size_t n = strlen(q->text);
		struct MHD_Response *r =
		    MHD_create_response_from_buffer(n, q->text, MHD_RESPMEM_MUST_FREE);
		q->text = NULL;
		MHD_add_response_header(r, "Content-Type", "application/json");
		if (q->from_replica)
			MHD_add_response_header(r, "X-Berth-Served-By", "follower");
		enum MHD_Result ret = MHD_queue_response(q->conn, (unsigned)q->status, r);
		MHD_destroy_response(r);
		return ret;
	}
	return send_json(q->conn, q->status, q->reply ? q->reply : json_object(), q->from_replica);
}

/* A follower answers with a redirect to the leader (clients and agents
 * follow it), or 503 while no leader is known. */
static enum MHD_Result follower_answer(struct server *s, struct request *q, const char *url)
{
	char *leader = s->leader ? leader_current(s->leader) : NULL;
	if (!leader) {
		reply_error(q, 503, "no leader elected yet");
		return send_ready(q);
	}
	struct sbuf sb;
	sbuf_init(&sb);
	sbuf_addf(&sb, "%s%s", leader, url);
	struct query_ctx qc = {&sb, 0};
	MHD_get_connection_values(q->conn, MHD_GET_ARGUMENT_KIND, add_query_arg, &qc);
	free(leader);
	q->location = sbuf_detach(&sb);
	q->status = 307;
	q->phase = REQ_READY;
	return send_ready(q);
}

/* HA: the leader's lease is surely valid (leader_lease_fresh). Without
 * HA there is no lease: always. */
static bool lease_ok(struct server *s)
{
	return !s->leader || leader_lease_fresh(s->leader);
}

/* Reads a follower answers from its replica: the job, task, update and cron
 * views. Node liveness is known to the leader only (agents talk to it), and
 * writes go to it: those are redirected. */
static bool replica_read_route(const char *method, const char *url)
{
	return !strcmp(method, "GET") &&
	       (!strcmp(url, "/v1/jobs") || !strncmp(url, "/v1/jobs/", 9) ||
		!strncmp(url, "/v1/tasks/", 10) || !strcmp(url, "/v1/cron"));
}

/* A follower answers a read from its replica once it holds a full copy. Not
 * found is the leader's to say (the replica may be a few milliseconds behind
 * a write just acknowledged): false, and the caller redirects. */
static bool follower_read(struct server *s, struct request *q, const char *method, const char *url)
{
	struct cluster *c = s->c;
	pthread_mutex_lock(&c->lock);
	if (!s->replica_synced || s->leading) {
		pthread_mutex_unlock(&c->lock);
		return false;
	}
	cluster_replica_refresh(c);
	route(q, method, url);
	pthread_mutex_unlock(&c->lock);
	if (q->phase != REQ_READY || q->status == 404) {
		json_decref(q->reply);
		q->reply = NULL;
		free(q->location);
		q->location = NULL;
		q->status = 0;
		q->phase = REQ_NEW;
		return false;
	}
	q->from_replica = true;
	return true;
}

/* Backups are JSON lines: {"key": K, "value": V} with V the stored text. */
struct backup_ctx {
	struct sbuf out;
	size_t n;
};

static int backup_line(const char *key, const char *value, size_t len, void *ud)
{
	struct backup_ctx *bc = ud;
	if (!strcmp(key, "meta/leader"))
		return 0; /* an election record, bound to a lease: never restored */
	json_t *v = json_stringn(value, len);
	if (!v)
		return -2; /* berth writes only JSON text: anything else is damage */
	json_t *line = json_pack("{s:s,s:o}", "key", key, "value", v);
	char *txt = json_dumps(line, JSON_COMPACT);
	sbuf_adds(&bc->out, txt);
	sbuf_adds(&bc->out, "\n");
	free(txt);
	json_decref(line);
	bc->n++;
	return 0;
}

/* GET /v1/admin/backup: a consistent snapshot of the store (one read
 * transaction), taken beside the commit thread, not under the cluster lock. */
static void route_backup(struct server *s, struct request *q, const char *method)
{
	if (strcmp(method, "GET")) {
		reply_error(q, 405, "method not allowed");
		return;
	}
	struct backup_ctx bc;
	sbuf_init(&bc.out);
	bc.n = 0;
	struct berr err = {0};
	/* The scan holds the request thread: agents cannot be heard
	 * meanwhile, so no node may be judged DOWN until it is over. */
	pthread_mutex_lock(&s->c->lock);
	cluster_judge_hold(s->c);
	pthread_mutex_unlock(&s->c->lock);
	pthread_mutex_lock(&s->store_lock);
	int r = store_scan(s->store, "", backup_line, &bc, &err);
	pthread_mutex_unlock(&s->store_lock);
	pthread_mutex_lock(&s->c->lock);
	cluster_judge_grace(s->c); /* a fresh window for every agent */
	pthread_mutex_unlock(&s->c->lock);
	if (r != 0) {
		sbuf_release(&bc.out);
		reply_error(q, 500, r == -2 ? "backup: a stored value is not UTF-8 text" : err.msg);
		return;
	}
	q->text = sbuf_detach(&bc.out);
	q->status = 200;
	q->phase = REQ_READY;
}

/* An agent's call is a heartbeat: stamp it as soon as its node is known,
 * from the X-Berth-Node header (before the body arrives) or else the body,
 * never under the cluster lock (liveness.h). A watch is held by the server
 * until answered: its node is not silent meanwhile. */
static void agent_heard(struct server *s, struct request *q, const char *url, const char *name)
{
	if (q->live || !name || !*name || !s->leading)
		return;
	struct liveness *lv = s->c->live;
	struct node_live *nl = liveness_find(lv, name);
	if (!nl)
		return;
	int64_t mono = time_mono_ms();
	if (!strcmp(url, "/v1/agent/watch")) {
		liveness_watch_begin(lv, nl, mono);
		q->live = nl;
		q->live_wait_ms = s->c->cfg.heartbeat_ms;
	} else {
		liveness_heard(lv, nl, mono);
	}
}

static bool is_agent_call(const char *method, const char *url)
{
	return !strcmp(method, "POST") && !strncmp(url, "/v1/agent/", 10);
}

/* An agent call's body is parsed before the cluster lock is taken, and its
 * node stamped. Returns false when the body is bad (q has the error). */
static bool agent_body(struct server *s, struct request *q, const char *url)
{
	q->agent_body = parse_body(q);
	if (!q->agent_body)
		return false;
	agent_heard(s, q, url, json_string_value(json_object_get(q->agent_body, "name")));
	if (q->live && !strcmp(url, "/v1/agent/watch"))
		q->live_wait_ms = watch_wait_ms(s->c, json_object_get(q->agent_body, "wait_ms"));
	return true;
}

static enum MHD_Result handle_request(struct server *s, struct MHD_Connection *conn,
				      const char *url, const char *method, const char *upload,
				      size_t *upload_size, void **con_cls)
{
	struct request *q = *con_cls;
	if (!q) {
		q = xcalloc(1, sizeof *q);
		q->srv = s;
		q->conn = conn;
		sbuf_init(&q->body);
		*con_cls = q;
		if (is_agent_call(method, url))
			agent_heard(
			    s, q, url,
			    MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "X-Berth-Node"));
		return MHD_YES;
	}
	if (*upload_size) {
		if (q->body.len + *upload_size > MAX_BODY)
			q->too_big = true;
		else
			sbuf_add(&q->body, upload, *upload_size);
		*upload_size = 0;
		return MHD_YES;
	}
	if (q->phase == REQ_READY)
		return send_ready(q);
	if (q->phase != REQ_NEW)
		return MHD_YES; /* resumed spuriously: still waiting */
	if (is_agent_call(method, url) && s->leading && lease_ok(s) && !q->agent_body &&
	    !agent_body(s, q, url))
		return send_ready(q);

	if (!strcmp(url, "/v1/health") || !strcmp(url, "/v1/leader")) {
		char *leader = s->leader ? leader_current(s->leader) : xstrdup(s->self_url);
		/* With the liveness figures (no cluster lock): nodes judged
		 * DOWN since start, and the time the server could not hear. */
		reply_ok(q, json_pack("{s:b,s:s?,s:s,s:s,s:I,s:I}", "ok", 1, "leader", leader,
				      "role", s->leading ? "leader" : "follower", "self",
				      s->self_url, "nodes_down_total",
				      (json_int_t)__atomic_load_n(&s->c->nodes_down_total,
								  __ATOMIC_RELAXED),
				      "deaf_ms", (json_int_t)liveness_deaf_total(s->c->live)));
		free(leader);
		return send_ready(q);
	}
	if (!s->leading) {
		if (replica_read_route(method, url) && follower_read(s, q, method, url))
			return send_ready(q);
		return follower_answer(s, q, url);
	}
	if (!lease_ok(s)) {
		/* Not sure to lead this instant: nothing is decided or told
		 * (clients and agents retry, or try another server). */
		reply_error(q, 503,
			    "the leader's lease is not confirmed (etcd unreachable?); retry");
		return send_ready(q);
	}
	if (!strcmp(url, "/v1/admin/backup")) {
		route_backup(s, q, method);
		return send_ready(q);
	}
	pthread_mutex_lock(&s->c->lock);
	if (s->stopping)
		reply_error(q, 503, "server is shutting down");
	else
		route(q, method, url);
	if (q->phase == REQ_WAIT_COMMIT || q->phase == REQ_WATCH) {
		q->suspended = true;
		if (q->phase == REQ_WATCH) {
			void **watchers = cluster_node_watchers(q->watch_node);
			q->next = *watchers;
			*watchers = q;
		} else {
			q->next = s->waiting;
			s->waiting = q;
		}
		MHD_suspend_connection(conn);
		/* A write waits for the commit loop; a held watch is answered
		 * by its sweep, and must not wake it (ten thousand agents). */
		if (q->phase == REQ_WAIT_COMMIT)
			pthread_cond_signal(&s->c->wake);
		pthread_mutex_unlock(&s->c->lock);
		return MHD_YES;
	}
	pthread_mutex_unlock(&s->c->lock);
	return send_ready(q);
}

/* Every call of a request thread is timed: one that stays long in a
 * handler leaves its other connections unheard (deaf time, liveness.h). */
static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
				  const char *method, const char *version, const char *upload,
				  size_t *upload_size, void **con_cls)
{
	struct server *s = cls;
	(void)version;
	liveness_intake_begin(s->c->live, time_mono_ms());
	enum MHD_Result r = handle_request(s, conn, url, method, upload, upload_size, con_cls);
	liveness_intake_end(s->c->live, time_mono_ms());
	return r;
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
			 enum MHD_RequestTerminationCode toe)
{
	struct request *q = *con_cls;
	(void)cls;
	(void)conn;
	(void)toe;
	if (!q)
		return;
	if (q->live)
		liveness_watch_end(q->srv->c->live, q->live, time_mono_ms(), q->live_wait_ms);
	json_decref(q->agent_body);
	view_rows_free(q->view);
	sbuf_release(&q->body);
	json_decref(q->reply);
	free(q->location);
	free(q->text);
	free(q);
	*con_cls = NULL;
}

/* Under c->lock: move the writes whose commit is durable (or all, at
 * shutdown) from the waiting list to *ready. */
static void collect_commits(struct server *s, struct request **ready, bool all)
{
	struct request **pp = &s->waiting;
	while (*pp) {
		struct request *q = *pp;
		if (all || cluster_committed(s->c, q->wait_seq)) {
			if (all)
				reply_error(q, 503, "server is shutting down");
			else
				q->phase = REQ_READY;
			*pp = q->next;
			q->next = *ready;
			*ready = q;
		} else {
			pp = &q->next;
		}
	}
}

/* Answer the watches of node n that can be answered: its desired set moved
 * past what they know, their wait is over, or the server stops. */
static void collect_node_watches(struct server *s, struct node *n, struct request **ready, bool all,
				 int64_t mono)
{
	struct request **pp = (struct request **)cluster_node_watchers(n);
	while (*pp) {
		struct request *q = *pp;
		if (all) {
			reply_error(q, 503, "server is shutting down");
		} else if (n->desired_version != q->known_version || mono >= q->deadline_mono) {
			/* A desired set may go out before it is durable: if the server
			 * dies first, the restarted one does not know those tasks and
			 * the agent's next report gets them killed. Launch latency
			 * does not pay for an fsync. */
			free(q->text);
			q->text = cluster_node_desired_text(s->c, n, q->known_version);
			q->phase = REQ_READY;
		} else {
			pp = &q->next;
			continue;
		}
		*pp = q->next;
		q->next = *ready;
		*ready = q;
	}
}

struct watch_collect {
	struct server *s;
	struct request **ready;
	bool all;
	int64_t mono;
};

static void collect_node(void *ud, struct node *n)
{
	struct watch_collect *wc = ud;
	collect_node_watches(wc->s, n, wc->ready, wc->all, wc->mono);
}

/* Under c->lock: the watches to answer now. Only nodes whose desired set
 * changed are looked at, plus a sweep for expired waits every 100 ms, so
 * ten thousand idle agents cost nothing per commit. */
static void collect_watches(struct server *s, struct request **ready, bool all)
{
	struct watch_collect wc = {s, ready, all, time_mono_ms()};
	cluster_take_changed_nodes(s->c, collect_node, &wc);
	if (!all && wc.mono - s->last_sweep_mono < 100)
		return;
	s->last_sweep_mono = wc.mono;
	cluster_each_watched_node(s->c, collect_node, &wc);
}

static void resume_all(struct request *ready)
{
	while (ready) {
		struct request *next = ready->next;
		ready->suspended = false;
		MHD_resume_connection(ready->conn);
		ready = next;
	}
}

static void *commit_loop(void *arg)
{
	struct server *s = arg;
	struct cluster *c = s->c;
	pthread_mutex_lock(&c->lock);
	while (!s->stopping) {
		if (!lease_ok(s)) {
			/* The lease is late (etcd electing, or this server cut
			 * off): decide nothing, tell agents nothing, commit
			 * nothing until it is renewed or lost. */
			pthread_mutex_unlock(&c->lock);
			usleep(20 * 1000);
			pthread_mutex_lock(&c->lock);
			continue;
		}
		cluster_tick(c);
		uint64_t seq;
		struct store_batch *b = cluster_take_pending(c, &seq);
		struct request *early = NULL;
		collect_watches(s, &early, false);
		if (early) {
			pthread_mutex_unlock(&c->lock);
			resume_all(early);
			pthread_mutex_lock(&c->lock);
		}
		if (b) {
			pthread_mutex_unlock(&c->lock);
			while (!lease_ok(s) && !s->stopping)
				usleep(20 * 1000);
			struct berr err = {0};
			pthread_mutex_lock(&s->store_lock);
			int r = store_commit(s->store, b, &err);
			pthread_mutex_unlock(&s->store_lock);
			store_batch_free(b);
			if (r < 0) {
				/* Memory is ahead of the disk: the only safe move is to stop
				 * and let a restart reload what is durable. */
				log_error("fatal: %s", err.msg);
				abort();
			}
			pthread_mutex_lock(&c->lock);
		}
		cluster_set_committed(c, seq);
		struct request *ready = NULL;
		collect_commits(s, &ready, false);
		collect_watches(s, &ready, false);
		if (ready) {
			pthread_mutex_unlock(&c->lock);
			resume_all(ready);
			pthread_mutex_lock(&c->lock);
		}
		if (cluster_uncommitted(c) || s->stopping)
			continue;
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += COMMIT_TICK_MS * 1000000L;
		if (ts.tv_nsec >= 1000000000L) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000L;
		}
		pthread_cond_timedwait(&c->wake, &c->lock, &ts);
	}
	pthread_mutex_unlock(&c->lock);
	return NULL;
}

static void raise_nofile(void)
{
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
}

/* The store watch of a follower: every change goes to the replica, under
 * the cluster lock, one message at a time (readers see whole revisions). */
static int on_store_change(void *ud, enum store_follow_event ev, const struct store_change *ch,
			   size_t n, int64_t revision)
{
	struct server *s = ud;
	struct cluster *c = s->c;
	bool leader_gone = false;
	pthread_mutex_lock(&c->lock);
	if (s->follow_stop) {
		/* Promoted: the state is the leader's own from now on. */
		pthread_mutex_unlock(&c->lock);
		return 1;
	}
	switch (ev) {
	case STORE_FOLLOW_RESET:
		cluster_replica_reset(c);
		s->replica_synced = false;
		break;
	case STORE_FOLLOW_CHANGES:
		for (size_t i = 0; i < n; i++) {
			if (!ch[i].value && !strcmp(ch[i].key, "meta/leader"))
				leader_gone = true;
			cluster_replica_apply(c, ch[i].key, ch[i].value, ch[i].len);
		}
		break;
	case STORE_FOLLOW_SYNCED:
		s->replica_synced = true;
		log_info("replica synced at revision %lld: %zu jobs, %zu tasks, %zu nodes",
			 (long long)revision, c->jobs.count, c->tasks.count, c->nodes.count);
		break;
	}
	if (revision > s->replica_rev)
		s->replica_rev = revision;
	pthread_cond_broadcast(&s->replica_moved);
	pthread_mutex_unlock(&c->lock);
	/* The leader's lease expired: campaign now, not at the next look. */
	if (leader_gone && s->leader)
		leader_poke(s->leader);
	return 0;
}

static void *follow_main(void *ud)
{
	struct server *s = ud;
	while (!s->follow_stop) {
		struct berr err = {0};
		struct store *st = store_open(s->store_location, &err);
		if (!st) {
			log_warn("replica: %s; trying again", err.msg);
			usleep(500 * 1000);
			continue;
		}
		int r = store_follow(st, on_store_change, s, &s->follow_stop, &err);
		store_close(st);
		if (r < 0) {
			log_error("replica: %s", err.msg);
			break;
		}
	}
	return NULL;
}

/* How long a new leader waits for its replica to reach the revision of its
 * election (every write of the previous leader) before it loads the state
 * from the store instead. */
#define REPLICA_CATCH_UP_MS 1500

/* Elected at `revision`: lead from the replica once it holds everything up
 * to the election (the old leader is fenced from there on), or load the
 * state from the store. Runs on its own thread: the election thread must go
 * on renewing the lease meanwhile. */
static void *become_leader(void *ud)
{
	struct server *s = ud;
	struct berr err = {0};
	int64_t t0 = time_mono_ms();
	/* Every commit from now on is fenced on the election key. */
	pthread_mutex_lock(&s->store_lock);
	store_set_guard(s->store, "meta/leader", s->self_url, &err);
	pthread_mutex_unlock(&s->store_lock);
	struct cluster *c = s->c;
	pthread_mutex_lock(&c->lock);
	struct timespec deadline;
	clock_gettime(CLOCK_REALTIME, &deadline);
	deadline.tv_sec += REPLICA_CATCH_UP_MS / 1000;
	deadline.tv_nsec += (REPLICA_CATCH_UP_MS % 1000) * 1000000L;
	if (deadline.tv_nsec >= 1000000000L) {
		deadline.tv_sec++;
		deadline.tv_nsec -= 1000000000L;
	}
	while (s->follow_started && !(s->replica_synced && s->replica_rev >= s->elected_rev))
		if (pthread_cond_timedwait(&s->replica_moved, &c->lock, &deadline) != 0)
			break;
	bool warm = s->follow_started && s->replica_synced && s->replica_rev >= s->elected_rev;
	s->follow_stop = true; /* the watch applies nothing more */
	const char *how = "from its replica";
	int r = 0;
	if (warm) {
		cluster_replica_promote(c);
	} else {
		log_warn(
		    "replica at revision %lld, elected at %lld: loading the state from the store",
		    (long long)s->replica_rev, (long long)s->elected_rev);
		how = "from the store";
		cluster_replica_reset(c);
		r = cluster_load(c, &err);
	}
	pthread_mutex_unlock(&c->lock);
	if (r < 0) {
		log_error("fatal: elected but %s", err.msg);
		_exit(3);
	}
	if (pthread_create(&s->commit_thread, NULL, commit_loop, s) != 0) {
		log_error("fatal: cannot start the commit thread");
		_exit(3);
	}
	s->commit_started = true;
	s->leading = true;
	log_info("leading: state loaded %s in %lld ms", how, (long long)(time_mono_ms() - t0));
	return NULL;
}

static void on_elected(void *ud, int64_t revision)
{
	struct server *s = ud;
	pthread_mutex_lock(&s->c->lock);
	s->elected_rev = revision;
	pthread_mutex_unlock(&s->c->lock);
	if (pthread_create(&s->elect_thread, NULL, become_leader, s) != 0) {
		log_error("fatal: cannot start loading the state");
		_exit(3);
	}
	s->elect_started = true;
}

/* The lease is gone: another server may lead already. Not one more write. */
static void on_lost(void *ud)
{
	(void)ud;
	log_error("fatal: leadership lost; exiting so that only one leader writes");
	_exit(3);
}

struct server *server_start(const struct server_options *o, struct berr *err)
{
	struct sockaddr_in sa;
	if (addr_parse(o->addr, &sa, err) < 0)
		return NULL;
	raise_nofile();
	signal(SIGPIPE, SIG_IGN);
	int r = mkdir_p(o->data_dir, 0755);
	if (r < 0) {
		berr_set(err, 500, "cannot create data dir '%s': %s", o->data_dir, strerror(-r));
		return NULL;
	}
	char *loc = (!o->store || !strcmp(o->store, "sqlite"))
			? xasprintf("sqlite:%s/state.db", o->data_dir)
			: xstrdup(o->store);
	struct store *st = store_open(loc, err);
	free(loc);
	if (!st)
		return NULL;
	struct server *s = xcalloc(1, sizeof *s);
	pthread_mutex_init(&s->store_lock, NULL);
	pthread_cond_init(&s->replica_moved, NULL);
	s->store = st;
	s->c = cluster_new(st, &o->cluster);
	bool ha = o->store && !strncmp(o->store, "etcd://", 7);
	if (!ha) {
		pthread_mutex_lock(&s->c->lock);
		r = cluster_load(s->c, err);
		pthread_mutex_unlock(&s->c->lock);
		if (r < 0)
			goto fail;
		s->leading = true;
	}
	unsigned flags = MHD_USE_EPOLL_INTERNAL_THREAD | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_TURBO;
	s->mhd = MHD_start_daemon(
	    flags, 0, NULL, NULL, on_request, s, MHD_OPTION_SOCK_ADDR, &sa,
	    MHD_OPTION_NOTIFY_COMPLETED, on_completed, s, MHD_OPTION_CONNECTION_LIMIT,
	    (unsigned)60000, MHD_OPTION_THREAD_POOL_SIZE, (unsigned)REQUEST_THREADS,
	    /* Bodies are buffered by us; the per-connection pool only
	     * holds headers. 32 KiB by default is 300 MiB for 10,000
	     * agents. */
	    MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)16384, MHD_OPTION_CONNECTION_TIMEOUT,
	    (unsigned)120, MHD_OPTION_LISTEN_BACKLOG_SIZE, (unsigned)4096,
	    MHD_OPTION_LISTENING_ADDRESS_REUSE, (unsigned)1, MHD_OPTION_END);
	if (!s->mhd) {
		berr_set(err, 500, "cannot listen on '%s': %s", o->addr,
			 errno ? strerror(errno) : "address in use?");
		goto fail;
	}
	const union MHD_DaemonInfo *di = MHD_get_daemon_info(s->mhd, MHD_DAEMON_INFO_BIND_PORT);
	s->port = di ? di->port : ntohs(sa.sin_port);
	char ip[INET_ADDRSTRLEN];
	inet_ntop(AF_INET, &sa.sin_addr, ip, sizeof ip);
	s->self_url = xasprintf("http://%s:%d", sa.sin_addr.s_addr ? ip : "127.0.0.1", s->port);
	if (ha) {
		/* Several servers on one etcd: each keeps a replica of the state
		 * through a watch and answers reads from it; the elected one
		 * leads from it and writes; the others redirect writes to it. */
		s->store_location = xstrdup(o->store);
		if (pthread_create(&s->follow_thread, NULL, follow_main, s) == 0)
			s->follow_started = true;
		else
			log_warn(
			    "cannot start the replica thread: a new leader will load the state");
		struct leader_callbacks cb = {.ud = s, .elected = on_elected, .lost = on_lost};
		s->leader = leader_start(o->store, s->self_url,
					 o->leader_ttl_ms ? o->leader_ttl_ms : 2000, &cb, err);
		if (!s->leader) {
			MHD_stop_daemon(s->mhd);
			s->follow_stop = true;
			if (s->follow_started)
				pthread_join(s->follow_thread, NULL);
			free(s->store_location);
			goto fail;
		}
		log_info("server listening on %s (store %s), campaigning for leadership",
			 s->self_url, o->store);
		return s;
	}
	if (pthread_create(&s->commit_thread, NULL, commit_loop, s) != 0) {
		berr_set(err, 500, "cannot start the commit thread");
		MHD_stop_daemon(s->mhd);
		goto fail;
	}
	s->commit_started = true;
	log_info("server listening on %s (state in %s)", s->self_url, o->data_dir);
	return s;
fail:
	cluster_free(s->c);
	store_close(st);
	free(s);
	return NULL;
}

int server_port(const struct server *s)
{
	return s->port;
}

void server_stop(struct server *s)
{
	if (!s)
		return;
	if (s->elect_started)
		pthread_join(s->elect_thread, NULL);
	pthread_mutex_lock(&s->c->lock);
	s->follow_stop = true;
	pthread_mutex_unlock(&s->c->lock);
	if (s->follow_started)
		pthread_join(s->follow_thread, NULL);
	pthread_mutex_lock(&s->c->lock);
	s->stopping = true;
	pthread_cond_signal(&s->c->wake);
	pthread_mutex_unlock(&s->c->lock);
	if (s->commit_started)
		pthread_join(s->commit_thread, NULL);
	/* Commit what is left, then answer everyone still waiting. */
	pthread_mutex_lock(&s->c->lock);
	uint64_t seq;
	struct store_batch *b = cluster_take_pending(s->c, &seq);
	if (b) {
		struct berr err;
		pthread_mutex_lock(&s->store_lock);
		int cr = store_commit(s->store, b, &err);
		pthread_mutex_unlock(&s->store_lock);
		if (cr < 0)
			log_error("%s", err.msg);
		else
			cluster_set_committed(s->c, seq);
		store_batch_free(b);
	}
	struct request *ready = NULL;
	collect_commits(s, &ready, false);
	collect_commits(s, &ready, true);
	collect_watches(s, &ready, true);
	pthread_mutex_unlock(&s->c->lock);
	resume_all(ready);
	MHD_stop_daemon(s->mhd);
	/* Last: a leader gives its lease back so that another takes over at
	 * once, after everything it acknowledged is durable. */
	leader_stop(s->leader);
	cluster_free(s->c);
	store_close(s->store);
	free(s->self_url);
	free(s->store_location);
	pthread_cond_destroy(&s->replica_moved);
	free(s);
}
