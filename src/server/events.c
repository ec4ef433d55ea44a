/* events.c - the cluster's event log (events.h): a ring of rendered
 * frames, and the readers parked on it. */
#include "server/events.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

static const char *const type_names[EVENT_TYPE_COUNT] = {"task", "job", "node", "update", "leader"};

const char *event_type_name(enum event_type t)
{
	return (unsigned)t < EVENT_TYPE_COUNT ? type_names[t] : "unknown";
}

int event_types_parse(const char *list, unsigned *mask, struct berr *err)
{
	*mask = 0;
	if (!list)
		return 0;
	const char *p = list;
	while (*p) {
		const char *e = strchr(p, ',');
		size_t n = e ? (size_t)(e - p) : strlen(p);
		if (n) {
			int found = -1;
			for (int t = 0; t < EVENT_TYPE_COUNT; t++)
				if (strlen(type_names[t]) == n && !strncmp(type_names[t], p, n))
					found = t;
			if (found < 0)
				return berr_set(
				    err, 400,
				    "unknown event type '%.*s' (types: task, job, node, "
				    "update, leader)",
				    (int)(n > 40 ? 40 : n), p);
			*mask |= 1u << found;
		}
		p += n;
		if (*p == ',')
			p++;
	}
	return 0;
}

/* An event as its fields, rendered into a frame only when a reader reads
 * it: appending is on every task transition (a million tasks placed make
 * four million), reading is rare. The strings live in one buffer per ring
 * slot, reused when the slot is overwritten: no allocation per event once
 * the ring is full. */
struct event {
	uint64_t index;
	int64_t time;
	enum event_type type;
	int instance;
	char *buf; /* the strings below, each NUL-terminated */
	size_t cap;
	const char *job, *task, *node, *state, *message; /* into buf, or NULL */
};

struct event_log {
	pthread_mutex_t lock;
	struct event *ring;
	size_t cap;
	size_t count;  /* events kept (<= cap) */
	uint64_t next; /* index of the next event */
	struct event_sub *subs;
	bool closed;
};

struct event_log *events_new(size_t capacity, uint64_t first_index)
{
	struct event_log *log = xcalloc(1, sizeof *log);
	pthread_mutex_init(&log->lock, NULL);
	log->cap = capacity ? capacity : EVENTS_DEFAULT_CAPACITY;
	log->ring = xcalloc_lazy(log->cap, sizeof *log->ring); /* resident as it fills */
	log->next = first_index ? first_index : 1;
	return log;
}

void events_free(struct event_log *log)
{
	if (!log)
		return;
	for (size_t i = 0; i < log->cap; i++)
		free(log->ring[i].buf);
	xfree_lazy(log->ring, log->cap, sizeof *log->ring);
	pthread_mutex_destroy(&log->lock);
	free(log);
}

/* The bytes of a message kept: all of it, or EVENT_MESSAGE_MAX cut on a
 * character boundary (then "..." follows). */
static size_t message_keep(const char *msg, size_t n, bool *cut)
{
	*cut = n > EVENT_MESSAGE_MAX;
	if (!*cut)
		return n;
	n = EVENT_MESSAGE_MAX;
	while (n && ((unsigned char)msg[n] & 0xC0) == 0x80)
		n--;
	return n;
}

/* Copy s (n bytes) to *p, NUL-terminated; returns the copy, or NULL for
 * no string. */
static const char *put_str(char **p, const char *s, size_t n, const char *tail)
{
	if (!s)
		return NULL;
	char *d = *p;
	memcpy(d, s, n);
	size_t tl = tail ? strlen(tail) : 0;
	memcpy(d + n, tail ? tail : "", tl + 1);
	*p = d + n + tl + 1;
	return d;
}

static void sbuf_add_u64(struct sbuf *sb, unsigned long long u, bool negative)
{
	char buf[24], *p = buf + sizeof buf;
	do {
		*--p = (char)('0' + u % 10);
		u /= 10;
	} while (u);
	if (negative)
		*--p = '-';
	sbuf_add(sb, p, (size_t)(buf + sizeof buf - p));
}

static void sbuf_add_i64(struct sbuf *sb, long long v)
{
	sbuf_add_u64(sb, v < 0 ? 0ULL - (unsigned long long)v : (unsigned long long)v, v < 0);
}

static void add_str_field(struct sbuf *sb, const char *field, const char *v)
{
	if (!v)
		return;
	sbuf_adds(sb, field);
	sbuf_add_json_str(sb, v);
}

/* The frame of e: "id: N\ndata: {...}\n\n". */
static void render(struct sbuf *sb, const struct event *e)
{
	sbuf_adds(sb, "id: ");
	sbuf_add_u64(sb, e->index, false);
	sbuf_adds(sb, "\ndata: {\"index\":");
	sbuf_add_u64(sb, e->index, false);
	sbuf_adds(sb, ",\"time\":");
	sbuf_add_i64(sb, e->time);
	sbuf_adds(sb, ",\"type\":\"");
	sbuf_adds(sb, event_type_name(e->type));
	sbuf_adds(sb, "\"");
	add_str_field(sb, ",\"job\":", e->job);
	add_str_field(sb, ",\"task\":", e->task);
	if (e->instance >= 0) {
		sbuf_adds(sb, ",\"instance\":");
		sbuf_add_i64(sb, e->instance);
	}
	add_str_field(sb, ",\"node\":", e->node);
	add_str_field(sb, ",\"state\":", e->state);
	add_str_field(sb, ",\"message\":", e->message);
	sbuf_adds(sb, "}\n\n");
}

uint64_t events_append(struct event_log *log, const struct event_fields *f)
{
	int64_t now = time_now_ms();
	size_t lj = f->job ? strlen(f->job) : 0, lt = f->task ? strlen(f->task) : 0,
	       ln = f->node ? strlen(f->node) : 0, ls = f->state ? strlen(f->state) : 0;
	bool cut = false;
	size_t lm = f->message ? message_keep(f->message, strlen(f->message), &cut) : 0;
	size_t need = lj + lt + ln + ls + lm + 3 + 5;
	pthread_mutex_lock(&log->lock);
	uint64_t index = log->next++;
	struct event *e = &log->ring[index % log->cap];
	if (e->cap < need) {
		free(e->buf);
		e->cap = need < 128 ? 128 : need;
		e->buf = xmalloc(e->cap);
	}
	e->index = index;
	e->time = now;
	e->type = f->type;
	e->instance = f->instance;
	char *p = e->buf;
	e->job = put_str(&p, f->job, lj, NULL);
	e->task = put_str(&p, f->task, lt, NULL);
	e->node = put_str(&p, f->node, ln, NULL);
	e->state = put_str(&p, f->state, ls, NULL);
	e->message = put_str(&p, f->message, lm, cut ? "..." : NULL);
	if (log->count < log->cap)
		log->count++;
	for (struct event_sub *s = log->subs; s; s = s->next)
		if (s->parked) {
			s->parked = false;
			s->wake(s->ud);
		}
	pthread_mutex_unlock(&log->lock);
	return index;
}

uint64_t events_newest(struct event_log *log)
{
	pthread_mutex_lock(&log->lock);
	uint64_t n = log->next - 1;
	pthread_mutex_unlock(&log->lock);
	return n;
}

uint64_t events_oldest(struct event_log *log)
{
	pthread_mutex_lock(&log->lock);
	uint64_t n = log->next - log->count;
	pthread_mutex_unlock(&log->lock);
	return n;
}

static bool role_owns(const char *role, const char *job)
{
	size_t n = strlen(role);
	return job && !strncmp(job, role, n) && job[n] == '/';
}

static bool passes(const struct event *e, const struct event_filter *f)
{
	if (!f)
		return true;
	if (f->types && !(f->types & (1u << e->type)))
		return false;
	if (f->job && (!e->job || strcmp(f->job, e->job)))
		return false;
	if (f->node && (!e->node || strcmp(f->node, e->node)))
		return false;
	if (f->role && !role_owns(f->role, e->job))
		return false;
	return true;
}

size_t events_read(struct event_log *log, uint64_t *cursor, const struct event_filter *f,
		   struct sbuf *out, size_t max_bytes, uint64_t *missed)
{
	size_t added = 0;
	*missed = 0;
	pthread_mutex_lock(&log->lock);
	uint64_t oldest = log->next - log->count;
	if (*cursor + 1 < oldest) {
		*missed = oldest - 1 - *cursor;
		*cursor = oldest - 1;
		pthread_mutex_unlock(&log->lock);
		return 0;
	}
	while (*cursor + 1 < log->next && out->len < max_bytes) {
		uint64_t i = ++*cursor;
		const struct event *e = &log->ring[i % log->cap];
		if (!passes(e, f))
			continue;
		render(out, e);
		added++;
	}
	pthread_mutex_unlock(&log->lock);
	return added;
}

void events_frame_notice(struct sbuf *out, uint64_t id, const char *type, const char *msg)
{
	sbuf_addf(out, "id: %llu\ndata: {\"index\":%llu,\"time\":%lld,\"type\":\"%s\",\"message\":",
		  (unsigned long long)id, (unsigned long long)id, (long long)time_now_ms(), type);
	sbuf_add_json_str(out, msg);
	sbuf_adds(out, "}\n\n");
}

void events_subscribe(struct event_log *log, struct event_sub *sub)
{
	pthread_mutex_lock(&log->lock);
	sub->parked = false;
	sub->prev = NULL;
	sub->next = log->subs;
	if (log->subs)
		log->subs->prev = sub;
	log->subs = sub;
	pthread_mutex_unlock(&log->lock);
}

void events_unsubscribe(struct event_log *log, struct event_sub *sub)
{
	pthread_mutex_lock(&log->lock);
	if (sub->prev)
		sub->prev->next = sub->next;
	else if (log->subs == sub)
		log->subs = sub->next;
	if (sub->next)
		sub->next->prev = sub->prev;
	sub->prev = sub->next = NULL;
	sub->parked = false;
	pthread_mutex_unlock(&log->lock);
}

bool events_park(struct event_log *log, struct event_sub *sub, uint64_t cursor,
		 void (*park)(void *ud), void *ud)
{
	pthread_mutex_lock(&log->lock);
	bool news = cursor + 1 < log->next || log->closed;
	if (!news) {
		park(ud);
		sub->parked = true;
	}
	pthread_mutex_unlock(&log->lock);
	return !news;
}

void events_wake_all(struct event_log *log)
{
	pthread_mutex_lock(&log->lock);
	for (struct event_sub *s = log->subs; s; s = s->next)
		if (s->parked) {
			s->parked = false;
			s->wake(s->ud);
		}
	pthread_mutex_unlock(&log->lock);
}

void events_close(struct event_log *log)
{
	pthread_mutex_lock(&log->lock);
	log->closed = true;
	pthread_mutex_unlock(&log->lock);
	events_wake_all(log);
}

bool events_closed(struct event_log *log)
{
	pthread_mutex_lock(&log->lock);
	bool closed = log->closed;
	pthread_mutex_unlock(&log->lock);
	return closed;
}
