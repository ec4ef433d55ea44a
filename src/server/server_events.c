/* server_events.c - GET /v1/events: the event log (events.h) as a stream of
 * server-sent events (docs/api.md, docs/operations.md "Events").
 *
 * A stream is a libmicrohttpd response whose content comes from a callback
 * run by the HTTP threads, never under the cluster lock:
 *
 *   frames buffered?  -> hand them out (as much as the socket takes)
 *   events after the cursor -> render up to STREAM_CHUNK bytes of frames
 *   cursor older than the ring -> "missed" (at the start) or "cut" (a
 *                        reader that fell behind: it ends)
 *   caught up          -> end (follow=false), a keep-alive comment, or
 *                        suspend the connection until the next event
 *
 * A stream holds a cursor and at most one chunk of frames: a slow reader
 * costs no memory and holds no thread; one that falls behind the ring is
 * cut off with a last event saying so.
 */
#include "server/server-internal.h"

#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "server/events.h"

#define STREAM_CHUNK 16384
/* A comment line this often at least, so that proxies and clients see the
 * stream alive and a reader that went away is noticed. */
#define KEEPALIVE_MS 15000

struct event_stream {
	struct server *s;
	struct MHD_Connection *conn;
	struct event_sub sub;
	struct event_filter f;
	char *job, *node, *role;
	uint64_t cursor;
	bool follow;
	bool first;  /* nothing read yet: a gap is "missed", later "cut" */
	bool ending; /* the stream ends once its buffer is out */
	struct sbuf out;
	size_t off;
	int64_t wrote_mono;
};

static void stream_wake(void *ud)
{
	struct event_stream *st = ud;
	MHD_resume_connection(st->conn);
}

static void stream_park(void *ud)
{
	struct event_stream *st = ud;
	MHD_suspend_connection(st->conn);
}

enum fill { FILL_READY, FILL_PARKED, FILL_END };

/* Refill st->out: frames to send, or parked until the next event, or the
 * end of the stream. */
static enum fill stream_fill(struct event_stream *st, int64_t mono)
{
	struct event_log *log = st->s->c->events;
	for (;;) {
		st->out.len = 0;
		st->out.buf[0] = 0;
		st->off = 0;
		if (st->ending || events_closed(log))
			return FILL_END;
		uint64_t missed = 0;
		events_read(log, &st->cursor, &st->f, &st->out, STREAM_CHUNK, &missed);
		if (missed) {
			char msg[300];
			if (st->first) {
				snprintf(msg, sizeof msg,
					 "events %llu to %llu are not kept (the server keeps "
					 "the last %d events since it started)",
					 (unsigned long long)(st->cursor - missed + 1),
					 (unsigned long long)st->cursor, EVENTS_DEFAULT_CAPACITY);
				events_frame_notice(&st->out, st->cursor, "missed", msg);
			} else {
				snprintf(msg, sizeof msg,
					 "cut off: this reader fell %llu events behind; reconnect "
					 "with index=%llu (or Last-Event-ID) to go on",
					 (unsigned long long)missed,
					 (unsigned long long)st->cursor);
				events_frame_notice(&st->out, st->cursor, "cut", msg);
				st->ending = true;
			}
		}
		st->first = false;
		if (st->out.len)
			return FILL_READY;
		if (!st->follow)
			return FILL_END;
		if (mono - st->wrote_mono >= KEEPALIVE_MS - 1000) {
			sbuf_adds(&st->out, ": keep-alive\n\n");
			return FILL_READY;
		}
		if (events_park(log, &st->sub, st->cursor, stream_park, st))
			return FILL_PARKED;
	}
}

static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max)
{
	struct event_stream *st = cls;
	(void)pos;
	int64_t mono = time_mono_ms();
	if (st->off >= st->out.len) {
		enum fill r = stream_fill(st, mono);
		if (r == FILL_PARKED)
			return 0; /* suspended until the next event */
		if (r == FILL_END)
			return MHD_CONTENT_READER_END_OF_STREAM;
	}
	size_t n = st->out.len - st->off;
	if (n > max)
		n = max;
	memcpy(buf, st->out.buf + st->off, n);
	st->off += n;
	st->wrote_mono = mono;
	return (ssize_t)n;
}

static void stream_free(void *cls)
{
	struct event_stream *st = cls;
	events_unsubscribe(st->s->c->events, &st->sub);
	sbuf_release(&st->out);
	free(st->job);
	free(st->node);
	free(st->role);
	free(st);
}

static const char *arg(struct request *q, const char *name)
{
	const char *v = MHD_lookup_connection_value(q->conn, MHD_GET_ARGUMENT_KIND, name);
	return v && *v ? v : NULL;
}

/* An index: digits only. */
static bool parse_index(const char *v, uint64_t *out)
{
	if (!v || !*v || strlen(v) > 20)
		return false;
	for (const char *p = v; *p; p++)
		if (*p < '0' || *p > '9')
			return false;
	*out = strtoull(v, NULL, 10);
	return true;
}

enum MHD_Result server_events_start(struct server *s, struct request *q, const char *method)
{
	char msg[200];
	if (strcmp(method, "GET")) {
		reply_error(q, 405, "method not allowed: GET /v1/events");
		return send_ready(q);
	}
	const char *job = arg(q, "job"), *node = arg(q, "node"), *types = arg(q, "type");
	const char *index = arg(q, "index"), *follow = arg(q, "follow");
	const char *last_id =
	    MHD_lookup_connection_value(q->conn, MHD_HEADER_KIND, "Last-Event-ID");
	if (job ? !auth_role(q, job) : !auth_any(q))
		return send_ready(q);
	if (q->who.kind == PRINCIPAL_NODE) {
		reply_error(q, 403, "forbidden: the event stream takes a user's token");
		return send_ready(q);
	}
	struct event_filter f = {.job = job, .node = node};
	struct berr err = {0};
	if (event_types_parse(types, &f.types, &err) < 0) {
		reply_error(q, 400, err.msg);
		return send_ready(q);
	}
	uint64_t cursor = 0;
	/* A reconnecting EventSource says where it was: that wins. */
	const char *from = last_id && *last_id ? last_id : index;
	if (from && !parse_index(from, &cursor)) {
		snprintf(msg, sizeof msg, "bad %s '%.40s': an event index (a whole number)",
			 from == index ? "index" : "Last-Event-ID", from);
		reply_error(q, 400, msg);
		return send_ready(q);
	}
	bool follow_on = true;
	if (follow && !strcmp(follow, "false"))
		follow_on = false;
	else if (follow && strcmp(follow, "true")) {
		snprintf(msg, sizeof msg, "bad follow '%.40s': true or false", follow);
		reply_error(q, 400, msg);
		return send_ready(q);
	}
	struct event_stream *st = xcalloc(1, sizeof *st);
	st->s = s;
	st->conn = q->conn;
	st->job = job ? xstrdup(job) : NULL;
	st->node = node ? xstrdup(node) : NULL;
	st->role = q->who.kind == PRINCIPAL_ROLE ? xstrdup(q->who.name) : NULL;
	st->f = (struct event_filter){
	    .job = st->job, .node = st->node, .types = f.types, .role = st->role};
	/* No index: every event kept, with no word about older ones. */
	if (!from || !cursor) {
		uint64_t oldest = events_oldest(s->c->events);
		cursor = oldest ? oldest - 1 : 0;
	}
	st->cursor = cursor;
	st->follow = follow_on;
	st->first = true;
	st->wrote_mono = time_mono_ms();
	sbuf_init(&st->out);
	st->sub.wake = stream_wake;
	st->sub.ud = st;
	events_subscribe(s->c->events, &st->sub);
	struct MHD_Response *r =
	    MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 4096, stream_read, st, stream_free);
	MHD_add_response_header(r, "Content-Type", "text/event-stream");
	MHD_add_response_header(r, "Cache-Control", "no-cache");
	MHD_add_response_header(r, "X-Accel-Buffering", "no");
	enum MHD_Result ret = MHD_queue_response(q->conn, 200, r);
	MHD_destroy_response(r);
	return ret;
}

void server_events_tick(struct server *s, int64_t mono)
{
	if (mono - s->keepalive_mono < KEEPALIVE_MS)
		return;
	s->keepalive_mono = mono;
	events_wake_all(s->c->events);
}

void server_events_stop(struct server *s)
{
	events_close(s->c->events);
}
