/* tokens.c - the cluster's tokens (tokens.h). */
#include "server/tokens.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/hmap.h"
#include "core/pki.h"
#include "core/util.h"

struct token_table {
	pthread_rwlock_t lock;
	struct hmap by_id;   /* id -> struct token_rec */
	struct hmap revoked; /* id -> (void *)1: deleted here, never fetched back */
	double fetch_budget; /* store look-ups left (token_table_may_fetch) */
	int64_t fetch_ms;    /* when the budget was last refilled */
};

static bool all_hex(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return false;
	return true;
}

/* Copy one '.'-separated field of exactly n hex characters. */
static const char *hex_field(const char *p, size_t n, char *out, char end)
{
	if (strlen(p) < n || !all_hex(p, n) || p[n] != end)
		return NULL;
	memcpy(out, p, n);
	out[n] = 0;
	return p + n + (end ? 1 : 0);
}

int token_parse(const char *text, enum token_kind *kind, char id[TOKEN_ID_LEN + 1],
		char secret[TOKEN_SECRET_LEN + 1], char cafp[65])
{
	if (!text)
		return -1;
	const char *p;
	cafp[0] = 0;
	if (!strncmp(text, "bt1.", 4)) {
		*kind = TOKEN_ROLE; /* admin or role: the record says which */
		p = text + 4;
	} else if (!strncmp(text, "bj1.", 4)) {
		*kind = TOKEN_JOIN;
		p = hex_field(text + 4, 64, cafp, '.');
		if (!p)
			return -1;
	} else {
		return -1;
	}
	p = hex_field(p, TOKEN_ID_LEN, id, '.');
	if (!p)
		return -1;
	p = hex_field(p, TOKEN_SECRET_LEN, secret, 0);
	return p && !*p ? 0 : -1;
}

struct token_table *token_table_new(void)
{
	struct token_table *tt = xcalloc(1, sizeof *tt);
	pthread_rwlock_init(&tt->lock, NULL);
	hmap_init(&tt->by_id);
	hmap_init(&tt->revoked);
	tt->fetch_budget = TOKEN_FETCH_BURST;
	return tt;
}

void token_table_free(struct token_table *tt)
{
	if (!tt)
		return;
	size_t it = 0;
	void *v;
	while (hmap_next(&tt->by_id, &it, NULL, &v))
		free(v);
	hmap_release(&tt->by_id);
	hmap_release(&tt->revoked);
	pthread_rwlock_destroy(&tt->lock);
	free(tt);
}

char *token_make(enum token_kind kind, const char *role, int64_t ttl_s, const char *cafp,
		 struct token_rec *rec)
{
	memset(rec, 0, sizeof *rec);
	char secret[TOKEN_SECRET_LEN + 1];
	pki_random_hex(rec->id, TOKEN_ID_LEN / 2);
	pki_random_hex(secret, TOKEN_SECRET_LEN / 2);
	rec->kind = kind;
	snprintf(rec->role, sizeof rec->role, "%s", role ? role : "");
	pki_sha256_hex(secret, TOKEN_SECRET_LEN, rec->hash);
	rec->created = time_now_ms() / 1000;
	rec->expires = ttl_s > 0 ? rec->created + ttl_s : 0;
	if (kind == TOKEN_JOIN)
		return xasprintf("bj1.%s.%s.%s", cafp, rec->id, secret);
	return xasprintf("bt1.%s.%s", rec->id, secret);
}

static const char *kind_name(enum token_kind k)
{
	return k == TOKEN_ADMIN ? "admin" : k == TOKEN_JOIN ? "join" : "role";
}

json_t *token_rec_json(const struct token_rec *rec)
{
	return json_pack("{s:s,s:s,s:s,s:s,s:I,s:I}", "id", rec->id, "kind", kind_name(rec->kind),
			 "role", rec->role, "hash", rec->hash, "created", (json_int_t)rec->created,
			 "expires", (json_int_t)rec->expires);
}

int token_rec_from_json(const char *text, size_t len, struct token_rec *rec)
{
	json_t *j = json_loadb(text, len, 0, NULL);
	memset(rec, 0, sizeof *rec);
	const char *id = json_string_value(json_object_get(j, "id"));
	const char *kind = json_string_value(json_object_get(j, "kind"));
	const char *role = json_string_value(json_object_get(j, "role"));
	const char *hash = json_string_value(json_object_get(j, "hash"));
	json_t *created = json_object_get(j, "created"), *expires = json_object_get(j, "expires");
	int r = -1;
	if (id && strlen(id) == TOKEN_ID_LEN && all_hex(id, TOKEN_ID_LEN) && kind && hash &&
	    strlen(hash) == 64 && all_hex(hash, 64) && (!role || strlen(role) < sizeof rec->role)) {
		memcpy(rec->id, id, TOKEN_ID_LEN + 1);
		memcpy(rec->hash, hash, 65);
		rec->kind = !strcmp(kind, "admin")  ? TOKEN_ADMIN
			    : !strcmp(kind, "join") ? TOKEN_JOIN
						    : TOKEN_ROLE;
		snprintf(rec->role, sizeof rec->role, "%s", role ? role : "");
		rec->created = json_is_integer(created) ? json_integer_value(created) : 0;
		rec->expires = json_is_integer(expires) ? json_integer_value(expires) : 0;
		r = rec->kind == TOKEN_ROLE && !*rec->role ? -1 : 0;
	}
	json_decref(j);
	return r;
}

void token_table_put(struct token_table *tt, const struct token_rec *rec)
{
	struct token_rec *copy = xmalloc(sizeof *copy);
	*copy = *rec;
	pthread_rwlock_wrlock(&tt->lock);
	free(hmap_put(&tt->by_id, copy->id, copy));
	pthread_rwlock_unlock(&tt->lock);
}

void token_table_clear(struct token_table *tt)
{
	pthread_rwlock_wrlock(&tt->lock);
	size_t it = 0;
	void *v;
	while (hmap_next(&tt->by_id, &it, NULL, &v))
		free(v);
	hmap_release(&tt->by_id);
	hmap_init(&tt->by_id);
	pthread_rwlock_unlock(&tt->lock);
}

bool token_table_delete(struct token_table *tt, const char *id)
{
	pthread_rwlock_wrlock(&tt->lock);
	void *old = hmap_del(&tt->by_id, id);
	/* Token ids are random and never reused: remembered for good, so a
	 * look-up in the store racing the delete's commit cannot bring the
	 * token back (token_table_adopt). */
	hmap_put(&tt->revoked, id, (void *)1);
	pthread_rwlock_unlock(&tt->lock);
	free(old);
	return old != NULL;
}

int token_table_check(struct token_table *tt, const char *text, int64_t now, struct token_rec *rec,
		      char *why, size_t whylen)
{
	enum token_kind kind;
	char id[TOKEN_ID_LEN + 1], secret[TOKEN_SECRET_LEN + 1], cafp[65];
	if (token_parse(text, &kind, id, secret, cafp) < 0) {
		snprintf(why, whylen, "not a berth token");
		return -1;
	}
	char hash[65];
	pki_sha256_hex(secret, TOKEN_SECRET_LEN, hash);
	pthread_rwlock_rdlock(&tt->lock);
	struct token_rec *r = hmap_get(&tt->by_id, id);
	bool ok = r && pki_equal_secret(r->hash, hash);
	if (ok)
		*rec = *r;
	pthread_rwlock_unlock(&tt->lock);
	if (!ok) {
		snprintf(why, whylen, "unknown or revoked token %s", id);
		return -1;
	}
	if ((kind == TOKEN_JOIN) != (rec->kind == TOKEN_JOIN)) {
		snprintf(why, whylen, "token %s is not of this kind", id);
		return -1;
	}
	if (rec->expires && now >= rec->expires) {
		snprintf(why, whylen, "token %s has expired", id);
		return -1;
	}
	return 0;
}

json_t *token_table_json(struct token_table *tt, int64_t now)
{
	json_t *a = json_array();
	pthread_rwlock_rdlock(&tt->lock);
	size_t it = 0;
	void *v;
	while (hmap_next(&tt->by_id, &it, NULL, &v)) {
		const struct token_rec *r = v;
		json_t *o = token_rec_json(r);
		json_object_del(o, "hash");
		json_object_set_new(o, "expired", json_boolean(r->expires && now >= r->expires));
		json_array_append_new(a, o);
	}
	pthread_rwlock_unlock(&tt->lock);
	return a;
}

bool token_table_has(struct token_table *tt, enum token_kind kind)
{
	bool found = false;
	pthread_rwlock_rdlock(&tt->lock);
	size_t it = 0;
	void *v;
	while (!found && hmap_next(&tt->by_id, &it, NULL, &v))
		found = ((struct token_rec *)v)->kind == kind;
	pthread_rwlock_unlock(&tt->lock);
	return found;
}

bool token_table_may_fetch(struct token_table *tt, const char *id, int64_t now_ms)
{
	bool ok = false;
	pthread_rwlock_wrlock(&tt->lock);
	if (!hmap_get(&tt->by_id, id) && !hmap_get(&tt->revoked, id)) {
		if (now_ms > tt->fetch_ms) {
			tt->fetch_budget +=
			    (double)(now_ms - tt->fetch_ms) * TOKEN_FETCH_PER_S / 1000.0;
			if (tt->fetch_budget > TOKEN_FETCH_BURST)
				tt->fetch_budget = TOKEN_FETCH_BURST;
		}
		tt->fetch_ms = now_ms > tt->fetch_ms ? now_ms : tt->fetch_ms;
		if (tt->fetch_budget >= 1) {
			tt->fetch_budget -= 1;
			ok = true;
		}
	}
	pthread_rwlock_unlock(&tt->lock);
	return ok;
}

bool token_table_adopt(struct token_table *tt, const struct token_rec *rec)
{
	struct token_rec *copy = xmalloc(sizeof *copy);
	*copy = *rec;
	pthread_rwlock_wrlock(&tt->lock);
	bool ok = !hmap_get(&tt->revoked, rec->id);
	if (ok)
		free(hmap_put(&tt->by_id, copy->id, copy));
	pthread_rwlock_unlock(&tt->lock);
	if (!ok)
		free(copy);
	return ok;
}

bool token_table_has_id(struct token_table *tt, const char *id)
{
	pthread_rwlock_rdlock(&tt->lock);
	bool found = hmap_get(&tt->by_id, id) != NULL;
	pthread_rwlock_unlock(&tt->lock);
	return found;
}

bool token_id_ok(const char *id)
{
	return id && strlen(id) == TOKEN_ID_LEN && all_hex(id, TOKEN_ID_LEN);
}
