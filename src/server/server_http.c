/* server_http.c - a request's life in libmicrohttpd (server-internal.h has
 * the outline): body buffering, the health answer, leading or following,
 * suspending a write or a watch, responses, and the heartbeat stamps of
 * agents' calls before the cluster lock (liveness.h). */
#include "server/server-internal.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "core/agent_report.h"
#include "core/log.h"
#include "server/leader.h"
#include "server/server_ui.h"

/* This server process, in the clock it shows agents (X-Berth-Time): an
 * echo from another process (a failover) is not read as a lag. */
static uint32_t clock_instance(void)
{
	static _Atomic uint32_t id;
	uint32_t v = atomic_load(&id);
	if (!v) {
		uint32_t r = 0;
		if (getrandom(&r, sizeof r, 0) != (ssize_t)sizeof r)
			r = (uint32_t)time_mono_ms() ^ (uint32_t)getpid();
		v = r | 1;
		uint32_t expect = 0;
		if (!atomic_compare_exchange_strong(&id, &expect, v))
			v = expect;
	}
	return v;
}

/* An agent's call carries "X-Berth-Echo: TIME AGE": the X-Berth-Time of the
 * last reply it read and how long it held it (ms). The call was sent at
 * TIME + AGE on this server's clock: the rest is intake lag (liveness.h). */
static void intake_lag(struct server *s, struct MHD_Connection *conn)
{
	const char *echo = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "X-Berth-Echo");
	long long t = 0, age = 0;
	unsigned inst = 0;
	if (!echo || sscanf(echo, "%lld-%8x %lld", &t, &inst, &age) != 3 ||
	    inst != clock_instance() || age < 0)
		return;
	int64_t now = time_mono_ms();
	if (t <= 0 || t > now)
		return;
	liveness_intake_lag(s->c->live, now - (int64_t)t - (int64_t)age, now);
}

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
	char clock[48];
	snprintf(clock, sizeof clock, "%lld-%08x", (long long)time_mono_ms(), clock_instance());
	MHD_add_response_header(r, "X-Berth-Time", clock);
	if (from_replica)
		MHD_add_response_header(r, "X-Berth-Served-By", "follower");
	/* Every 503 is "not now" (a budget, a lease, a restart): say when. */
	if (status == 503)
		MHD_add_response_header(r, "Retry-After", "1");
	enum MHD_Result ret = MHD_queue_response(conn, (unsigned)status, r);
	MHD_destroy_response(r);
	return ret;
}

void reply_error(struct request *q, int status, const char *msg)
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

void reply_ok(struct request *q, json_t *body)
{
	json_decref(q->reply);
	q->status = 200;
	q->reply = body;
	q->phase = REQ_READY;
}

/* Acknowledge once `seq` is durable. */
void reply_after_commit(struct request *q, uint64_t seq, json_t *body)
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

/* Answer a body that was not kept: over MAX_BODY (413) or over the
 * server's budget for all bodies (503). False when the body was kept. */
static bool reply_body_refused(struct request *q)
{
	char msg[200];
	if (q->too_big) {
		snprintf(msg, sizeof msg, "request body too large (limit %u bytes)", MAX_BODY);
		reply_error(q, 413, msg);
		return true;
	}
	if (q->over_budget) {
		snprintf(msg, sizeof msg,
			 "the server is receiving too many request bodies at once (%zu MiB in "
			 "all); retry",
			 q->srv->body_budget >> 20);
		reply_error(q, 503, msg);
		return true;
	}
	return false;
}

json_t *parse_body(struct request *q)
{
	if (reply_body_refused(q))
		return NULL;
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

struct agent_report *parse_agent_report(struct request *q, bool watch)
{
	if (reply_body_refused(q))
		return NULL;
	struct berr err = {0};
	struct agent_report *r = agent_report_parse(
	    q->body.buf, q->body.len, watch ? AGENT_CALL_WATCH : AGENT_CALL_STATUS, &err);
	if (!r)
		reply_error(q, err.code ? err.code : 400, err.msg);
	return r;
}

enum MHD_Result send_ready(struct request *q)
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

/* A node may speak only for itself: a header or body naming another node
 * is not heard. */
static bool may_speak_for(struct request *q, const char *name)
{
	if (!q->srv->tls)
		return true;
	return name && q->who.kind == PRINCIPAL_NODE && !strcmp(q->who.name, name);
}

/* An agent's call is a heartbeat: stamp it as soon as its node is known,
 * from the X-Berth-Node header (before the body arrives) or else the body,
 * never under the cluster lock (liveness.h). A watch is held by the server
 * until answered: its node is not silent meanwhile. */
static void agent_heard(struct server *s, struct request *q, const char *url, const char *name)
{
	if (q->live || !name || !*name || !s->leading || !may_speak_for(q, name))
		return;
	struct liveness *lv = s->c->live;
	struct node_live *nl = liveness_find(lv, name);
	if (!nl)
		return;
	int64_t mono = time_mono_ms();
	if (!strcmp(url, "/v1/agent/watch")) {
		liveness_watch_begin(lv, nl, mono);
		q->live = nl;
		q->live_wait_ms = cluster_heartbeat_ms(s->c);
	} else {
		liveness_heard(lv, nl, mono);
	}
}

/* An agent's report or poll (a heartbeat), not its join or renewal. */
static bool is_agent_call(const char *method, const char *url)
{
	return !strcmp(method, "POST") && !strncmp(url, "/v1/agent/", 10) &&
	       strcmp(url, "/v1/agent/join") && strcmp(url, "/v1/agent/renew");
}

/* An agent call's body is parsed before the cluster lock is taken, and its
 * node stamped. Returns false when the body is bad (q has the error). */
static bool agent_body(struct server *s, struct request *q, const char *url)
{
	/* Watches and status reports, most of the server's intake, are read
	 * without a tree (core/agent_report.h). */
	bool watch = !strcmp(url, "/v1/agent/watch");
	const char *name;
	if (watch || !strcmp(url, "/v1/agent/status")) {
		q->agent_report = parse_agent_report(q, watch);
		if (!q->agent_report)
			return false;
		name = q->agent_report->name;
	} else {
		q->agent_body = parse_body(q);
		if (!q->agent_body)
			return false;
		name = json_string_value(json_object_get(q->agent_body, "name"));
	}
	if (!auth_node(q, name))
		return false;
	agent_heard(s, q, url, name);
	if (q->live && watch)
		q->live_wait_ms =
		    watch_wait_ms(s->c, q->agent_report->has_wait_ms, q->agent_report->wait_ms);
	return true;
}

/* Hold `total` bytes of the server's body budget for q (it may hold some
 * already). False, and nothing held more, when the budget is spent. */
static bool body_reserve(struct server *s, struct request *q, size_t total)
{
	if (total <= q->body_reserved)
		return true;
	size_t more = total - q->body_reserved;
	size_t now = atomic_fetch_add(&s->body_bytes, more) + more;
	if (now > s->body_budget) {
		atomic_fetch_sub(&s->body_bytes, more);
		return false;
	}
	q->body_reserved = total;
	return true;
}

static bool has_body(struct MHD_Connection *conn)
{
	const char *cl =
	    MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
	return (cl && strcmp(cl, "0")) ||
	       MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
					   MHD_HTTP_HEADER_TRANSFER_ENCODING) != NULL;
}

/* A body whose Content-Length says it cannot be kept is refused before a
 * byte of it is read (libmicrohttpd then closes the connection). */
static bool body_announced_refused(struct server *s, struct request *q)
{
	const char *cl =
	    MHD_lookup_connection_value(q->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
	if (!cl)
		return false; /* chunked: counted as it comes */
	char *end;
	unsigned long long n = strtoull(cl, &end, 10);
	if (end == cl || *end)
		return false; /* libmicrohttpd answers a bad length itself */
	if (n > MAX_BODY)
		q->too_big = true;
	else if (!body_reserve(s, q, (size_t)n))
		q->over_budget = true;
	return reply_body_refused(q);
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
		q->method = xstrdup(method);
		q->url = xstrdup(url);
		server_authenticate(s, q);
		/* Nobody may send a body to any route: not a byte of one is
		 * buffered for a caller without credentials. */
		if (s->tls && q->who.kind == PRINCIPAL_NOBODY && has_body(conn) && !auth_any(q))
			return send_ready(q);
		if (body_announced_refused(s, q))
			return send_ready(q);
		if (is_agent_call(method, url) && s->leading)
			intake_lag(s, conn);
		if (is_agent_call(method, url))
			agent_heard(
			    s, q, url,
			    MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "X-Berth-Node"));
		return MHD_YES;
	}
	if (*upload_size) {
		/* Past a limit, the rest is read and dropped: the answer
		 * follows the whole request. */
		size_t total = q->body.len + *upload_size;
		bool keep = !q->too_big && !q->over_budget;
		if (keep && total > MAX_BODY)
			q->too_big = true;
		else if (keep && !body_reserve(s, q, total))
			q->over_budget = true;
		else if (keep)
			sbuf_add(&q->body, upload, *upload_size);
		*upload_size = 0;
		return MHD_YES;
	}
	if (q->phase == REQ_READY)
		return send_ready(q);
	if (q->phase != REQ_NEW)
		return MHD_YES; /* resumed spuriously: still waiting */
	if (reply_body_refused(q))
		return send_ready(q);
	if (is_agent_call(method, url) && s->leading && server_lease_ok(s) && !q->agent_body &&
	    !q->agent_report && !agent_body(s, q, url))
		return send_ready(q);

	if (!strcmp(url, "/v1/ca") && s->tls) {
		reply_ok(q, json_pack("{s:s}", "ca", s->ca_cert));
		return send_ready(q);
	}
	if (!strcmp(url, "/v1/health") || !strcmp(url, "/v1/leader")) {
		char *leader = s->leader ? leader_current(s->leader) : xstrdup(s->self_url);
		/* With the liveness figures (no cluster lock): nodes judged
		 * DOWN since start, and the time the server could not hear. */
		reply_ok(q,
			 json_pack(
			     "{s:b,s:s?,s:s,s:s,s:I,s:I,s:I}", "ok", 1, "leader", leader, "role",
			     s->leading ? "leader" : "follower", "self", s->self_url,
			     "nodes_down_total",
			     (json_int_t)__atomic_load_n(&s->c->nodes_down_total, __ATOMIC_RELAXED),
			     "deaf_ms", (json_int_t)liveness_deaf_total(s->c->live),
			     "intake_lag_ms", (json_int_t)liveness_lag_credit(s->c->live)));
		free(leader);
		return send_ready(q);
	}
	if (server_ui_path(url))
		return server_ui_answer(s, q, method, url);
	if (!strcmp(url, "/metrics"))
		return server_metrics_answer(s, q, method);
	if (!s->leading) {
		if (server_replica_read_route(method, url) &&
		    server_follower_read(s, q, method, url))
			return send_ready(q);
		return server_follower_answer(s, q, url);
	}
	if (!server_lease_ok(s)) {
		/* Not sure to lead this instant: nothing is decided or told
		 * (clients and agents retry, or try another server). */
		reply_error(q, 503,
			    "the leader's lease is not confirmed (etcd unreachable?); retry");
		return send_ready(q);
	}
	if (!strcmp(url, "/v1/events"))
		return server_events_start(s, q, method);
	if (!strcmp(url, "/v1/admin/metrics-ticket")) {
		if (strcmp(method, "GET"))
			reply_error(q, 405, "method not allowed: GET /v1/admin/metrics-ticket");
		else
			server_metrics_ticket(s, q);
		return send_ready(q);
	}
	if (!strcmp(url, "/v1/admin/backup")) {
		if (auth_admin(q))
			return server_backup_start(s, q, method);
		return send_ready(q);
	}
	if (!strcmp(method, "POST") &&
	    (!strcmp(url, "/v1/agent/join") || !strcmp(url, "/v1/agent/renew"))) {
		/* Signing a certificate: outside the cluster lock (it takes
		 * the lock for a look-up only). */
		route_agent_identity(q, !strcmp(url, "/v1/agent/join"));
		return send_ready(q);
	}
	pthread_mutex_lock(&s->c->lock);
	if (s->stopping)
		reply_error(q, 503, "server is shutting down");
	else
		server_route(q, method, url);
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
enum MHD_Result server_on_request(void *cls, struct MHD_Connection *conn, const char *url,
				  const char *method, const char *version, const char *upload,
				  size_t *upload_size, void **con_cls)
{
	struct server *s = cls;
	(void)version;
	if (!*con_cls)
		server_connection_request(s, conn);
	liveness_intake_begin(s->c->live, time_mono_ms());
	enum MHD_Result r = handle_request(s, conn, url, method, upload, upload_size, con_cls);
	liveness_intake_end(s->c->live, time_mono_ms());
	return r;
}

void server_on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
			 enum MHD_RequestTerminationCode toe)
{
	struct request *q = *con_cls;
	(void)cls;
	(void)conn;
	(void)toe;
	if (!q)
		return;
	if (q->method)
		server_audit(q->srv, q, q->method, q->url);
	if (q->live)
		liveness_watch_end(q->srv->c->live, q->live, time_mono_ms(), q->live_wait_ms);
	json_decref(q->agent_body);
	agent_report_free(q->agent_report);
	view_rows_free(q->view);
	if (q->body_reserved)
		atomic_fetch_sub(&q->srv->body_bytes, q->body_reserved);
	sbuf_release(&q->body);
	json_decref(q->reply);
	free(q->location);
	free(q->text);
	free(q->method);
	free(q->url);
	free(q);
	*con_cls = NULL;
}
