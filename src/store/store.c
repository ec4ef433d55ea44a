/* store.c - batches, picking a backend from the location, and the rules every
 * backend relies on (see store.h and store-internal.h). */
#include "store/store-internal.h"

#include <stdlib.h>
#include <string.h>

/* ---- batches ---- */

struct store_batch *store_batch_new(void)
{
	return xcalloc(1, sizeof(struct store_batch));
}

void store_batch_clear(struct store_batch *b)
{
	if (!b)
		return;
	for (size_t i = 0; i < b->n; i++)
		free(b->ops[i].key);
	/* Keep ops[] allocated: the commit thread refills the same batch. */
	b->n = 0;
}

void store_batch_free(struct store_batch *b)
{
	if (!b)
		return;
	store_batch_clear(b);
	free(b->ops);
	free(b);
}

static void batch_add(struct store_batch *b, enum store_op_kind kind, const char *key,
		      size_t key_len, const char *value, size_t len)
{
	if (b->n == b->cap) {
		b->cap = b->cap ? b->cap * 2 : 16;
		b->ops = xrealloc(b->ops, b->cap * sizeof *b->ops);
	}
	struct store_op *op = &b->ops[b->n++];
	op->kind = kind;
	op->key_len = key_len;
	op->len = len;
	if (kind == STORE_OP_PUT) {
		op->key = xmalloc(key_len + 1 + len + 1);
		memcpy(op->key, key, key_len + 1);
		op->value = op->key + key_len + 1;
		if (len)
			memcpy(op->value, value, len);
		/* Values are handed back NUL-terminated; keep the invariant here
		 * too so that a backend may treat a JSON value as a C string. */
		op->value[len] = 0;
	} else {
		op->key = xmalloc(key_len + 1);
		memcpy(op->key, key, key_len + 1);
		op->value = NULL;
	}
}

void store_batch_put(struct store_batch *b, const char *key, const char *value, size_t len)
{
	batch_add(b, STORE_OP_PUT, key, strlen(key), value ? value : "", value ? len : 0);
}

void store_batch_delete(struct store_batch *b, const char *key)
{
	batch_add(b, STORE_OP_DELETE, key, strlen(key), NULL, 0);
}

void store_batch_delete_prefix(struct store_batch *b, const char *prefix)
{
	batch_add(b, STORE_OP_DELETE_PREFIX, prefix, strlen(prefix), NULL, 0);
}

size_t store_batch_count(const struct store_batch *b)
{
	return b ? b->n : 0;
}

void store_batch_merge(struct store_batch *dst, const struct store_batch *src)
{
	/* Read n once: merging a batch into itself then doubles it instead of
	 * looping forever. */
	size_t n = src->n;
	for (size_t i = 0; i < n; i++) {
		const struct store_op *op = &src->ops[i];
		batch_add(dst, op->kind, op->key, op->key_len, op->value, op->len);
	}
}

/* ---- helpers for backends ---- */

char *store_prefix_end(const char *prefix)
{
	size_t n = strlen(prefix);
	while (n > 0 && (unsigned char)prefix[n - 1] == 0xff)
		n--;
	if (n == 0)
		return NULL;
	char *end = xstrndup(prefix, n);
	end[n - 1] = (char)((unsigned char)end[n - 1] + 1);
	return end;
}

/* ---- open, close and dispatch ---- */

/* Backends by scheme. */
static const struct {
	const char *scheme; /* what the location starts with */
	bool keep_scheme;   /* etcd wants its whole URL list */
	const struct store_ops *ops;
} backends[] = {
    {"sqlite:", false, &store_sqlite_ops},
    {"etcd://", true, &store_etcd_ops},
};

struct store *store_open(const char *location, struct berr *err)
{
	if (!location || !*location) {
		berr_set(err, 0, "store: no location given");
		return NULL;
	}
	const struct store_ops *ops = NULL;
	const char *rest = location;
	for (size_t i = 0; i < ARRAY_SIZE(backends); i++) {
		size_t n = strlen(backends[i].scheme);
		if (strncmp(location, backends[i].scheme, n))
			continue;
		ops = backends[i].ops;
		rest = backends[i].keep_scheme ? location : location + n;
		break;
	}
	if (!ops) {
		/* "foo://..." is a typo'd or unsupported store, not a file
		 * named "foo:" in the current directory. */
		if (strstr(location, "://")) {
			berr_set(err, 0,
				 "store: unknown store '%s' (expected a path, sqlite:PATH or "
				 "etcd://HOST:PORT,...)",
				 location);
			return NULL;
		}
		ops = &store_sqlite_ops;
	}
	if (!*rest) {
		berr_set(err, 0, "store: no path in '%s'", location);
		return NULL;
	}

	struct store *st = xcalloc(1, sizeof *st);
	st->ops = ops;
	st->location = xstrdup(location);
	if (ops->open(st, rest, err) < 0) {
		free(st->location);
		free(st);
		return NULL;
	}
	return st;
}

void store_close(struct store *st)
{
	if (!st)
		return;
	st->ops->close(st);
	free(st->location);
	free(st);
}

const char *store_backend_name(const struct store *st)
{
	return st->ops->name;
}

int store_commit(struct store *st, struct store_batch *b, struct berr *err)
{
	if (st->scanning)
		return berr_set(err, 0, "store: cannot commit: a scan of the store is in progress");
	if (!b || b->n == 0)
		return 0;
	return st->ops->commit(st, b, err);
}

int store_get(struct store *st, const char *key, char **value, size_t *len, struct berr *err)
{
	if (value)
		*value = NULL;
	if (len)
		*len = 0;
	if (!key)
		return berr_set(err, 0, "store: cannot get: no key");
	return st->ops->get(st, key, value, len, err);
}

int store_create(struct store *st, const char *key, const char *value, size_t len, struct berr *err)
{
	if (!key || !value)
		return berr_set(err, 0, "store: cannot create: no key or value");
	if (st->ops->create)
		return st->ops->create(st, key, value, len, err);
	int r = st->ops->get(st, key, NULL, NULL, err);
	if (r != 1)
		return r; /* there (0), or an error */
	struct store_batch *b = store_batch_new();
	store_batch_put(b, key, value, len);
	r = store_commit(st, b, err);
	store_batch_free(b);
	return r;
}

int store_set_guard(struct store *st, const char *key, const char *value, struct berr *err)
{
	if (!st->ops->set_guard)
		return 0;
	return st->ops->set_guard(st, key, value, err);
}

int store_scan(struct store *st, const char *prefix, store_scan_fn fn, void *ud, struct berr *err)
{
	if (!prefix)
		prefix = "";
	st->scanning++;
	int r = st->ops->scan(st, prefix, fn, ud, err);
	st->scanning--;
	return r;
}

int store_follow(struct store *st, store_follow_fn fn, void *ud, const _Atomic bool *stop,
		 struct berr *err)
{
	if (!st->ops->follow)
		return berr_set(err, 0, "store: the %s store cannot be followed (one server only)",
				st->ops->name);
	return st->ops->follow(st, fn, ud, stop, err);
}

const char *store_op_name(enum store_op_kind kind)
{
	switch (kind) {
	case STORE_OP_PUT:
		return "put";
	case STORE_OP_DELETE:
		return "delete";
	case STORE_OP_DELETE_PREFIX:
		return "delete prefix";
	}
	return "?";
}
