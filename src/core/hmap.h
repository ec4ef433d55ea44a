/* hmap.h - a string-keyed hash map (open addressing, linear probing).
 * Keys are copied; values are the caller's. Iteration order is unspecified.
 * Not thread-safe: the owner locks. */
#ifndef BERTH_HMAP_H
#define BERTH_HMAP_H

#include <stddef.h>

struct hmap_slot {
	char *key; /* NULL = empty; HMAP_TOMBSTONE = deleted */
	void *value;
	unsigned hash;
};

struct hmap {
	struct hmap_slot *slots;
	size_t cap;   /* power of two */
	size_t count; /* live entries */
	size_t used;  /* live + tombstones */
	int borrow;   /* keys are the caller's (see hmap_init_borrowed) */
};

void hmap_init(struct hmap *m);
/* A map that keeps the caller's key pointers instead of copies: each key
 * must stay valid, unchanged, until its entry is deleted or the map is
 * released (e.g. a task's id, for maps of tasks: saves a copy per task). */
void hmap_init_borrowed(struct hmap *m);
/* Frees the keys, not the values. */
void hmap_release(struct hmap *m);
void *hmap_get(const struct hmap *m, const char *key);
/* Insert or replace; returns the previous value or NULL. */
void *hmap_put(struct hmap *m, const char *key, void *value);
/* Remove; returns the value or NULL. */
void *hmap_del(struct hmap *m, const char *key);

/* Iterate: for (size_t it = 0; hmap_next(m, &it, &k, &v);) { ... }
 * Deleting the current entry while iterating is allowed. */
int hmap_next(const struct hmap *m, size_t *it, const char **key, void **value);

#endif
