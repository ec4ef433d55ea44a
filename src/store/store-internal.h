/* store-internal.h - what a store backend sees: the batch layout and the ops
 * table. Only src/store/ and the store's unit tests include this.
 *
 * store.c owns everything that does not depend on the backend (batches,
 * location parsing, the rules of use); a backend only implements struct
 * store_ops: store_sqlite.c and store_etcd.c (+ store_etcd_follow.c, both over
 * etcd_client.c; docs/store.md).
 */
#ifndef BERTH_STORE_INTERNAL_H
#define BERTH_STORE_INTERNAL_H

#include <stddef.h>

#include "store/store.h"

enum store_op_kind {
	STORE_OP_PUT,
	STORE_OP_DELETE,
	STORE_OP_DELETE_PREFIX,
};

/* "put", "delete", "delete prefix": for messages. */
const char *store_op_name(enum store_op_kind kind);

/* One write of a batch. key and value share one allocation (key, NUL, value,
 * NUL) so that a 100,000-put batch costs 100,000 mallocs, not 200,000; value
 * is NULL for deletes. key_len excludes the NUL. */
struct store_op {
	enum store_op_kind kind;
	size_t key_len;
	size_t len;
	char *key;
	char *value;
};

/* Operations are applied in the order they were added, so a put followed by
 * a delete_prefix that covers it leaves nothing, and the reverse keeps it. */
struct store_batch {
	struct store_op *ops;
	size_t n;
	size_t cap;
};

struct store;

/* A backend. store.c has already checked the arguments (non-NULL key and
 * prefix, no commit during a scan) and skips empty batches. Errors are
 * reported as "store: ..." messages in err. */
struct store_ops {
	const char *name;
	/* Open the backend at location (scheme already removed) and set
	 * st->data. 0, or -1 with err set and nothing left allocated. */
	int (*open)(struct store *st, const char *location, struct berr *err);
	/* Release st->data. */
	void (*close)(struct store *st);
	/* Apply every op of b in order, all or nothing, durably. */
	int (*commit)(struct store *st, const struct store_batch *b, struct berr *err);
	int (*get)(struct store *st, const char *key, char **value, size_t *len, struct berr *err);
	/* Visit keys with prefix in byte order, from one consistent snapshot. */
	int (*scan)(struct store *st, const char *prefix, store_scan_fn fn, void *ud,
		    struct berr *err);
	/* Optional: from now on a commit applies only while key holds value. */
	int (*set_guard)(struct store *st, const char *key, const char *value, struct berr *err);
	/* Optional: store_create (store.h); without it, get then commit. */
	int (*create)(struct store *st, const char *key, const char *value, size_t len,
		      struct berr *err);
	/* Optional: store_follow (store.h). */
	int (*follow)(struct store *st, store_follow_fn fn, void *ud, const _Atomic bool *stop,
		      struct berr *err);
};

struct store {
	const struct store_ops *ops;
	void *data;	/* the backend's state */
	char *location; /* as given to store_open, for messages */
	/* Depth of store_scan calls in progress: a commit from inside a scan
	 * callback would change the rows under the cursor, so it is refused. */
	int scanning;
};

/* The first key after every key that starts with prefix: prefix with its last
 * byte that is not 0xff incremented and the rest cut off ("ab" -> "ac",
 * "a\xff" -> "b"). NULL when there is no such bound (empty prefix or only 0xff
 * bytes): the range is then open-ended. Caller frees. etcd's range_end is the
 * same thing. */
char *store_prefix_end(const char *prefix);

extern const struct store_ops store_sqlite_ops;
extern const struct store_ops store_etcd_ops;

#endif
