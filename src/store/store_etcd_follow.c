/* store_etcd_follow.c - store_follow on etcd: an HA follower's replica.
 *
 * RESET, a copy of every key read by one scan (pinned to the revision of
 * its first page, R), SYNCED at R, then POST <api>/watch of the whole prefix
 * from R + 1 on a curl handle of its own; the gateway streams one JSON
 * message per line, and each message's events go to fn as one call, with the
 * highest mod_revision among them. A watch that ends or fails is made again
 * on the next endpoint from the revision after the last one handed out; one
 * that etcd cancels because that revision was compacted starts over with
 * RESET and a new copy (docs/store.md, "Following").
 *
 *   step    ends with     then
 *   copy    F_OK          watch from R + 1
 *           F_FAILED      pause FOLLOW_COPY_RETRY_MS, copy again
 *   watch   F_FAILED      pause FOLLOW_RETRY_MS, next endpoint, watch from
 *                         the last revision handed out + 1
 *           F_COMPACTED   copy again (RESET)
 *   either  F_STOPPED     return 0
 *           F_FN          return fn's answer
 */
#include "store/store_etcd-internal.h"

#include <curl/curl.h>
#include <jansson.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "store/etcd_client.h"
#include "store/store-internal.h"

/* Changes per call during the copy (and bytes, so a page of big values
 * stays bounded). */
#define FOLLOW_PAGE 1024
#define FOLLOW_PAGE_BYTES (16u << 20)
/* The pause before watching again after a failure, and before copying again
 * when no endpoint answered. */
#define FOLLOW_RETRY_MS 100
#define FOLLOW_COPY_RETRY_MS 200
/* The longest wait for the network between two looks at *stop. */
#define FOLLOW_POLL_MS 100

/* What a step of following ended with. */
enum fstep {
	F_OK,	     /* the copy is done */
	F_STOPPED,   /* *stop was set */
	F_FN,	     /* fn returned non-zero (follow.fn_result) */
	F_FAILED,    /* no answer, the stream ended, an error: try again */
	F_COMPACTED, /* the watch's start revision is gone: copy again */
	F_GOING,     /* the watch is still running */
};

/* Changes on their way to fn. Keys and values are copied into one arena
 * (as offsets: it moves when it grows); the pointers fn gets are made when
 * they are handed over. */
struct fchange {
	size_t key, value, len;
	bool deleted;
};
struct changes {
	struct sbuf arena;
	struct fchange *v;
	struct store_change *out;
	size_t n, cap;
};

struct follow {
	struct store *st;
	struct etcd_client *etcd;
	const char *prefix; /* the store's, "" or "name/" */
	size_t prefix_len;
	store_follow_fn fn;
	void *ud;
	const _Atomic bool *stop;
	int fn_result;	  /* fn's non-zero answer (F_FN) */
	int64_t last_rev; /* the revision the replica was last taken to */
	struct changes ch;
	struct sbuf kb, vb; /* decoded key and value of one event */
	/* The watch: its own handles, so that the client's stays free for
	 * the copy. */
	CURL *h;
	CURLM *multi;
	struct curl_slist *headers;
	char *url;
	struct sbuf body;
	struct sbuf in;	 /* the stream: bytes after the last whole message */
	size_t scanned;	 /* in.buf[0..scanned) holds no '\n' */
	long status;	 /* the answer's HTTP status, once known */
	enum fstep step; /* F_GOING while the watch runs */
};

static void changes_add(struct changes *c, const char *key, size_t klen, const char *value,
			size_t len, bool deleted)
{
	if (c->n == c->cap) {
		c->cap = c->cap ? c->cap * 2 : 256;
		c->v = xrealloc(c->v, c->cap * sizeof *c->v);
		c->out = xrealloc(c->out, c->cap * sizeof *c->out);
	}
	struct fchange *f = &c->v[c->n++];
	f->key = c->arena.len;
	sbuf_add(&c->arena, key, klen);
	sbuf_add(&c->arena, "", 1);
	f->value = c->arena.len;
	f->len = deleted ? 0 : len;
	f->deleted = deleted;
	if (!deleted) {
		sbuf_add(&c->arena, value, len);
		sbuf_add(&c->arena, "", 1);
	}
}

static void changes_clear(struct changes *c)
{
	c->n = 0;
	c->arena.len = 0;
	c->arena.buf[0] = 0;
}

/* Hand the pending changes to fn (none: no call); fn's answer. */
static int changes_flush(struct follow *f, int64_t rev)
{
	struct changes *c = &f->ch;
	if (!c->n)
		return 0;
	for (size_t i = 0; i < c->n; i++) {
		c->out[i].key = c->arena.buf + c->v[i].key;
		c->out[i].value = c->v[i].deleted ? NULL : c->arena.buf + c->v[i].value;
		c->out[i].len = c->v[i].len;
	}
	int r = f->fn(f->ud, STORE_FOLLOW_CHANGES, c->out, c->n, rev);
	changes_clear(c);
	return r;
}

static bool stopped(const struct follow *f)
{
	return atomic_load(f->stop);
}

/* Sleep ms, or less when *stop is set meanwhile. */
static void follow_pause(const struct follow *f, int ms)
{
	int64_t end = time_mono_ms() + ms;
	while (!stopped(f)) {
		int64_t left = end - time_mono_ms();
		if (left <= 0)
			break;
		struct timespec ts = {0, (left < 50 ? left : 50) * 1000000L};
		nanosleep(&ts, NULL);
	}
}

/* The copy's scan callback: pages of changes to fn. Non-zero stops the
 * scan; why is in f (fn_result or *stop). */
static int copy_cb(const char *key, const char *value, size_t len, void *ud)
{
	struct follow *f = ud;
	changes_add(&f->ch, key, strlen(key), value, len, false);
	if (f->ch.n < FOLLOW_PAGE && f->ch.arena.len < FOLLOW_PAGE_BYTES)
		return 0;
	f->fn_result = changes_flush(f, etcd_store_scan_revision(f->st));
	if (f->fn_result || stopped(f))
		return 1;
	return 0;
}

/* RESET, every key of the store at one revision, SYNCED. */
static enum fstep follow_copy(struct follow *f)
{
	if ((f->fn_result = f->fn(f->ud, STORE_FOLLOW_RESET, NULL, 0, 0)))
		return F_FN;
	changes_clear(&f->ch);
	struct berr err = {0};
	/* A request in progress gives up once *stop is set. */
	etcd_client_stop_on(f->etcd, f->stop);
	int r = etcd_store_scan(f->st, "", copy_cb, f, &err);
	etcd_client_stop_on(f->etcd, NULL);
	if (f->fn_result)
		return F_FN;
	if (stopped(f))
		return F_STOPPED;
	int64_t rev = etcd_store_scan_revision(f->st);
	if (r != 0 || rev <= 0) {
		changes_clear(&f->ch);
		return F_FAILED;
	}
	if ((f->fn_result = changes_flush(f, rev)) ||
	    (f->fn_result = f->fn(f->ud, STORE_FOLLOW_SYNCED, NULL, 0, rev)))
		return F_FN;
	f->last_rev = rev;
	return F_OK;
}

/* One message of the watch stream (a line of JSON): its events to fn. Sets
 * f->step when the watch is over. */
static void follow_message(struct follow *f, const char *line, size_t n)
{
	while (n > 0 && (line[n - 1] == '\r' || line[n - 1] == ' '))
		n--;
	if (n == 0)
		return;
	json_t *j = json_loadb(line, n, 0, NULL);
	json_t *res = json_object_get(j, "result");
	if (!json_is_object(res)) {
		/* {"error": ...}: the stream is over. */
		f->step = F_FAILED;
		json_decref(j);
		return;
	}
	if (json_is_true(json_object_get(res, "canceled"))) {
		f->step = etcd_int64(json_object_get(res, "compact_revision")) > 0 ? F_COMPACTED
										   : F_FAILED;
		json_decref(j);
		return;
	}
	json_t *events = json_object_get(res, "events");
	int64_t rev = 0;
	changes_clear(&f->ch);
	for (size_t i = 0; i < json_array_size(events); i++) {
		json_t *ev = json_array_get(events, i), *kv = json_object_get(ev, "kv");
		const char *type = json_string_value(json_object_get(ev, "type"));
		bool deleted = type && !strcmp(type, "DELETE");
		if (etcd_kv_bytes(kv, "key", &f->kb) < 0 ||
		    (!deleted && etcd_kv_bytes(kv, "value", &f->vb) < 0)) {
			f->step = F_FAILED;
			changes_clear(&f->ch);
			json_decref(j);
			return;
		}
		int64_t mod = etcd_int64(json_object_get(kv, "mod_revision"));
		if (mod > rev)
			rev = mod;
		if (f->kb.len < f->prefix_len || memcmp(f->kb.buf, f->prefix, f->prefix_len))
			continue;
		changes_add(&f->ch, f->kb.buf + f->prefix_len, f->kb.len - f->prefix_len, f->vb.buf,
			    f->vb.len, deleted);
	}
	/* Not the header's revision: while a watch catches up, etcd sends
	 * the events of up to 1000 revisions per message with the current
	 * revision in the header, and more messages follow. */
	if (rev <= 0 && f->ch.n)
		rev = etcd_int64(json_object_get(json_object_get(res, "header"), "revision"));
	json_decref(j);
	if (rev <= f->last_rev) {
		changes_clear(&f->ch);
		return;
	}
	if ((f->fn_result = changes_flush(f, rev))) {
		f->step = F_FN;
		return;
	}
	f->last_rev = rev;
}

/* The watch's write callback: cut the stream into lines, each parsed once.
 * Returning less than it got aborts the transfer. */
static size_t follow_on_body(char *data, size_t size, size_t n, void *ud)
{
	struct follow *f = ud;
	size_t len = size * n;
	if (!f->status)
		curl_easy_getinfo(f->h, CURLINFO_RESPONSE_CODE, &f->status);
	if (f->status != 200) {
		f->step = F_FAILED;
		return 0;
	}
	sbuf_add(&f->in, data, len);
	size_t start = 0;
	char *nl;
	while (f->step == F_GOING &&
	       (nl = memchr(f->in.buf + f->scanned, '\n', f->in.len - f->scanned))) {
		size_t end = (size_t)(nl - f->in.buf);
		follow_message(f, f->in.buf + start, end - start);
		start = f->scanned = end + 1;
	}
	if (f->step != F_GOING)
		return 0;
	/* Keep what is left of a message; no '\n' in it. */
	memmove(f->in.buf, f->in.buf + start, f->in.len - start);
	f->in.len -= start;
	f->in.buf[f->in.len] = 0;
	f->scanned = f->in.len;
	return len;
}

/* Watch the store's keys from f->last_rev + 1 on the current endpoint until
 * the watch is over: F_STOPPED, F_FN, F_COMPACTED or F_FAILED. */
static enum fstep follow_watch(struct follow *f)
{
	size_t start_len;
	char *start = etcd_key(f->etcd, "", 0, false, &start_len);
	char *end = start_len == 1 && start[0] == 0 ? NULL : store_prefix_end(start);
	f->body.len = 0;
	f->body.buf[0] = 0;
	sbuf_adds(&f->body, "{\"create_request\":{");
	etcd_add_raw(&f->body, "key", start, start_len);
	sbuf_adds(&f->body, ",");
	etcd_add_raw(&f->body, "range_end", end, end ? strlen(end) : 0);
	sbuf_addf(&f->body, ",\"start_revision\":%lld}}", (long long)(f->last_rev + 1));
	free(start);
	free(end);

	free(f->url);
	f->url = etcd_client_url(f->etcd, "watch");
	curl_easy_setopt(f->h, CURLOPT_URL, f->url);
	curl_easy_setopt(f->h, CURLOPT_POSTFIELDS, f->body.buf);
	curl_easy_setopt(f->h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)f->body.len);
	f->in.len = 0;
	f->in.buf[0] = 0;
	f->scanned = 0;
	f->status = 0;
	f->step = F_GOING;
	curl_multi_add_handle(f->multi, f->h);
	for (;;) {
		int running = 0;
		curl_multi_perform(f->multi, &running);
		if (f->step != F_GOING)
			break;
		if (!running) {
			f->step = F_FAILED; /* the stream ended */
			break;
		}
		if (stopped(f)) {
			f->step = F_STOPPED;
			break;
		}
		curl_multi_poll(f->multi, NULL, 0, FOLLOW_POLL_MS, NULL);
	}
	curl_multi_remove_handle(f->multi, f->h);
	return f->step;
}

int etcd_store_follow(struct store *st, store_follow_fn fn, void *ud, const _Atomic bool *stop,
		      struct berr *err)
{
	struct etcd_client *etcd = etcd_store_client(st);
	const struct etcd_location *loc = etcd_client_location(etcd);
	struct follow f = {.st = st,
			   .etcd = etcd,
			   .prefix = loc->prefix,
			   .prefix_len = loc->prefix_len,
			   .fn = fn,
			   .ud = ud,
			   .stop = stop};
	sbuf_init(&f.ch.arena);
	sbuf_init(&f.kb);
	sbuf_init(&f.vb);
	sbuf_init(&f.body);
	sbuf_init(&f.in);
	f.h = curl_easy_init();
	f.multi = curl_multi_init();
	int r = 0;
	if (!f.h || !f.multi) {
		r = berr_set(err, 0, "store: cannot follow '%s': cannot create a curl handle",
			     st->location);
		goto out;
	}
	/* hasleader: etcd ends the watch when its member loses the leader
	 * (the gateway passes Grpc-Metadata-* headers on as gRPC metadata),
	 * instead of leaving it silent on the minority side of a partition. */
	f.headers = curl_slist_append(NULL, "Content-Type: application/json");
	f.headers = curl_slist_append(f.headers, "Expect:");
	f.headers = curl_slist_append(f.headers, "Grpc-Metadata-hasleader: true");
	etcd_client_setup_handle(etcd, f.h, NULL);
	curl_easy_setopt(f.h, CURLOPT_HTTPHEADER, f.headers);
	curl_easy_setopt(f.h, CURLOPT_WRITEFUNCTION, follow_on_body);
	curl_easy_setopt(f.h, CURLOPT_WRITEDATA, &f);
	curl_easy_setopt(f.h, CURLOPT_POST, 1L);
	/* A watch lasts as long as it may; a member that vanished without a
	 * word (power, network) is noticed by TCP keepalives in seconds. */
	curl_easy_setopt(f.h, CURLOPT_TIMEOUT_MS, 0L);
	curl_easy_setopt(f.h, CURLOPT_TCP_KEEPALIVE, 1L);
	curl_easy_setopt(f.h, CURLOPT_TCP_KEEPIDLE, 2L);
	curl_easy_setopt(f.h, CURLOPT_TCP_KEEPINTVL, 1L);

	bool copy = true;
	enum fstep step = F_STOPPED;
	while (!stopped(&f)) {
		if (copy) {
			step = follow_copy(&f);
			if (step == F_FAILED) {
				follow_pause(&f, FOLLOW_COPY_RETRY_MS);
				continue;
			}
			if (step != F_OK)
				break;
			copy = false;
		}
		step = follow_watch(&f);
		if (step == F_COMPACTED) {
			copy = true;
		} else if (step == F_FAILED) {
			follow_pause(&f, FOLLOW_RETRY_MS);
			etcd_client_next_endpoint(etcd);
		} else {
			break;
		}
	}
	r = step == F_FN ? f.fn_result : 0;

out:
	if (f.h)
		curl_easy_cleanup(f.h);
	if (f.multi)
		curl_multi_cleanup(f.multi);
	curl_slist_free_all(f.headers);
	free(f.url);
	free(f.ch.v);
	free(f.ch.out);
	sbuf_release(&f.ch.arena);
	sbuf_release(&f.kb);
	sbuf_release(&f.vb);
	sbuf_release(&f.body);
	sbuf_release(&f.in);
	return r;
}
