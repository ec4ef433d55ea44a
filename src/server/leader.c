#include "server/leader.h"

#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/base64.h"
#include "core/log.h"
#include "store/etcd_client.h"

struct leader {
	/* The election's own client (its own connection): it runs on the
	 * election thread, apart from the store's. */
	struct etcd_client *etcd;
	char *key_b64;
	char *self_url;
	int64_t ttl_ms;
	struct leader_callbacks cb;
	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t poked; /* a follower: look at the key now */
	bool poke;
	char *leader_url;
	_Atomic bool is_me;
	_Atomic bool stopping;
	/* When the request that last renewed the lease was sent: etcd renewed
	 * it no earlier, so the lease holds until at least renewed + ttl. */
	_Atomic int64_t renewed_mono;
	char lease_id[32];
};

/* A leader that cannot renew its lease for this many TTLs steps down. */
#define LEASE_GIVE_UP_TTLS 4

/* POST a JSON body (the reference is taken) to <api>/<what>, each endpoint
 * tried once for at most timeout_ms (etcd_client.h); the answer, or NULL.
 * The API prefix is found on the first call that gets through. */
static json_t *etcd_post_timeout(struct leader *l, const char *what, json_t *body,
				 int64_t timeout_ms)
{
	struct berr err;
	json_t *reply = NULL;
	if (!etcd_client_api(l->etcd) &&
	    etcd_client_detect(l->etcd, (long)timeout_ms, true, &err) < 0) {
		json_decref(body);
		return NULL;
	}
	if (etcd_client_call_json(l->etcd, what, body, (long)timeout_ms, true, &reply, &err) < 0)
		return NULL;
	return reply;
}

static json_t *etcd_post(struct leader *l, const char *what, json_t *body)
{
	return etcd_post_timeout(l, what, body, l->ttl_ms / 2 + 200);
}

static bool grant_lease(struct leader *l)
{
	long ttl_s = (long)((l->ttl_ms + 999) / 1000);
	json_t *r = etcd_post(l, "lease/grant", json_pack("{s:I}", "TTL", (json_int_t)ttl_s));
	const char *id = r ? json_string_value(json_object_get(r, "ID")) : NULL;
	bool ok = id && *id;
	if (ok)
		snprintf(l->lease_id, sizeof l->lease_id, "%s", id);
	json_decref(r);
	return ok;
}

/* Returns 1 won (*revision: etcd's revision of the win), 0 lost
 * (leader_url updated), -1 error. */
static int campaign(struct leader *l, int64_t *revision)
{
	char *val = base64_encode(l->self_url, strlen(l->self_url));
	json_t *body =
	    json_pack("{s:[{s:s,s:s,s:s,s:s}],s:[{s:{s:s,s:s,s:s}}],s:[{s:{s:s}}]}", "compare",
		      "key", l->key_b64, "target", "CREATE", "result", "EQUAL", "create_revision",
		      "0", "success", "request_put", "key", l->key_b64, "value", val, "lease",
		      l->lease_id, "failure", "request_range", "key", l->key_b64);
	free(val);
	json_t *r = etcd_post(l, "kv/txn", body);
	if (!r)
		return -1;
	int won = json_is_true(json_object_get(r, "succeeded"));
	char *url = NULL;
	if (won) {
		url = xstrdup(l->self_url);
		/* proto3 JSON: int64 as a string */
		const char *rev =
		    json_string_value(json_object_get(json_object_get(r, "header"), "revision"));
		*revision = rev ? atoll(rev) : 0;
	} else {
		json_t *kvs = json_object_get(
		    json_object_get(json_array_get(json_object_get(r, "responses"), 0),
				    "response_range"),
		    "kvs");
		const char *v = json_string_value(json_object_get(json_array_get(kvs, 0), "value"));
		size_t n;
		if (v && base64_decode(v, strlen(v), &url, &n) < 0)
			url = NULL;
	}
	json_decref(r);
	pthread_mutex_lock(&l->lock);
	free(l->leader_url);
	l->leader_url = url;
	pthread_mutex_unlock(&l->lock);
	return won;
}

enum renewal { RENEW_OK, RENEW_GONE, RENEW_UNKNOWN };

/* One keepalive, each endpoint tried for a short while: while etcd elects a
 * new raft leader no member can renew, and the next try comes soon. */
static enum renewal keepalive(struct leader *l)
{
	json_t *r = etcd_post_timeout(l, "lease/keepalive", json_pack("{s:s}", "ID", l->lease_id),
				      l->ttl_ms / 4);
	if (!r)
		return RENEW_UNKNOWN;
	json_t *res = json_object_get(r, "result");
	const char *ttl = res ? json_string_value(json_object_get(res, "TTL")) : NULL;
	/* An answer without a TTL, or 0: etcd has no such lease any more. */
	enum renewal v = res && !json_object_get(r, "error")
			     ? (ttl && atol(ttl) > 0 ? RENEW_OK : RENEW_GONE)
			     : RENEW_UNKNOWN;
	json_decref(r);
	return v;
}

static void sleep_ms(int64_t ms)
{
	usleep((useconds_t)(ms * 1000));
}

/* A follower's wait before it looks at the key again; leader_poke ends it. */
static void follower_wait(struct leader *l, int64_t ms)
{
	struct timespec ts = time_deadline_ms(ms);
	pthread_mutex_lock(&l->lock);
	while (!l->poke && !l->stopping)
		if (pthread_cond_timedwait(&l->poked, &l->lock, &ts) != 0)
			break;
	l->poke = false;
	pthread_mutex_unlock(&l->lock);
}

void leader_poke(struct leader *l)
{
	pthread_mutex_lock(&l->lock);
	l->poke = true;
	pthread_cond_signal(&l->poked);
	pthread_mutex_unlock(&l->lock);
}

static void *leader_main(void *arg)
{
	struct leader *l = arg;
	while (!l->stopping) {
		int64_t granted = time_mono_ms();
		if (!grant_lease(l)) {
			sleep_ms(200);
			continue;
		}
		int64_t revision = 0;
		int r = campaign(l, &revision);
		if (r < 0) {
			sleep_ms(200);
			continue;
		}
		if (r == 0) {
			/* A follower: look again soon, or at once when poked (the
			 * server's replica saw the key go with the leader's lease). */
			follower_wait(l, l->ttl_ms / 8 > 50 ? l->ttl_ms / 8 : 50);
			continue;
		}
		l->renewed_mono = granted;
		l->is_me = true;
		log_info("elected leader (%s) at revision %lld", l->self_url, (long long)revision);
		if (l->cb.elected)
			l->cb.elected(l->cb.ud, revision);
		while (!l->stopping) {
			int64_t since = time_mono_ms() - l->renewed_mono;
			/* Every ttl/4 while renewals work; every 100 ms once one
			 * is late. */
			sleep_ms(since < l->ttl_ms / 4 ? l->ttl_ms / 4 - since : 100);
			int64_t sent = time_mono_ms();
			enum renewal v = keepalive(l);
			if (v == RENEW_OK) {
				l->renewed_mono = sent;
				continue;
			}
			/* Past 3/4 of the TTL the server holds every write and
			 * every answer to agents (leader_lease_fresh); commits are
			 * fenced anyway. Leadership is over when etcd says the
			 * lease is gone, or when it could not be renewed for a
			 * long while (etcd out of reach: a follower may lead). */
			if (v == RENEW_GONE ||
			    time_mono_ms() - l->renewed_mono >= l->ttl_ms * LEASE_GIVE_UP_TTLS) {
				l->is_me = false;
				log_error("lost the leader lease: stopping");
				if (l->cb.lost)
					l->cb.lost(l->cb.ud);
				return NULL;
			}
		}
	}
	return NULL;
}

struct leader *leader_start(const char *location, const char *self_url, int64_t ttl_ms,
			    const struct leader_callbacks *cb, struct berr *err)
{
	if (strncmp(location, "etcd://", 7))
		return berr_set(err, 400, "leader election needs an etcd store, not '%s'",
				location),
		       NULL;
	struct etcd_client *etcd = etcd_client_new(location, err);
	if (!etcd) {
		if (err)
			err->code = 400;
		return NULL;
	}
	struct leader *l = xcalloc(1, sizeof *l);
	l->etcd = etcd;
	/* The store's own key layout (etcd_key): "PREFIX/" + key. */
	size_t klen;
	char *key = etcd_key(etcd, "meta/leader", strlen("meta/leader"), false, &klen);
	l->key_b64 = base64_encode(key, klen);
	free(key);
	l->self_url = xstrdup(self_url);
	l->ttl_ms = ttl_ms < 1000 ? 1000 : ttl_ms;
	if (cb)
		l->cb = *cb;
	pthread_mutex_init(&l->lock, NULL);
	pthread_cond_init(&l->poked, NULL);
	if (pthread_create(&l->thread, NULL, leader_main, l) != 0) {
		pthread_mutex_destroy(&l->lock);
		pthread_cond_destroy(&l->poked);
		etcd_client_free(l->etcd);
		free(l->key_b64);
		free(l->self_url);
		free(l);
		return berr_set(err, 500, "cannot start the election thread"), NULL;
	}
	return l;
}

char *leader_current(struct leader *l)
{
	pthread_mutex_lock(&l->lock);
	char *u = l->leader_url ? xstrdup(l->leader_url) : NULL;
	pthread_mutex_unlock(&l->lock);
	return u;
}

bool leader_is_me(struct leader *l)
{
	return l->is_me;
}

bool leader_lease_fresh(struct leader *l)
{
	return l->is_me && time_mono_ms() - l->renewed_mono < l->ttl_ms * 3 / 4;
}

void leader_stop(struct leader *l)
{
	if (!l)
		return;
	pthread_mutex_lock(&l->lock);
	l->stopping = true;
	pthread_cond_signal(&l->poked);
	pthread_mutex_unlock(&l->lock);
	pthread_join(l->thread, NULL);
	if (l->is_me && l->lease_id[0]) {
		json_t *r = etcd_post(l, "lease/revoke", json_pack("{s:s}", "ID", l->lease_id));
		json_decref(r);
	}
	etcd_client_free(l->etcd);
	free(l->key_b64);
	free(l->self_url);
	free(l->leader_url);
	pthread_mutex_destroy(&l->lock);
	pthread_cond_destroy(&l->poked);
	free(l);
}
