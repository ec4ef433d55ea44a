#include "core/hmap.h"

#include <stdlib.h>
#include <string.h>

#include "core/util.h"

static char tombstone;
#define HMAP_TOMBSTONE (&tombstone)

static unsigned hash_str(const char *s)
{
	/* FNV-1a: short keys, good enough spread. */
	unsigned h = 2166136261u;
	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 16777619u;
	return h;
}

void hmap_init(struct hmap *m)
{
	memset(m, 0, sizeof *m);
}

void hmap_init_borrowed(struct hmap *m)
{
	memset(m, 0, sizeof *m);
	m->borrow = 1;
}

void hmap_release(struct hmap *m)
{
	for (size_t i = 0; i < m->cap && !m->borrow; i++)
		if (m->slots[i].key && m->slots[i].key != HMAP_TOMBSTONE)
			free(m->slots[i].key);
	free(m->slots);
	memset(m, 0, sizeof *m);
}

static struct hmap_slot *find(const struct hmap *m, const char *key, unsigned h)
{
	if (!m->cap)
		return NULL;
	size_t mask = m->cap - 1;
	for (size_t i = h & mask;; i = (i + 1) & mask) {
		struct hmap_slot *s = &m->slots[i];
		if (!s->key)
			return NULL;
		if (s->key != HMAP_TOMBSTONE && s->hash == h && !strcmp(s->key, key))
			return s;
	}
}

static void grow(struct hmap *m)
{
	size_t ncap = m->cap ? m->cap * 2 : 16;
	if (m->count * 4 < m->cap)
		ncap = m->cap; /* mostly tombstones: rehash in place size */
	struct hmap_slot *old = m->slots;
	size_t ocap = m->cap;
	m->slots = xcalloc(ncap, sizeof *m->slots);
	m->cap = ncap;
	m->used = m->count;
	for (size_t i = 0; i < ocap; i++) {
		struct hmap_slot *s = &old[i];
		if (!s->key || s->key == HMAP_TOMBSTONE)
			continue;
		size_t mask = ncap - 1, j = s->hash & mask;
		while (m->slots[j].key)
			j = (j + 1) & mask;
		m->slots[j] = *s;
	}
	free(old);
}

void *hmap_get(const struct hmap *m, const char *key)
{
	struct hmap_slot *s = find(m, key, hash_str(key));
	return s ? s->value : NULL;
}

void *hmap_put(struct hmap *m, const char *key, void *value)
{
	unsigned h = hash_str(key);
	struct hmap_slot *s = find(m, key, h);
	if (s) {
		void *old = s->value;
		s->value = value;
		return old;
	}
	if ((m->used + 1) * 4 >= m->cap * 3)
		grow(m);
	size_t mask = m->cap - 1, i = h & mask;
	while (m->slots[i].key && m->slots[i].key != HMAP_TOMBSTONE)
		i = (i + 1) & mask;
	if (!m->slots[i].key)
		m->used++;
	m->slots[i].key = m->borrow ? (char *)key : xstrdup(key);
	m->slots[i].value = value;
	m->slots[i].hash = h;
	m->count++;
	return NULL;
}

void *hmap_del(struct hmap *m, const char *key)
{
	struct hmap_slot *s = find(m, key, hash_str(key));
	if (!s)
		return NULL;
	void *v = s->value;
	if (!m->borrow)
		free(s->key);
	s->key = HMAP_TOMBSTONE;
	s->value = NULL;
	m->count--;
	return v;
}

int hmap_next(const struct hmap *m, size_t *it, const char **key, void **value)
{
	while (*it < m->cap) {
		struct hmap_slot *s = &m->slots[(*it)++];
		if (s->key && s->key != HMAP_TOMBSTONE) {
			if (key)
				*key = s->key;
			if (value)
				*value = s->value;
			return 1;
		}
	}
	return 0;
}
