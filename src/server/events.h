/* events.h - the cluster's event log: every state change of tasks, jobs,
 * nodes, updates and the leadership, as a ring of the last N events kept
 * in memory (docs/operations.md "Events"), read by the event stream
 * (GET /v1/events, server_events.c).
 *
 * Each event is kept as its fields and rendered, when read, as the frame
 * the stream sends (server-sent events):
 *
 *     id: 1733526000000001
 *     data: {"index":1733526000000001,"time":1733526000123,"type":"task",...}
 *
 * Indexes strictly increase; the first one is the clock at the log's
 * creation (ms x 1000), so that indexes never repeat across server restarts
 * and leaders, and a client resuming with an index of an earlier server is
 * told that what it asked for is gone.
 *
 * Thread-safe: one lock of its own (appends come under the cluster's lock,
 * reads from the HTTP threads without it). A reader is a cursor (the last
 * index it looked at) and at most one buffer of frames: memory does not
 * grow with slow readers; a reader that falls behind the ring is told what
 * it missed.
 */
#ifndef BERTH_EVENTS_H
#define BERTH_EVENTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/util.h"

enum event_type {
	EVENT_TASK = 0,
	EVENT_JOB,
	EVENT_NODE,
	EVENT_UPDATE,
	EVENT_LEADER,
	EVENT_TYPE_COUNT
};

/* "task", "job", "node", "update", "leader". */
const char *event_type_name(enum event_type t);
/* A comma-separated list of type names into a bit mask (1 << type); 400
 * naming the unknown one. Empty = every type. */
int event_types_parse(const char *list, unsigned *mask, struct berr *err);

/* Events kept by default. */
#define EVENTS_DEFAULT_CAPACITY 65536
/* A message is cut to this many bytes. */
#define EVENT_MESSAGE_MAX 300

struct event_fields {
	enum event_type type;
	const char *job;     /* its job's key, or NULL */
	const char *task;    /* task id, or NULL */
	int instance;	     /* -1: none */
	const char *node;    /* node name, or NULL */
	const char *state;   /* the new state, or NULL */
	const char *message; /* or NULL */
};

struct event_filter {
	const char *job;  /* only this job's events, or NULL */
	const char *node; /* only this node's, or NULL */
	unsigned types;	  /* a mask of 1 << enum event_type; 0 = all */
	const char *role; /* a role token's caller: only its role's jobs' events */
};

/* A reader parked on the log: wake() is called (under the log's lock)
 * once when an event arrives after it parked, or when events_wake_all is
 * called. */
struct event_sub {
	void (*wake)(void *ud);
	void *ud;
	bool parked;
	struct event_sub *prev, *next;
};

struct event_log;

struct event_log *events_new(size_t capacity, uint64_t first_index);
void events_free(struct event_log *log);

/* Add an event; returns its index. */
uint64_t events_append(struct event_log *log, const struct event_fields *f);
/* The newest index (first_index - 1 when none yet) and the oldest kept
 * (newest + 1 when none). */
uint64_t events_newest(struct event_log *log);
uint64_t events_oldest(struct event_log *log);

/* Append to `out` the frames of the events after *cursor that pass f, until
 * out holds max_bytes or more, or none is left; *cursor moves to the last
 * index looked at. When *cursor is older than the ring, nothing is added:
 * *missed gets the number of events lost, and *cursor moves to just before
 * the oldest kept. Returns the number of frames added. */
size_t events_read(struct event_log *log, uint64_t *cursor, const struct event_filter *f,
		   struct sbuf *out, size_t max_bytes, uint64_t *missed);
/* A frame of the stream's own: {"index": id, "time": now, "type": type,
 * "message": msg} with `id: id` (types "missed", "cut"). */
void events_frame_notice(struct sbuf *out, uint64_t id, const char *type, const char *msg);

void events_subscribe(struct event_log *log, struct event_sub *sub);
void events_unsubscribe(struct event_log *log, struct event_sub *sub);
/* Park `sub` unless an event after `cursor` exists: park(ud) is called
 * under the log's lock (so that no wake is lost), and true returned. */
bool events_park(struct event_log *log, struct event_sub *sub, uint64_t cursor,
		 void (*park)(void *ud), void *ud);
/* Wake every parked reader (keep-alives). */
void events_wake_all(struct event_log *log);
/* No reader parks from now on (events_park returns false); every parked
 * one is woken. For a server that stops: its readers end their streams. */
void events_close(struct event_log *log);
bool events_closed(struct event_log *log);

#endif
