/* store.h - the durable log of the cluster state.
 *
 * The server holds the whole state in memory and decides from it; the store
 * only has to keep it durably. It is a key-value store with atomic batches:
 *
 *   jobs/<role>/<env>/<name>      the job record: its spec versions, cron state (JSON)
 *   tasks/<task-id>               a task record, its transitions inside (JSON)
 *   updates/<role>/<env>/<name>   the job's rolling update, while one exists (JSON)
 *   nodes/<name>                  a node record (JSON)
 *   meta/leader                   HA: the elected leader, bound to its etcd lease
 *
 * store_commit() returns only when the batch is durable (SQLite: WAL with
 * synchronous=FULL; etcd: a quorum-acknowledged transaction). Nothing is
 * acknowledged to a user before its commit returned 0.
 *
 * Backends sit behind struct store_ops (store-internal.h): sqlite today,
 * etcd for HA. store_open() picks one from the location:
 *   "sqlite:/path/to/state.db" or a plain path  -> SQLite
 *   "etcd://h1:p1,h2:p2[/PREFIX]"                -> etcd (docs/store.md)
 * A store is used from one thread at a time (the server's commit thread);
 * callers serialise.
 */
#ifndef BERTH_STORE_H
#define BERTH_STORE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/util.h"

struct store;

/* A batch of writes applied atomically by store_commit(). */
struct store_batch;

struct store *store_open(const char *location, struct berr *err);
void store_close(struct store *st);
/* "sqlite" or "etcd", for logs and status pages. */
const char *store_backend_name(const struct store *st);

struct store_batch *store_batch_new(void);
void store_batch_free(struct store_batch *b);
/* The batch copies key and value. */
void store_batch_put(struct store_batch *b, const char *key, const char *value, size_t len);
void store_batch_delete(struct store_batch *b, const char *key);
/* Delete every key that starts with prefix. */
void store_batch_delete_prefix(struct store_batch *b, const char *prefix);
size_t store_batch_count(const struct store_batch *b);
/* Drop every operation but keep the memory, to refill the same batch. */
void store_batch_clear(struct store_batch *b);
/* Append every operation of src to dst (src is left unchanged). */
void store_batch_merge(struct store_batch *dst, const struct store_batch *src);

/* Fencing for HA: from now on every commit applies only while `key` holds
 * `value` (etcd: a compare in the transaction); a commit refused for that
 * fails with "fenced: ...". A no-op where there is one server (SQLite). */
int store_set_guard(struct store *st, const char *key, const char *value, struct berr *err);

/* Apply atomically and durably. 0, or -1 with err set. */
int store_commit(struct store *st, struct store_batch *b, struct berr *err);

/* Get one value: 0 and *value (NUL-terminated, caller frees), 1 when the key
 * is absent, -1 on error. */
int store_get(struct store *st, const char *key, char **value, size_t *len, struct berr *err);

/* Put key = value unless the key exists, atomically among servers sharing
 * the store (etcd: a compare on its creation): 0 when put, 1 when the key
 * was there (nothing written), -1 on error. Not fenced. */
int store_create(struct store *st, const char *key, const char *value, size_t len,
		 struct berr *err);

/* Call fn for every key with the prefix, in key order. fn returns 0 to go on,
 * non-zero to stop (store_scan then returns that value). -1 on error. */
typedef int (*store_scan_fn)(const char *key, const char *value, size_t len, void *ud);
int store_scan(struct store *st, const char *prefix, store_scan_fn fn, void *ud, struct berr *err);

/* Following the store (HA followers keep a replica of the state): fn gets
 * every key once, then every change, in revision order, until *stop is set
 * (checked at least every 250 ms) or fn returns non-zero. The events:
 *
 *   STORE_FOLLOW_RESET    forget everything: a full copy follows (at the
 *                         start, and again when the changes since the last
 *                         one are no longer available, e.g. etcd compacted
 *                         them);
 *   STORE_FOLLOW_CHANGES  n changes (a page of the copy, or what one or more
 *                         revisions changed); value NULL: the key was
 *                         deleted. revision: the store's revision they take
 *                         the replica to;
 *   STORE_FOLLOW_SYNCED   the full copy is complete, as of revision; the
 *                         changes after it follow.
 *
 * Connection failures are retried (next endpoint) without giving up; only a
 * store that cannot be followed at all (SQLite: there is one server) makes it
 * return -1 at once. Returns 0 once stopped, or fn's non-zero value. Runs on
 * the caller's thread: give it a store of its own (store_open again). */
struct store_change {
	const char *key;
	const char *value; /* NULL: deleted */
	size_t len;
};
enum store_follow_event { STORE_FOLLOW_RESET, STORE_FOLLOW_CHANGES, STORE_FOLLOW_SYNCED };
typedef int (*store_follow_fn)(void *ud, enum store_follow_event ev, const struct store_change *ch,
			       size_t n, int64_t revision);
int store_follow(struct store *st, store_follow_fn fn, void *ud, const _Atomic bool *stop,
		 struct berr *err);

#endif
