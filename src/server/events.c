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

struct event {
	uint64_t index;
	enum event_type type;
	char *job, *node; /* for the filters; NULL when none */
	char *frame;	  /* "id: N\ndata: JSON\n\n" */
	size_t frame_len;
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
	log->ring = xcalloc(log->cap, sizeof *log->ring);
	log->next = first_index ? first_index : 1;
	return log;
}

static void event_clear(struct event *e)
{
	free(e->job);
	free(e->node);
	free(e->frame);
	memset(e, 0, sizeof *e);
}

void events_free(struct event_log *log)
{
	if (!log)
		return;
	for (size_t i = 0; i < log->cap; i++)
		event_clear(&log->ring[i]);
	free(log->ring);
	pthread_mutex_destroy(&log->lock);
	free(log);
}

/* A message cut at EVENT_MESSAGE_MAX bytes, on a character boundary. */
static void add_message(struct sbuf *sb, const char *msg)
{
	size_t n = strlen(msg);
	if (n <= EVENT_MESSAGE_MAX) {
		sbuf_add_json_str(sb, msg);
		return;
	}
	n = EVENT_MESSAGE_MAX;
	while (n && ((unsigned char)msg[n] & 0xC0) == 0x80)
		n--;
	char *cut = xasprintf("%.*s...", (int)n, msg);
	sbuf_add_json_str(sb, cut);
	free(cut);
}

static void add_str_field(struct sbuf *sb, const char *key, const char *v)
{
	if (!v)
		return;
	sbuf_addf(sb, ",\"%s\":", key);
	sbuf_add_json_str(sb, v);
}

static char *render(uint64_t index, int64_t now, const struct event_fields *f, size_t *len)
{
	struct sbuf sb;
	sbuf_init(&sb);
	sbuf_addf(&sb, "id: %llu\ndata: {\"index\":%llu,\"time\":%lld,\"type\":\"%s\"",
		  (unsigned long long)index, (unsigned long long)index, (long long)now,
		  event_type_name(f->type));
	add_str_field(&sb, "job", f->job);
	add_str_field(&sb, "task", f->task);
	if (f->instance >= 0)
		sbuf_addf(&sb, ",\"instance\":%d", f->instance);
	add_str_field(&sb, "node", f->node);
	add_str_field(&sb, "state", f->state);
	if (f->message) {
		sbuf_adds(&sb, ",\"message\":");
		add_message(&sb, f->message);
	}
	sbuf_adds(&sb, "}\n\n");
	*len = sb.len;
	return sbuf_detach(&sb);
}

uint64_t events_append(struct event_log *log, const struct event_fields *f)
{
	int64_t now = time_now_ms();
	pthread_mutex_lock(&log->lock);
	uint64_t index = log->next++;
	struct event *e = &log->ring[index % log->cap];
	event_clear(e);
	e->index = index;
	e->type = f->type;
	e->job = f->job ? xstrdup(f->job) : NULL;
	e->node = f->node ? xstrdup(f->node) : NULL;
	e->frame = render(index, now, f, &e->frame_len);
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
		sbuf_add(out, e->frame, e->frame_len);
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
