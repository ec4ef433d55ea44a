/* server_ui.c - the web UI's files and its logs route (docs/ui.md).
 *
 * The files are served from memory with their ETag (a 304 when the browser
 * has them), "Cache-Control: no-cache" (the browser revalidates, so a new
 * server's UI is seen at once) and a Content-Security-Policy allowing only
 * this server's own scripts, styles and connections.
 *
 * A task's logs live on its agent: GET /v1/tasks/ID/logs answers 307 to it
 * with a ticket. A browser cannot follow that: the agent is another origin
 * (CORS), it may not be reachable from the user's desk, and fetch drops the
 * token on the way. So GET /ui/logs/ID?stream=&offset= makes the same call
 * the CLI makes, from the server, with the caller's own token (the API
 * checks it as for any call), on a thread of its own while the connection
 * is suspended (as a backup is: the event thread never waits on an agent):
 *
 *   {"data": TEXT, "offset": N, "next": M}
 *
 * TEXT is valid UTF-8 (utf8.h): M is where the next read starts.
 */
#include "server/server_ui.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/http_client.h"
#include "core/utf8.h"
#include "server/ui_assets.h"

static const char csp[] = "default-src 'none'; script-src 'self'; style-src 'self'; "
			  "img-src 'self' data:; connect-src 'self'; base-uri 'none'; "
			  "form-action 'self'; frame-ancestors 'none'";

bool server_ui_path(const char *url)
{
	return !strcmp(url, "/") || !strcmp(url, "/ui") || !strncmp(url, "/ui/", 4);
}

static enum MHD_Result send_plain(struct MHD_Connection *conn, unsigned status, const char *text,
				  const char *location)
{
	struct MHD_Response *r =
	    MHD_create_response_from_buffer(strlen(text), (void *)text, MHD_RESPMEM_PERSISTENT);
	MHD_add_response_header(r, "Content-Type", "text/plain; charset=utf-8");
	if (location)
		MHD_add_response_header(r, "Location", location);
	enum MHD_Result ret = MHD_queue_response(conn, status, r);
	MHD_destroy_response(r);
	return ret;
}

static const struct ui_asset *asset_find(const char *path)
{
	for (size_t i = 0; i < ui_assets_count; i++)
		if (!strcmp(ui_assets[i].path, path))
			return &ui_assets[i];
	return NULL;
}

static enum MHD_Result send_asset(struct MHD_Connection *conn, const struct ui_asset *a)
{
	const char *inm = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "If-None-Match");
	bool fresh = inm && strstr(inm, a->etag);
	struct MHD_Response *r = MHD_create_response_from_buffer(
	    fresh ? 0 : a->len, fresh ? (void *)"" : (void *)a->data, MHD_RESPMEM_PERSISTENT);
	MHD_add_response_header(r, "Content-Type", a->type);
	MHD_add_response_header(r, "ETag", a->etag);
	MHD_add_response_header(r, "Cache-Control", "no-cache");
	MHD_add_response_header(r, "Content-Security-Policy", csp);
	MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
	MHD_add_response_header(r, "Referrer-Policy", "no-referrer");
	enum MHD_Result ret = MHD_queue_response(conn, fresh ? 304 : 200, r);
	MHD_destroy_response(r);
	return ret;
}

/* ---- the logs route ---------------------------------------------------- */

struct logs_read {
	struct request *q;
	char *path;  /* the API's logs route for this read */
	char *token; /* the caller's */
	char *cafile;
	int64_t offset;
};

static void logs_answer(struct request *q, const struct http_response *r, int64_t offset)
{
	if (r->status != 200) {
		json_t *j = json_loadb(r->body, r->len, 0, NULL);
		const char *m = json_string_value(json_object_get(j, "error"));
		char msg[300];
		snprintf(msg, sizeof msg, "cannot read the task's logs: %s",
			 m ? m : "its agent did not answer");
		reply_error(q, r->status >= 400 ? (int)r->status : 502, msg);
		json_decref(j);
		return;
	}
	struct sbuf text;
	sbuf_init(&text);
	size_t used = utf8_sanitize(&text, r->body, r->len);
	json_t *o = json_pack("{s:s%,s:I,s:I}", "data", text.buf, text.len, "offset",
			      (json_int_t)offset, "next", (json_int_t)(offset + (int64_t)used));
	sbuf_release(&text);
	if (o)
		reply_ok(q, o);
	else
		reply_error(q, 500, "cannot encode the task's logs");
}

static void *logs_main(void *ud)
{
	struct logs_read *lr = ud;
	struct request *q = lr->q;
	struct server *s = q->srv;
	struct http_client *hc = http_client_new(s->self_url);
	if (lr->cafile)
		http_client_set_tls(hc, lr->cafile, NULL, NULL);
	http_client_set_token(hc, lr->token);
	struct http_response r;
	struct berr err = {0};
	if (http_request(hc, "GET", lr->path, NULL, 10000, &r, &err) < 0) {
		reply_error(q, 502, err.msg);
	} else {
		logs_answer(q, &r, lr->offset);
		http_response_release(&r);
	}
	http_client_free(hc);
	free(lr->path);
	if (lr->token)
		explicit_bzero(lr->token, strlen(lr->token));
	free(lr->token);
	free(lr->cafile);
	free(lr);
	/* After the resume q belongs to the request thread again. */
	MHD_resume_connection(q->conn);
	pthread_mutex_lock(&s->backup_lock);
	s->ui_logs_running--;
	pthread_cond_broadcast(&s->backup_done);
	pthread_mutex_unlock(&s->backup_lock);
	return NULL;
}

/* The task reference in a URL path: a task id, or ROLE/ENV/NAME/INSTANCE. */
static bool task_ref_ok(const char *ref)
{
	if (!*ref || strlen(ref) > 400)
		return false;
	for (const char *p = ref; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		      (*p >= '0' && *p <= '9') || strchr("-_./", *p)))
			return false;
	return !strstr(ref, "..");
}

static enum MHD_Result logs_start(struct server *s, struct request *q, const char *ref)
{
	struct MHD_Connection *conn = q->conn;
	if (q->who.kind == PRINCIPAL_NODE) {
		reply_error(q, 403,
			    "forbidden: a node's certificate speaks only the agent protocol");
		return send_ready(q);
	}
	if (!auth_any(q))
		return send_ready(q);
	if (!task_ref_ok(ref)) {
		reply_error(q, 400, "expected /ui/logs/TASK_ID (or ROLE/ENV/NAME/INSTANCE)");
		return send_ready(q);
	}
	const char *stream = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "stream");
	const char *off = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "offset");
	if (!stream)
		stream = "stdout";
	if (strcmp(stream, "stdout") && strcmp(stream, "stderr")) {
		reply_error(q, 400, "query 'stream': expected stdout or stderr");
		return send_ready(q);
	}
	int64_t offset = 0;
	if (off && (parse_int64(off, &offset) < 0 || offset < 0)) {
		reply_error(q, 400, "query 'offset': expected a byte offset");
		return send_ready(q);
	}
	const char *auth = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Authorization");
	pthread_mutex_lock(&s->backup_lock);
	if (atomic_load(&s->backup_stop) || s->ui_logs_running >= UI_LOGS_MAX) {
		bool stopping = atomic_load(&s->backup_stop);
		pthread_mutex_unlock(&s->backup_lock);
		reply_error(q, 503,
			    stopping ? "server is shutting down"
				     : "too many log reads at once; retry");
		return send_ready(q);
	}
	struct logs_read *lr = xcalloc(1, sizeof *lr);
	lr->q = q;
	lr->offset = offset;
	lr->path =
	    xasprintf("/v1/tasks/%s/logs?stream=%s&offset=%lld", ref, stream, (long long)offset);
	if (auth && !strncasecmp(auth, "Bearer ", 7))
		lr->token = xstrdup(auth + 7);
	if (s->tls)
		lr->cafile = xasprintf("%s/client/ca.pem", s->data_dir);
	q->phase = REQ_BACKUP;
	MHD_suspend_connection(conn);
	pthread_attr_t attr;
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	pthread_t t;
	int r = pthread_create(&t, &attr, logs_main, lr);
	pthread_attr_destroy(&attr);
	if (r != 0) {
		pthread_mutex_unlock(&s->backup_lock);
		free(lr->path);
		free(lr->token);
		free(lr->cafile);
		free(lr);
		reply_error(q, 503, "cannot start a thread for the logs; retry");
		MHD_resume_connection(conn);
		return MHD_YES; /* answered when resumed */
	}
	s->ui_logs_running++;
	pthread_mutex_unlock(&s->backup_lock);
	return MHD_YES;
}

enum MHD_Result server_ui_answer(struct server *s, struct request *q, const char *method,
				 const char *url)
{
	struct MHD_Connection *conn = q->conn;
	if (strcmp(method, "GET") && strcmp(method, "HEAD"))
		return send_plain(conn, 405, "method not allowed\n", NULL);
	if (!strcmp(url, "/") || !strcmp(url, "/ui"))
		return send_plain(conn, 307, "see /ui/\n", "/ui/");
	const char *path = url + 4;
	if (!strncmp(path, "logs/", 5))
		return logs_start(s, q, path + 5);
	const struct ui_asset *a = asset_find(*path ? path : "index.html");
	if (!a)
		return send_plain(conn, 404, "not found\n", NULL);
	return send_asset(conn, a);
}
