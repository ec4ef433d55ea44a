/* store_etcd.c - the HA backend: an etcd v3 cluster through its JSON gateway.
 *
 * Location: etcd://HOST[:PORT][,HOST[:PORT]...][/PREFIX][?OPTION=VALUE&...]
 *   PORT defaults to 2379. PREFIX (a '/' is added when missing) puts every
 *   key of the store under "PREFIX/", so that several clusters (or test runs)
 *   can share one etcd. Options: max-txn-ops and max-request-bytes, to match
 *   an etcd started with larger --max-txn-ops / --max-request-bytes.
 *
 * Keys map one to one: store key K is etcd key PREFIX+K, its value the etcd
 * value. Requests are HTTP/JSON (keys and values base64) to the gateway etcd
 * serves on its client port: POST <api>/kv/range and <api>/kv/txn, where
 * <api> is /v3 (etcd >= 3.4), /v3beta (3.3) or /v3alpha (older), picked at
 * open from GET /version.
 *
 * A commit becomes etcd transactions (see docs/store.md): the batch is first
 * reduced to its net effect, because etcd refuses a txn that puts one key
 * twice or puts a key that a delete of the same txn covers. Per key, the last
 * op wins; a delete_prefix drops the earlier puts under it and its range is
 * cut around the later ones ([P, k) and [k"\0", end(P)): k"\0" is the first
 * key after k). The result is a set of ops that commute, so they can go in
 * one txn, or, past etcd's limits (128 ops, 1.5 MiB by default), in several
 * txns in any order: a batch split that way is not atomic as a whole. etcd
 * answers a txn once a quorum has it in its log (fsynced), so a commit that
 * returned is durable.
 *
 * Reads are linearizable range requests. A scan reads pages (limit, then
 * from the last key + "\0") pinned to the revision of its first page, so it
 * is one consistent snapshot however long it is.
 *
 * Following (store_follow, for HA followers' replicas): a copy of every key
 * by one scan, pinned to revision R, then POST <api>/watch of the whole
 * prefix from R + 1 on a handle of its own; the gateway streams one JSON
 * message per line, and each message's events go to fn as one call, with
 * the highest mod_revision among them. A watch that ends or fails is made
 * again on the next endpoint from the revision after the last one handed
 * out; one that etcd cancels because that revision was compacted starts
 * over with RESET and a new copy.
 *
 * Endpoints are tried in order from the last one that answered, on a
 * connection failure, when a member answers 503 (no leader, leader changed:
 * an election is in progress; retried for up to 10 s) and when a txn gets no
 * answer in time (TXN_TIMEOUT_MS). Sending a txn again is safe: it writes
 * final values, so applying it twice is applying it once.
 */
#include "store/store-internal.h"

#include <curl/curl.h>
#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define DEFAULT_PORT 2379
/* etcd's defaults for --max-txn-ops and --max-request-bytes. */
#define DEFAULT_MAX_TXN_OPS 128
#define DEFAULT_MAX_REQUEST_BYTES (1536 * 1024)
/* etcd limits the encoded (protobuf) size of a request: keys and values as
 * bytes plus framing. Per op: RequestOp, RequestPut or RequestDeleteRange and
 * two fields, each a tag and a length varint (at most 24 bytes); per txn: the
 * raft request header. Both rounded up. */
#define OP_OVERHEAD 32
#define TXN_OVERHEAD 1024
#define CONNECT_TIMEOUT_MS 2000L
#define REQUEST_TIMEOUT_MS 120000L
/* How long to keep trying while members answer "unavailable" (no leader,
 * leader changed, request timed out) or do not answer a txn in time: an etcd
 * election takes a second or two with the default --election-timeout. */
#define UNAVAILABLE_RETRY_MS 10000
/* A txn sent to a follower just as the leader dies is lost, and etcd only
 * says so after its own request timeout (7 s with default settings). So a
 * txn gets TXN_TIMEOUT_MS for its first try, twice that for the next, and
 * so on; a healthy txn, even of 1.5 MiB, takes tens of milliseconds. Sending
 * it again is safe (see the top of this file). */
#define TXN_TIMEOUT_MS 2000L
/* Scan pages: the limit starts small (most scans are small), doubles while
 * answers stay under PAGE_GROW_BYTES and halves above PAGE_SHRINK_BYTES.
 * etcd 3.4 walks the rest of the range in its index on every page, so few
 * large pages are much cheaper than many small ones on a big scan. */
#define PAGE_FIRST 512
#define PAGE_MIN 16
#define PAGE_MAX 16384
#define PAGE_GROW_BYTES (4u << 20)
#define PAGE_SHRINK_BYTES (32u << 20)
/* Requests in flight at once: the txns of a split commit (etcd puts
 * concurrent proposals in one raft round, one fsync) and a scan's next page,
 * fetched while the caller works through the current one. */
#define POOL 8

/* A request sent without waiting for its answer (curl multi). */
struct async {
	CURL *h;
	struct sbuf body, resp;
	char *url;
	size_t tag; /* the caller's: which txn */
	bool active, done;
	CURLcode rc;
};

struct etcd_store {
	CURL *curl;
	struct curl_slist *headers;
	char **endpoints; /* "host:port", as named in messages */
	char **urls;	  /* "http://host:port" */
	size_t n_endpoints;
	size_t cur; /* the endpoint that answered last */
	const char *api;
	char version[32];
	char *prefix; /* "" or "name/" */
	size_t prefix_len;
	size_t max_ops;
	size_t max_bytes;
	struct sbuf req;  /* the request body being built */
	struct sbuf resp; /* the answer being received */
	CURLM *multi;
	struct async pool[POOL];
	int scan_depth;	       /* only the outermost scan fetches ahead */
	int64_t last_scan_rev; /* the revision the last outermost scan read at */
	char *guard_key;       /* fencing: commits apply only while it holds guard_value */
	char *guard_value;
};

/* ---- base64 (RFC 4648, what protobuf's JSON mapping uses for bytes) ---- */

static const char b64_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static void buf_reserve(struct sbuf *sb, size_t extra)
{
	if (sb->len + extra + 1 <= sb->cap)
		return;
	size_t cap = sb->cap ? sb->cap : 64;
	while (sb->len + extra + 1 > cap)
		cap *= 2;
	sb->buf = xrealloc(sb->buf, cap);
	sb->cap = cap;
}

static void buf_reset(struct sbuf *sb)
{
	sb->len = 0;
	sb->buf[0] = 0;
}

static void b64_add(struct sbuf *sb, const void *data, size_t len)
{
	const unsigned char *p = data;
	size_t out = (len + 2) / 3 * 4;
	buf_reserve(sb, out);
	char *o = sb->buf + sb->len;
	size_t i = 0;
	for (; i + 3 <= len; i += 3) {
		uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8 | p[i + 2];
		*o++ = b64_alphabet[v >> 18];
		*o++ = b64_alphabet[(v >> 12) & 63];
		*o++ = b64_alphabet[(v >> 6) & 63];
		*o++ = b64_alphabet[v & 63];
	}
	if (len - i == 1) {
		uint32_t v = (uint32_t)p[i] << 16;
		*o++ = b64_alphabet[v >> 18];
		*o++ = b64_alphabet[(v >> 12) & 63];
		*o++ = '=';
		*o++ = '=';
	} else if (len - i == 2) {
		uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8;
		*o++ = b64_alphabet[v >> 18];
		*o++ = b64_alphabet[(v >> 12) & 63];
		*o++ = b64_alphabet[(v >> 6) & 63];
		*o++ = '=';
	}
	sb->len += out;
	sb->buf[sb->len] = 0;
}

/* The base64 of a followed by b, without building the concatenation: keys
 * are the store's prefix then the key. */
static void b64_add2(struct sbuf *sb, const char *a, size_t alen, const char *b, size_t blen)
{
	size_t whole = alen / 3 * 3;
	b64_add(sb, a, whole);
	unsigned char bridge[3] = {0};
	size_t nb = 0, took = 0;
	for (size_t i = whole; i < alen; i++)
		bridge[nb++] = (unsigned char)a[i];
	while (nb > 0 && nb < 3 && took < blen)
		bridge[nb++] = (unsigned char)b[took++];
	b64_add(sb, bridge, nb);
	if (nb == 0 || nb == 3)
		b64_add(sb, b + took, blen - took);
}

static int b64_value(unsigned char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	/* The URL-safe alphabet too: protobuf's JSON parsers accept both. */
	if (c == '+' || c == '-')
		return 62;
	if (c == '/' || c == '_')
		return 63;
	return -1;
}

/* Decode n characters of in onto out (which stays NUL-terminated). Padding
 * is optional; anything else that is not base64 is an error. 0 or -1. */
static int b64_decode_add(struct sbuf *out, const char *in, size_t n)
{
	size_t pad = 0;
	while (n > 0 && in[n - 1] == '=' && pad < 2) {
		n--;
		pad++;
	}
	if (n % 4 == 1 || (pad && (n + pad) % 4))
		return -1;
	buf_reserve(out, n / 4 * 3 + 2);
	unsigned char *o = (unsigned char *)out->buf + out->len;
	uint32_t acc = 0;
	int bits = 0;
	for (size_t i = 0; i < n; i++) {
		int v = b64_value((unsigned char)in[i]);
		if (v < 0)
			return -1;
		acc = (acc << 6 | (uint32_t)v) & 0xffffff;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			*o++ = (unsigned char)(acc >> bits);
		}
	}
	out->len = (size_t)((char *)o - out->buf);
	out->buf[out->len] = 0;
	return 0;
}

char *store_base64_encode(const void *data, size_t len)
{
	struct sbuf sb;
	sbuf_init(&sb);
	b64_add(&sb, data, len);
	return sbuf_detach(&sb);
}

int store_base64_decode(const char *in, size_t n, char **out, size_t *out_len)
{
	struct sbuf sb;
	sbuf_init(&sb);
	if (b64_decode_add(&sb, in, n) < 0) {
		sbuf_release(&sb);
		*out = NULL;
		*out_len = 0;
		return -1;
	}
	*out_len = sb.len;
	*out = sbuf_detach(&sb);
	return 0;
}

/* ---- the location ---- */

static void add_endpoint(struct etcd_store *e, const char *host, size_t n)
{
	char *ep = xstrndup(host, n);
	/* host, host:port, [v6] or [v6]:port */
	const char *colon = strrchr(ep, ':'), *bracket = strrchr(ep, ']');
	if (!colon || (bracket && colon < bracket) || (!bracket && strchr(ep, ':') != colon)) {
		char *with_port = xasprintf("%s:%d", ep, DEFAULT_PORT);
		free(ep);
		ep = with_port;
	}
	e->endpoints = xrealloc(e->endpoints, (e->n_endpoints + 1) * sizeof *e->endpoints);
	e->urls = xrealloc(e->urls, (e->n_endpoints + 1) * sizeof *e->urls);
	e->endpoints[e->n_endpoints] = ep;
	e->urls[e->n_endpoints] = xasprintf("http://%s", ep);
	e->n_endpoints++;
}

static int parse_option(struct etcd_store *e, const char *opt, size_t n, const char *location,
			struct berr *err)
{
	char *name = xstrndup(opt, n);
	char *eq = strchr(name, '=');
	if (eq)
		*eq = 0;
	size_t *field = !strcmp(name, "max-txn-ops")	     ? &e->max_ops
			: !strcmp(name, "max-request-bytes") ? &e->max_bytes
							     : NULL;
	int64_t v = 0;
	int r = 0;
	if (!field)
		r = berr_set(err, 0,
			     "store: unknown option '%s' in '%s' (known: max-txn-ops, "
			     "max-request-bytes)",
			     name, location);
	else if (!eq || parse_int64(eq + 1, &v) < 0 || v <= 0)
		r = berr_set(err, 0, "store: bad option '%.*s' in '%s' (expected %s=NUMBER)",
			     (int)n, opt, location, name);
	else if (field == &e->max_bytes && v < TXN_OVERHEAD + 4096)
		r = berr_set(err, 0, "store: max-request-bytes %lld is too small in '%s'",
			     (long long)v, location);
	else
		*field = (size_t)v;
	free(name);
	return r;
}

static int parse_location(struct etcd_store *e, const char *location, struct berr *err)
{
	const char *p = location;
	if (!strncmp(p, "etcd://", 7))
		p += 7;
	size_t hosts_len = strcspn(p, "/?");
	for (const char *h = p; h < p + hosts_len;) {
		const char *comma = memchr(h, ',', (size_t)(p + hosts_len - h));
		const char *end = comma ? comma : p + hosts_len;
		while (h < end && *h == ' ')
			h++;
		size_t n = (size_t)(end - h);
		while (n > 0 && h[n - 1] == ' ')
			n--;
		if (n == 0 || memchr(h, ' ', n) || memchr(h, '@', n))
			return berr_set(err, 0,
					"store: bad etcd location '%s' (expected "
					"etcd://HOST:PORT[,HOST:PORT...][/PREFIX])",
					location);
		add_endpoint(e, h, n);
		h = comma ? comma + 1 : end;
	}
	if (!e->n_endpoints)
		return berr_set(err, 0, "store: no etcd endpoint in '%s'", location);
	p += hosts_len;

	struct sbuf pre;
	sbuf_init(&pre);
	if (*p == '/') {
		p++;
		size_t n = strcspn(p, "?");
		sbuf_add(&pre, p, n);
		if (n && p[n - 1] != '/')
			sbuf_adds(&pre, "/");
		p += n;
	}
	e->prefix_len = pre.len;
	e->prefix = sbuf_detach(&pre);

	if (*p == '?') {
		p++;
		while (*p) {
			size_t n = strcspn(p, "&");
			if (n && parse_option(e, p, n, location, err) < 0)
				return -1;
			p += n;
			if (*p == '&')
				p++;
		}
	}
	return 0;
}

/* ---- HTTP ---- */

static size_t on_body(char *data, size_t size, size_t n, void *ud)
{
	sbuf_add(ud, data, size * n);
	return size * n;
}

static void lowercase_first(char *s)
{
	if (s[0] >= 'A' && s[0] <= 'Z' && !(s[1] >= 'A' && s[1] <= 'Z'))
		s[0] = (char)(s[0] - 'A' + 'a');
}

/* One request to one endpoint: the HTTP status, or -1 on a transport
 * failure (why says which). The answer is in e->resp. */
static long perform(struct etcd_store *e, size_t idx, const char *path, const char *body,
		    size_t len, bool *timed_out, char *why, size_t why_len)
{
	char *url = xasprintf("%s%s", e->urls[idx], path);
	curl_easy_setopt(e->curl, CURLOPT_URL, url);
	if (body) {
		curl_easy_setopt(e->curl, CURLOPT_POST, 1L);
		curl_easy_setopt(e->curl, CURLOPT_POSTFIELDS, body);
		curl_easy_setopt(e->curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
	} else {
		curl_easy_setopt(e->curl, CURLOPT_HTTPGET, 1L);
	}
	e->resp.len = 0;
	e->resp.buf[0] = 0;
	CURLcode rc = curl_easy_perform(e->curl);
	free(url);
	if (rc != CURLE_OK) {
		*timed_out = rc == CURLE_OPERATION_TIMEDOUT;
		snprintf(why, why_len, "%s", curl_easy_strerror(rc));
		lowercase_first(why);
		return -1;
	}
	long status = 0;
	curl_easy_getinfo(e->curl, CURLINFO_RESPONSE_CODE, &status);
	return status;
}

/* etcd's words for a non-200 answer: the gateway sends
 * {"error": ..., "message": ..., "code": grpc-code}. */
static void answer_message(struct etcd_store *e, long status, char *why, size_t why_len)
{
	json_t *j = json_loadb(e->resp.buf, e->resp.len, 0, NULL);
	const char *msg = json_string_value(json_object_get(j, "message"));
	if (!msg || !*msg)
		msg = json_string_value(json_object_get(j, "error"));
	if (msg && *msg) {
		snprintf(why, why_len, "%s", msg);
	} else {
		/* Not the gateway ("404 page not found", a proxy's page). */
		size_t n = e->resp.len;
		while (n > 0 && (e->resp.buf[n - 1] == '\n' || e->resp.buf[n - 1] == ' '))
			n--;
		snprintf(why, why_len, "HTTP %ld%s%.*s", status, n ? ": " : "",
			 (int)(n > 200 ? 200 : n), e->resp.buf);
	}
	json_decref(j);
}

/* POST body (len bytes) to path, or GET it when body is NULL, trying the
 * endpoints in order from the one that answered last; timeout_ms (0: no
 * short timeout) for the first round, doubled on each next. 0 with *out the
 * parsed answer, or -1 with err "etcd HOST:PORT: why" (one per endpoint
 * tried when none answered). *status gets the last HTTP status (0 when no
 * endpoint answered). */
static int call(struct etcd_store *e, const char *path, const char *body, size_t len,
		long timeout_ms, json_t **out, long *status, struct berr *err)
{
	int64_t deadline = time_mono_ms() + UNAVAILABLE_RETRY_MS;
	struct sbuf fails;
	sbuf_init(&fails);
	*out = NULL;
	if (status)
		*status = 0;
	for (;;) {
		bool unavailable = false;
		fails.len = 0;
		fails.buf[0] = 0;
		curl_easy_setopt(e->curl, CURLOPT_TIMEOUT_MS,
				 timeout_ms > 0 && timeout_ms < REQUEST_TIMEOUT_MS
				     ? timeout_ms
				     : REQUEST_TIMEOUT_MS);
		for (size_t k = 0; k < e->n_endpoints; k++) {
			size_t idx = (e->cur + k) % e->n_endpoints;
			char why[512];
			bool timed_out = false;
			long st = perform(e, idx, path, body, len, &timed_out, why, sizeof why);
			if (status)
				*status = st > 0 ? st : 0;
			if (st == 200) {
				json_error_t jerr;
				json_t *j = json_loadb(e->resp.buf, e->resp.len, 0, &jerr);
				e->cur = idx;
				sbuf_release(&fails);
				if (!json_is_object(j)) {
					json_decref(j);
					return berr_set(err, 0, "etcd %s: bad answer to %s: %s",
							e->endpoints[idx], path,
							j ? "not an object" : jerr.text);
				}
				*out = j;
				return 0;
			}
			if (st > 0)
				answer_message(e, st, why, sizeof why);
			sbuf_addf(&fails, "%setcd %s: %s", fails.len ? "; " : "", e->endpoints[idx],
				  why);
			if (st < 0) {
				/* Not reachable: the next one. No answer in time:
				 * that one too, and maybe again later. */
				unavailable |= timed_out && timeout_ms > 0;
				continue;
			}
			if (st == 503 || st == 504) {
				/* Reachable but without a leader: another member
				 * may have one, or will soon. */
				unavailable = true;
				continue;
			}
			/* An answer from the cluster (bad request, too large,
			 * not found): another member would say the same. */
			e->cur = idx;
			berr_set(err, 0, "etcd %s: %s", e->endpoints[idx], why);
			sbuf_release(&fails);
			return -1;
		}
		if (!unavailable || time_mono_ms() >= deadline)
			break;
		timeout_ms *= 2;
		struct timespec ts = {0, 200 * 1000 * 1000};
		nanosleep(&ts, NULL);
	}
	berr_set(err, 0, "%s", fails.buf);
	sbuf_release(&fails);
	return -1;
}

static void setup_handle(struct etcd_store *e, CURL *h, struct sbuf *resp)
{
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, e->headers);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, resp);
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, CONNECT_TIMEOUT_MS);
	curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, REQUEST_TIMEOUT_MS);
	curl_easy_setopt(h, CURLOPT_TCP_NODELAY, 1L);
	/* The endpoints are etcd members, never anything a proxy or a
	 * redirect leads to. */
	curl_easy_setopt(h, CURLOPT_PROXY, "");
	curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
}

/* ---- requests in flight ----
 * Sent to the endpoint that answered last, without failing over: whoever
 * waits for one (async_finish) redoes it with call() when it failed in any
 * way, which fails over and reports. */

static void async_start(struct etcd_store *e, struct async *a, const char *what)
{
	free(a->url);
	a->url = xasprintf("%s%s/%s", e->urls[e->cur], e->api, what);
	curl_easy_setopt(a->h, CURLOPT_URL, a->url);
	curl_easy_setopt(a->h, CURLOPT_POSTFIELDS, a->body.buf);
	curl_easy_setopt(a->h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)a->body.len);
	curl_easy_setopt(a->h, CURLOPT_TIMEOUT_MS,
			 strcmp(what, "kv/txn") ? REQUEST_TIMEOUT_MS : TXN_TIMEOUT_MS);
	buf_reset(&a->resp);
	a->active = true;
	a->done = false;
	a->rc = CURLE_OK;
	curl_multi_add_handle(e->multi, a->h);
	int running;
	curl_multi_perform(e->multi, &running);
}

/* Move the requests in flight along, waiting up to wait_ms for the network
 * when none can move now; finished ones are marked done. */
static void async_pump(struct etcd_store *e, int wait_ms)
{
	int running = 0, left;
	curl_multi_perform(e->multi, &running);
	if (running && wait_ms > 0) {
		curl_multi_poll(e->multi, NULL, 0, wait_ms, NULL);
		curl_multi_perform(e->multi, &running);
	}
	CURLMsg *m;
	while ((m = curl_multi_info_read(e->multi, &left))) {
		if (m->msg != CURLMSG_DONE)
			continue;
		struct async *a = NULL;
		curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&a);
		a->rc = m->data.result;
		a->done = true;
		curl_multi_remove_handle(e->multi, m->easy_handle);
	}
}

/* Wait for a: 0 with *out its parsed answer, -1 when it failed. */
static int async_finish(struct etcd_store *e, struct async *a, json_t **out)
{
	while (!a->done)
		async_pump(e, 1000);
	a->active = false;
	*out = NULL;
	long status = 0;
	if (a->rc == CURLE_OK)
		curl_easy_getinfo(a->h, CURLINFO_RESPONSE_CODE, &status);
	if (status != 200)
		return -1;
	json_t *j = json_loadb(a->resp.buf, a->resp.len, 0, NULL);
	if (!json_is_object(j)) {
		json_decref(j);
		return -1;
	}
	*out = j;
	return 0;
}

static void async_cancel(struct etcd_store *e, struct async *a)
{
	if (a->active && !a->done)
		curl_multi_remove_handle(e->multi, a->h);
	a->active = false;
}

/* call() on <api>/<what> with e->req as the body. */
static int api_call(struct etcd_store *e, const char *what, json_t **out, long *status,
		    struct berr *err)
{
	char path[64];
	snprintf(path, sizeof path, "%s/%s", e->api, what);
	return call(e, path, e->req.buf, e->req.len, strcmp(what, "kv/txn") ? 0 : TXN_TIMEOUT_MS,
		    out, status, err);
}

/* Append "name":"base64(prefix + key)". An empty etcd key is written as
 * "\0", the first key there is (etcd refuses an empty one). */
static void req_key(const struct etcd_store *e, struct sbuf *sb, const char *name, const char *key,
		    size_t len)
{
	sbuf_addf(sb, "\"%s\":\"", name);
	if (e->prefix_len + len == 0)
		b64_add(sb, "", 1);
	else
		b64_add2(sb, e->prefix, e->prefix_len, key, len);
	sbuf_adds(sb, "\"");
}

/* Append "name":"base64(raw)": raw is already a whole etcd key; NULL is the
 * open end of a range, "\0". */
static void req_raw(struct sbuf *sb, const char *name, const char *raw, size_t len)
{
	sbuf_addf(sb, "\"%s\":\"", name);
	if (raw)
		b64_add(sb, raw, len);
	else
		b64_add(sb, "", 1);
	sbuf_adds(sb, "\"");
}

static int64_t json_int64(json_t *v)
{
	/* proto3 JSON writes int64 as a string. */
	if (json_is_integer(v))
		return json_integer_value(v);
	int64_t n = 0;
	if (json_is_string(v) && parse_int64(json_string_value(v), &n) == 0)
		return n;
	return -1;
}

/* Decode kv[field] (base64; absent is empty: proto3 leaves out empty bytes)
 * into out. 0 or -1. */
static int kv_bytes(json_t *kv, const char *field, struct sbuf *out)
{
	out->len = 0;
	out->buf[0] = 0;
	json_t *v = json_object_get(kv, field);
	if (!v)
		return 0;
	if (!json_is_string(v))
		return -1;
	return b64_decode_add(out, json_string_value(v), json_string_length(v));
}

/* ---- open and close ---- */

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static void curl_init_once(void)
{
	curl_global_init(CURL_GLOBAL_ALL);
}

static void et_free(struct etcd_store *e)
{
	for (size_t i = 0; i < POOL; i++) {
		struct async *a = &e->pool[i];
		if (a->h) {
			async_cancel(e, a);
			curl_easy_cleanup(a->h);
		}
		sbuf_release(&a->body);
		sbuf_release(&a->resp);
		free(a->url);
	}
	if (e->multi)
		curl_multi_cleanup(e->multi);
	if (e->curl)
		curl_easy_cleanup(e->curl);
	curl_slist_free_all(e->headers);
	for (size_t i = 0; i < e->n_endpoints; i++) {
		free(e->endpoints[i]);
		free(e->urls[i]);
	}
	free(e->endpoints);
	free(e->urls);
	free(e->prefix);
	sbuf_release(&e->req);
	sbuf_release(&e->resp);
	free(e);
}

/* Pick the API prefix: from the server's version when /version answers,
 * else by trying each; then one read, which also checks that the cluster
 * has a leader. */
static int detect_api(struct etcd_store *e, struct berr *err)
{
	const char *cands[3] = {"/v3", "/v3beta", "/v3alpha"};
	size_t first = 0, last = 3;
	json_t *j = NULL;
	long status = 0;
	if (call(e, "/version", NULL, 0, 0, &j, &status, err) == 0) {
		const char *v = json_string_value(json_object_get(j, "etcdserver"));
		int major = 0, minor = 0;
		if (v && sscanf(v, "%d.%d", &major, &minor) == 2) {
			snprintf(e->version, sizeof e->version, "%s", v);
			first = major > 3 || (major == 3 && minor >= 4) ? 0 : minor == 3 ? 1 : 2;
			last = first + 1;
		}
		json_decref(j);
	} else if (status != 404) {
		return -1;
	}
	for (size_t i = first; i < last; i++) {
		e->api = cands[i];
		buf_reset(&e->req);
		sbuf_adds(&e->req, "{");
		req_key(e, &e->req, "key", "", 0);
		sbuf_adds(&e->req, ",\"limit\":1,\"keys_only\":true}");
		if (api_call(e, "kv/range", &j, &status, err) == 0) {
			json_decref(j);
			return 0;
		}
		if (status != 404)
			return -1;
	}
	e->api = NULL;
	return berr_set(err, 0, "etcd %s: no v3 JSON gateway (tried /v3, /v3beta, /v3alpha)%s%s",
			e->endpoints[e->cur], e->version[0] ? "; etcd version " : "", e->version);
}

static int et_open(struct store *st, const char *location, struct berr *err)
{
	pthread_once(&curl_once, curl_init_once);
	struct etcd_store *e = xcalloc(1, sizeof *e);
	e->max_ops = DEFAULT_MAX_TXN_OPS;
	e->max_bytes = DEFAULT_MAX_REQUEST_BYTES;
	sbuf_init(&e->req);
	sbuf_init(&e->resp);
	for (size_t i = 0; i < POOL; i++) {
		sbuf_init(&e->pool[i].body);
		sbuf_init(&e->pool[i].resp);
	}
	if (parse_location(e, location, err) < 0)
		goto fail;
	e->curl = curl_easy_init();
	if (!e->curl) {
		berr_set(err, 0, "store: cannot open '%s': cannot create a curl handle", location);
		goto fail;
	}
	/* "Expect: 100-continue" would cost a round trip on every large
	 * commit. */
	e->headers = curl_slist_append(NULL, "Content-Type: application/json");
	e->headers = curl_slist_append(e->headers, "Expect:");
	setup_handle(e, e->curl, &e->resp);
	e->multi = curl_multi_init();
	if (!e->multi) {
		berr_set(err, 0, "store: cannot open '%s': cannot create a curl handle", location);
		goto fail;
	}
	for (size_t i = 0; i < POOL; i++) {
		struct async *a = &e->pool[i];
		a->h = curl_easy_init();
		if (!a->h) {
			berr_set(err, 0, "store: cannot open '%s': cannot create a curl handle",
				 location);
			goto fail;
		}
		setup_handle(e, a->h, &a->resp);
		curl_easy_setopt(a->h, CURLOPT_PRIVATE, a);
	}
	if (detect_api(e, err) < 0) {
		berr_prefix(err, "store: cannot open '%s'", location);
		goto fail;
	}
	st->data = e;
	return 0;

fail:
	et_free(e);
	return -1;
}

static void et_close(struct store *st)
{
	struct etcd_store *e = st->data;
	if (e) {
		free(e->guard_key);
		free(e->guard_value);
	}
	et_free(st->data);
	st->data = NULL;
}

static int et_set_guard(struct store *st, const char *key, const char *value, struct berr *err)
{
	struct etcd_store *e = st->data;
	(void)err;
	free(e->guard_key);
	free(e->guard_value);
	e->guard_key = key ? xstrdup(key) : NULL;
	e->guard_value = key ? xstrdup(value) : NULL;
	return 0;
}

/* ---- commit ---- */

/* One op of the net effect of a batch. */
enum xkind { X_PUT, X_DELETE, X_RANGE };
struct xop {
	enum xkind kind;
	const struct store_op *op; /* X_PUT, X_DELETE: the batch's op */
	/* X_RANGE: whole etcd keys (with the store's prefix), owned; end NULL
	 * is open-ended. */
	char *start, *end;
	size_t start_len, end_len;
};

struct point {
	const struct store_op *op;
	size_t pos; /* in the batch */
};

static int point_cmp(const void *pa, const void *pb)
{
	const struct point *a = pa, *b = pb;
	int c = strcmp(a->op->key, b->op->key);
	if (c)
		return c;
	return a->pos < b->pos ? -1 : a->pos > b->pos;
}

static int str_ptr_cmp(const void *pa, const void *pb)
{
	return strcmp(*(const char *const *)pa, *(const char *const *)pb);
}

/* The delete_prefix ops of a batch: prefix -> position of its last
 * occurrence. Open addressing, FNV-1a, so that "is key k covered by a later
 * delete_prefix" costs one lookup per prefix of k. */
struct pmap_ent {
	const char *key;
	size_t len;
	uint64_t hash;
	size_t pos;
};
struct pmap {
	struct pmap_ent *ents;
	size_t mask;
};

#define FNV_INIT 14695981039346656037ULL
#define FNV_PRIME 1099511628211ULL

static uint64_t fnv(const char *s, size_t n)
{
	uint64_t h = FNV_INIT;
	for (size_t i = 0; i < n; i++)
		h = (h ^ (unsigned char)s[i]) * FNV_PRIME;
	return h;
}

static struct pmap_ent *pmap_slot(struct pmap *m, const char *key, size_t len, uint64_t hash)
{
	for (size_t i = hash & m->mask;; i = (i + 1) & m->mask) {
		struct pmap_ent *ent = &m->ents[i];
		if (!ent->key ||
		    (ent->hash == hash && ent->len == len && !memcmp(ent->key, key, len)))
			return ent;
	}
}

/* The position of the last delete_prefix that covers key, or -1. */
static long pmap_last_cover(struct pmap *m, const char *key, size_t len)
{
	long last = -1;
	uint64_t h = FNV_INIT;
	for (size_t l = 0;; l++) {
		struct pmap_ent *ent = pmap_slot(m, key, l, h);
		if (ent->key && (long)ent->pos > last)
			last = (long)ent->pos;
		if (l == len)
			break;
		h = (h ^ (unsigned char)key[l]) * FNV_PRIME;
	}
	return last;
}

/* prefix + s (+ a NUL byte when succ: the first key after s), as a whole
 * etcd key; the empty key becomes "\0". */
static char *whole_key(const struct etcd_store *e, const char *s, size_t n, bool succ, size_t *len)
{
	size_t total = e->prefix_len + n + (succ ? 1 : 0);
	char *k = xmalloc(total + 1);
	memcpy(k, e->prefix, e->prefix_len);
	memcpy(k + e->prefix_len, s, n);
	k[total - (succ ? 1 : 0)] = 0;
	k[total] = 0;
	if (total == 0) {
		total = 1; /* "\0" */
		k = xrealloc(k, 2);
		k[0] = k[1] = 0;
	}
	*len = total;
	return k;
}

static int bytes_cmp(const char *a, size_t alen, const char *b, size_t blen)
{
	int c = memcmp(a, b, alen < blen ? alen : blen);
	if (c)
		return c;
	return alen < blen ? -1 : alen > blen;
}

struct xops {
	struct xop *v;
	size_t n, cap;
};

static struct xop *xops_add(struct xops *x, enum xkind kind)
{
	if (x->n == x->cap) {
		x->cap = x->cap ? x->cap * 2 : 64;
		x->v = xrealloc(x->v, x->cap * sizeof *x->v);
	}
	struct xop *o = &x->v[x->n++];
	memset(o, 0, sizeof *o);
	o->kind = kind;
	return o;
}

static void xops_free(struct xops *x)
{
	for (size_t i = 0; i < x->n; i++) {
		free(x->v[i].start);
		free(x->v[i].end);
	}
	free(x->v);
}

/* The range [prefix, end(prefix)) minus the keys puts[0..n) (sorted, all
 * under prefix), as X_RANGE ops. */
static void add_ranges(const struct etcd_store *e, struct xops *x, const char *prefix,
		       const struct store_op **puts, size_t n)
{
	size_t start_len;
	char *start = whole_key(e, prefix, strlen(prefix), false, &start_len);
	for (size_t i = 0; i < n; i++) {
		size_t end_len;
		char *end = whole_key(e, puts[i]->key, puts[i]->key_len, false, &end_len);
		if (bytes_cmp(start, start_len, end, end_len) < 0) {
			struct xop *o = xops_add(x, X_RANGE);
			o->start = start;
			o->start_len = start_len;
			o->end = end;
			o->end_len = end_len;
		} else {
			free(start);
			free(end);
		}
		start = whole_key(e, puts[i]->key, puts[i]->key_len, true, &start_len);
	}
	/* The end of the whole prefix, in etcd's key space. */
	size_t plen;
	char *whole = whole_key(e, prefix, strlen(prefix), false, &plen);
	char *end = plen == 1 && whole[0] == 0 ? NULL : store_prefix_end(whole);
	free(whole);
	struct xop *o = xops_add(x, X_RANGE);
	o->start = start;
	o->start_len = start_len;
	o->end = end;
	o->end_len = end ? strlen(end) : 0;
}

/* Reduce b to its net effect: ops that commute (no key put twice, no put
 * under a delete), so that any grouping of them into txns gives the state
 * that applying b in order gives. */
static void net_effect(const struct etcd_store *e, const struct store_batch *b, struct xops *x)
{
	struct point *pts = xmalloc((b->n ? b->n : 1) * sizeof *pts);
	size_t npts = 0, nranges = 0;
	for (size_t i = 0; i < b->n; i++) {
		if (b->ops[i].kind == STORE_OP_DELETE_PREFIX)
			nranges++;
		else
			pts[npts++] = (struct point){&b->ops[i], i};
	}
	qsort(pts, npts, sizeof *pts, point_cmp);

	struct pmap m = {0};
	if (nranges) {
		size_t cap = 16;
		while (cap < nranges * 2)
			cap *= 2;
		m.ents = xcalloc(cap, sizeof *m.ents);
		m.mask = cap - 1;
		for (size_t i = 0; i < b->n; i++) {
			const struct store_op *op = &b->ops[i];
			if (op->kind != STORE_OP_DELETE_PREFIX)
				continue;
			uint64_t h = fnv(op->key, op->key_len);
			struct pmap_ent *ent = pmap_slot(&m, op->key, op->key_len, h);
			*ent = (struct pmap_ent){op->key, op->key_len, h, i};
		}
	}

	/* Per key, the last op, unless a later delete_prefix covers it. */
	const struct store_op **puts = xmalloc((npts ? npts : 1) * sizeof *puts);
	size_t nputs = 0;
	for (size_t i = 0; i < npts; i++) {
		if (i + 1 < npts && !strcmp(pts[i].op->key, pts[i + 1].op->key))
			continue;
		if (nranges &&
		    pmap_last_cover(&m, pts[i].op->key, pts[i].op->key_len) > (long)pts[i].pos)
			continue;
		bool put = pts[i].op->kind == STORE_OP_PUT;
		xops_add(x, put ? X_PUT : X_DELETE)->op = pts[i].op;
		if (put)
			puts[nputs++] = pts[i].op;
	}

	if (nranges) {
		/* One range per distinct prefix, leaving out those inside
		 * another (sorted, a prefix comes right before the prefixes it
		 * covers). */
		const char **pfx = xmalloc(nranges * sizeof *pfx);
		size_t np = 0;
		for (size_t i = 0; i <= m.mask; i++)
			if (m.ents[i].key)
				pfx[np++] = m.ents[i].key;
		qsort(pfx, np, sizeof *pfx, str_ptr_cmp);
		const char *kept = NULL;
		size_t lo = 0;
		for (size_t i = 0; i < np; i++) {
			if (kept && !strncmp(pfx[i], kept, strlen(kept)))
				continue;
			kept = pfx[i];
			size_t plen = strlen(kept);
			/* The puts under it that come after it in the batch
			 * (the others were dropped above). puts is sorted and
			 * so are the kept prefixes, which do not overlap. */
			while (lo < nputs && strcmp(puts[lo]->key, kept) < 0)
				lo++;
			size_t hi = lo;
			while (hi < nputs && !strncmp(puts[hi]->key, kept, plen))
				hi++;
			add_ranges(e, x, kept, puts + lo, hi - lo);
			lo = hi;
		}
		free(pfx);
	}
	free(puts);
	free(m.ents);
	free(pts);
}

/* What an op counts against etcd's request size limit. */
static size_t xop_size(const struct etcd_store *e, const struct xop *o)
{
	switch (o->kind) {
	case X_PUT:
		return OP_OVERHEAD + e->prefix_len + o->op->key_len + o->op->len;
	case X_DELETE:
		return OP_OVERHEAD + e->prefix_len + o->op->key_len;
	case X_RANGE:
		return OP_OVERHEAD + o->start_len + (o->end ? o->end_len : 1);
	}
	return OP_OVERHEAD;
}

static void req_xop(const struct etcd_store *e, struct sbuf *sb, const struct xop *o)
{
	switch (o->kind) {
	case X_PUT:
		sbuf_adds(sb, "{\"request_put\":{");
		req_key(e, sb, "key", o->op->key, o->op->key_len);
		sbuf_adds(sb, ",\"value\":\"");
		b64_add(sb, o->op->value, o->op->len);
		sbuf_adds(sb, "\"}}");
		break;
	case X_DELETE:
		sbuf_adds(sb, "{\"request_delete_range\":{");
		req_key(e, sb, "key", o->op->key, o->op->key_len);
		sbuf_adds(sb, "}}");
		break;
	case X_RANGE:
		sbuf_adds(sb, "{\"request_delete_range\":{");
		req_raw(sb, "key", o->start, o->start_len);
		sbuf_adds(sb, ",");
		req_raw(sb, "range_end", o->end, o->end_len);
		sbuf_adds(sb, "}}");
		break;
	}
}

/* The body of a txn of ops[0..n), into sb. No compare: the success branch
 * always runs. */
static void txn_body(const struct etcd_store *e, struct sbuf *sb, const struct xop *ops, size_t n)
{
	buf_reset(sb);
	sbuf_adds(sb, "{");
	if (e->guard_key) {
		/* Fenced: only while this server still holds the leadership. */
		sbuf_adds(sb, "\"compare\":[{");
		req_key(e, sb, "key", e->guard_key, strlen(e->guard_key));
		sbuf_adds(sb, ",\"target\":\"VALUE\",\"result\":\"EQUAL\",");
		req_raw(sb, "value", e->guard_value, strlen(e->guard_value));
		sbuf_adds(sb, "}],");
	}
	sbuf_adds(sb, "\"success\":[");
	for (size_t i = 0; i < n; i++) {
		if (i)
			sbuf_adds(sb, ",");
		req_xop(e, sb, &ops[i]);
	}
	sbuf_adds(sb, "]}");
}

static int txn_answer(struct etcd_store *e, json_t *j, struct berr *err)
{
	int ok = json_is_true(json_object_get(j, "succeeded"));
	json_decref(j);
	if (!ok && e->guard_key)
		return berr_set(err, 409,
				"fenced: '%s' no longer names this server (leadership lost); "
				"the transaction was not applied",
				e->guard_key);
	if (!ok)
		return berr_set(err, 0, "etcd %s: the transaction was not applied",
				e->endpoints[e->cur]);
	return 0;
}

/* Send ops[0..n) as one txn and wait for it. */
static int send_txn(struct etcd_store *e, const struct xop *ops, size_t n, struct berr *err)
{
	txn_body(e, &e->req, ops, n);
	json_t *j = NULL;
	if (api_call(e, "kv/txn", &j, NULL, err) < 0)
		return -1;
	return txn_answer(e, j, err);
}

/* The end of the txn that starts at x->v[i]: as many ops as etcd takes in
 * one request, at least one. */
static size_t txn_end(const struct etcd_store *e, const struct xops *x, size_t i)
{
	size_t budget = e->max_bytes - TXN_OVERHEAD, size = 0, j = i;
	while (j < x->n && j - i < e->max_ops) {
		size_t s = xop_size(e, &x->v[j]);
		if (j > i && size + s > budget)
			break;
		size += s;
		j++;
	}
	return j;
}

static const char *op_name(enum store_op_kind kind)
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

/* Send the txns of a split batch, POOL at a time: their ops commute, so
 * they may be applied in any order. A txn that fails in any way here is sent
 * again with call(), which fails over to the other endpoints and says what
 * went wrong. *done counts the txns known to be applied. */
static int commit_split(struct etcd_store *e, const struct xops *x, const size_t *starts,
			size_t ntxn, size_t *done, struct berr *err)
{
	size_t *redo = xmalloc(ntxn * sizeof *redo), nredo = 0, next = 0;
	for (;;) {
		size_t active = 0;
		for (size_t k = 0; k < POOL; k++) {
			struct async *a = &e->pool[k];
			if (!a->active && next < ntxn) {
				a->tag = next++;
				txn_body(e, &a->body, x->v + starts[a->tag],
					 starts[a->tag + 1] - starts[a->tag]);
				async_start(e, a, "kv/txn");
			}
			active += a->active;
		}
		if (!active)
			break;
		async_pump(e, 1000);
		for (size_t k = 0; k < POOL; k++) {
			struct async *a = &e->pool[k];
			if (!a->active || !a->done)
				continue;
			json_t *j = NULL;
			struct berr ignored;
			if (async_finish(e, a, &j) == 0 && txn_answer(e, j, &ignored) == 0)
				(*done)++;
			else
				redo[nredo++] = a->tag;
		}
	}
	int r = 0;
	for (size_t i = 0; i < nredo && r == 0; i++) {
		size_t t = redo[i];
		r = send_txn(e, x->v + starts[t], starts[t + 1] - starts[t], err);
		if (r == 0)
			(*done)++;
	}
	free(redo);
	return r;
}

static int et_commit(struct store *st, const struct store_batch *b, struct berr *err)
{
	struct etcd_store *e = st->data;
	size_t budget = e->max_bytes - TXN_OVERHEAD;

	/* Refuse what etcd would refuse before writing anything. */
	for (size_t i = 0; i < b->n; i++) {
		const struct store_op *op = &b->ops[i];
		if (op->kind != STORE_OP_DELETE_PREFIX && op->key_len + e->prefix_len == 0)
			return berr_set(err, 0,
					"store: cannot commit: %s '': etcd has no empty key",
					op_name(op->kind));
		size_t size = OP_OVERHEAD + e->prefix_len + op->key_len + op->len;
		if (size > budget)
			return berr_set(err, 0,
					"store: cannot commit: %s '%.200s' is %zu bytes, more than "
					"one etcd request may carry (%zu bytes: etcd's "
					"--max-request-bytes)",
					op_name(op->kind), op->key, op->key_len + op->len,
					e->max_bytes);
	}

	struct xops x = {0};
	net_effect(e, b, &x);

	/* Where each txn starts; starts[ntxn] = x.n. */
	size_t ntxn = 0, cap = 16;
	size_t *starts = xmalloc(cap * sizeof *starts);
	for (size_t i = 0; i < x.n; i = txn_end(e, &x, i)) {
		if (ntxn + 2 > cap)
			starts = xrealloc(starts, (cap *= 2) * sizeof *starts);
		starts[ntxn++] = i;
	}
	starts[ntxn] = x.n;

	int r = 0;
	size_t done = 0;
	if (ntxn == 1) {
		r = send_txn(e, x.v, x.n, err);
		if (r < 0)
			berr_prefix(err, "store: cannot commit");
	} else if (ntxn > 1) {
		r = commit_split(e, &x, starts, ntxn, &done, err);
		if (r < 0)
			berr_prefix(
			    err,
			    "store: cannot commit (the batch was split into %zu etcd "
			    "transactions and %zu of them were applied: the batch is partly "
			    "applied)",
			    ntxn, done);
	}
	free(starts);
	xops_free(&x);
	return r;
}

/* ---- reads ---- */

static int et_get(struct store *st, const char *key, char **value, size_t *len, struct berr *err)
{
	struct etcd_store *e = st->data;
	size_t klen = strlen(key);
	if (klen + e->prefix_len == 0)
		return 1; /* etcd has no empty key */
	buf_reset(&e->req);
	sbuf_adds(&e->req, "{");
	req_key(e, &e->req, "key", key, klen);
	sbuf_adds(&e->req, "}");
	json_t *j = NULL;
	if (api_call(e, "kv/range", &j, NULL, err) < 0)
		return berr_prefix(err, "store: cannot get '%.200s'", key);
	json_t *kvs = json_object_get(j, "kvs");
	if (json_array_size(kvs) == 0) {
		json_decref(j);
		return 1;
	}
	struct sbuf v;
	sbuf_init(&v);
	if (kv_bytes(json_array_get(kvs, 0), "value", &v) < 0) {
		json_decref(j);
		sbuf_release(&v);
		return berr_set(err, 0, "store: cannot get '%.200s': etcd %s: bad value", key,
				e->endpoints[e->cur]);
	}
	json_decref(j);
	if (len)
		*len = v.len;
	if (value)
		*value = sbuf_detach(&v);
	else
		sbuf_release(&v);
	return 0;
}

/* The body of a scan page: keys from start (a whole etcd key) to end (NULL:
 * no end), at revision rev (0: the current one). */
static void page_body(struct sbuf *sb, const char *start, size_t start_len, const char *end,
		      size_t limit, int64_t rev)
{
	buf_reset(sb);
	sbuf_adds(sb, "{");
	req_raw(sb, "key", start, start_len);
	sbuf_adds(sb, ",");
	req_raw(sb, "range_end", end, end ? strlen(end) : 0);
	sbuf_addf(sb, ",\"limit\":%zu", limit);
	if (rev > 0)
		sbuf_addf(sb, ",\"revision\":%lld", (long long)rev);
	sbuf_adds(sb, "}");
}

static int et_scan(struct store *st, const char *prefix, store_scan_fn fn, void *ud,
		   struct berr *err)
{
	struct etcd_store *e = st->data;
	size_t plen = strlen(prefix);
	/* start: where the next page begins (a whole etcd key); end: the
	 * first key after the prefix, NULL for none. */
	size_t start_len;
	char *start = whole_key(e, prefix, plen, false, &start_len);
	char *end = start_len == 1 && start[0] == 0 ? NULL : store_prefix_end(start);
	/* The outermost scan asks for the next page before it hands out the
	 * current one, so that etcd works on it meanwhile. A scan from a scan
	 * callback (rare, small) does not. */
	struct async *ahead = e->scan_depth == 0 ? &e->pool[0] : NULL;
	e->scan_depth++;
	struct sbuf kb, vb;
	sbuf_init(&kb);
	sbuf_init(&vb);
	int64_t rev = 0;
	size_t limit = PAGE_FIRST;
	int result = 0;
	for (;;) {
		json_t *j = NULL;
		size_t answer_bytes = 0;
		if (ahead && ahead->active && async_finish(e, ahead, &j) == 0) {
			answer_bytes = ahead->resp.len;
		} else {
			page_body(&e->req, start, start_len, end, limit, rev);
			if (api_call(e, "kv/range", &j, NULL, err) < 0) {
				result = berr_prefix(err, "store: cannot scan '%.200s'", prefix);
				break;
			}
			answer_bytes = e->resp.len;
		}
		if (rev == 0) {
			rev = json_int64(json_object_get(json_object_get(j, "header"), "revision"));
			if (e->scan_depth == 1)
				e->last_scan_rev = rev;
		}
		json_t *kvs = json_object_get(j, "kvs");
		size_t n = json_array_size(kvs);
		bool more = json_is_true(json_object_get(j, "more")) && n > 0;
		if (more) {
			/* The next page starts just after the last key. */
			if (kv_bytes(json_array_get(kvs, n - 1), "key", &kb) < 0) {
				json_decref(j);
				result = berr_set(err, 0,
						  "store: cannot scan '%.200s': etcd %s: bad key "
						  "in the answer",
						  prefix, e->endpoints[e->cur]);
				break;
			}
			free(start);
			start_len = kb.len + 1;
			start = xmalloc(start_len + 1);
			memcpy(start, kb.buf, kb.len);
			start[kb.len] = 0;
			start[start_len] = 0;
			if (answer_bytes < PAGE_GROW_BYTES && limit < PAGE_MAX)
				limit *= 2;
			else if (answer_bytes > PAGE_SHRINK_BYTES && limit > PAGE_MIN)
				limit /= 2;
			if (ahead) {
				page_body(&ahead->body, start, start_len, end, limit, rev);
				async_start(e, ahead, "kv/range");
			}
		}
		for (size_t i = 0; i < n && !result; i++) {
			json_t *kv = json_array_get(kvs, i);
			if (kv_bytes(kv, "key", &kb) < 0 || kv_bytes(kv, "value", &vb) < 0 ||
			    kb.len < e->prefix_len || memcmp(kb.buf, e->prefix, e->prefix_len)) {
				result = berr_set(err, 0,
						  "store: cannot scan '%.200s': etcd %s: bad key "
						  "or value in the answer",
						  prefix, e->endpoints[e->cur]);
				break;
			}
			/* fn may scan or get again: e->req and e->resp are
			 * reused, the page (j) and kb/vb are not. */
			result = fn(kb.buf + e->prefix_len, vb.buf, vb.len, ud);
			/* Keep the next page coming while fn works. */
			if (ahead && ahead->active && i % 64 == 63)
				async_pump(e, 0);
		}
		json_decref(j);
		if (result || !more)
			break;
	}
	if (ahead)
		async_cancel(e, ahead);
	e->scan_depth--;
	sbuf_release(&kb);
	sbuf_release(&vb);
	free(start);
	free(end);
	return result;
}

/* ---- following ----
 * store_follow (store.h): RESET, a copy of every key read by et_scan (pinned
 * to the revision of its first page, R), SYNCED at R, then one watch of the
 * whole prefix from R + 1 whose events go to fn as they come. A watch that
 * ends or fails is made again on the next endpoint from the revision after
 * the last one delivered; a watch etcd cancels because that revision was
 * compacted away starts over with RESET and a new copy. */

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
	struct etcd_store *e;
	store_follow_fn fn;
	void *ud;
	const _Atomic bool *stop;
	int fn_result;	  /* fn's non-zero answer (F_FN) */
	int64_t last_rev; /* the revision the replica was last taken to */
	struct changes ch;
	struct sbuf kb, vb; /* decoded key and value of one event */
	/* The watch: its own handles, so that e->curl stays free for the
	 * copy. */
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
	f->fn_result = changes_flush(f, f->e->last_scan_rev);
	if (f->fn_result || stopped(f))
		return 1;
	return 0;
}

/* libcurl's progress callback on e->curl during the copy: a request in
 * progress gives up once *stop is set. */
static int copy_progress(void *ud, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
			 curl_off_t ulnow)
{
	return atomic_load((const _Atomic bool *)ud) ? 1 : 0;
}

/* RESET, every key of the store at one revision, SYNCED. */
static enum fstep follow_copy(struct store *st, struct follow *f)
{
	struct etcd_store *e = f->e;
	if ((f->fn_result = f->fn(f->ud, STORE_FOLLOW_RESET, NULL, 0, 0)))
		return F_FN;
	changes_clear(&f->ch);
	e->last_scan_rev = 0;
	struct berr err = {0};
	curl_easy_setopt(e->curl, CURLOPT_XFERINFOFUNCTION, copy_progress);
	curl_easy_setopt(e->curl, CURLOPT_XFERINFODATA, (void *)f->stop);
	curl_easy_setopt(e->curl, CURLOPT_NOPROGRESS, 0L);
	int r = et_scan(st, "", copy_cb, f, &err);
	curl_easy_setopt(e->curl, CURLOPT_NOPROGRESS, 1L);
	if (f->fn_result)
		return F_FN;
	if (stopped(f))
		return F_STOPPED;
	int64_t rev = e->last_scan_rev;
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
	struct etcd_store *e = f->e;
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
		f->step = json_int64(json_object_get(res, "compact_revision")) > 0 ? F_COMPACTED
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
		if (kv_bytes(kv, "key", &f->kb) < 0 ||
		    (!deleted && kv_bytes(kv, "value", &f->vb) < 0)) {
			f->step = F_FAILED;
			changes_clear(&f->ch);
			json_decref(j);
			return;
		}
		int64_t mod = json_int64(json_object_get(kv, "mod_revision"));
		if (mod > rev)
			rev = mod;
		if (f->kb.len < e->prefix_len || memcmp(f->kb.buf, e->prefix, e->prefix_len))
			continue;
		changes_add(&f->ch, f->kb.buf + e->prefix_len, f->kb.len - e->prefix_len, f->vb.buf,
			    f->vb.len, deleted);
	}
	/* Not the header's revision: while a watch catches up, etcd sends
	 * the events of up to 1000 revisions per message with the current
	 * revision in the header, and more messages follow. */
	if (rev <= 0 && f->ch.n)
		rev = json_int64(json_object_get(json_object_get(res, "header"), "revision"));
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
	struct etcd_store *e = f->e;
	size_t start_len;
	char *start = whole_key(e, "", 0, false, &start_len);
	char *end = start_len == 1 && start[0] == 0 ? NULL : store_prefix_end(start);
	buf_reset(&f->body);
	sbuf_adds(&f->body, "{\"create_request\":{");
	req_raw(&f->body, "key", start, start_len);
	sbuf_adds(&f->body, ",");
	req_raw(&f->body, "range_end", end, end ? strlen(end) : 0);
	sbuf_addf(&f->body, ",\"start_revision\":%lld}}", (long long)(f->last_rev + 1));
	free(start);
	free(end);

	free(f->url);
	f->url = xasprintf("%s%s/watch", e->urls[e->cur], e->api);
	curl_easy_setopt(f->h, CURLOPT_URL, f->url);
	curl_easy_setopt(f->h, CURLOPT_POSTFIELDS, f->body.buf);
	curl_easy_setopt(f->h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)f->body.len);
	buf_reset(&f->in);
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

static int et_follow(struct store *st, store_follow_fn fn, void *ud, const _Atomic bool *stop,
		     struct berr *err)
{
	struct etcd_store *e = st->data;
	struct follow f = {.e = e, .fn = fn, .ud = ud, .stop = stop};
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
	setup_handle(e, f.h, NULL);
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
			step = follow_copy(st, &f);
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
			e->cur = (e->cur + 1) % e->n_endpoints;
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

const struct store_ops store_etcd_ops = {
    .name = "etcd",
    .open = et_open,
    .close = et_close,
    .commit = et_commit,
    .get = et_get,
    .scan = et_scan,
    .set_guard = et_set_guard,
    .follow = et_follow,
};
